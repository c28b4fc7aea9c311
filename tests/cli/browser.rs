//! The page at `/` in a real browser: `tests/browser/page.mjs` drives Debian's headless
//! Chromium (through playwright-core) against a running `aivideo serve`, with and without
//! an API token.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::server::Server;
use crate::util::TestEnv;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs `node tests/browser/page.mjs URL [TOKEN]`; a missing Chromium, playwright-core or
/// Node.js fails the test with install advice.
fn drive_page(server: &Server, token: Option<&str>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} not found: install Debian's chromium (`apt-get update && apt-get install -y \
         --no-install-recommends chromium`) to run these tests"
    );
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (Node.js 20+) to \
         run these tests"
    );
    let started = std::time::Instant::now();
    let out = Command::new("node")
        .arg(dir.join("page.mjs"))
        .arg(&server.url)
        .args(token)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `node` ({e}): install Node.js 20+ (Debian: `apt-get install nodejs`)"
            )
        });
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the page failed in Chromium ({}):\n{printed}\nserver stderr:\n{}",
        out.status,
        server.stderr.lock().unwrap()
    );
    assert!(printed.contains("page.mjs: ok"), "{printed}");
    eprintln!("{} in {:.1?}", printed.trim(), started.elapsed());
}

#[test]
fn the_page_generates_and_plays_a_video_in_chromium() {
    let env = TestEnv::new();
    let server = Server::start(&env, &[]);
    drive_page(&server, None);
    assert_eq!(env.job_count(), 1, "the page submitted one job");
}

#[test]
fn the_page_asks_for_the_token_and_uses_it_for_the_api_video_and_events() {
    let env = TestEnv::new();
    let token = "browser-test-token-0123456789";
    let server = Server::start(&env, &["--token", token]);
    drive_page(&server, Some(token));
    assert_eq!(env.job_count(), 1, "the page submitted one job");
}
