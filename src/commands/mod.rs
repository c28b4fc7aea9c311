//! Runs a parsed command line: builds the shared context and dispatches to one module per
//! subcommand. Commands return the process exit code on success and `anyhow` errors otherwise.

mod eval;
mod generate;
mod list;
mod serve_metrics;
mod status;
mod thumbnail;
mod train;

use anyhow::{Context as _, Result};

use crate::cli::{Cli, Command, GlobalArgs};
use crate::output::Printer;
use crate::store::Store;

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
        Command::ServeMetrics(args) => serve_metrics::run(&ctx, args),
        Command::Train(args) => train::run(&ctx, args),
        Command::Eval(args) => eval::run(&ctx, args),
    }
}
