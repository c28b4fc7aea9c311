//! The HTTP/1.1 wire format of `serve-metrics`: reads one request head under strict size
//! limits and a deadline, and writes complete responses. It never reads a request body and
//! serves one request per connection (every response says `Connection: close`).

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::cancel::CancelFlag;

/// Size limits on a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes in the request line (method, target, version), without its line ending.
    pub request_line: usize,
    /// Most bytes in all header field lines together, without their line endings.
    pub header_bytes: usize,
    /// Most header field lines.
    pub headers: usize,
}

/// The limits `serve-metrics` enforces (the README documents them).
pub const LIMITS: Limits = Limits {
    request_line: 8 * 1024,
    header_bytes: 16 * 1024,
    headers: 64,
};

/// Empty lines tolerated before the request line (RFC 9112 §2.2 asks servers to skip one).
const LEADING_EMPTY_LINES: usize = 4;

/// How long a blocked read or write waits before it looks at the deadline and the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// What a client may still send after its response before the connection is closed
/// (see [`finish`]): at most this much, for at most [`LINGER_TIME`].
const LINGER_BYTES: usize = 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(1);

/// The HTTP version of a request (1.0, or 1.1 for any 1.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A request head as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method token, as sent (case matters: `get` is not `GET`).
    pub method: String,
    /// The request target: visible ASCII only.
    pub target: String,
    pub version: Version,
    /// Field names and values (values without surrounding whitespace; bytes that are not
    /// UTF-8 replaced).
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The path of the target, without query or fragment; the path of an absolute-form
    /// target (`http://host/path`), and `*` as is.
    pub fn path(&self) -> &str {
        let target = self.target.as_str();
        let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return target.split(['?', '#']).next().unwrap_or("");
        };
        let path = rest.find(['/', '?', '#']).map_or("", |i| &rest[i..]);
        match path.split(['?', '#']).next().unwrap_or("") {
            "" => "/",
            p => p,
        }
    }

    /// Every value of the field `name` (case-insensitive), joined with `, `; `None` if absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

/// Why no request could be read; [`RequestError::status`] says what to answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the client closed the connection without sending a request")]
    Closed,
    #[error("no complete request before the deadline (or the server is stopping)")]
    TimedOut {
        /// Whether the client had sent part of a request (it then gets a 408).
        started: bool,
    },
    #[error("the request line is longer than {0} bytes")]
    RequestLineTooLong(usize),
    #[error("the header fields are larger than {0} bytes together")]
    HeadersTooLarge(usize),
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    #[error("cannot read the request")]
    Io(#[source] io::Error),
}

impl RequestError {
    /// The status to answer with, or `None` when the connection is just closed.
    pub fn status(&self) -> Option<u16> {
        match self {
            RequestError::Closed | RequestError::Io(_) => None,
            RequestError::TimedOut { started } => started.then_some(408),
            RequestError::RequestLineTooLong(_) => Some(414),
            RequestError::HeadersTooLarge(_) | RequestError::TooManyHeaders(_) => Some(431),
            RequestError::Malformed(_) => Some(400),
            RequestError::UnsupportedVersion => Some(505),
        }
    }

    fn from_io(err: io::Error, started: bool) -> RequestError {
        match err.kind() {
            io::ErrorKind::TimedOut => RequestError::TimedOut { started },
            _ => RequestError::Io(err),
        }
    }
}

/// How reading one line ended.
#[derive(Debug, PartialEq, Eq)]
enum LineEnd {
    /// A whole line (its ending removed) is in the buffer.
    Line,
    /// More than the allowed bytes came without a line feed; reading stopped there.
    TooLong,
    /// A control character that no request line or field line may hold.
    BadByte,
    /// The connection ended first.
    Eof,
}

/// Bytes no line of a request head may contain (carriage return only ends a line).
fn forbidden(b: u8) -> bool {
    (b < 0x20 && b != b'\t' && b != b'\r') || b == 0x7f
}

/// Reads one line ending in LF or CRLF into `line` (emptied first), holding at most
/// `max` content bytes plus a carriage return: it stops reading as soon as the line is too
/// long or holds a forbidden byte, so it never buffers more than the limit.
fn read_line<R: BufRead>(r: &mut R, max: usize, line: &mut Vec<u8>) -> io::Result<LineEnd> {
    line.clear();
    // Content and the optional CR before the LF.
    let cap = max + 1;
    loop {
        let available = r.fill_buf()?;
        if available.is_empty() {
            return Ok(LineEnd::Eof);
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let chunk = &available[..newline.unwrap_or(available.len())];
        if line.len() + chunk.len() > cap {
            return Ok(LineEnd::TooLong);
        }
        if chunk.iter().copied().any(forbidden) {
            return Ok(LineEnd::BadByte);
        }
        line.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(newline.is_some());
        r.consume(used);
        if newline.is_some() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.contains(&b'\r') {
                return Ok(LineEnd::BadByte);
            }
            return Ok(if line.len() > max {
                LineEnd::TooLong
            } else {
                LineEnd::Line
            });
        }
    }
}

/// RFC 9110 token characters (method and field names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_request_line(line: &[u8]) -> Result<(String, String, Version), RequestError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), version, None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed(
            "the request line is not `METHOD TARGET HTTP/1.1`",
        ));
    };
    if method.is_empty() || !method.iter().copied().all(is_tchar) {
        return Err(RequestError::Malformed("invalid method"));
    }
    let visible = |t: &[u8]| !t.is_empty() && t.iter().all(|b| (0x21..=0x7e).contains(b));
    if !visible(target) {
        return Err(RequestError::Malformed("invalid request target"));
    }
    let version = match version {
        Some([b'H', b'T', b'T', b'P', b'/', major, b'.', minor])
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            match (major, minor) {
                (b'1', b'0') => Version::Http10,
                (b'1', _) => Version::Http11,
                _ => return Err(RequestError::UnsupportedVersion),
            }
        }
        _ => return Err(RequestError::Malformed("missing or invalid HTTP version")),
    };
    // Both checked to be ASCII above.
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok((text(method), text(target), version))
}

fn parse_field(line: &[u8]) -> Result<(String, String), RequestError> {
    if line.starts_with(b" ") || line.starts_with(b"\t") {
        return Err(RequestError::Malformed("obsolete line folding in a header"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(RequestError::Malformed("a header line without a colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().copied().all(is_tchar) {
        return Err(RequestError::Malformed("invalid header name"));
    }
    let value = value.trim_ascii();
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

/// Reads one request head (request line and header fields) within `limits`. Reads nothing
/// past the blank line that ends the head unless the reader had already buffered it.
pub fn read_request<R: BufRead>(r: &mut R, limits: &Limits) -> Result<Request, RequestError> {
    let mut line = Vec::new();
    let mut started = false;
    let mut skipped = 0;
    let (method, target, version) = loop {
        let end = read_line(r, limits.request_line, &mut line)
            .map_err(|e| RequestError::from_io(e, started || !line.is_empty()))?;
        match end {
            LineEnd::Line if line.is_empty() && skipped < LEADING_EMPTY_LINES => {
                started = true;
                skipped += 1;
            }
            LineEnd::Line => break parse_request_line(&line)?,
            LineEnd::TooLong => return Err(RequestError::RequestLineTooLong(limits.request_line)),
            LineEnd::BadByte => {
                return Err(RequestError::Malformed(
                    "a control byte in the request line",
                ));
            }
            LineEnd::Eof if !started && line.is_empty() => return Err(RequestError::Closed),
            LineEnd::Eof => {
                return Err(RequestError::Malformed(
                    "the connection ended inside the request",
                ));
            }
        }
    };
    let mut headers = Vec::new();
    let mut header_bytes = 0;
    loop {
        let room = limits.header_bytes - header_bytes;
        let end = read_line(r, room, &mut line).map_err(|e| RequestError::from_io(e, true))?;
        match end {
            LineEnd::Line if line.is_empty() => break,
            LineEnd::Line => {}
            LineEnd::TooLong => return Err(RequestError::HeadersTooLarge(limits.header_bytes)),
            LineEnd::BadByte => return Err(RequestError::Malformed("a control byte in a header")),
            LineEnd::Eof => {
                return Err(RequestError::Malformed(
                    "the connection ended inside the request",
                ));
            }
        }
        if headers.len() == limits.headers {
            return Err(RequestError::TooManyHeaders(limits.headers));
        }
        header_bytes += line.len();
        headers.push(parse_field(&line)?);
    }
    let request = Request {
        method,
        target,
        version,
        headers,
    };
    // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host; none has two.
    let hosts = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .count();
    if hosts > 1 || (hosts == 0 && version == Version::Http11) {
        return Err(RequestError::Malformed(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    Ok(request)
}

/// A connection's stream that gives up (with [`io::ErrorKind::TimedOut`]) at a deadline or
/// once the server is asked to stop, whichever comes first; it looks every [`POLL`].
pub struct Deadline<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
    stop: &'a CancelFlag,
}

impl<'a> Deadline<'a> {
    pub fn new(stream: &'a TcpStream, timeout: Duration, stop: &'a CancelFlag) -> Deadline<'a> {
        Deadline {
            stream,
            deadline: Instant::now() + timeout,
            stop,
        }
    }

    /// How long the next blocking call may wait, or the error to give up with.
    fn wait(&self) -> io::Result<Duration> {
        let now = Instant::now();
        if self.stop.is_canceled() || now >= self.deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        Ok((self.deadline - now).min(POLL))
    }
}

/// Whether a socket call only ran out of its timeout (or a signal interrupted it).
fn retry(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.stream.set_read_timeout(Some(self.wait()?))?;
            let mut stream = self.stream;
            match stream.read(buf) {
                Err(e) if retry(&e) => continue,
                other => return other,
            }
        }
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            self.stream.set_write_timeout(Some(self.wait()?))?;
            let mut stream = self.stream;
            match stream.write(buf) {
                Err(e) if retry(&e) => continue,
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Headers beyond the ones every response has.
    pub headers: Vec<(&'static str, &'static str)>,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

impl Response {
    /// The bytes on the wire: status line, headers (`Content-Length` always, since the body is
    /// complete; `Cache-Control: no-store`; `Connection: close`), and the body unless
    /// `head_only` (the answer to HEAD, with the headers GET would get).
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT");
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nDate: {date}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if !head_only {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }
}

/// Ends a connection after its response: half-closes it, then reads and drops whatever the
/// client is still sending (at most [`LINGER_BYTES`], for at most [`LINGER_TIME`]), so that
/// closing with unread input does not reset the connection before the client has read the
/// response; a client that keeps sending past that is cut off.
pub fn finish(stream: &TcpStream, stop: &CancelFlag) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let mut linger = Deadline::new(stream, LINGER_TIME, stop);
    let mut scratch = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match linger.read(&mut scratch) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
