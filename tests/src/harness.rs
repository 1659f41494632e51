//! Spawning the real server binary for tests and benchmarks.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, bail};

/// The `fieldsync` binary, built with the same profile as the caller.
pub fn fieldsync_bin() -> anyhow::Result<PathBuf> {
    bin("fieldsync")
}

/// The `fieldsync-device` binary (a tablet on the command line).
pub fn device_bin() -> anyhow::Result<PathBuf> {
    bin("fieldsync-device")
}

/// Runs `fieldsync ARGS` with `envs` to its end: whether it succeeded, its
/// stdout and its stderr.
pub fn run_fieldsync(args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<(bool, String, String)> {
    let out = Command::new(fieldsync_bin()?)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .context("running fieldsync")?;
    Ok((
        out.status.success(),
        String::from_utf8(out.stdout).context("fieldsync's stdout")?,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn bin(name: &str) -> anyhow::Result<PathBuf> {
    static BINS: OnceLock<Result<HashMap<String, PathBuf>, String>> = OnceLock::new();
    let bins = BINS
        .get_or_init(|| build_bins().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    bins.get(name)
        .cloned()
        .with_context(|| format!("cargo did not report the {name} executable"))
}

/// Builds the binaries once per process and returns their paths.
///
/// Tests ask for exactly the build `cargo test --workspace` makes (the server
/// and replica have integration tests, so cargo builds their binaries then):
/// with the suite's own feature set it is a fresh no-op, where a plain
/// `cargo build -p server` resolves features differently and recompiles half
/// the tree on every run. Benchmarks (release) build the two binaries.
fn build_bins() -> anyhow::Result<HashMap<String, PathBuf>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    cmd.current_dir(&workspace);
    // What `cargo test` sets for this test binary is not the caller's
    // environment: build scripts that watch these (ring's watches
    // CARGO_PKG_NAME, CARGO_MANIFEST_DIR, OUT_DIR...) would otherwise be rerun
    // here and again by the caller's next cargo, rebuilding ring, rustls, ureq
    // and the replica both times.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("CARGO_BIN_")
            || matches!(
                key,
                "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            )
        {
            cmd.env_remove(key);
        }
    }
    if cfg!(debug_assertions) {
        cmd.args(["test", "--workspace", "--no-run"]);
    } else {
        cmd.args(["build", "--release", "-p", "server", "-p", "replica", "--bins"]);
    }
    cmd.args(["--quiet", "--message-format=json"]);
    let out = cmd.stderr(Stdio::inherit()).output().context("running cargo")?;
    if !out.status.success() {
        bail!("cargo could not build the binaries");
    }
    let mut bins = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_bin = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "bin"));
        if msg["reason"] == "compiler-artifact"
            && is_bin
            && msg["profile"]["test"] == false
            && let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str())
        {
            bins.insert(name.to_owned(), PathBuf::from(exe));
        }
    }
    Ok(bins)
}

/// A running `fieldsync serve`, killed on drop.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
    envs: Vec<(String, String)>,
    args: Vec<String>,
}

impl ServerProcess {
    /// Start a server on a free port over `data_dir`, and wait until it listens.
    pub fn start(data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with_args(data_dir, envs, &[])
    }

    /// Start with the settings of a TOML file (`fieldsync serve --config`);
    /// the data folder and the port are still the harness's.
    pub fn start_with_config(data_dir: &Path, config: &Path, envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        let config = config.to_string_lossy();
        Self::start_with_args(data_dir, envs, &["--config", config.as_ref()])
    }

    /// [`ServerProcess::start_with_config`] with the TOML `settings` written to
    /// `dir/fieldsync.toml` and the store in `dir/store`.
    pub fn start_with_settings(dir: &Path, settings: &str, envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        let config = dir.join("fieldsync.toml");
        std::fs::write(&config, settings).with_context(|| format!("writing {}", config.display()))?;
        Self::start_with_config(&dir.join("store"), &config, envs)
    }

    /// With extra `serve` arguments, e.g. `["--config", "short-ttl.toml"]`.
    pub fn start_with_args(data_dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> anyhow::Result<Self> {
        let envs: Vec<(String, String)> = envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (child, port) = spawn(data_dir, "127.0.0.1:0", &envs, &args)?;
        Ok(Self {
            child,
            port,
            data_dir: data_dir.to_path_buf(),
            envs,
            args,
        })
    }

    /// SIGKILL the server if it runs, then start it again over the same folder
    /// on the same port, so devices find it where they left it.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        let bind = format!("127.0.0.1:{}", self.port);
        let mut last = None;
        // The port is normally free at once; a client's lingering connection
        // or sled's lock file being released can take a moment.
        for _ in 0..100 {
            match spawn(&self.data_dir, &bind, &self.envs, &self.args) {
                Ok((child, _)) => {
                    self.child = child;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("the server did not restart")))
    }

    /// The server's process id (to read its memory figures under /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// Start `fieldsync serve` and read stdout until it says where it listens.
fn spawn(data_dir: &Path, bind: &str, envs: &[(String, String)], args: &[String]) -> anyhow::Result<(Child, u16)> {
    let mut cmd = Command::new(fieldsync_bin()?);
    cmd.arg("serve")
        .arg("--data")
        .arg(data_dir)
        .args(["--bind", bind])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().context("spawning fieldsync")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // The server prints its address once bound: no sleeping, no guessing.
    let port = loop {
        let Some(line) = lines.next() else {
            let status = child.wait()?;
            bail!("fieldsync exited before listening: {status}");
        };
        let line = line?;
        if let Some(addr) = line.strip_prefix("fieldsync listening on http://") {
            let port = addr.rsplit(':').next().unwrap_or_default().parse()?;
            break port;
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok((child, port))
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Already dead is fine: the test may have killed it on purpose.
        if self.child.kill().is_ok() {
            let _ = self.child.wait();
        }
    }
}

/// A small tmpfs mounted at `dir` (created), unmounted when dropped: a real
/// disk that fills. `None` where mounting is not allowed (not root), and the
/// caller's test stops there, saying so; with `FIELDSYNC_REQUIRE_TMPFS=1` (set
/// by CI where a mount works) that is a failure instead, so the test cannot
/// pass unrun.
pub fn small_tmpfs(dir: &Path, size_mb: u64) -> Option<Tmpfs> {
    let mounted = std::fs::create_dir_all(dir).is_ok()
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
    if mounted {
        return Some(Tmpfs(dir.to_path_buf()));
    }
    assert!(
        std::env::var("FIELDSYNC_REQUIRE_TMPFS").as_deref() != Ok("1"),
        "tmpfs cannot be mounted at {} and FIELDSYNC_REQUIRE_TMPFS=1",
        dir.display()
    );
    eprintln!("tmpfs cannot be mounted here (not root?): this test stops untested");
    None
}

/// A mounted tmpfs, unmounted on drop.
#[derive(Debug)]
pub struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
