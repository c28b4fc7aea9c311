//! Where output goes: results on stdout (JSON with `--json`), diagnostics on stderr filtered by
//! `--log-level` and `--quiet`, and progress bars that only appear for a person at a terminal.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::cli::LogLevel;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Readable text for people.
    Human,
    /// One JSON document on stdout per command.
    Json,
}

/// Knows the output mode, quietness and log level, and prints accordingly.
#[derive(Debug, Clone)]
pub struct Printer {
    mode: OutputMode,
    quiet: bool,
    level: LogLevel,
    stderr_is_terminal: bool,
}

impl Printer {
    pub fn new(json: bool, quiet: bool, level: LogLevel) -> Printer {
        Printer {
            mode: if json {
                OutputMode::Json
            } else {
                OutputMode::Human
            },
            quiet,
            level,
            stderr_is_terminal: io::stderr().is_terminal(),
        }
    }

    pub fn mode(&self) -> OutputMode {
        self.mode
    }

    pub fn is_json(&self) -> bool {
        self.mode == OutputMode::Json
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Writes `value` as pretty JSON and a newline on stdout.
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> io::Result<()> {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, value).map_err(io::Error::from)?;
        writeln!(out)?;
        out.flush()
    }

    /// Writes `value` as compact JSON on one line (for streams of results, e.g. batches).
    pub fn json_line<T: Serialize + ?Sized>(&self, value: &T) -> io::Result<()> {
        let mut out = io::stdout().lock();
        serde_json::to_writer(&mut out, value).map_err(io::Error::from)?;
        writeln!(out)?;
        out.flush()
    }

    /// Writes result text on stdout as is (a trailing newline is the caller's).
    pub fn result(&self, text: &str) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    fn diag(&self, level: LogLevel, prefix: &str, msg: &str) {
        if self.level < level || (self.quiet && level > LogLevel::Warn) {
            return;
        }
        // Diagnostics are best effort: a closed stderr must not fail the command.
        let _ = writeln!(io::stderr().lock(), "{prefix}{msg}");
    }

    /// A warning on stderr (shown even with `--quiet`, hidden by `--log-level error`).
    pub fn warn(&self, msg: &str) {
        self.diag(LogLevel::Warn, "warning: ", msg);
    }

    /// A note on stderr (hidden by `--quiet`).
    pub fn info(&self, msg: &str) {
        self.diag(LogLevel::Info, "", msg);
    }

    /// A debugging note on stderr (only with `--log-level debug` or `trace`).
    pub fn debug(&self, msg: &str) {
        self.diag(LogLevel::Debug, "debug: ", msg);
    }

    /// Whether progress bars are drawn: only for a person at a terminal, not quiet, not JSON.
    pub fn shows_progress(&self) -> bool {
        self.stderr_is_terminal && !self.quiet && !self.is_json()
    }

    /// A progress bar over `total` steps showing step, rate and ETA on stderr, or a hidden
    /// bar (all calls are no-ops) when progress is not shown.
    pub fn progress_bar(&self, total: u64, message: &str) -> ProgressBar {
        self.bar(
            total,
            message,
            "{msg} [{bar:30}] step {pos}/{len} · {per_sec} · {elapsed} elapsed · ETA {eta}",
        )
    }

    /// A bar counting bytes (a download), hidden where progress is not shown.
    pub fn bytes_bar(&self, total: u64, message: &str) -> ProgressBar {
        self.bar(
            total,
            message,
            "{msg} [{bar:30}] {bytes}/{total_bytes} · {bytes_per_sec} · ETA {eta}",
        )
    }

    fn bar(&self, total: u64, message: &str, template: &str) -> ProgressBar {
        if !self.shows_progress() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    pub fn spinner(&self, message: &str) -> ProgressBar {
        if !self.shows_progress() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner().with_message(message.to_string());
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}

/// Formats a byte count with binary units (`12.0 KiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Formats seconds for people: `850ms`, `12.3s`, `4m 05s`, `1h 02m`.
pub fn human_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-".into();
    }
    if seconds < 1.0 {
        return format!("{}ms", (seconds * 1000.0).round() as u64);
    }
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let s = seconds.round() as u64;
    if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// Makes text safe for a terminal: control characters (newlines, escapes) become spaces.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Cuts `text` to at most `max` characters, ending with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_hidden_for_json_and_quiet() {
        let p = Printer::new(true, false, LogLevel::Info);
        assert!(!p.shows_progress());
        assert!(p.progress_bar(10, "x").is_hidden());
        let p = Printer::new(false, true, LogLevel::Info);
        assert!(!p.shows_progress());
        assert!(p.spinner("x").is_hidden());
        // Test harnesses capture stderr, so it is not a terminal: hidden as well.
        let p = Printer::new(false, false, LogLevel::Info);
        assert_eq!(p.shows_progress(), io::stderr().is_terminal());
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(12 * 1024), "12.0 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 + 512 * 1024), "3.5 MiB");
        assert_eq!(human_duration(0.25), "250ms");
        assert_eq!(human_duration(12.34), "12.3s");
        assert_eq!(human_duration(245.0), "4m 05s");
        assert_eq!(human_duration(3720.0), "1h 02m");
        assert_eq!(human_duration(f64::NAN), "-");
        assert_eq!(sanitize("a\nb\x1b[31m"), "a b [31m");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("水水", 2), "水水");
    }
}
