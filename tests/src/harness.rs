//! Spawning the real server binary for tests and benchmarks.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, bail};

/// The `fieldsync` binary, built once per test process with the same profile as
/// the tests (a no-op when it is fresh).
pub fn fieldsync_bin() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| build_bin("server", "fieldsync").map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The `fieldsync-device` binary (a tablet on the command line), built like [`fieldsync_bin`].
pub fn device_bin() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| build_bin("replica", "fieldsync-device").map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_bin(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin, "--message-format=json"]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.stderr(Stdio::inherit()).output().context("running cargo build")?;
    if !out.status.success() {
        bail!("cargo build of {bin} failed");
    }
    // The last compiler-artifact message for the bin names the executable.
    for line in String::from_utf8_lossy(&out.stdout).lines().rev() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == bin
            && let Some(exe) = msg["executable"].as_str()
        {
            return Ok(PathBuf::from(exe));
        }
    }
    bail!("cargo did not report the {bin} executable")
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
