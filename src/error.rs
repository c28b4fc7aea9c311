//! Error codes, the JSON error shape, exit codes, and how errors are reported to people and scripts.
//!
//! # Exit codes
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success (also when stdout is closed early, e.g. `aivideo list \| head`) |
//! | 1 | a job failed (`AI_VIDEO_ERROR`) or an unexpected internal error (`INTERNAL_ERROR`) |
//! | 2 | usage error (`USAGE_ERROR`) or invalid request (`VALIDATION_ERROR`) |
//! | 3 | no job matches the id (`NOT_FOUND`) or the id prefix matches several (`AMBIGUOUS_ID`) |
//! | 4 | the job database is corrupt, unreadable or locked (`DATABASE_ERROR`) |
//! | 130 | canceled by SIGINT / Ctrl-C (`CANCELED`) |
//!
//! With `--json` an error is printed on stdout as
//! `{"error": "...", "error_code": "...", "details": {...}, "timestamp": "RFC3339 UTC"}`;
//! without it, as `error: <message>` followed by one `  Caused by: <cause>` line per cause, on stderr.

use std::fmt;
use std::io::Write;

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::hub::HubError;
use crate::models::PipelineError;
use crate::request::ValidationError;
use crate::store::StoreError;

/// Process exit codes; see the module documentation.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const JOB_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    pub const DATABASE: u8 = 4;
    pub const CANCELED: u8 = 130;
}

/// Machine-readable error codes, serialised as SCREAMING_SNAKE_CASE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationError,
    NotFound,
    AmbiguousId,
    DatabaseError,
    AiVideoError,
    Canceled,
    InternalError,
    UsageError,
    /// The job is not in a state that allows the request (canceling a finished job).
    Conflict,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::ValidationError,
        ErrorCode::NotFound,
        ErrorCode::AmbiguousId,
        ErrorCode::DatabaseError,
        ErrorCode::AiVideoError,
        ErrorCode::Canceled,
        ErrorCode::InternalError,
        ErrorCode::UsageError,
        ErrorCode::Conflict,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::AmbiguousId => "AMBIGUOUS_ID",
            ErrorCode::DatabaseError => "DATABASE_ERROR",
            ErrorCode::AiVideoError => "AI_VIDEO_ERROR",
            ErrorCode::Canceled => "CANCELED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::UsageError => "USAGE_ERROR",
            ErrorCode::Conflict => "CONFLICT",
        }
    }

    /// The process exit code for an error of this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorCode::AiVideoError | ErrorCode::InternalError => exit::JOB_FAILED,
            ErrorCode::ValidationError | ErrorCode::UsageError | ErrorCode::Conflict => exit::USAGE,
            ErrorCode::NotFound | ErrorCode::AmbiguousId => exit::NOT_FOUND,
            ErrorCode::DatabaseError => exit::DATABASE,
            ErrorCode::Canceled => exit::CANCELED,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the user sees it: a code, a one-line message, structured details and causes.
#[derive(Debug)]
pub struct CliError {
    pub code: ErrorCode,
    pub message: String,
    /// A JSON object with code-specific facts (the invalid field, candidate ids, ...).
    pub details: Value,
    /// Underlying causes, outermost first (the `Caused by:` lines).
    pub causes: Vec<String>,
}

impl CliError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            details: json!({}),
            causes: Vec::new(),
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn exit_code(&self) -> u8 {
        self.code.exit_code()
    }

    /// Classifies an error from a command: the first recognised error in the chain picks the
    /// code and details; the outermost message is the message; the rest of the chain are causes.
    pub fn from_anyhow(err: &anyhow::Error) -> CliError {
        if let Some(clap_err) = err.downcast_ref::<clap::Error>() {
            return CliError::from_clap(clap_err);
        }
        let mut classified: Option<(ErrorCode, Value)> = None;
        for cause in err.chain() {
            if let Some(e) = cause.downcast_ref::<CliError>() {
                classified = Some((e.code, e.details.clone()));
            } else if let Some(e) = cause.downcast_ref::<StoreError>() {
                classified = Some((e.code(), e.details()));
            } else if let Some(e) = cause.downcast_ref::<ValidationError>() {
                classified = Some((ErrorCode::ValidationError, e.details()));
            } else if let Some(e) = cause.downcast_ref::<PipelineError>() {
                classified = pipeline_code(e).map(|code| (code, e.details()));
            }
            if classified.is_some() {
                break;
            }
        }
        let (code, details) = classified.unwrap_or((ErrorCode::InternalError, json!({})));
        let mut chain = err.chain().map(|c| c.to_string());
        let message = chain.next().unwrap_or_default();
        let mut causes: Vec<String> = Vec::new();
        for c in chain {
            // Libraries often restate their cause (`file is not a database`, then
            // `Error code 26: file is not a database`): keep one line per distinct fact.
            let prev = causes.last().unwrap_or(&message);
            if !prev.contains(&c) && !c.ends_with(prev.as_str()) {
                causes.push(c);
            }
        }
        CliError {
            code,
            message,
            details,
            causes,
        }
    }

    /// A clap usage error as a `USAGE_ERROR` (the message is clap's first line, without `error: `).
    pub fn from_clap(err: &clap::Error) -> CliError {
        let rendered = err.render().to_string();
        let first = rendered.lines().next().unwrap_or("invalid usage").trim();
        let message = first.strip_prefix("error: ").unwrap_or(first).to_string();
        CliError::new(ErrorCode::UsageError, message).with_details(json!({
            "kind": err.kind().to_string(),
        }))
    }

    /// The message followed by its causes, joined with `: ` (one line).
    pub fn full_message(&self) -> String {
        std::iter::once(self.message.as_str())
            .chain(self.causes.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(": ")
    }

    /// The JSON error shape: `{"error", "error_code", "details", "timestamp"}`; `error` is
    /// [`CliError::full_message`].
    pub fn to_json(&self) -> Value {
        json!({
            "error": self.full_message(),
            "error_code": self.code,
            "details": self.details,
            "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        })
    }

    /// The human form: `error: <message>` and one `  Caused by: <cause>` line per cause.
    pub fn to_human(&self) -> String {
        let mut out = format!("error: {}\n", self.message);
        for cause in &self.causes {
            out.push_str(&format!("  Caused by: {cause}\n"));
        }
        out
    }

    /// Prints the error: JSON on stdout with `--json`, otherwise the human form on stderr.
    /// Write failures are ignored: there is nowhere left to report them.
    pub fn report(&self, json_mode: bool) {
        if json_mode {
            let mut out = std::io::stdout().lock();
            let _ = serde_json::to_writer_pretty(&mut out, &self.to_json());
            let _ = writeln!(out);
            let _ = out.flush();
        } else {
            let _ = std::io::stderr()
                .lock()
                .write_all(self.to_human().as_bytes());
        }
    }
}

/// The code of a model error that is the request's fault rather than a failure: an invalid
/// model config, a request too big for the memory, a malformed setting. Other model errors
/// stay unclassified (an internal error, or a failed job).
fn pipeline_code(e: &PipelineError) -> Option<ErrorCode> {
    match e {
        PipelineError::BadConfig { .. } | PipelineError::InsufficientMemory { .. } => {
            Some(ErrorCode::ValidationError)
        }
        PipelineError::BadSetting { .. } => Some(ErrorCode::UsageError),
        PipelineError::Hub(
            HubError::BadReference { .. }
            | HubError::NotCached { .. }
            | HubError::Unauthorized { .. }
            | HubError::UnknownRepo { .. }
            | HubError::UnknownRevision { .. }
            | HubError::NotAModel { .. },
        ) => Some(ErrorCode::UsageError),
        _ => None,
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// Reports a command's error (JSON on stdout with `--json`, otherwise on stderr) and returns
/// the exit code. Clap usage errors keep clap's own wording and usage hint for people.
pub fn report(err: &anyhow::Error, json_mode: bool) -> u8 {
    if !json_mode && let Some(clap_err) = err.downcast_ref::<clap::Error>() {
        let _ = clap_err.print();
        return exit::USAGE;
    }
    let e = CliError::from_anyhow(err);
    e.report(json_mode);
    e.exit_code()
}

/// Reports a panic (a bug: the panic message was already printed by the panic hook).
pub fn report_panic(json_mode: bool) -> u8 {
    let e = CliError::new(
        ErrorCode::InternalError,
        "internal error: aivideo panicked; this is a bug, please report it",
    );
    e.report(json_mode);
    e.exit_code()
}

/// True when the error is (caused by) writing to a closed pipe: that is a success, not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn codes_serialise_as_screaming_snake() {
        let names: Vec<String> = ErrorCode::ALL
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "VALIDATION_ERROR",
                "NOT_FOUND",
                "AMBIGUOUS_ID",
                "DATABASE_ERROR",
                "AI_VIDEO_ERROR",
                "CANCELED",
                "INTERNAL_ERROR",
                "USAGE_ERROR",
                "CONFLICT"
            ]
        );
        for c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
        }
    }

    #[test]
    fn exit_codes_match_the_documented_table() {
        assert_eq!(ErrorCode::AiVideoError.exit_code(), 1);
        assert_eq!(ErrorCode::InternalError.exit_code(), 1);
        assert_eq!(ErrorCode::ValidationError.exit_code(), 2);
        assert_eq!(ErrorCode::UsageError.exit_code(), 2);
        assert_eq!(ErrorCode::NotFound.exit_code(), 3);
        assert_eq!(ErrorCode::AmbiguousId.exit_code(), 3);
        assert_eq!(ErrorCode::DatabaseError.exit_code(), 4);
        assert_eq!(ErrorCode::Canceled.exit_code(), 130);
    }

    #[test]
    fn json_shape_has_the_four_fields() {
        let e = CliError::new(ErrorCode::NotFound, "no job").with_details(json!({"id": "ab"}));
        let v = e.to_json();
        let obj = v.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["details", "error", "error_code", "timestamp"]);
        assert_eq!(v["error_code"], "NOT_FOUND");
        assert_eq!(v["details"]["id"], "ab");
        let ts = v["timestamp"].as_str().unwrap();
        assert!(ts.ends_with('Z'), "{ts}");
        chrono::DateTime::parse_from_rfc3339(ts).unwrap();
    }

    #[test]
    fn anyhow_chain_becomes_message_and_causes() {
        let inner = StoreError::NotFound { id: "abc".into() };
        let err = Err::<(), _>(inner)
            .context("cannot show job abc")
            .unwrap_err();
        let e = CliError::from_anyhow(&err);
        assert_eq!(e.code, ErrorCode::NotFound);
        assert_eq!(e.message, "cannot show job abc");
        assert_eq!(e.causes.len(), 1);
        let human = e.to_human();
        assert!(
            human.starts_with("error: cannot show job abc\n  Caused by: "),
            "{human}"
        );
        assert_eq!(
            e.to_json()["error"],
            "cannot show job abc: no job matches id `abc`"
        );
    }

    #[test]
    fn restated_causes_are_dropped() {
        let err = anyhow::anyhow!("Error code 26: file is not a database")
            .context("file is not a database")
            .context("db.sqlite3 is corrupt")
            .context("cannot open");
        let e = CliError::from_anyhow(&err);
        assert_eq!(
            e.causes,
            ["db.sqlite3 is corrupt", "file is not a database"]
        );
    }

    #[test]
    fn a_bad_model_config_is_a_validation_error_with_its_path() {
        let err = anyhow::Error::new(PipelineError::BadConfig {
            path: "/m/config.json".into(),
            reason: "`heads` is 0".into(),
        })
        .context("cannot load the model");
        let e = CliError::from_anyhow(&err);
        assert_eq!(e.code, ErrorCode::ValidationError);
        assert_eq!(e.exit_code(), 2);
        assert_eq!(e.details["path"], "/m/config.json");
        let other = anyhow::Error::new(PipelineError::BadWeights("x".into()));
        assert_eq!(CliError::from_anyhow(&other).code, ErrorCode::InternalError);
    }

    #[test]
    fn unknown_errors_are_internal() {
        let err = anyhow::anyhow!("something odd");
        let e = CliError::from_anyhow(&err);
        assert_eq!(e.code, ErrorCode::InternalError);
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn broken_pipe_is_detected_through_context() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe");
        let err = anyhow::Error::new(io).context("writing the list");
        assert!(is_broken_pipe(&err));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}

#[cfg(test)]
mod hub_error_tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn hub_errors_a_user_can_fix_are_usage_errors() {
        let unauthorized = crate::hub::HubError::Unauthorized {
            repo: "a/b".into(),
            token: false,
            page: "http://hub/a/b".into(),
        };
        let err = Err::<(), _>(PipelineError::from(unauthorized))
            .context("cannot get a/b@main")
            .unwrap_err();
        assert_eq!(CliError::from_anyhow(&err).code, ErrorCode::UsageError);
    }
}
