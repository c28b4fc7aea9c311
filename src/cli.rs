//! The command line: clap types for every subcommand and flag, and parsing (with the checks
//! clap cannot express, such as flags that conflict only when given on the command line).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::store::JobStatus;

mod dev;
pub use dev::{EvalArgs, TrainArgs};

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    a job failed, or an internal error
  2    usage error or invalid request
  3    no job matches the id, or the id prefix is ambiguous
  4    the job database is corrupt, unreadable or locked
  130  canceled (Ctrl-C)";

/// Generate short videos from text prompts on this machine, with a job history.
#[derive(Debug, Parser)]
#[command(name = "aivideo", version, about, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

const GLOBAL: &str = "Global options";

/// Flags accepted by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Job history database [default: <data dir>/aivideo/jobs.sqlite3, or ./.aivideo/jobs.sqlite3]
    #[arg(long, global = true, env = "AIVIDEO_DB", value_name = "PATH", help_heading = GLOBAL)]
    pub db: Option<PathBuf>,
    /// Print machine-readable JSON on stdout (results, and errors in the documented error shape)
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// Print only results: no progress bars, no notes
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// How much diagnostic output to print on stderr
    #[arg(
        long,
        global = true,
        env = "AIVIDEO_LOG",
        value_enum,
        ignore_case = true,
        default_value_t = LogLevel::Info,
        value_name = "LEVEL",
        help_heading = GLOBAL
    )]
    pub log_level: LogLevel,
}

impl GlobalArgs {
    /// The database path: `--db`/`AIVIDEO_DB`, else the platform data folder, else `./.aivideo`.
    /// Made absolute, so that messages and `status` name the file unambiguously.
    pub fn db_path(&self) -> PathBuf {
        let path = self.db.clone().unwrap_or_else(default_db_path);
        std::path::absolute(&path).unwrap_or(path)
    }
}

/// `<data dir>/aivideo/jobs.sqlite3`, or `./.aivideo/jobs.sqlite3` where there is no data dir.
pub fn default_db_path() -> PathBuf {
    match dirs::data_dir() {
        Some(d) => d.join("aivideo").join("jobs.sqlite3"),
        None => PathBuf::from(".aivideo").join("jobs.sqlite3"),
    }
}

/// Diagnostic verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// The subcommands. (Parsed once per process, so the size of `Generate` does not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a video from a text prompt (or one video per line of a prompts file)
    Generate(GenerateArgs),
    /// Show one job, or the system status (database, jobs, devices, model) when no id is given
    Status(StatusArgs),
    /// List jobs, newest first
    List(ListArgs),
    /// Write a thumbnail image from a job's video or from an MP4 file
    Thumbnail(ThumbnailArgs),
    /// List, inspect and delete models: the bundled one, the aliases, the Hugging Face cache
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Serve the HTTP API (/api/v1), a page for people (/) and workers that run the jobs
    Serve(ServeArgs),
    /// Run queued jobs (from `generate --queue` or `aivideo serve`) until stopped
    Worker(WorkerArgs),
    /// Cancel a job: a queued one at once, a running one at its next step
    Cancel(CancelArgs),
    /// Serve Prometheus metrics and health checks over HTTP (/metrics, /health, /status)
    ServeMetrics(ServeMetricsArgs),
    /// Train the bundled starter model on procedurally rendered clips (for developers)
    #[command(hide = true)]
    Train(TrainArgs),
    /// Score a model on the held-out prompts with the clip analyser (for developers)
    #[command(hide = true)]
    Eval(EvalArgs),
}

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// What the video should show (surrounding whitespace is removed; 1 to 1000 characters)
    #[arg(required_unless_present = "prompts", conflicts_with = "prompts")]
    pub prompt: Option<String>,
    /// Read prompts from FILE, one per line (`-` for stdin), and generate one video each
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// Quality preset: low, medium or high; picks default steps [default: medium]
    #[arg(long, value_name = "QUALITY")]
    pub quality: Option<String>,
    /// Denoising steps, 1 to 100 and within the quality preset's range [default: the preset's]
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub steps: Option<i64>,
    /// Output width in pixels, 256 to 1024, divisible by 8 [default: 512]
    #[arg(long, allow_negative_numbers = true, value_name = "PX")]
    pub width: Option<i64>,
    /// Output height in pixels, 256 to 1024, divisible by 8 [default: 512]
    #[arg(long, allow_negative_numbers = true, value_name = "PX")]
    pub height: Option<i64>,
    /// Random seed, 0 to 4294967295, for reproducible output [default: random, recorded]
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub seed: Option<i64>,
    /// Number of frames, within the model's range [default: the model's]
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub frames: Option<i64>,
    /// Frames per second of the MP4, within the model's range [default: the model's]
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub fps: Option<i64>,
    /// Classifier-free guidance scale, within the model's range [default: the model's]
    #[arg(long, allow_negative_numbers = true, value_name = "SCALE")]
    pub guidance: Option<f64>,
    /// What the video should avoid (optional, up to 1000 characters)
    #[arg(long, value_name = "TEXT")]
    pub negative_prompt: Option<String>,
    /// Folder for the MP4 and thumbnail files (named after the job id)
    #[arg(
        long,
        env = "AIVIDEO_OUTPUT_DIR",
        default_value = "./outputs",
        value_name = "DIR"
    )]
    pub output_dir: PathBuf,
    /// Write the video to exactly this MP4 file instead (the thumbnail goes next to it); an existing file is refused unless --overwrite is given
    #[arg(short, long, value_name = "FILE.mp4")]
    pub output: Option<PathBuf>,
    /// Replace the existing regular files that -o and its thumbnail name (never a folder, a device or anything else)
    #[arg(short = 'f', long, requires = "output")]
    pub overwrite: bool,
    /// Compute device
    #[arg(
        long,
        env = "AIVIDEO_DEVICE",
        value_enum,
        default_value_t = Device::Auto,
        value_name = "DEVICE"
    )]
    pub device: Device,
    /// The model: a folder (the starter layout or a Diffusers WanPipeline), a Hub repository org/name[@revision] or an alias (see `aivideo models list`) from the Hugging Face cache, or `bundled` [default: the bundled starter model]
    #[arg(long, env = "AIVIDEO_MODEL", value_name = "MODEL")]
    pub model: Option<String>,
    /// Number type the model computes in: auto is f32 on the CPU and bf16 on a GPU (the starter model always uses f32)
    #[arg(long, value_enum, default_value_t = Precision::Auto, value_name = "DTYPE")]
    pub dtype: Precision,
    /// Also write every frame as a lossless RGB PNG, DIR/frame_0001.png onwards (with several prompts: DIR/<video_id>/)
    #[arg(long, value_name = "DIR")]
    pub save_frames: Option<PathBuf>,
    /// Image format of the thumbnail
    #[arg(long, value_enum, default_value_t = ThumbnailFormat::Jpg, value_name = "FORMAT")]
    pub thumbnail_format: ThumbnailFormat,
    /// Only enqueue the jobs and print their ids; `aivideo worker` (or `aivideo serve`) runs them
    #[arg(long)]
    pub queue: bool,
    /// With --queue: run a job again, up to N times, when the process running it dies
    #[arg(
        long,
        requires = "queue",
        default_value_t = 0,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(0..=MAX_RETRIES)
    )]
    pub retries: u32,
}

/// Most re-runs a queued job may ask for.
pub const MAX_RETRIES: i64 = 10;

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Jobs run at once, each by a worker with its own copy of the model [default: 1]
    #[arg(
        long,
        env = "MAX_CONCURRENT_TASKS",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=64)
    )]
    pub workers: Option<u32>,
    /// Exit once the queue is empty instead of waiting for new jobs (exit 1 if a job failed)
    #[arg(long)]
    pub drain: bool,
    /// On SIGINT or SIGTERM, cancel the running jobs instead of letting them finish
    #[arg(long)]
    pub cancel_on_shutdown: bool,
    /// How often an idle worker looks for new jobs, in milliseconds
    #[arg(
        long,
        default_value_t = 250,
        value_name = "MS",
        value_parser = clap::value_parser!(u64).range(10..=60_000)
    )]
    pub poll_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; an address other hosts can reach needs --token
    #[arg(
        long,
        env = "AIVIDEO_ADDR",
        default_value = "127.0.0.1:8000",
        value_name = "HOST:PORT"
    )]
    pub addr: SocketAddr,
    /// Workers running jobs inside the server; 0 leaves them to `aivideo worker` processes [default: 1]
    #[arg(
        long,
        env = "MAX_CONCURRENT_TASKS",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(0..=64)
    )]
    pub workers: Option<u32>,
    /// API token every request but the health check must send (`Authorization: Bearer TOKEN`); 16 or more visible ASCII characters; required off loopback
    #[arg(
        long,
        env = "AIVIDEO_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Let web pages from this origin call the API (CORS), e.g. https://studio.example.com
    #[arg(long, value_name = "ORIGIN")]
    pub cors_origin: Option<String>,
    /// Requests per second one client may make on average; 0 turns the limit off
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub rate_limit: u32,
    /// Requests one client may make at once before the rate applies
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub rate_burst: u32,
    /// Folder for the MP4 and thumbnail files (named after the job id)
    #[arg(
        long,
        env = "AIVIDEO_OUTPUT_DIR",
        default_value = "./outputs",
        value_name = "DIR"
    )]
    pub output_dir: PathBuf,
    /// The model jobs use unless a request names a Hub repository or alias: as `generate --model` [default: the bundled starter model]
    #[arg(long, env = "AIVIDEO_MODEL", value_name = "MODEL")]
    pub model: Option<String>,
    /// Compute device of the workers
    #[arg(
        long,
        env = "AIVIDEO_DEVICE",
        value_enum,
        default_value_t = Device::Auto,
        value_name = "DEVICE"
    )]
    pub device: Device,
    /// Number type the workers' models compute in
    #[arg(long, value_enum, default_value_t = Precision::Auto, value_name = "DTYPE")]
    pub dtype: Precision,
    /// Run a job again, up to N times, when the process running it dies
    #[arg(
        long,
        default_value_t = 0,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(0..=MAX_RETRIES)
    )]
    pub retries: u32,
    /// On SIGINT or SIGTERM, cancel the running jobs instead of letting them finish
    #[arg(long)]
    pub cancel_on_shutdown: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CancelArgs {
    /// The job's id, or a unique prefix of it
    pub id: String,
    /// Wait until a running job has stopped (and print its final record)
    #[arg(long)]
    pub wait: bool,
}

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// CUDA or Metal when compiled in and present, else CPU
    Auto,
    Cpu,
    Cuda,
    Metal,
}

/// The number type of a model's weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    /// f32 on the CPU, bf16 on a GPU
    Auto,
    F32,
    Bf16,
    F16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ThumbnailFormat {
    Jpg,
    Png,
    Webp,
}

impl ThumbnailFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ThumbnailFormat::Jpg => "jpg",
            ThumbnailFormat::Png => "png",
            ThumbnailFormat::Webp => "webp",
        }
    }
}

/// `aivideo models …`.
#[derive(Debug, Clone, Subcommand)]
pub enum ModelsCommand {
    /// List the bundled model, the aliases, and the repositories in the Hugging Face cache (revisions, size, complete or not)
    List,
    /// Download a Hub model (an alias or org/name[@revision]) into the Hugging Face cache without generating
    Pull {
        /// An alias or a Hub repository org/name, optionally @revision
        #[arg(value_name = "MODEL")]
        model: String,
    },
    /// Show a model's family, limits, defaults, licence and files, from its metadata alone
    Info {
        /// A folder, an alias, a Hub repository org/name[@revision], or `bundled`
        #[arg(value_name = "MODEL")]
        model: String,
    },
    /// Delete a repository from the Hugging Face cache, or one revision of it (NAME@REVISION), keeping blobs other revisions use
    Rm {
        /// An alias or a Hub repository org/name, optionally @revision
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Job id, or a unique prefix of it; omit for the system status
    pub id: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Show at most N jobs, 1 to 10000
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000), value_name = "N")]
    pub limit: u32,
    /// Skip the N newest jobs (for paging)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub offset: u64,
    /// Show only jobs in this status
    #[arg(long, value_enum, value_name = "STATUS")]
    pub status: Option<StatusFilter>,
}

/// A job status as a `--status` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFilter {
    Pending,
    Processing,
    Completed,
    Failed,
    Canceled,
}

impl From<StatusFilter> for JobStatus {
    fn from(s: StatusFilter) -> JobStatus {
        match s {
            StatusFilter::Pending => JobStatus::Pending,
            StatusFilter::Processing => JobStatus::Processing,
            StatusFilter::Completed => JobStatus::Completed,
            StatusFilter::Failed => JobStatus::Failed,
            StatusFilter::Canceled => JobStatus::Canceled,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ThumbnailArgs {
    /// Job id (or unique prefix), or the path of an MP4 file
    #[arg(value_name = "ID|FILE.mp4")]
    pub target: String,
    /// Frame number to use, counting from 0 [default: the middle frame]
    #[arg(long, conflicts_with = "at", value_name = "N")]
    pub frame: Option<u32>,
    /// Time in the video to use, in seconds (0 or more)
    #[arg(long, allow_negative_numbers = true, value_name = "SECONDS")]
    pub at: Option<f64>,
    /// Thumbnail width in pixels, 16 to 4096, keeping the aspect ratio [default: the video's width]
    #[arg(long, allow_negative_numbers = true, value_name = "PX")]
    pub width: Option<i64>,
    /// Image file to write (format from its extension); an existing file is refused unless --overwrite is given [default: next to the video]
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Replace an existing regular file at the output path (never the video itself, a folder or a device)
    #[arg(short = 'f', long)]
    pub overwrite: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ServeMetricsArgs {
    /// Address to listen on (a loopback address unless --allow-remote is given)
    #[arg(
        long,
        env = "AIVIDEO_METRICS_ADDR",
        default_value = "127.0.0.1:9464",
        value_name = "HOST:PORT"
    )]
    pub addr: SocketAddr,
    /// Allow a non-loopback --addr (such as 0.0.0.0): anyone who can reach it reads the
    /// metrics and the prompts of running jobs
    #[arg(long)]
    pub allow_remote: bool,
}

/// True when `--json` is among the arguments (before any `--`): used to report errors,
/// including clap's own, in the right shape before or without a successful parse.
pub fn json_requested<I, T>(args: I) -> bool
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    args.into_iter()
        .map(Into::into)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// Parses the command line, including checks clap's derive cannot express.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(args)?;
    check_output_conflict(&matches)?;
    Cli::from_arg_matches(&matches)
}

/// `--output-dir` and `-o/--output` conflict only when both are typed: `AIVIDEO_OUTPUT_DIR` in
/// the environment must not make `-o` an error (clap counts environment values as explicit).
fn check_output_conflict(matches: &ArgMatches) -> Result<(), clap::Error> {
    let Some(("generate", sub)) = matches.subcommand() else {
        return Ok(());
    };
    if sub.value_source("output_dir") == Some(ValueSource::CommandLine)
        && sub.contains_id("output")
        && sub.get_one::<PathBuf>("output").is_some()
    {
        let mut cmd = Cli::command();
        return Err(cmd.error(
            clap::error::ErrorKind::ArgumentConflict,
            "the argument '--output-dir <DIR>' cannot be used with '--output <FILE.mp4>'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    #[test]
    fn clap_definition_is_consistent_and_every_flag_is_documented() {
        Cli::command().debug_assert();
        fn walk(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path} {id} has no doc comment");
            }
            for sub in cmd.get_subcommands() {
                assert!(
                    sub.get_about().is_some(),
                    "{path} {} has no doc",
                    sub.get_name()
                );
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        walk(&Cli::command(), "aivideo");
    }

    #[test]
    fn globals_work_after_the_subcommand() {
        let cli = parse_from([
            "aivideo", "list", "--json", "-q", "--db", "/x.db", "--limit", "5",
        ])
        .unwrap();
        assert!(cli.global.json && cli.global.quiet);
        assert_eq!(cli.global.log_level, LogLevel::Info);
        assert_eq!(cli.global.db_path(), PathBuf::from("/x.db"));
        match cli.command {
            Command::List(l) => assert_eq!((l.limit, l.offset, l.status), (5, 0, None)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn log_level_ignores_case() {
        let cli = parse_from(["aivideo", "--log-level", "DEBUG", "status"]).unwrap();
        assert_eq!(cli.global.log_level, LogLevel::Debug);
    }

    #[test]
    fn generate_takes_negative_numbers_for_validation_to_reject() {
        let cli = parse_from([
            "aivideo", "generate", "waves", "--steps", "-3", "--seed", "-1",
        ])
        .unwrap();
        let Command::Generate(g) = cli.command else {
            panic!()
        };
        assert_eq!((g.steps, g.seed), (Some(-3), Some(-1)));
        assert_eq!(g.prompt.as_deref(), Some("waves"));
        assert_eq!(g.thumbnail_format, ThumbnailFormat::Jpg);
    }

    #[test]
    fn usage_errors() {
        let err = |args: &[&str]| parse_from(args.iter().copied()).unwrap_err().kind();
        assert_eq!(
            err(&["aivideo", "list", "--bogus"]),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            err(&["aivideo", "list", "--limit", "0"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            err(&["aivideo", "list", "--limit", "10001"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            err(&["aivideo", "list", "--status", "done"]),
            ErrorKind::InvalidValue
        );
        assert_eq!(
            err(&["aivideo", "generate"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            err(&["aivideo", "generate", "x", "--prompts", "f.txt"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            err(&[
                "aivideo",
                "generate",
                "x",
                "-o",
                "a.mp4",
                "--output-dir",
                "d"
            ]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            err(&["aivideo", "thumbnail", "ab", "--frame", "1", "--at", "0.5"]),
            ErrorKind::ArgumentConflict
        );
        assert!(parse_from(["aivideo", "generate", "x", "-o", "a.mp4"]).is_ok());
    }

    #[test]
    fn json_flag_is_found_before_a_double_dash_only() {
        assert!(json_requested(["aivideo", "list", "--json"]));
        assert!(!json_requested(["aivideo", "generate", "--", "--json"]));
        assert!(!json_requested(["aivideo", "list"]));
    }
}
