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
    // Cargo runs tests and `cargo run` with the package's own variables set;
    // build scripts that watch them (ring's watches CARGO_MANIFEST_DIR and
    // CARGO_PKG_*) would see them change and rebuild half the tree, twice per run.
    for (key, _) in std::env::vars_os() {
        if let Some(key) = key.to_str()
            && is_package_env(key)
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

/// The variables cargo sets for a package's tests and `cargo run`, which a
/// shell invoking cargo does not have.
fn is_package_env(key: &str) -> bool {
    key == "OUT_DIR"
        || key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_MANIFEST_")
        || key.starts_with("CARGO_BIN_")
        || matches!(
            key,
            "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "CARGO_RUSTC_CURRENT_DIR"
        )
}

/// A running `fieldsync serve`, killed on drop.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
}

impl ServerProcess {
    /// Start a server on a free port over `data_dir`, and wait until it listens.
    pub fn start(data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(fieldsync_bin()?);
        cmd.arg("serve")
            .arg("--data")
            .arg(data_dir)
            .args(["--bind", "127.0.0.1:0"])
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
        Ok(Self {
            child,
            port,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// The server's process id (for `/proc/<pid>/status`).
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

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Already dead is fine: the test may have killed it on purpose.
        if self.child.kill().is_ok() {
            let _ = self.child.wait();
        }
    }
}
