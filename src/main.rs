//! The `aivideo` binary: runs the library's command line and turns its outcome into an exit code.

use std::ffi::OsString;
use std::process::ExitCode;

/// candle allocates fresh buffers for every tensor; the system allocator hands the large
/// ones back to the kernel and faults them in again, which cost a third of a training step
/// (tuned by `aivideo::allocator`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let json = aivideo::cli::json_requested(args.iter().cloned());
    match std::panic::catch_unwind(|| aivideo::run(args)) {
        Ok(Ok(code)) => ExitCode::from(code),
        // `aivideo list | head`: the reader left; that is not a failure.
        Ok(Err(err)) if aivideo::error::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Ok(Err(err)) => ExitCode::from(aivideo::error::report(&err, json)),
        Err(_) => ExitCode::from(aivideo::error::report_panic(json)),
    }
}
