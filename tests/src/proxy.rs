//! A forwarding HTTP/1.1 proxy that can lose replies: the request reaches the
//! server and is processed, the answer never reaches the client — what a 2G
//! link does to a tablet. Plain HTTP only; one upstream connection per request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;

/// The proxy; it runs until the process ends.
#[derive(Debug, Clone)]
pub struct LossyProxy {
    pub port: u16,
    rules: Arc<Mutex<Vec<(String, usize)>>>,
    lost: Arc<AtomicUsize>,
}

impl LossyProxy {
    /// Forwards to `upstream` (e.g. `127.0.0.1:PORT`).
    pub fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
        let port = listener.local_addr()?.port();
        let proxy = Self {
            port,
            rules: Arc::default(),
            lost: Arc::default(),
        };
        let shared = proxy.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let p = shared.clone();
                std::thread::spawn(move || {
                    let _ = p.serve(client, upstream);
                });
            }
        });
        Ok(proxy)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Lose the replies to the next `count` requests whose path starts with `path`.
    pub fn lose_replies(&self, path: &str, count: usize) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.push((path.to_string(), count));
        }
    }

    /// Replies lost so far.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }

    fn should_lose(&self, target: &str) -> bool {
        let Ok(mut rules) = self.rules.lock() else {
            return false;
        };
        for (path, count) in rules.iter_mut() {
            if *count > 0 && target.starts_with(path.as_str()) {
                *count -= 1;
                return true;
            }
        }
        false
    }

    /// One request of a client connection, forwarded on a connection of its
    /// own; the answer says `connection: close`, so the client opens a new
    /// connection for its next request.
    fn serve(&self, client: TcpStream, upstream: SocketAddr) -> anyhow::Result<()> {
        let mut reader = BufReader::new(client.try_clone()?);
        let mut client = client;
        let mut head = Vec::new();
        let mut target = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if target.is_empty() {
                target = line.split_whitespace().nth(1).unwrap_or_default().to_string();
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
            if !lower.starts_with("connection:") {
                head.extend_from_slice(line.as_bytes());
            }
        }
        head.extend_from_slice(b"connection: close\r\n\r\n");
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let mut up = TcpStream::connect(upstream)?;
        up.write_all(&head)?;
        up.write_all(&body)?;
        let mut answer = Vec::new();
        up.read_to_end(&mut answer)?;
        if self.should_lose(&target) {
            // The server has done the work; the client hears nothing.
            self.lost.fetch_add(1, Ordering::SeqCst);
        } else {
            client.write_all(&answer)?;
        }
        let _ = client.shutdown(Shutdown::Both);
        Ok(())
    }
}
