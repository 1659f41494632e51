//! `fieldsync`: the sync server and its operator commands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use server::config::Settings;
use server::startup::Application;

#[derive(Debug, Parser)]
#[command(
    name = "fieldsync",
    version,
    about = "Offline-first sync server for field inspections"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server on an embedded sled store.
    Serve {
        /// The store's folder (created if missing).
        #[arg(long, env = "FIELDSYNC_DATA", default_value = "fieldsync-data")]
        data: PathBuf,
        /// Address and port to listen on.
        #[arg(long, env = "FIELDSYNC_BIND", default_value = "127.0.0.1:8080")]
        bind: SocketAddr,
    },
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match Cli::parse().command {
        Command::Serve { data, bind } => {
            let settings = Settings { data_dir: data, bind };
            let app = Application::build(&settings)?;
            tracing::info!(port = app.port, data = %settings.data_dir.display(), "fieldsync listening");
            // One plain line on stdout, so scripts and tests learn the port when bound to :0.
            println!("fieldsync listening on http://{}:{}", settings.bind.ip(), app.port);
            app.run_until_stopped().await?;
        }
    }
    Ok(())
}
