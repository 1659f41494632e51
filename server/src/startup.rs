//! Builds the application: opens the store, binds the socket, runs the server.

use std::net::TcpListener;

use actix_web::{App, HttpServer, dev::Server, web};

use crate::config::Settings;
use crate::routes;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: sled::Db,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the store in {dir}: {source}")]
    Store { dir: String, source: sled::Error },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// A bound, not yet running server: tests bind to port 0 and read the port here.
pub struct Application {
    pub port: u16,
    server: Server,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    pub fn build(settings: &Settings) -> Result<Self, StartupError> {
        let db = sled::Config::new()
            .path(&settings.data_dir)
            // sled's default cache is 1 GiB; the server's budget is far smaller.
            .cache_capacity(64 * 1024 * 1024)
            .open()
            .map_err(|source| StartupError::Store {
                dir: settings.data_dir.display().to_string(),
                source,
            })?;
        let listener = TcpListener::bind(settings.bind).map_err(|source| StartupError::Bind {
            addr: settings.bind.to_string(),
            source,
        })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(settings.bind.port());
        let state = web::Data::new(AppState { db });
        let server = HttpServer::new(move || App::new().app_data(state.clone()).service(routes::health::healthz))
            .listen(listener)
            .map_err(|source| StartupError::Bind {
                addr: settings.bind.to_string(),
                source,
            })?
            .run();
        Ok(Self { port, server })
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
