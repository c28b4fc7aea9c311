//! Tests of the mock itself, through a raw TCP client, so Hub client tests can rely on it: the
//! shared client and fixture repo here, the tests in the submodules.

mod api;
mod control;
mod files;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::http::{RangeRequest, parse_range};
use super::sha1::{hex, sha1};
use super::*;

const ID: &str = "test-org/tiny";

/// One answer read to the end of the connection.
pub(super) struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn content_length(&self) -> usize {
        self.header("Content-Length")
            .expect("Content-Length")
            .parse()
            .unwrap()
    }
}

/// Splits `http://host:port/path` into the address and the request target.
fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    (
        addr.to_string(),
        if path.is_empty() {
            "/".into()
        } else {
            path.to_string()
        },
    )
}

fn parse_reply(raw: &[u8]) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Reply {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

/// Sends one request with `Connection: close` and reads the whole answer.
pub(super) fn send(method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    let (addr, target) = split_url(url);
    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read answer");
    parse_reply(&raw)
}

fn get(url: &str) -> Reply {
    send("GET", url, &[])
}

fn head(url: &str) -> Reply {
    send("HEAD", url, &[])
}

fn weights() -> Vec<u8> {
    (0..5000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn files() -> Files {
    let mut f = Files::new();
    f.insert("config.json".into(), br#"{"layers": 2}"#.to_vec());
    f.insert("model.safetensors".into(), weights());
    f.insert("sub/dir/notes.txt".into(), b"hello\n".to_vec());
    f.insert("docs/a b+c.txt".into(), "spaced ü\n".as_bytes().to_vec());
    f
}

/// `main`, a branch `refs/pr/1` with a changed config, and tag `v1.0` at `main`.
fn repo() -> MockRepo {
    let mut pr = files();
    pr.insert("config.json".into(), br#"{"layers": 3}"#.to_vec());
    MockRepo::from_files(ID, files())
        .with_branch("refs/pr/1", pr)
        .with_tag("v1.0", "main")
}

fn sha256_hex(b: &[u8]) -> String {
    hex(Sha256::digest(b))
}

fn error_code(r: &Reply) -> Option<&str> {
    r.header("X-Error-Code")
}
