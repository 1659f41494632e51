//! The server binary starts on an empty folder and answers its health check.

use std::io::{Read, Write};
use std::net::TcpStream;

use tests::harness::ServerProcess;

fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn server_starts_on_an_empty_data_folder_and_reports_healthy() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("store");
    let server = ServerProcess::start(&data)?;
    let reply = http_get(server.port, "/healthz")?;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"status\":\"ok\""), "{reply}");
    assert!(data.join("conf").exists(), "sled store created in the data folder");
    Ok(())
}
