//! `fieldsync`: the sync server and its operator commands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use server::config::Settings;
use server::startup::{AdminBootstrap, Application};

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
    Serve(ServeArgs),
}

/// Flags and `FIELDSYNC_*` variables override the config file, which overrides the defaults.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// A TOML file of settings (see README).
    #[arg(long, env = "FIELDSYNC_CONFIG")]
    config: Option<PathBuf>,
    /// The store's folder (created if missing) [default: ./fieldsync-data].
    #[arg(long, env = "FIELDSYNC_DATA")]
    data: Option<PathBuf>,
    /// Address and port to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "FIELDSYNC_BIND")]
    bind: Option<SocketAddr>,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, env = "FIELDSYNC_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, env = "FIELDSYNC_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// sled's page cache in MiB [default: 64].
    #[arg(long, env = "FIELDSYNC_CACHE_MB")]
    cache_mb: Option<u64>,
    /// Record store: `sled` (durable, the default) or `memory` (tests only: lost on exit).
    #[arg(long, env = "FIELDSYNC_RECORDS", hide = true)]
    records: Option<server::config::RecordStore>,
    /// Password of the `admin` user made on first start; generated and printed once if unset.
    #[arg(long = "admin-password", env = "FIELDSYNC_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
}

impl ServeArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut s = match &self.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        if let Some(d) = &self.data {
            s.data_dir = d.clone();
        }
        if let Some(b) = self.bind {
            s.bind = b;
        }
        if let Some(c) = &self.tls_cert {
            s.tls_cert = Some(c.clone());
        }
        if let Some(k) = &self.tls_key {
            s.tls_key = Some(k.clone());
        }
        if let Some(r) = self.records {
            s.records = r;
        }
        if let Some(mb) = self.cache_mb {
            s.cache_capacity_mb = mb;
        }
        Ok(s)
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match Cli::parse().command {
        Command::Serve(args) => {
            let settings = args.settings()?;
            let app = Application::build(&settings, args.admin_password.as_deref())?;
            if let AdminBootstrap::Generated(p) = &app.admin {
                // Shown once: it is stored only as an argon2 hash.
                println!("created user admin with password {p}");
            }
            tracing::info!(port = app.port, data = %settings.data_dir.display(), "fieldsync listening");
            // One plain line on stdout, so scripts and tests learn the port when bound to :0.
            let scheme = if app.tls { "https" } else { "http" };
            println!("fieldsync listening on {scheme}://{}:{}", settings.bind.ip(), app.port);
            app.run_until_stopped().await?;
        }
    }
    Ok(())
}
