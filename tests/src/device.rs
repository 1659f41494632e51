//! Tablets played by the `fieldsync-device` binary: one device folder each, its
//! commands run as processes the way a script would.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, bail};

use crate::harness::device_bin;

/// A device folder and the environment its commands run with.
#[derive(Debug, Clone)]
pub struct DeviceCli {
    pub dir: PathBuf,
    bin: PathBuf,
    envs: Vec<(String, String)>,
}

impl DeviceCli {
    /// A device in `dir` (created by `init`). Requests are tried 3 times, so a
    /// test against a dead server fails in seconds, not minutes.
    pub fn new(dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        Ok(Self {
            dir: dir.into(),
            bin: device_bin()?,
            envs: vec![("FIELDSYNC_ATTEMPTS".into(), "3".into())],
        })
    }

    /// Set an environment variable for every command (e.g. `FIELDSYNC_PASSWORD`,
    /// which keeps the password out of the process list).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Run `fieldsync-device --dir DIR ARGS...` whatever its exit status.
    pub fn output<S: AsRef<OsStr>>(&self, args: &[S]) -> anyhow::Result<Output> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--dir").arg(&self.dir).args(args);
        // Not the caller's device folder: only the one given.
        cmd.env_remove("FIELDSYNC_DEVICE_DIR");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd.output().context("running fieldsync-device")
    }

    /// Run, require success, and return stdout trimmed.
    pub fn text<S: AsRef<OsStr>>(&self, args: &[S]) -> anyhow::Result<String> {
        let out = self.output(args)?;
        if !out.status.success() {
            bail!(
                "fieldsync-device {:?} in {} exited with {}: {}",
                args.iter().map(|a| a.as_ref().to_string_lossy()).collect::<Vec<_>>(),
                self.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)
            .context("fieldsync-device printed non-UTF-8")?
            .trim()
            .to_string())
    }

    /// Run, require success, and parse stdout as JSON.
    pub fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> anyhow::Result<serde_json::Value> {
        let text = self.text(args)?;
        serde_json::from_str(&text).with_context(|| format!("fieldsync-device printed {text:?}"))
    }

    /// The credentials file `init` writes.
    pub fn credentials_file(&self) -> PathBuf {
        self.dir.join("credentials.json")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
