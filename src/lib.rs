//! aivideo: generate short videos from text prompts locally, with a job history.
//!
//! The binary's `main` calls [`run`] and maps its error with [`error::report`]; see
//! [`error`] for the exit codes.

pub mod allocator;
pub mod cancel;
pub mod cli;
pub mod commands;
pub mod error;
pub mod faults;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod http;
pub mod hub;
pub mod media;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod noise;
pub mod output;
pub mod prompts;
pub mod request;
pub mod rng;
pub mod schedulers;
pub mod store;

use std::ffi::OsString;

/// Parses `args` (including the program name) and runs the command. `Ok` is the exit code;
/// `--help` and `--version` print on stdout and succeed.
pub fn run<I, T>(args: I) -> anyhow::Result<u8>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match cli::parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            e.print()?;
            return Ok(error::exit::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    commands::dispatch(cli)
}
