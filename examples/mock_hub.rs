//! A standalone mock Hugging Face Hub: the one the `cli` tests use (`tests/cli/hub_mock/`, whose
//! module documentation describes what it answers), for clients outside the Rust tests, such as
//! Python's huggingface_hub in `tests/reference/make_hub_cache.py`.
//!
//! ```text
//! cargo run --example mock_hub -- --repo ID=DIR [--repo ID=DIR ...]
//!     [--branch ID:NAME=DIR] [--tag ID:NAME=REVISION] [--gated ID=TOKEN] [--private ID=TOKEN]
//!     [--port N] [--log FILE]
//! ```
//!
//! `--repo` serves every file under DIR as branch `main` of repo ID; `--branch` adds a branch
//! holding the files under DIR, `--tag` a tag at a branch, tag or commit id; `--gated` and
//! `--private` set who may read a repo (these three name a repo given before them). `--port`
//! picks the Hub's port (default 0: any free one). `--log FILE` writes every request, as it is
//! answered, as a JSON line `{"host", "method", "path", "range", "authorization", "status"}`.
//!
//! Stdout: `listening on http://127.0.0.1:PORT` first, then `cdn http://127.0.0.1:PORT`, one
//! `revision ID NAME COMMIT` line per branch and tag, and `ready`. It serves until its stdin
//! reaches end of file or it gets SIGTERM or SIGINT.
//!
//! Stdin takes fault commands while it runs, one per line, each answered on stdout by `ok` once
//! in effect (or `error: ...`): `drop_after PATTERN BYTES`, `corrupt PATTERN`,
//! `corrupt_once PATTERN`, `fail PATTERN STATUS TIMES`, `throttle BYTES_PER_SEC`,
//! `clear_faults` (PATTERN is the rest of the line before the numbers; see the mock's faults).

// The example uses only part of the tests' API.
#[allow(dead_code, unused_imports)]
#[path = "../tests/cli/hub_mock/mod.rs"]
mod hub_mock;

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use hub_mock::{MockHub, MockRepo, read_dir_files};

const USAGE: &str = "usage: mock_hub --repo ID=DIR [--branch ID:NAME=DIR] [--tag ID:NAME=REVISION] \
                     [--gated ID=TOKEN] [--private ID=TOKEN] [--port N] [--log FILE]";

/// Splits `KEY=VALUE`.
fn key_value<'a>(flag: &str, arg: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    arg.split_once('=')
        .with_context(|| format!("{flag} wants KEY=VALUE, got {arg:?}\n{USAGE}"))
}

/// Splits `ID:NAME`.
fn id_name<'a>(flag: &str, arg: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    arg.split_once(':')
        .with_context(|| format!("{flag} wants ID:NAME=..., got {arg:?}\n{USAGE}"))
}

/// Applies `f` to the repo named `id`, given earlier with `--repo`.
fn update(
    repos: &mut [MockRepo],
    flag: &str,
    id: &str,
    f: impl FnOnce(MockRepo) -> anyhow::Result<MockRepo>,
) -> anyhow::Result<()> {
    let slot = repos
        .iter_mut()
        .find(|r| r.id() == id)
        .with_context(|| format!("{flag}: no --repo {id}=DIR before it"))?;
    let placeholder = MockRepo::from_files(id, Default::default());
    let repo = std::mem::replace(slot, placeholder);
    *slot = f(repo)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut repos: Vec<MockRepo> = Vec::new();
    let mut port = 0u16;
    let mut log = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            return Ok(());
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--repo" => {
                let (id, dir) = key_value(&flag, &value)?;
                if !Path::new(dir).is_dir() {
                    bail!("--repo {id}: {dir} is not a folder");
                }
                repos.push(MockRepo::from_dir(id, Path::new(dir)));
            }
            "--branch" => {
                let (id_and_name, dir) = key_value(&flag, &value)?;
                let (id, name) = id_name(&flag, id_and_name)?;
                if !Path::new(dir).is_dir() {
                    bail!("--branch {id_and_name}: {dir} is not a folder");
                }
                let files = read_dir_files(Path::new(dir));
                update(&mut repos, &flag, id, |r| Ok(r.with_branch(name, files)))?;
            }
            "--tag" => {
                let (id_and_name, target) = key_value(&flag, &value)?;
                let (id, name) = id_name(&flag, id_and_name)?;
                update(&mut repos, &flag, id, |r| {
                    if r.commit(target).is_none() {
                        bail!("--tag {id_and_name}: {id} has no revision {target}");
                    }
                    Ok(r.with_tag(name, target))
                })?;
            }
            "--gated" => {
                let (id, token) = key_value(&flag, &value)?;
                update(&mut repos, &flag, id, |r| Ok(r.gated(token)))?;
            }
            "--private" => {
                let (id, token) = key_value(&flag, &value)?;
                update(&mut repos, &flag, id, |r| Ok(r.private(token)))?;
            }
            "--port" => port = value.parse().with_context(|| format!("--port {value}"))?,
            "--log" => {
                log = Some(std::fs::File::create(&value).with_context(|| format!("--log {value}"))?)
            }
            _ => bail!("unknown argument {flag}\n{USAGE}"),
        }
    }
    if repos.is_empty() {
        bail!("no repository given\n{USAGE}");
    }

    let hub = MockHub::start_on(port, repos).context("starting the mock Hub")?;
    if let Some(file) = log {
        hub.log_to(Box::new(file));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", hub.url())?;
    writeln!(out, "cdn {}", hub.cdn_url())?;
    for repo in hub.repos() {
        for (name, commit) in repo.refs() {
            writeln!(out, "revision {} {name} {commit}", repo.id())?;
        }
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("signal handler")?;
    }
    let hub = Arc::new(hub);
    let (at_eof, commands) = (stop.clone(), hub.clone());
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let answer = match command(&commands, line.trim()) {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("error: {e:#}"),
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{answer}").and_then(|()| out.flush());
        }
        at_eof.store(true, Ordering::SeqCst);
    });
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    hub.stop();
    Ok(())
}

/// Splits `PATTERN N...` into the pattern (which may hold spaces) and `count` trailing numbers.
fn pattern_and_numbers(rest: &str, count: usize) -> anyhow::Result<(&str, Vec<u64>)> {
    let mut words: Vec<&str> = rest.rsplitn(count + 1, ' ').collect();
    if words.len() != count + 1 || words.last().is_some_and(|p| p.trim().is_empty()) {
        bail!("wants PATTERN and {count} number(s)");
    }
    let pattern = words.pop().unwrap_or_default().trim();
    let numbers = words
        .iter()
        .rev()
        .map(|w| w.parse().with_context(|| format!("not a number: {w:?}")))
        .collect::<anyhow::Result<_>>()?;
    Ok((pattern, numbers))
}

/// Applies one stdin fault command.
fn command(hub: &MockHub, line: &str) -> anyhow::Result<()> {
    let (name, rest) = line.split_once(' ').unwrap_or((line, ""));
    match name {
        "drop_after" => {
            let (pattern, n) = pattern_and_numbers(rest, 1)?;
            hub.drop_after(pattern, n[0]);
        }
        "corrupt" if !rest.is_empty() => hub.corrupt(rest),
        "corrupt_once" if !rest.is_empty() => hub.corrupt_once(rest),
        "fail" => {
            let (pattern, n) = pattern_and_numbers(rest, 2)?;
            let status = u16::try_from(n[0]).context("status")?;
            hub.fail(pattern, status, usize::try_from(n[1]).context("times")?);
        }
        "throttle" => hub.throttle(rest.trim().parse().context("throttle BYTES_PER_SEC")?),
        "clear_faults" => hub.clear_faults(),
        _ => bail!("unknown command {line:?}"),
    }
    Ok(())
}
