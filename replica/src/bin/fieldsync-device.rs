//! `fieldsync-device`: act as a tablet from a shell or a script. The logic is in
//! `replica::device`; this reads arguments, calls it and prints JSON.
//!
//! Exit codes: 0 done; 1 any other failure; 2 bad input (usage, unknown kind,
//! invalid record, refused edit); 3 the device must log in again (`init`);
//! 4 the server could not be reached.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use replica::device::{Device, DeviceError, Login, Receipt, parse_record_id};
use replica::{HttpConfig, ReplicaError, TransportError};

/// jemalloc, as the server: with glibc's, a tenth of a pull's time on the
/// device side was malloc and free.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "fieldsync-device",
    version,
    about = "Act as a fieldsync tablet: a local replica that syncs with the server"
)]
struct Cli {
    /// The device folder: the replica store and the login.
    #[arg(
        long,
        env = "FIELDSYNC_DEVICE_DIR",
        global = true,
        default_value = "fieldsync-device"
    )]
    dir: PathBuf,
    /// Indent JSON output.
    #[arg(long, global = true)]
    pretty: bool,
    /// Tries per request before giving up on the server.
    #[arg(long, env = "FIELDSYNC_ATTEMPTS", global = true, default_value_t = 5)]
    attempts: u32,
    /// Seconds one HTTP exchange may take.
    #[arg(long, global = true, default_value_t = 120)]
    timeout_secs: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in and set up the device folder (again, to log in again).
    Init {
        /// Server base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        server: String,
        #[arg(long)]
        username: String,
        /// Read from FIELDSYNC_PASSWORD, or from the first line of stdin when absent.
        #[arg(long, env = "FIELDSYNC_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// A name for this device that administrators see.
        #[arg(long)]
        name: Option<String>,
    },
    /// Create a record from a JSON file (`-` for stdin); prints its id.
    Create {
        /// site, inspection, hazard, review, addendum, task or random_draw.
        kind: String,
        file: PathBuf,
    },
    /// Write a unit's value, replacing the value this device shows.
    Edit {
        id: String,
        /// e.g. conclusion, fix, answers/TP-03, evidence/<item id>.
        unit: String,
        /// JSON: '"ok"', '{"result": "ok", "note": ""}', null to remove an item.
        value: String,
    },
    /// Write a unit's value replacing every live version: ends a conflict.
    Resolve { id: String, unit: String, value: String },
    /// Take a workflow step (submit, sign, notify, start, complete, ...).
    Transition { id: String, action: String },
    /// Records on this device, of one kind or all.
    List { kind: Option<String> },
    /// One record with its conflicts, flags, review and pending changes.
    Show { id: String },
    /// Push pending changes and pull new ones; prints a summary.
    Sync,
    /// Pending and refused changes, last sync, clock offset.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(exit_code(&e))
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let http = |server: String| {
        let mut c = HttpConfig::new(server);
        c.attempts = cli.attempts.max(1);
        c.request_timeout = Duration::from_secs(cli.timeout_secs.max(1));
        c
    };
    match &cli.command {
        Command::Init {
            server,
            username,
            password,
            name,
        } => {
            let password = match password {
                Some(p) => p.clone(),
                None => read_password()?,
            };
            let login = Login {
                username: username.clone(),
                password,
                device_name: name.clone(),
            };
            let (_, report) = Device::init(&cli.dir, http(server.clone()), &login)?;
            print(cli, &report)
        }
        Command::Create { kind, file } => {
            let text = read_input(file)?;
            let mut device = Device::open(&cli.dir)?;
            let receipt = device.create(kind, &text)?;
            warn(&receipt);
            println!("{}", receipt.record);
            Ok(())
        }
        Command::Edit { id, unit, value } => {
            let mut device = Device::open(&cli.dir)?;
            let receipt = device.edit(parse_record_id(id)?, unit, value)?;
            receipt_out(cli, &receipt)
        }
        Command::Resolve { id, unit, value } => {
            let mut device = Device::open(&cli.dir)?;
            let receipt = device.resolve(parse_record_id(id)?, unit, value)?;
            receipt_out(cli, &receipt)
        }
        Command::Transition { id, action } => {
            let mut device = Device::open(&cli.dir)?;
            let receipt = device.transition(parse_record_id(id)?, action)?;
            receipt_out(cli, &receipt)
        }
        Command::List { kind } => print(cli, &Device::open(&cli.dir)?.list(kind.as_deref())?),
        Command::Show { id } => print(cli, &Device::open(&cli.dir)?.show(parse_record_id(id)?)?),
        Command::Sync => {
            let mut device = Device::open(&cli.dir)?;
            let config = http(device.credentials().server.clone());
            match device.sync(config) {
                Ok(summary) => print(cli, &summary),
                Err(
                    e @ (DeviceError::Transport(TransportError::Unauthorized(_))
                    | DeviceError::Replica(ReplicaError::Transport(TransportError::Unauthorized(_)))),
                ) => {
                    let why = e.to_string();
                    let hint = relogin_hint(&why, device.replica().pending_count());
                    Err(anyhow::Error::new(e).context(hint))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Status => {
            let status = Device::open(&cli.dir)?.status()?;
            if let Some(why) = &status.login_required {
                eprintln!("warning: {} ({why})", relogin_hint(why, status.pending));
            }
            print(cli, &status)
        }
    }
}

fn print(cli: &Cli, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = if cli.pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }?;
    println!("{text}");
    Ok(())
}

/// Flags never stop an edit; they are shown, as the app would show them.
fn warn(receipt: &Receipt) {
    for f in &receipt.flags {
        eprintln!("warning: {} at `{}`: {}", f.code, f.field, f.message);
    }
}

fn receipt_out(cli: &Cli, receipt: &Receipt) -> anyhow::Result<()> {
    warn(receipt);
    print(
        cli,
        &serde_json::json!({"record": receipt.record, "seq": receipt.seq, "flags": receipt.flags.len()}),
    )
}

fn read_input(file: &Path) -> anyhow::Result<String> {
    if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the record from stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}

fn read_password() -> anyhow::Result<String> {
    eprint!("password: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(
        !line.is_empty(),
        "no password: pass --password, set FIELDSYNC_PASSWORD or type it on stdin"
    );
    Ok(line)
}

/// What to tell the person when the server refuses the device's tokens.
fn relogin_hint(why: &str, pending: usize) -> String {
    let what = if why.contains("device_revoked") {
        "this device was revoked: enrol it again with `fieldsync-device init` (it gets a new device id)"
    } else {
        "this device must log in again with `fieldsync-device init`"
    };
    format!("{what}; the {pending} changes not yet synced are kept and will be pushed then")
}

fn report(e: &anyhow::Error) {
    if let Some(DeviceError::Replica(ReplicaError::Invalid { errors })) = e.downcast_ref::<DeviceError>() {
        eprintln!("error: the record would be invalid:");
        for i in errors {
            eprintln!("  {} at `{}`: {}", i.code, i.field, i.message);
        }
        return;
    }
    eprintln!("error: {e:#}");
}

fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<DeviceError>() {
        Some(
            DeviceError::BadInput { .. }
            | DeviceError::UnknownKind { .. }
            | DeviceError::NotFound(_)
            | DeviceError::Replica(ReplicaError::Invalid { .. } | ReplicaError::Rejected(_) | ReplicaError::NotFound(_)),
        ) => 2,
        Some(
            DeviceError::Transport(TransportError::Unauthorized(_))
            | DeviceError::Replica(ReplicaError::Transport(TransportError::Unauthorized(_))),
        ) => 3,
        Some(
            DeviceError::Transport(TransportError::Unavailable(_))
            | DeviceError::Replica(ReplicaError::Transport(TransportError::Unavailable(_))),
        ) => 4,
        _ => 1,
    }
}
