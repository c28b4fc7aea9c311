//! End-to-end tests of the `aivideo` binary, one module per area, all in one test binary.

mod util;

mod errors;
mod list;
mod metrics;
mod recovery;
mod status;
