//! Fault-injection points for the end-to-end tests (debug builds only): a command can be held
//! at a named point while a test fills a disk, sends signals or kills it, then let go.
//!
//! `AIVIDEO_FAULT_PAUSE=<point>:<flag file>` makes the process create the flag file when it
//! reaches `<point>` and wait (up to a minute) until the test deletes it. Release builds
//! compile every point to nothing.

/// Holds the process at `point` when `AIVIDEO_FAULT_PAUSE` names it (debug builds only).
#[cfg(debug_assertions)]
pub fn point(point: &str) {
    let Ok(spec) = std::env::var("AIVIDEO_FAULT_PAUSE") else {
        return;
    };
    let Some((name, flag)) = spec.split_once(':') else {
        return;
    };
    if name != point {
        return;
    }
    if std::fs::write(flag, point).is_err() {
        return;
    }
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::path::Path::new(flag).exists() && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_point: &str) {}
