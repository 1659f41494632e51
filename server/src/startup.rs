//! Builds the application: opens the store, binds the socket, runs the server.

use std::collections::HashMap;
use std::time::Duration;

use chrono::NaiveDate;
use std::net::TcpListener;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use actix_web::middleware::{Compress, from_fn};
use actix_web::{App, HttpServer, dev::Server, web};
use mobile_schema::ids::DeviceId;
use mobile_schema::workflow::Role;
use sync_protocol::clock::{Clock, SystemClock};
use sync_protocol::engine::EngineConfig;

use crate::access::Scopes;
use crate::accounts::{AccountError, Accounts};
use crate::auth::TokenKeys;
use crate::config::{ConfigError, RecordStore, Settings};
use crate::ratelimit::LoginLimiter;
use crate::routes;
use crate::schedule::{ScheduleService, ScheduleServiceError};
use crate::storage::{MemoryStorage, SledStorage, StorageError, SyncStorage};

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: sled::Db,
    pub storage: Arc<dyn SyncStorage>,
    pub accounts: Accounts,
    pub keys: TokenKeys,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    /// Scopes by user and tag, for pulls after a user's scope changed.
    pub scopes: Scopes,
    pub limiter: Arc<LoginLimiter>,
    /// When each device was last seen on an authenticated request since start
    /// (kept in memory: a write per request would cost more than it tells).
    pub last_seen: Arc<Mutex<HashMap<DeviceId, u64>>>,
    /// Refreshes since start, to sweep expired sessions now and then.
    pub refreshes: Arc<AtomicU64>,
    pub schedule: Arc<ScheduleService>,
    /// Review decisions and hazard steps made through the API.
    pub office: Arc<crate::office::OfficeReplica>,
    pub sites: Arc<crate::sites::SiteService>,
    /// Moves and arrivals a push could not settle, retried while serving.
    pub follow_ups: Arc<crate::push_effects::FollowUps>,
    /// The deployment's rule settings (`[rules]`), handed to tablets at login.
    pub rules: Arc<mobile_schema::rule_settings::RuleSettings>,
}

impl AppState {
    pub fn seen(&self, device: DeviceId, now_ms: u64) {
        if let Ok(mut map) = self.last_seen.lock() {
            map.insert(device, now_ms);
        }
    }

    pub fn last_seen(&self, device: DeviceId) -> Option<u64> {
        self.last_seen.lock().ok().and_then(|m| m.get(&device).copied())
    }

    /// Today in Asia/Shanghai, the calendar task windows are written in.
    pub fn today(&self) -> NaiveDate {
        self.settings
            .schedule
            .today
            .unwrap_or_else(|| mobile_schema::time::shanghai_at_ms(self.clock.now_ms()).date_naive())
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the store in {dir}: {source}")]
    Store { dir: String, source: sled::Error },
    #[error("cannot open the sync store: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot open the accounts: {0}")]
    Accounts(#[from] AccountError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot open the photo store: {0}")]
    Photos(#[from] crate::photos::PhotoError),
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot set up the metrics: {0}")]
    Metrics(String),
    #[error("cannot open the site service: {0}")]
    Sites(#[from] crate::sites::SiteError),
    #[error("cannot open the schedule service: {0}")]
    Schedule(#[from] ScheduleServiceError),
    #[error("cannot open the office replica: {0}")]
    Office(#[from] crate::office::OfficeError),
}

/// How the first start on an empty store makes its `admin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminBootstrap {
    /// The store already had users.
    Existing,
    /// Created with the password the operator gave.
    Given,
    /// Created with this generated password, to be shown once.
    Generated(String),
}

/// A bound, not yet running server: tests bind to port 0 and read the port here.
pub struct Application {
    pub port: u16,
    pub admin: AdminBootstrap,
    pub tls: bool,
    server: Server,
    state: AppState,
    signals: Signals,
}

/// SIGTERM and SIGINT, registered when the application is built: actix only
/// installs its own handlers once the server is first polled, and a signal
/// before that would kill the process without the final flush.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// `admin_password` is used only when the store has no users yet.
    pub fn build(settings: &Settings, admin_password: Option<&str>) -> Result<Self, StartupError> {
        settings.check()?;
        let db = sled::Config::new()
            .path(&settings.data_dir)
            // sled's default cache is 1 GiB; the server's budget is far smaller.
            .cache_capacity(settings.cache_capacity_mb * 1024 * 1024)
            .open()
            .map_err(|source| StartupError::Store {
                dir: settings.data_dir.display().to_string(),
                source,
            })?;
        let accounts = Accounts::open(&db)?;
        let admin = if accounts.is_empty()? {
            match admin_password {
                Some(p) => {
                    accounts.create_user("admin", p, Role::Admin, Vec::new())?;
                    AdminBootstrap::Given
                }
                None => {
                    let p = crate::accounts::random_token()[..24].to_string();
                    accounts.create_user("admin", &p, Role::Admin, Vec::new())?;
                    AdminBootstrap::Generated(p)
                }
            }
        } else {
            AdminBootstrap::Existing
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let pruned = accounts.prune_sessions(clock.now_ms())?;
        if pruned > 0 {
            tracing::info!(pruned, "expired sessions pruned");
        }
        let keys = TokenKeys::new(&accounts.jwt_secret()?, settings.access_token_ttl_s);
        let rules = settings.rules.resolve()?;
        let engine = EngineConfig {
            rules: rules.clone(),
            ..EngineConfig::default()
        };
        let storage: Arc<dyn SyncStorage> = match settings.records {
            RecordStore::Sled => Arc::new(SledStorage::open_in(
                db.clone(),
                engine,
                Some(settings.data_dir.clone()),
            )?),
            RecordStore::Memory => {
                tracing::warn!("records are kept in memory: nothing synced survives a restart");
                Arc::new(MemoryStorage::new(engine))
            }
        };
        let scopes = Scopes::open(&db)?;
        let schedule = Arc::new(ScheduleService::open(&db, settings.schedule.calendar.as_deref())?);
        let office = Arc::new(crate::office::OfficeReplica::open(&db)?);
        let sites = Arc::new(crate::sites::SiteService::open(&db)?);
        let state = AppState {
            db,
            storage,
            accounts,
            keys,
            settings: settings.clone(),
            clock,
            limiter: Arc::new(LoginLimiter::new(settings.login_limit.clone())),
            last_seen: Arc::default(),
            refreshes: Arc::default(),
            scopes,
            schedule,
            office,
            sites,
            follow_ups: Arc::default(),
            rules: Arc::new(rules.clone()),
        };
        // Windows that opened while the server was down reach tablets on the
        // first pull after start, not a minute later.
        crate::schedule::windows::open_due(
            state.storage.as_ref(),
            &state.db,
            state.today(),
            state.settings.schedule.today.is_none(),
        )?;
        // A site move a stop interrupted is finished before anyone pulls.
        crate::site_moves::settle_leftovers(state.storage.as_ref(), &state.db)?;
        // And records that waited for a site that arrived just before a stop.
        crate::orphans::settle_leftovers(state.storage.as_ref(), &state.db)?;
        let photos = web::Data::new(crate::photos::Photos::open(
            &settings.data_dir,
            state.db.clone(),
            state.storage.clone(),
            state.clock.clone(),
            crate::photos::PhotoSettings {
                rules,
                ..settings.photos.clone()
            },
        )?);
        let listener = TcpListener::bind(settings.bind).map_err(|source| StartupError::Bind {
            addr: settings.bind.to_string(),
            source,
        })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(settings.bind.port());
        let data = web::Data::new(state.clone());
        let metrics = web::Data::new(
            crate::metrics::Metrics::new(&settings.data_dir).map_err(|e| StartupError::Metrics(e.to_string()))?,
        );
        let http = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(photos.clone())
                .app_data(metrics.clone())
                .wrap(Compress::default())
                .wrap(from_fn(crate::metrics::count_requests))
                .service(routes::health::healthz)
                .service(routes::metrics::metrics)
                .service(crate::openapi::openapi_json)
                .service(routes::auth::login)
                .service(routes::auth::refresh)
                .service(routes::admin::create_user)
                .service(routes::admin::list_users)
                .service(routes::admin::update_user)
                .service(routes::admin::list_devices)
                .service(routes::admin::revoke_device)
                .service(routes::sync::push)
                .service(routes::sync::pull)
                .service(routes::records::show)
                .service(routes::recovery::recover)
                .service(routes::backup::backup)
                .service(routes::sites::list)
                .service(routes::sites::create)
                .service(routes::sites::import)
                .service(routes::schedule::generate)
                .service(routes::schedule::compliance)
                .service(routes::schedule::obligations)
                .service(routes::schedule::regenerate)
                .service(routes::schedule::flood_season)
                .service(routes::schedule::flood_seasons)
                .service(routes::schedule::show)
                .service(routes::reviews::queue)
                .service(routes::reviews::show)
                .service(routes::reviews::approve)
                .service(routes::reviews::return_)
                .service(routes::reviews::list_inspections)
                .service(routes::hazards::list)
                .service(routes::hazards::overdue)
                .service(routes::hazards::step)
                .configure(routes::uploads::configure)
                .configure(routes::photos::configure)
                .default_service(web::to(routes::no_route))
        })
        // An in-flight push finishes (and is acknowledged) within this, or is not acknowledged.
        .shutdown_timeout(30)
        // Without it a response's last segment waits for the client's delayed
        // ACK: 40 ms on every request/answer exchange of a sync.
        .tcp_nodelay(true)
        .disable_signals();
        let signals = Signals::register().map_err(StartupError::Signals)?;
        let bind_err = |source| StartupError::Bind {
            addr: settings.bind.to_string(),
            source,
        };
        let tls = settings.tls_cert.is_some();
        let server = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => http
                .listen_rustls_0_23(listener, crate::tls::server_config(cert, key)?)
                .map_err(bind_err)?
                .run(),
            _ => http.listen(listener).map_err(bind_err)?.run(),
        };
        Ok(Self {
            port,
            admin,
            tls,
            server,
            state,
            signals,
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Runs until SIGTERM or ctrl-c, then lets in-flight requests finish, drains
    /// the writer and flushes.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            server,
            state,
            mut signals,
            ..
        } = self;
        state.schedule.warn_of_missing_years(state.today());
        let handle = server.handle();
        let mut server = actix_web::rt::spawn(server);
        let opener = actix_web::rt::spawn(open_windows_every(state.clone()));
        let joined = tokio::select! {
            joined = &mut server => joined,
            () = signals.recv() => {
                tracing::info!("stopping: finishing in-flight requests");
                handle.stop(true).await;
                server.await
            }
        };
        let result = joined.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        opener.abort();
        state.storage.close();
        if let Err(e) = state.db.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
        result
    }
}

/// Re-sequence drawn tasks as their windows open (see `schedule::windows`),
/// and finish the follow-ups of pushes that failed (`push_effects::FollowUps`).
async fn open_windows_every(state: AppState) {
    let period = Duration::from_secs(state.settings.schedule.window_check_s.max(1));
    // The day last opened by this process (startup did the first): a drill's
    // fixed `today` is not stored, and must not re-sequence every minute.
    let mut last = Some(state.today());
    loop {
        actix_web::rt::time::sleep(period).await;
        let st = state.clone();
        match web::block(move || st.follow_ups.retry(st.storage.as_ref(), &st.db)).await {
            Ok(Ok(true)) => tracing::info!("moves and arrivals a push left unsettled are settled"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "settling what pushes left failed; retrying later"),
            Err(e) => tracing::error!(error = %e, "settling what pushes left stopped abnormally; retrying later"),
        }
        let today = state.today();
        if last == Some(today) {
            continue;
        }
        let st = state.clone();
        let done = web::block(move || {
            let real = st.settings.schedule.today.is_none();
            crate::schedule::windows::open_due(st.storage.as_ref(), &st.db, today, real)
        })
        .await;
        match done {
            Ok(Ok(_)) => last = Some(today),
            Ok(Err(e)) => tracing::warn!(error = %e, "opening task windows failed; retrying later"),
            Err(e) => tracing::error!(error = %e, "opening task windows stopped abnormally; retrying later"),
        }
    }
}
