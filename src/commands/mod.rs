//! Runs a parsed command line: builds the shared context and dispatches to one module per
//! subcommand. Commands return the process exit code on success and `anyhow` errors otherwise.

mod cancel;
mod eval;
mod generate;
mod list;
pub(crate) mod models;
mod runner;
mod serve;
mod serve_metrics;
mod status;
mod thumbnail;
mod train;
mod worker;

use anyhow::{Context as _, Result};

use crate::cli::{Cli, Command, GlobalArgs};
use crate::error::{CliError, ErrorCode};
use crate::media::MediaError;
use crate::output::Printer;
use crate::store::{Store, StoreError};

pub use cancel::already_ended;
pub use status::{SystemStatus, describe_model, model_in_use, system_status};

/// What every command needs: the global flags and the printer.
pub struct Context {
    pub global: GlobalArgs,
    pub printer: Printer,
}

impl Context {
    /// Opens the job history for writing (creating it, migrating it, recovering crashed jobs).
    pub fn open_store(&self) -> Result<Store> {
        let path = self.global.db_path();
        let store = Store::open(&path).context("cannot open the job history")?;
        self.printer
            .debug(&format!("job history: {}", store.path().display()));
        Ok(store)
    }

    /// Opens the job history to read it: for writing (so crashed jobs are recovered) where
    /// that works, else, when the file exists but cannot be written (a read-only folder,
    /// file or file system), read-only with a note that recovery was skipped.
    pub fn open_store_for_reading(&self) -> Result<Store> {
        let path = self.global.db_path();
        match Store::open(&path) {
            Ok(store) => Ok(store),
            Err(
                e @ (StoreError::Open { .. }
                | StoreError::ReadOnlyFolder { .. }
                | StoreError::Sqlite { .. }
                | StoreError::CreateDir { .. }),
            ) if path.is_file() => {
                let store = Store::open_read_only(&path).map_err(|ro| {
                    anyhow::Error::new(ro).context(format!("cannot open the job history ({e})"))
                })?;
                self.printer.warn(&format!(
                    "{} cannot be written here; showing it read-only (jobs of crashed processes are not recovered)",
                    path.display()
                ));
                Ok(store)
            }
            Err(e) => Err(anyhow::Error::new(e).context("cannot open the job history")),
        }
    }
}

/// Runs the command; `Ok` carries the exit code (1 when a job failed).
pub fn dispatch(cli: Cli) -> Result<u8> {
    let printer = Printer::new(cli.global.json, cli.global.quiet, cli.global.log_level);
    let ctx = Context {
        global: cli.global,
        printer,
    };
    match &cli.command {
        Command::Status(args) => status::run(&ctx, args),
        Command::List(args) => list::run(&ctx, args),
        Command::Generate(args) => generate::run(&ctx, args),
        Command::Thumbnail(args) => thumbnail::run(&ctx, args),
        Command::Models(cmd) => models::run(&ctx, cmd),
        Command::Serve(args) => serve::run(&ctx, args),
        Command::Worker(args) => worker::run(&ctx, args),
        Command::Cancel(args) => cancel::run(&ctx, args),
        Command::ServeMetrics(args) => serve_metrics::run(&ctx, args),
        Command::Train(args) => train::run(&ctx, args),
        Command::Eval(args) => eval::run(&ctx, args),
    }
}

/// Checks, before any work, that `path` may be written (see [`crate::media::check_target`]);
/// `what` names it in the message ("-o", "the thumbnail"). A refusal is a usage error (exit 2)
/// that says how to go on.
pub(crate) fn check_output_target(
    path: &std::path::Path,
    overwrite: bool,
    what: &str,
) -> Result<()> {
    match crate::media::check_target(path, overwrite) {
        Ok(_) => Ok(()),
        Err(e) => Err(output_refused(e, what)),
    }
}

/// A refused output path as a usage error with a hint; other media errors pass through.
pub(crate) fn output_refused(e: MediaError, what: &str) -> anyhow::Error {
    let (message, field) = match &e {
        MediaError::Exists { path } => (
            format!(
                "{what}: {} already exists; pass --overwrite (-f) to replace it, or choose another file",
                path.display()
            ),
            "exists",
        ),
        MediaError::NotAFile { path, kind } if *kind == "a folder" => (
            format!(
                "{what}: {} is a folder; give the name of a file (inside it, if you like)",
                path.display()
            ),
            "folder",
        ),
        MediaError::NotAFile { path, kind } => (
            format!(
                "{what}: {} is {kind}; aivideo writes only regular files, even with --overwrite",
                path.display()
            ),
            "not_a_file",
        ),
        _ => return anyhow::Error::new(e),
    };
    CliError::new(ErrorCode::UsageError, message)
        .with_details(serde_json::json!({ "output": what, "reason": field }))
        .into()
}
