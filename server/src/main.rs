//! `fieldsync`: the sync server and its operator commands.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mobile_schema::ids::DeviceId;
use mobile_schema::region::RegionCode;
use mobile_schema::workflow::Role;
use server::admin_client::AdminClient;
use server::config::Settings;
use server::routes::admin::{NewUser, UserChange};
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
    /// Users of a running server (logs in as an admin; prints JSON).
    User {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Devices of a running server (logs in as an admin; prints JSON).
    Device {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// A record of a running server with its conflicts, flags and full history
    /// (logs in as any user with --as; shows only records in their scope).
    Record {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: RecordCommand,
    },
    /// Sites of a running server: list, add one, import an official list
    /// (logs in as an admin or a supervisor with --as; prints JSON).
    Site {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: SiteCommand,
    },
    /// Take a consistent copy of a running server's store into DIR, a new or
    /// empty folder on the server's machine (admin; writes wait while it copies).
    Backup {
        #[command(flatten)]
        admin: AdminArgs,
        dir: PathBuf,
    },
    /// Bring a backup back into an empty data folder, under a new epoch (the
    /// server stopped); tablets then send back what the backup lacks.
    Restore {
        backup: PathBuf,
        #[arg(long, env = "FIELDSYNC_DATA")]
        data: PathBuf,
    },
    /// The yearly inspection schedule of a running server (logs in as a
    /// supervisor or an admin with --as).
    Schedule {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Review submitted inspections of a running server (logs in as a
    /// supervisor or an admin with --as; text, or JSON with --json).
    Review {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: server::review_cli::ReviewCommand,
    },
    /// Hazards of a running server: the filtered list and the overdue ones.
    Hazards {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: server::review_cli::HazardsCommand,
    },
}

/// Which report: a year, a region, JSON or CSV.
#[derive(Debug, clap::Args)]
struct ReportArgs {
    #[arg(long)]
    year: i32,
    /// A county, a city (its counties) or the province.
    #[arg(long)]
    region: RegionCode,
    /// CSV (UTF-8 with BOM, for Excel) instead of JSON.
    #[arg(long)]
    csv: bool,
}

#[derive(Debug, Subcommand)]
enum ScheduleCommand {
    /// Generate and store a year's tasks for a region (prints the schedule as JSON).
    Generate {
        #[arg(long)]
        year: i32,
        /// The jurisdiction: a county, a city (its counties) or the province.
        #[arg(long)]
        region: RegionCode,
        /// The draw's seed; random when absent (it is recorded with the draw).
        #[arg(long)]
        seed: Option<u64>,
        /// A JSON file with more of the request: flood_seasons, intensified,
        /// periodic, recusals, generated_on (see README).
        #[arg(long)]
        options: Option<PathBuf>,
        /// Compute and print without storing.
        #[arg(long)]
        dry_run: bool,
    },
    /// A year's tasks in a region.
    Show(ReportArgs),
    /// Required against done, per pond and level, and the overdue tasks.
    Compliance(ReportArgs),
    /// The dated obligations of key supervision units and whether each was met.
    Obligations(ReportArgs),
    /// Re-plan a pond's remaining tasks after its level changed.
    Regenerate {
        #[arg(long)]
        year: i32,
        #[arg(long)]
        site: mobile_schema::ids::SiteId,
        /// The day the new level took effect [default: today].
        #[arg(long)]
        change_day: Option<chrono::NaiveDate>,
    },
}

/// How the account commands reach the server and log in.
#[derive(Debug, clap::Args)]
struct AdminArgs {
    /// The server's base URL.
    #[arg(
        long,
        env = "FIELDSYNC_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// The admin to log in as; the password is read from FIELDSYNC_PASSWORD, or
    /// from the first line of stdin when that is unset.
    #[arg(long = "as", env = "FIELDSYNC_ADMIN", default_value = "admin", global = true)]
    admin: String,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user. Their password is read from FIELDSYNC_USER_PASSWORD, or
    /// generated and printed once.
    Add {
        username: String,
        /// inspector, supervisor or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// GB/T 2260 codes the user works in, comma-separated (a city covers its
        /// counties, a province its cities).
        #[arg(long, default_value = "")]
        regions: String,
    },
    /// List users.
    List,
    /// Change a user.
    Set {
        username: String,
        #[arg(long, value_parser = parse_role)]
        role: Option<Role>,
        /// Replace the regions (comma-separated; `--regions ''` clears them).
        #[arg(long)]
        regions: Option<String>,
        /// Refuse the user's logins and tokens from the next request on.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
        /// Set a new password: from FIELDSYNC_USER_PASSWORD, or generated and printed once.
        #[arg(long)]
        reset_password: bool,
    },
}

#[derive(Debug, Subcommand)]
enum RecordCommand {
    /// Current values, conflicts, flags, review and every change with its author and outcome.
    Show {
        id: mobile_schema::ids::RecordId,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SiteCommand {
    /// Sites in commit order, filtered; follows pages with --all.
    List {
        /// A county, a city (its counties) or the province.
        #[arg(long)]
        region: Option<RegionCode>,
        /// tailings_pond, key_supervision_unit or remediation_site.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// The `next` of a previous page.
        #[arg(long)]
        after: Option<u64>,
        /// Every page, as one list.
        #[arg(long)]
        all: bool,
    },
    /// Create a site from a JSON document (- for stdin).
    Add { file: PathBuf },
    /// Import an official list: ponds, key_units or projects. Idempotent: ids
    /// derive from each row's natural key, so a second run creates nothing.
    Import {
        kind: server::sites::ListKind,
        file: PathBuf,
        /// Rows per request.
        #[arg(long, default_value_t = 200)]
        batch: usize,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// List devices with their user, app version, replica, last sighting, and
    /// last sync with what the tablet reported (outbox, clock offset, schema).
    List {
        /// Only this user's devices.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a device: its tokens are refused from its next request on; the
    /// tablet keeps its unsynced changes and must be enrolled again.
    Revoke { id: DeviceId },
}

fn parse_role(s: &str) -> Result<Role, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("`{s}` is not a role: inspector, supervisor or admin"))
}

/// `450300,450332`; empty for none.
fn parse_regions(s: &str) -> anyhow::Result<Vec<RegionCode>> {
    s.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse()
                .map_err(|e: mobile_schema::region::BadRegionCode| anyhow::anyhow!("--regions: {e}"))
        })
        .collect()
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
    /// Official working-day arrangements of years the built-in calendar lacks
    /// (`date,kind,festival` lines, e.g. next year's once published).
    #[arg(long, env = "FIELDSYNC_CALENDAR")]
    calendar: Option<PathBuf>,
    /// The day taken as today for task windows (drills and tests only).
    #[arg(long, env = "FIELDSYNC_TODAY", hide = true)]
    today: Option<chrono::NaiveDate>,
    /// Log lines as JSON objects, one per line (for a log shipper).
    #[arg(long, env = "FIELDSYNC_LOG_JSON")]
    log_json: bool,
    /// Free space in MiB that photo uploads leave for records [default: 256].
    #[arg(long, env = "FIELDSYNC_PHOTO_FREE_RESERVE_MB")]
    photo_free_reserve_mb: Option<u64>,
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
        if let Some(day) = self.today {
            s.schedule.today = Some(day);
        }
        if let Some(c) = &self.calendar {
            s.schedule.calendar = Some(c.clone());
        }
        if self.log_json {
            s.log_json = true;
        }
        if let Some(mb) = self.photo_free_reserve_mb {
            s.photos.free_reserve_mb = mb;
        }
        Ok(s)
    }
}

/// Text for a person at a terminal, or one JSON object per line for a log
/// shipper; `RUST_LOG` filters either way (default `info`).
fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // stderr: stdout carries the one line scripts read (where the server listens).
    // Colours only for a person at a terminal, not in a file or a journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if json {
        logs.json().flatten_event(true).with_current_span(false).init();
    } else {
        logs.init();
    }
}

/// jemalloc: glibc's per-thread arenas keep freed memory of a push storm (the
/// actix workers, the blocking pool, sled's threads) resident long after it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The settings say how to log, so they are read before the first log line.
    let serve = match &cli.command {
        Command::Serve(args) => Some(args.settings()?),
        _ => None,
    };
    init_logs(serve.as_ref().is_some_and(|s| s.log_json));
    match cli.command {
        Command::Serve(args) => {
            let settings = serve.map_or_else(|| args.settings(), Ok)?;
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
        Command::User { admin, command } => {
            actix_web::rt::task::spawn_blocking(move || user_command(&admin, command)).await??;
        }
        Command::Device { admin, command } => {
            actix_web::rt::task::spawn_blocking(move || device_command(&admin, command)).await??;
        }
        Command::Record { admin, command } => {
            actix_web::rt::task::spawn_blocking(move || record_command(&admin, command)).await??;
        }
        Command::Schedule { admin, command } => {
            actix_web::rt::task::spawn_blocking(move || schedule_command(&admin, command)).await??;
        }
        Command::Review { admin, command } => {
            let text = actix_web::rt::task::spawn_blocking(move || -> anyhow::Result<String> {
                Ok(server::review_cli::review(&connect(&admin)?, command)?)
            })
            .await??;
            print_raw(&text);
        }
        Command::Hazards { admin, command } => {
            let text = actix_web::rt::task::spawn_blocking(move || -> anyhow::Result<String> {
                Ok(server::review_cli::hazards(&connect(&admin)?, command)?)
            })
            .await??;
            print_raw(&text);
        }
        Command::Site { admin, command } => {
            actix_web::rt::task::spawn_blocking(move || site_command(&admin, command)).await??;
        }
        Command::Backup { admin, dir } => {
            actix_web::rt::task::spawn_blocking(move || backup_command(&admin, &dir)).await??;
        }
        Command::Restore { backup, data } => {
            let now = sync_protocol::clock::Clock::now_ms(&sync_protocol::clock::SystemClock);
            let info = server::storage::backup::restore(&backup, &data, now)
                .with_context(|| format!("restoring {} into {}", backup.display(), data.display()))?;
            print(&info)?;
        }
    }
    Ok(())
}

fn print(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// FIELDSYNC_PASSWORD, or the first line of stdin.
fn admin_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("FIELDSYNC_PASSWORD")
        && !p.is_empty()
    {
        return Ok(p);
    }
    eprint!("admin password: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(
        !line.is_empty(),
        "no password: set FIELDSYNC_PASSWORD or type it on stdin"
    );
    Ok(line)
}

/// FIELDSYNC_USER_PASSWORD, or a generated one (and whether it was generated).
fn new_password() -> (String, bool) {
    match std::env::var("FIELDSYNC_USER_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (server::accounts::random_token()[..20].to_string(), true),
    }
}

fn connect(admin: &AdminArgs) -> anyhow::Result<AdminClient> {
    let password = admin_password()?;
    AdminClient::login(&admin.server, &admin.admin, &password)
        .with_context(|| format!("logging in to {} as {}", admin.server, admin.admin))
}

fn user_command(admin: &AdminArgs, command: UserCommand) -> anyhow::Result<()> {
    let client = connect(admin)?;
    match command {
        UserCommand::Add {
            username,
            role,
            regions,
        } => {
            let regions = parse_regions(&regions)?;
            let (password, generated) = new_password();
            let user = client.create_user(&NewUser {
                username,
                password: password.clone(),
                role,
                regions,
            })?;
            if generated {
                // Shown once: the server keeps only its hash.
                eprintln!("password of {}: {password}", user.username);
            }
            print(&user)
        }
        UserCommand::List => print(&client.users()?),
        UserCommand::Set {
            username,
            role,
            regions,
            disable,
            enable,
            reset_password,
        } => {
            let regions = regions.as_deref().map(parse_regions).transpose()?;
            let password = reset_password.then(new_password);
            let change = UserChange {
                role,
                regions,
                disabled: if disable { Some(true) } else { enable.then_some(false) },
                password: password.as_ref().map(|(p, _)| p.clone()),
            };
            let user = client.update_user(&username, &change)?;
            if let Some((p, true)) = password {
                eprintln!("new password of {}: {p}", user.username);
            }
            print(&user)
        }
    }
}

fn device_command(admin: &AdminArgs, command: DeviceCommand) -> anyhow::Result<()> {
    let client = connect(admin)?;
    match command {
        DeviceCommand::List { user } => {
            let mut devices = client.devices()?;
            if let Some(user) = user {
                devices.retain(|d| d.username.as_deref() == Some(user.as_str()));
            }
            print(&devices)
        }
        DeviceCommand::Revoke { id } => print(&client.revoke_device(id)?),
    }
}

fn record_command(admin: &AdminArgs, command: RecordCommand) -> anyhow::Result<()> {
    let client = connect(admin)?;
    match command {
        RecordCommand::Show { id, json: true } => print(&client.record(id)?),
        RecordCommand::Show { id, json: false } => {
            print_raw(&server::record_detail::render(&client.record(id)?));
            Ok(())
        }
    }
}

fn schedule_command(admin: &AdminArgs, command: ScheduleCommand) -> anyhow::Result<()> {
    let client = connect(admin)?;
    match command {
        ScheduleCommand::Generate {
            year,
            region,
            seed,
            options,
            dry_run,
        } => {
            let mut request = serde_json::json!({});
            if let Some(path) = options {
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                request = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
                anyhow::ensure!(request.is_object(), "{} holds a JSON object", path.display());
            }
            if let Some(obj) = request.as_object_mut() {
                obj.insert("year".into(), year.into());
                obj.insert("region".into(), region.to_string().into());
                obj.insert("dry_run".into(), dry_run.into());
                if let Some(seed) = seed {
                    obj.insert("seed".into(), seed.to_string().into());
                }
            }
            let request: server::schedule::GenerateRequest =
                serde_json::from_value(request).context("the schedule options")?;
            print(&client.generate_schedule(&request)?)
        }
        ScheduleCommand::Show(r) => report(&client, "/api/v1/schedule", &r),
        ScheduleCommand::Compliance(r) => report(&client, "/api/v1/schedule/compliance", &r),
        ScheduleCommand::Obligations(r) => report(&client, "/api/v1/schedule/obligations", &r),
        ScheduleCommand::Regenerate { year, site, change_day } => {
            print(&client.regenerate_schedule(&server::schedule::RegenerateRequest {
                year,
                site_id: site,
                change_day,
                flood_seasons: Vec::new(),
                intensified: Vec::new(),
                recusals: Default::default(),
            })?)
        }
    }
}

/// A report printed as the server sent it.
fn report(client: &AdminClient, path: &str, r: &ReportArgs) -> anyhow::Result<()> {
    let format = if r.csv { "csv" } else { "json" };
    let text = client.get_text(&format!("{path}?year={}&region={}&format={format}", r.year, r.region))?;
    print_raw(&text);
    Ok(())
}

/// The server's answer as it came: CSV keeps its byte-order mark for Excel.
fn print_raw(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
}

fn backup_command(admin: &AdminArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let client = connect(admin)?;
    // The server writes the folder: a relative path is taken from here, which
    // is right when the command runs on the server's machine.
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()?.join(dir)
    };
    print(&client.backup(&dir.display().to_string())?)
}

fn site_command(admin: &AdminArgs, command: SiteCommand) -> anyhow::Result<()> {
    let client = connect(admin)?;
    match command {
        SiteCommand::List {
            region,
            kind,
            limit,
            after,
            all,
        } => {
            let mut after = after.unwrap_or(0);
            let mut sites = Vec::new();
            loop {
                let mut query = format!("limit={limit}&after={after}");
                if let Some(r) = region {
                    query.push_str(&format!("&region={r}"));
                }
                if let Some(k) = &kind {
                    query.push_str(&format!("&kind={}", sync_protocol::wire::percent_encode(k)));
                }
                let page = client.sites(&query)?;
                if !all {
                    return print(&page);
                }
                sites.extend(page.sites);
                match page.next {
                    Some(n) => after = n,
                    None => return print(&serde_json::json!({ "sites": sites })),
                }
            }
        }
        SiteCommand::Add { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
            };
            let doc: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
            print(&client.create_site(&doc)?)
        }
        SiteCommand::Import { kind, file, batch } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let batches = server::list_batches::batches(&text, batch.clamp(1, server::sites::MAX_IMPORT_ROWS))?;
            let rows: usize = batches.iter().map(|b| b.lines.len()).sum();
            let bar = indicatif::ProgressBar::new(rows as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} rows ({eta})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(format!("importing {}", file.display()));
            let mut total = server::sites::ImportResponse::default();
            for b in batches {
                let n = b.lines.len() as u64;
                let answer = client.import_sites(&server::sites::ImportRequest {
                    kind,
                    csv: b.csv,
                    lines: Some(b.lines),
                })?;
                total.created += answer.created;
                total.updated += answer.updated;
                total.unchanged += answer.unchanged;
                total.rejected.extend(answer.rejected);
                total.refused.extend(answer.refused);
                bar.inc(n);
            }
            bar.finish_and_clear();
            for r in &total.rejected {
                eprintln!("{}:{}: {}", file.display(), r.line, r.reason);
            }
            for r in &total.refused {
                eprintln!("{} ({}): refused {}: {}", r.name, r.site, r.code, r.message);
            }
            print(&total)
        }
    }
}
