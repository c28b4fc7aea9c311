//! End-to-end tests of the `aivideo` binary, one module per area, all in one test binary.

mod util;

mod browser;
mod errors;
mod faults;
mod generate;
mod hub;
mod hub_download;
mod hub_mock;
mod inputs;
mod list;
mod media;
mod metrics;
mod model;
mod openapi;
mod outputs;
mod queue;
mod recovery;
mod serve;
mod serve_ops;
mod server;
mod status;
mod thumbnail;
mod wan;
