//! `aivideo serve`: the HTTP API and page (see [`crate::http`]) with `--workers N` worker
//! threads running the queued jobs. SIGINT/SIGTERM stops accepting connections, lets running
//! jobs finish (or cancels them with `--cancel-on-shutdown`), leaves queued jobs queued and
//! exits 0; a second signal exits at once with 130.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::Context;
use super::generate::{absolute_model_arg, device_choice, precision};
use super::worker::WorkerPool;
use crate::cancel::CancelFlag;
use crate::cli::ServeArgs;
use crate::error::{CliError, ErrorCode, exit};
use crate::http::{AppState, HttpMetrics, RateLimiter, ServerConfig, StorePool};
use crate::metrics::GpuMonitor;
use crate::models::{ModelSource, inspect};

/// Shortest API token accepted.
const MIN_TOKEN_CHARS: usize = 16;

pub fn run(ctx: &Context, args: &ServeArgs) -> Result<u8> {
    let token = check_token(args)?;
    let model_arg = args.model.as_deref().map(absolute_model_arg);
    let source = ModelSource::from_arg(model_arg.as_deref()).context("cannot load the model")?;
    super::models::ensure_local(ctx, &source)?;
    let manifest = inspect(&source).context("cannot load the model")?;
    ctx.open_store()?;
    let output_dir = std::path::absolute(&args.output_dir).unwrap_or(args.output_dir.clone());
    let shutdown = CancelFlag::install().context("cannot install the signal handlers")?;
    let workers = args.workers.unwrap_or(1) as usize;
    let config = ServerConfig {
        db: ctx.global.db_path(),
        output_dir,
        model: model_arg,
        manifest,
        device: device_choice(args.device),
        precision: precision(args.dtype),
        retries: args.retries,
        token,
        cors_origin: args.cors_origin.clone(),
        workers,
    };
    let pool = WorkerPool {
        db: config.db.clone(),
        printer: ctx.printer.clone(),
        workers,
        drain: false,
        poll: Duration::from_millis(200),
        shutdown: shutdown.clone(),
        job_cancel: if args.cancel_on_shutdown {
            shutdown.clone()
        } else {
            CancelFlag::new()
        },
    };
    let workers_thread = (workers > 0)
        .then(|| {
            std::thread::Builder::new()
                .name("aivideo-workers".into())
                .spawn(move || pool.run())
        })
        .transpose()
        .context("cannot start the workers")?;

    let state = AppState {
        pool: StorePool::new(config.db.clone()),
        config: Arc::new(config),
        limiter: Arc::new(RateLimiter::new(args.rate_limit, args.rate_burst)),
        metrics: Arc::new(HttpMetrics::default()),
        gpus: Arc::new(GpuMonitor::init()),
        shutdown: shutdown.clone(),
        poll: Duration::from_millis(200),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aivideo-http")
        .build()
        .context("cannot start the HTTP runtime")?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr()?;
        let p = &ctx.printer;
        if p.is_json() {
            p.json_line(&json!({ "listening": format!("http://{addr}"), "workers": workers }))?;
        }
        p.info(&format!(
            "aivideo serve: listening on http://{addr} ({workers} worker{}; Ctrl-C stops)",
            if workers == 1 { "" } else { "s" }
        ));
        crate::http::serve(listener, crate::http::router(state), shutdown.clone())
            .await
            .context("the HTTP server failed")
    });
    // However the server ended, the workers stop claiming and finish.
    shutdown.cancel();
    if let Some(handle) = workers_thread {
        ctx.printer
            .info("aivideo serve: stopped accepting; waiting for running jobs");
        match handle.join() {
            Ok(result) => {
                result?;
            }
            Err(_) => anyhow::bail!("the worker thread panicked"),
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    served?;
    Ok(exit::SUCCESS)
}

/// The token, checked: long enough, visible ASCII only; and required off loopback.
fn check_token(args: &ServeArgs) -> Result<Option<String>, CliError> {
    let token = args
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if let Some(t) = token
        && (t.chars().count() < MIN_TOKEN_CHARS || !t.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(CliError::new(
            ErrorCode::UsageError,
            format!(
                "--token must be at least {MIN_TOKEN_CHARS} visible ASCII characters (no spaces); for example `openssl rand -hex 24`"
            ),
        ));
    }
    let remote = !args.addr.ip().to_canonical().is_loopback();
    if remote && token.is_none() {
        return Err(CliError::new(
            ErrorCode::UsageError,
            format!(
                "--addr {} can be reached from other machines: set an API token with --token or AIVIDEO_TOKEN (clients send `Authorization: Bearer TOKEN`), or listen on 127.0.0.1",
                args.addr
            ),
        )
        .with_details(json!({ "addr": args.addr.to_string() })));
    }
    Ok(token.map(str::to_string))
}
