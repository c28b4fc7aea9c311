//! Unit tests of the request reader: limits to the byte, where reading stops, every kind of
//! malformed head, timeouts, and the response encoding.

use super::*;

const SMALL: Limits = Limits {
    request_line: 32,
    header_bytes: 40,
    headers: 3,
};

fn read(bytes: &[u8], limits: &Limits) -> Result<Request, RequestError> {
    // A tiny buffer, so that lines arrive in several pieces.
    let mut r = io::BufReader::with_capacity(5, bytes);
    read_request(&mut r, limits)
}

fn status(bytes: &[u8], limits: &Limits) -> Option<u16> {
    read(bytes, limits).unwrap_err().status()
}

#[test]
fn reads_a_request_head() {
    let r = read(
        b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept:  text/plain \r\naccept: */*\r\n\r\n",
        &LIMITS,
    )
    .unwrap();
    assert_eq!(r.method, "GET");
    assert_eq!(r.target, "/metrics?x=1");
    assert_eq!(r.path(), "/metrics");
    assert_eq!(r.version, Version::Http11);
    assert_eq!(r.header("ACCEPT").as_deref(), Some("text/plain, */*"));
    assert_eq!(r.header("connection"), None);
    // Bare LF line endings, a leading empty line, HTTP/1.0 without Host.
    let r = read(b"\r\nHEAD /health HTTP/1.0\nX-Y:z\n\n", &LIMITS).unwrap();
    assert_eq!((r.method.as_str(), r.version), ("HEAD", Version::Http10));
    assert_eq!(r.header("x-y").as_deref(), Some("z"));
}

#[test]
fn paths_of_every_target_form() {
    let path = |target: &str| {
        let head = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        read(head.as_bytes(), &LIMITS).unwrap().path().to_string()
    };
    assert_eq!(path("/status#frag"), "/status");
    assert_eq!(path("http://h:9464/metrics?a=b"), "/metrics");
    assert_eq!(path("HTTPS://h"), "/");
    assert_eq!(path("http://h?q"), "/");
    assert_eq!(path("*"), "*");
}

#[test]
fn limits_are_exact() {
    // A 32-byte request line is accepted; 33 bytes are not, with or without CR.
    let line = |n: usize| format!("GET /{} HTTP/1.1", "a".repeat(n - 14));
    assert_eq!(line(32).len(), 32);
    assert!(
        read(
            format!("{}\r\nHost: h\r\n\r\n", line(32)).as_bytes(),
            &SMALL
        )
        .is_ok()
    );
    for end in ["\r\n", "\n", ""] {
        let head = format!("{}{end}Host: h\r\n\r\n", line(33));
        assert_eq!(status(head.as_bytes(), &SMALL), Some(414), "{end:?}");
    }
    // 40 header bytes in all are accepted, 41 are not; neither are 4 fields.
    let fields = |n: usize| format!("Host: h\r\nX: {}\r\n\r\n", "v".repeat(n - 10));
    assert!(
        read(
            format!("GET / HTTP/1.1\r\n{}", fields(40)).as_bytes(),
            &SMALL
        )
        .is_ok()
    );
    let head = format!("GET / HTTP/1.1\r\n{}", fields(41));
    assert_eq!(status(head.as_bytes(), &SMALL), Some(431));
    let head = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert!(matches!(
        read(head, &SMALL),
        Err(RequestError::TooManyHeaders(3))
    ));
}

/// A reader that counts what was taken from it.
struct Counted<R> {
    inner: R,
    taken: usize,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.taken += n;
        Ok(n)
    }
}

/// Reads a request from `input` through a 4 KiB buffer; returns the answer and how many
/// bytes were read off `input`.
fn read_counted(input: impl Read) -> (Option<u16>, usize) {
    let mut r = io::BufReader::with_capacity(
        4096,
        Counted {
            inner: input,
            taken: 0,
        },
    );
    let status = read_request(&mut r, &LIMITS).unwrap_err().status();
    (status, r.get_ref().taken)
}

#[test]
fn stops_reading_at_the_limit() {
    // Endless input: the reader gives up just past the limit, never reading the rest.
    let (status, taken) = read_counted(io::repeat(b'a'));
    assert_eq!(status, Some(414));
    assert!(taken <= LIMITS.request_line + 4096, "{taken}");
    let header = Read::chain(&b"GET / HTTP/1.1\r\nX: "[..], io::repeat(b'b'));
    let (status, taken) = read_counted(header);
    assert_eq!(status, Some(431));
    assert!(taken <= LIMITS.header_bytes + 2 * 4096, "{taken}");
    let many = [&b"GET / HTTP/1.1\r\n"[..], &b"X: y\r\n".repeat(100_000)].concat();
    let (status, taken) = read_counted(&many[..]);
    assert_eq!(status, Some(431));
    assert!(taken <= 65 * 6 + 2 * 4096, "{taken}");
}

#[test]
fn malformed_requests_are_400() {
    for bad in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"GET /\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\nHost: h\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.x\r\nHost: h\r\n\r\n",
        b"GET / http/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nNo colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nBad name: v\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n",
        b"GET / HT",
        b"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    ] {
        let err = read(bad, &LIMITS).unwrap_err();
        assert_eq!(
            err.status(),
            Some(400),
            "{:?}: {err}",
            String::from_utf8_lossy(bad)
        );
    }
    let v2 = b"GET / HTTP/2.0\r\nHost: h\r\n\r\n";
    assert_eq!(status(v2, &LIMITS), Some(505));
}

#[test]
fn closed_and_timed_out_connections() {
    assert!(matches!(read(b"", &LIMITS), Err(RequestError::Closed)));
    assert_eq!(status(b"", &LIMITS), None);
    struct Stalls<'a>(&'a [u8]);
    impl Read for Stalls<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let n = self.0.read(buf)?;
            Ok(n)
        }
    }
    let idle = read_request(&mut io::BufReader::new(Stalls(b"")), &LIMITS).unwrap_err();
    assert!(matches!(idle, RequestError::TimedOut { started: false }));
    assert_eq!(idle.status(), None);
    let partial = Stalls(b"GET /metrics HTTP/1.1\r\nHo");
    let err = read_request(&mut io::BufReader::new(partial), &LIMITS).unwrap_err();
    assert_eq!(err.status(), Some(408));
}

#[test]
fn responses_are_complete() {
    let response = Response {
        status: 405,
        content_type: "text/plain",
        body: "no\n".into(),
        headers: vec![("Allow", "GET, HEAD")],
    };
    let text = String::from_utf8(response.encode(false)).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 405 Method Not Allowed\r\nDate: "),
        "{text}"
    );
    for line in [
        "\r\nContent-Type: text/plain\r\n",
        "\r\nContent-Length: 3\r\n",
        "\r\nCache-Control: no-store\r\n",
        "\r\nConnection: close\r\n",
        "\r\nAllow: GET, HEAD\r\n",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    assert!(text.ends_with("\r\n\r\nno\n"), "{text}");
    let head = String::from_utf8(response.encode(true)).unwrap();
    assert!(head.ends_with("Allow: GET, HEAD\r\n\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Length: 3\r\n"));
}
