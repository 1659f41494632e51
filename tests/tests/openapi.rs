#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `GET /api/v1/openapi.json` describes the API from the handlers; every
//! route it documents is served by a real server (no route answers 404 or 405
//! for its documented method), and a documented path asked with another method
//! is 405 with the documented methods in `Allow`. (That every served path is
//! documented is checked against the route modules in the server's unit tests.)

use tests::harness::ServerProcess;
use tests::http::Request;

/// A template segment filled with something of the right shape.
fn fill(path: &str) -> String {
    path.split('/')
        .map(|s| match s {
            "{sha}" => "0".repeat(64),
            "{action}" => "close".to_string(),
            "{username}" => "nobody".to_string(),
            s if s.starts_with('{') => "00000000-0000-4000-8000-000000000000".to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn head_status(port: u16, url: &str) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "HEAD {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn every_documented_route_is_served_and_other_methods_are_405() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("store")).unwrap();
    let port = server.port;
    let answer = Request::get("/api/v1/openapi.json").send(port).unwrap();
    assert_eq!(answer.status, 200);
    let doc = answer.json().unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/api/v1/sync/push",
        "/api/v1/sync/pull",
        "/api/v1/auth/login",
        "/api/v1/reviews/{inspection_id}/return",
        "/api/v1/records/{id}",
        "/api/v1/uploads/{id}",
        "/metrics",
        "/healthz",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not described");
    }
    let mut checked = 0;
    for (path, item) in paths {
        assert!(
            path == "/healthz" || path == "/metrics" || path.starts_with("/api/v1/"),
            "{path}"
        );
        let methods: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| {
                matches!(
                    k.as_str(),
                    "get" | "head" | "post" | "put" | "patch" | "delete" | "options"
                )
            })
            .map(|k| k.to_uppercase())
            .collect();
        assert!(!methods.is_empty(), "{path} has no method");
        let url = fill(path);
        for method in &methods {
            let mut req = Request::new(method, &url);
            if matches!(method.as_str(), "POST" | "PATCH" | "PUT") {
                req = req.header("content-type", "application/json").body("{}");
            }
            // A HEAD answer has a length and no body: only its status line is read.
            let status = if method == "HEAD" {
                head_status(port, &url)
            } else {
                req.send(port).unwrap().status
            };
            assert!(
                status != 404 && status != 405,
                "{method} {url} (documented as {path}) answered {status}: not served"
            );
            checked += 1;
        }
        // A method it does not take: 405 naming the ones it does.
        let other = ["PUT", "DELETE", "GET"]
            .into_iter()
            .find(|m| !methods.iter().any(|d| d == m))
            .unwrap();
        let r = Request::new(other, &url)
            .send(port)
            .unwrap_or_else(|e| panic!("{other} {url}: {e:#}"));
        assert_eq!(r.status, 405, "{other} {url}");
        assert_eq!(
            r.json().unwrap_or_else(|e| panic!("{other} {url}: {e}"))["code"],
            "method_not_allowed"
        );
        let allow = r.header("allow").unwrap_or_default().to_string();
        for m in &methods {
            assert!(allow.contains(m.as_str()), "{other} {url}: Allow {allow:?} lacks {m}");
        }
    }
    assert!(checked >= 35, "only {checked} routes checked");
    // Outside the table: 404.
    assert_eq!(Request::get("/api/v1/nothing/here").send(port).unwrap().status, 404);
}
