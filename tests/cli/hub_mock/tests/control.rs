//! Faults, throttling, the request log, keep-alive, and starting and stopping.

use super::*;

/// A `Write` whose bytes a test can read back.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn drop_after_cuts_one_body_then_a_range_resumes() {
    let hub = MockHub::start(vec![repo()]);
    let url = format!("{}/{ID}/resolve/main/config.json", hub.url());
    hub.drop_after("config.json", 3);
    let cut = get(&url);
    assert_eq!(
        (cut.status, cut.content_length()),
        (200, 13),
        "headers announce the whole file"
    );
    assert_eq!(cut.body, br#"{"l"#);
    assert_eq!(get(&url).body.len(), 13, "the fault happens once");

    // LFS download through the CDN: cut, then resumed with a Range, as clients do.
    let location = head(&format!(
        "{}/{ID}/resolve/main/model.safetensors",
        hub.url()
    ))
    .header("Location")
    .unwrap()
    .to_string();
    hub.drop_after("model.safetensors", 1000);
    assert_eq!(head(&location).status, 200, "HEAD has no body to cut");
    let first = get(&location);
    assert_eq!(first.body.len(), 1000);
    let rest = send("GET", &location, &[("Range", "bytes=1000-")]);
    assert_eq!(rest.status, 206);
    let mut whole = first.body;
    whole.extend_from_slice(&rest.body);
    assert_eq!(whole, weights());
}

#[test]
fn corrupt_flips_one_byte_and_keeps_the_headers() {
    let hub = MockHub::start(vec![repo()]);
    let resolve = format!("{}/{ID}/resolve/main/model.safetensors", hub.url());
    let location = head(&resolve).header("Location").unwrap().to_string();
    let clean = get(&location);
    hub.corrupt("model.safetensors");
    assert_eq!(
        head(&resolve).header("X-Linked-Etag"),
        Some(format!("\"{}\"", sha256_hex(&weights())).as_str())
    );
    for _ in 0..2 {
        let bad = get(&location);
        assert_eq!(bad.status, 200);
        assert_eq!(bad.headers, clean.headers);
        let diff: Vec<usize> = (0..5000)
            .filter(|&i| bad.body[i] != clean.body[i])
            .collect();
        assert_eq!(diff, [2500]);
    }
    let head_part = send("GET", &location, &[("Range", "bytes=0-99")]);
    assert_eq!(
        head_part.body,
        &weights()[..100],
        "a range without the flipped byte is intact"
    );
    hub.clear_faults();
    assert_eq!(get(&location).body, weights());

    hub.corrupt_once("config.json");
    let url = format!("{}/{ID}/resolve/main/config.json", hub.url());
    assert_ne!(get(&url).body, br#"{"layers": 2}"#);
    assert_eq!(get(&url).body, br#"{"layers": 2}"#);
}

#[test]
fn fail_answers_a_status_a_number_of_times() {
    let hub = MockHub::start(vec![repo()]);
    let url = format!("{}/{ID}/resolve/main/config.json", hub.url());
    hub.fail("config.json", 503, 2);
    assert_eq!(head(&url).status, 503);
    assert_eq!(get(&url).status, 503);
    assert_eq!(get(&url).status, 200);
    hub.fail("/api/", 500, 1);
    assert_eq!(get(&format!("{}/api/models/{ID}", hub.url())).status, 500);
    assert_eq!(get(&format!("{}/api/models/{ID}", hub.url())).status, 200);
}

#[test]
fn throttle_paces_bodies() {
    let hub = MockHub::start(vec![repo()]);
    let location = head(&format!(
        "{}/{ID}/resolve/main/model.safetensors",
        hub.url()
    ))
    .header("Location")
    .unwrap()
    .to_string();
    hub.throttle(20_000);
    let start = Instant::now();
    assert_eq!(get(&location).body, weights());
    let slow = start.elapsed();
    assert!(
        slow >= Duration::from_millis(230),
        "5000 bytes at 20 kB/s took {slow:?}"
    );
    hub.throttle(0);
    let start = Instant::now();
    assert_eq!(get(&location).body, weights());
    assert!(start.elapsed() < slow);
}

#[test]
fn request_log_records_every_answer() {
    let hub = MockHub::start(vec![repo()]);
    let sink = SharedBuf::default();
    hub.log_to(Box::new(sink.clone()));
    let resolve = format!("{}/{ID}/resolve/main/model.safetensors", hub.url());
    let location = send("HEAD", &resolve, &[("Authorization", "Bearer hf_t")])
        .header("Location")
        .unwrap()
        .to_string();
    send("GET", &location, &[("Range", "bytes=10-")]);
    get(&format!(
        "{}/{ID}/resolve/main/docs/a%20b%2Bc.txt",
        hub.url()
    ));

    let log = hub.requests();
    assert_eq!(log.len(), 3);
    assert_eq!(
        (log[0].host, log[0].method.as_str(), log[0].status),
        (Host::Hub, "HEAD", 302)
    );
    assert_eq!(log[0].path, format!("/{ID}/resolve/main/model.safetensors"));
    assert_eq!(log[0].authorization.as_deref(), Some("Bearer hf_t"));
    assert_eq!((log[1].host, log[1].status), (Host::Cdn, 206));
    assert_eq!(log[1].range.as_deref(), Some("bytes=10-"));
    assert!(log[1].authorization.is_none());
    assert_eq!(hub.count("HEAD", "model.safetensors"), 1);
    assert_eq!(
        hub.count("GET", "model.safetensors"),
        1,
        "the CDN request names the file too"
    );
    assert_eq!(hub.count("", "model.safetensors"), 2);
    assert_eq!(hub.count("GET", "a b+c.txt"), 1, "decoded paths match");
    assert_eq!(hub.count("GET", "a%20b"), 1, "raw paths match");

    let lines: Vec<Value> = String::from_utf8(sink.0.lock().unwrap().clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["host"], "hub");
    assert_eq!(lines[0]["authorization"], true);
    assert_eq!(lines[1]["host"], "cdn");
    assert_eq!(lines[1]["range"], "bytes=10-");
    assert_eq!(lines[2]["status"], 200);

    hub.clear_requests();
    assert!(hub.requests().is_empty());
    assert_eq!(hub.count("", ""), 0);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let hub = MockHub::start(vec![repo()]);
    let mut stream = TcpStream::connect(("127.0.0.1", hub.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    for rev in ["main", "v1.0"] {
        write!(
            stream,
            "GET /{ID}/resolve/{rev}/sub/dir/notes.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            buf.push(byte[0]);
        }
        let reply = parse_reply(&buf);
        assert_eq!(reply.status, 200);
        let mut body = vec![0u8; reply.content_length()];
        stream.read_exact(&mut body).unwrap();
        assert_eq!(body, b"hello\n");
    }
    assert_eq!(hub.count("GET", "notes.txt"), 2);
}

#[test]
fn stop_closes_the_ports_and_cuts_downloads() {
    let hub = MockHub::start(vec![repo()]);
    let (port, cdn_port) = (hub.port(), hub.cdn_port());
    let location = head(&format!(
        "{}/{ID}/resolve/main/model.safetensors",
        hub.url()
    ))
    .header("Location")
    .unwrap()
    .to_string();
    hub.throttle(1000);
    let reader = std::thread::spawn(move || get(&location));
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    hub.stop();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "stop does not wait for slow downloads"
    );
    let cut = reader.join().unwrap();
    assert!(
        cut.body.len() < 5000,
        "the download was cut after {} bytes",
        cut.body.len()
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(TcpStream::connect(("127.0.0.1", cdn_port)).is_err());
    hub.stop();

    let dropped = MockHub::start(vec![repo()]);
    let port = dropped.port();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(dropped);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn start_on_a_fixed_port_and_duplicate_ids() {
    let first = MockHub::start(vec![]);
    let port = first.port();
    assert!(
        MockHub::start_on(port, vec![]).is_err(),
        "the port is taken"
    );
    first.stop();
    let again = MockHub::start_on(port, vec![repo()]).expect("port free again after stop");
    assert_eq!(again.url(), format!("http://127.0.0.1:{port}"));
    let dup = std::panic::catch_unwind(|| MockHub::start(vec![repo(), repo()]));
    assert!(dup.is_err(), "two repos with one id are refused");
}
