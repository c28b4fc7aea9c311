//! The little HTTP/1.1 the mock speaks: request heads (bodies are read and ignored), responses
//! with a fixed `Content-Length`, byte ranges, and percent-encoding of URL parts.

use std::io::{self, BufRead, Read};
use std::sync::Arc;

/// Longest request head accepted (request line plus headers).
const MAX_HEAD: usize = 64 * 1024;
/// Longest request body read (and thrown away).
const MAX_BODY: u64 = 1 << 20;

/// One parsed request head.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target exactly as sent: path and query, still percent-encoded.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// Whether the client lets the connection stay open after the response.
    pub keep_alive: bool,
}

impl Request {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path part of the target, still percent-encoded.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// Decoded value of a query parameter (`+` reads as a space, as in forms).
    pub fn query_param(&self, name: &str) -> Option<String> {
        let (_, query) = self.target.split_once('?')?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(&k.replace('+', " ")) == name)
                .then(|| percent_decode(&v.replace('+', " ")))
        })
    }
}

/// Reads one request head from a connection; `Ok(None)` when the client closed it cleanly
/// before sending anything.
pub fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut head_len = 0usize;
    let mut line = String::new();
    // Empty lines before a request line are allowed (RFC 9112 section 2.2).
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        head_len += line.len();
        if !line.trim().is_empty() {
            break;
        }
        if head_len > MAX_HEAD {
            return Err(bad("request head too long"));
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    let (method, target, version) = (method.to_string(), target.to_string(), version.to_string());
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("connection closed inside the request head"));
        }
        head_len += line.len();
        if head_len > MAX_HEAD {
            return Err(bad("request head too long"));
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').ok_or_else(|| bad("malformed header"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut req = Request {
        method,
        target,
        headers,
        keep_alive: false,
    };
    let connection = req.header("Connection").unwrap_or("").to_ascii_lowercase();
    req.keep_alive = if version == "HTTP/1.0" {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    if req.header("Transfer-Encoding").is_some() {
        return Err(bad("chunked request bodies are not supported"));
    }
    let body_len: u64 = match req.header("Content-Length") {
        Some(v) => v.parse().map_err(|_| bad("bad Content-Length"))?,
        None => 0,
    };
    if body_len > MAX_BODY {
        return Err(bad("request body too large"));
    }
    io::copy(&mut reader.take(body_len), &mut io::sink())?;
    Ok(Some(req))
}

/// A response: status, headers (without `Content-Length`, which is added on writing) and body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

/// What follows the head of a response.
pub enum Body {
    Bytes(Vec<u8>),
    /// `data[start..end]` of a served file, written in chunks so faults and throttling apply.
    File(FileBody),
}

pub struct FileBody {
    pub data: Arc<Vec<u8>>,
    pub start: usize,
    pub end: usize,
    /// Offset (in the whole file) of a byte to flip while sending, if it is in the range.
    pub corrupt_at: Option<usize>,
    /// Close the connection after this many body bytes.
    pub drop_after: Option<u64>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn bytes(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push(("Content-Type".to_string(), content_type.to_string()));
        self.body = Body::Bytes(body.into());
        self
    }

    pub fn json(self, value: &serde_json::Value) -> Self {
        self.bytes("application/json; charset=utf-8", value.to_string())
    }

    pub fn body_len(&self) -> usize {
        match &self.body {
            Body::Bytes(b) => b.len(),
            Body::File(f) => f.end - f.start,
        }
    }

    /// Status line and headers, `Content-Length` included.
    pub fn head_bytes(&self, close: bool) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n", self.body_len()));
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// What a `Range` header asks of a representation of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send everything with 200 (also for malformed or multi-range headers,
    /// which RFC 9110 lets a server ignore).
    Full,
    /// `start..end` (end exclusive): send it with 206.
    Part(usize, usize),
    /// A well-formed range that starts past the end: 416.
    Unsatisfiable,
}

pub fn parse_range(header: Option<&str>, len: usize) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let num = |s: &str| -> Option<usize> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    match (first.is_empty(), num(first), num(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part(len.saturating_sub(n), len)
            }
        }
        (false, Some(a), last_num) => {
            if !last.is_empty() && last_num.is_none() {
                return RangeRequest::Full;
            }
            if let Some(b) = last_num
                && b < a
            {
                return RangeRequest::Full;
            }
            if a >= len {
                return RangeRequest::Unsatisfiable;
            }
            let end = last_num.map_or(len, |b| (b + 1).min(len));
            RangeRequest::Part(a, end)
        }
        _ => RangeRequest::Full,
    }
}

/// Percent-encodes a URL path: everything but unreserved characters and `/`.
pub fn encode_path(s: &str) -> String {
    encode(s, true)
}

/// Percent-encodes one path segment or query value (`/` encoded too).
pub fn encode_component(s: &str) -> String {
    encode(s, false)
}

fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (invalid escapes are kept as they are; invalid UTF-8 is replaced).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}
