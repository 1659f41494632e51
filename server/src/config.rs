//! Server settings: defaults, overridden by command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the server keeps its data and where it listens.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The sled store's folder.
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("fieldsync-data"),
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}
