#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `fieldsync serve` as an operator runs it: defaults, the config file, flags
//! and `FIELDSYNC_*` variables in their order of precedence, the admin password
//! shown once, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_fieldsync");

struct Started {
    child: Child,
    port: u16,
    stdout: Vec<String>,
}

/// Starts `fieldsync serve` in `cwd` and reads stdout up to the listening line.
fn serve(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Started {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd).arg("serve").args(args);
    // Nothing from the test runner's environment may leak into the settings.
    for (k, _) in std::env::vars() {
        if k.starts_with("FIELDSYNC_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied()).env("RUST_LOG", "warn");
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = Vec::new();
    let port = loop {
        let line = lines.next().expect("fieldsync exited before listening").unwrap();
        stdout.push(line.clone());
        if let Some(addr) = line.strip_prefix("fieldsync listening on http://") {
            break addr.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Started { child, port, stdout }
}

fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap()
}

#[test]
fn with_no_flags_the_store_is_in_the_working_folder_and_the_admin_password_is_shown_once() {
    let cwd = tempfile::tempdir().unwrap();
    // Only the port is moved off 8080, through the environment.
    let mut first = serve(cwd.path(), &[], &[("FIELDSYNC_BIND", "127.0.0.1:0")]);
    assert!(cwd.path().join("fieldsync-data").join("conf").exists());
    let shown: Vec<_> = first
        .stdout
        .iter()
        .filter(|l| l.starts_with("created user admin with password "))
        .collect();
    assert_eq!(shown.len(), 1, "{:?}", first.stdout);
    assert!(get(first.port, "/healthz").starts_with("HTTP/1.1 200"));
    let status = sigterm(&mut first.child);
    assert!(status.success(), "SIGTERM is a clean shutdown: {status}");

    // The second start finds the admin and prints no password.
    let mut second = serve(cwd.path(), &[], &[("FIELDSYNC_BIND", "127.0.0.1:0")]);
    assert!(
        !second.stdout.iter().any(|l| l.contains("password")),
        "{:?}",
        second.stdout
    );
    assert!(sigterm(&mut second.child).success());
}

#[test]
fn flags_override_the_environment_which_overrides_the_config_file() {
    let cwd = tempfile::tempdir().unwrap();
    let config = cwd.path().join("fieldsync.toml");
    std::fs::write(
        &config,
        "data_dir = \"from-file\"\nbind = \"127.0.0.1:0\"\ncache_capacity_mb = 16\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let mut from_file = serve(cwd.path(), &["--config", config], &[]);
    assert!(cwd.path().join("from-file").join("conf").exists());
    assert!(sigterm(&mut from_file.child).success());

    let mut from_env = serve(cwd.path(), &["--config", config], &[("FIELDSYNC_DATA", "from-env")]);
    assert!(cwd.path().join("from-env").join("conf").exists());
    assert!(sigterm(&mut from_env.child).success());

    let mut from_flag = serve(
        cwd.path(),
        &["--config", config, "--data", "from-flag"],
        &[("FIELDSYNC_DATA", "from-env-2")],
    );
    assert!(cwd.path().join("from-flag").join("conf").exists());
    assert!(!cwd.path().join("from-env-2").exists());
    assert!(sigterm(&mut from_flag.child).success());
}

#[test]
fn a_config_file_with_an_unknown_setting_is_refused_by_name() {
    let cwd = tempfile::tempdir().unwrap();
    let config = cwd.path().join("bad.toml");
    std::fs::write(&config, "data_dri = \"typo\"\n").unwrap();
    let out = Command::new(BIN)
        .current_dir(cwd.path())
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("FIELDSYNC_DATA")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("data_dri"), "{stderr}");
    assert!(!cwd.path().join("typo").exists());
}

#[test]
fn with_a_certificate_and_key_it_serves_https_only() {
    use std::sync::Arc;

    let cwd = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (cwd.path().join("cert.pem"), cwd.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();

    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd.path())
        .args(["serve", "--bind", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("RUST_LOG", "warn")
        .env_remove("FIELDSYNC_BIND")
        .env_remove("FIELDSYNC_DATA")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines.next().expect("exited before listening").unwrap();
        if let Some(addr) = line.strip_prefix("fieldsync listening on https://") {
            break addr.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});

    // A client that trusts only this certificate gets the health answer.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    // A close without TLS close_notify is an error to rustls; the bytes are in.
    let _ = tls.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"status\":\"ok\""), "{reply}");

    // Plain HTTP on the same port is not served.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let _ = write!(
        plain,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let mut answer = String::new();
    let _ = plain.read_to_string(&mut answer);
    assert!(!answer.contains("\"status\":\"ok\""), "{answer}");
    assert!(sigterm(&mut child).success());
}
