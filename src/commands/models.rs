//! `aivideo models list|info|rm`: the bundled model, the aliases and the Hugging Face cache,
//! from metadata alone (no weights are read).

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde_json::json;

use super::Context;
use crate::cli::ModelsCommand;
use crate::error::{CliError, ErrorCode};
use crate::hub::{
    ALIASES, Alias, CachedRepo, FetchProgress, Fetched, HubCache, HubClient, ModelRef,
};
use crate::models::{Manifest, ModelSource, inspect};
use crate::output::human_bytes;

pub fn run(ctx: &Context, cmd: &ModelsCommand) -> Result<u8> {
    match cmd {
        ModelsCommand::List => list(ctx),
        ModelsCommand::Pull { model } => pull(ctx, model),
        ModelsCommand::Info { model } => info(ctx, model),
        ModelsCommand::Rm { name } => rm(ctx, name),
    }
}

/// Shows a download on a bar over the whole model; with `--log-level debug`, one JSON line
/// per finished file on stderr.
struct Progress<'a> {
    ctx: &'a Context,
    repo: String,
    bar: Option<indicatif::ProgressBar>,
}

impl FetchProgress for Progress<'_> {
    fn start(&mut self, bytes: u64, files: usize) {
        if files > 0 {
            let msg = format!("downloading {} ({files} files)", self.repo);
            self.bar = Some(self.ctx.printer.bytes_bar(bytes, &msg));
        }
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    fn file_done(&mut self, path: &str, bytes: u64, downloaded: bool) {
        let line =
            json!({ "repo": self.repo, "file": path, "bytes": bytes, "downloaded": downloaded });
        self.ctx.printer.debug(&line.to_string());
    }

    fn using_cache(&mut self, reason: &str) {
        self.ctx
            .printer
            .warn(&format!("{reason}; using the cached copy of {}", self.repo));
    }
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Makes a Hub model's files local (downloading what is missing; see [`crate::hub::fetch`]);
/// other sources are local already. Returns what was fetched, for a Hub model.
pub(crate) fn ensure_local(ctx: &Context, source: &ModelSource) -> Result<Option<Fetched>> {
    let ModelSource::Hub { repo, revision, .. } = source else {
        return Ok(None);
    };
    let complete = |dir: &std::path::Path| inspect(&ModelSource::Dir(dir.to_path_buf())).is_ok();
    let mut progress = Progress {
        ctx,
        repo: repo.to_string(),
        bar: None,
    };
    let fetched = crate::hub::fetch(
        &HubCache::from_env(),
        &HubClient::from_env(),
        repo,
        revision,
        &complete,
        &mut progress,
    )
    .map_err(crate::models::PipelineError::from)
    .with_context(|| format!("cannot get {repo}@{revision}"))?;
    Ok(Some(fetched))
}

fn pull(ctx: &Context, model: &str) -> Result<u8> {
    let source = ModelSource::from_arg(Some(model)).context("cannot get the model")?;
    let Some(fetched) = ensure_local(ctx, &source)? else {
        return Err(CliError::new(
            ErrorCode::UsageError,
            format!("`{model}` is not a Hub repository or alias; there is nothing to download"),
        )
        .into());
    };
    // The files are there; make sure they form a model aivideo can run.
    let manifest = inspect(&source).context("the downloaded model cannot be read")?;
    let s = &fetched.snapshot;
    let p = &ctx.printer;
    if p.is_json() {
        p.json(&json!({
            "repo": s.repo, "revision": s.revision, "commit": s.commit, "path": s.dir,
            "downloaded_files": fetched.downloaded_files,
            "downloaded_bytes": fetched.downloaded_bytes,
            "family": manifest.family, "bytes": manifest.bytes,
        }))?;
    } else {
        p.result(&format!(
            "{}@{} ({}): {} files downloaded ({}), {} in all
  {}
",
            s.repo,
            s.revision,
            &s.commit[..12],
            fetched.downloaded_files,
            human_bytes(fetched.downloaded_bytes),
            human_bytes(manifest.bytes),
            s.dir.display()
        ))?;
    }
    Ok(0)
}

/// One cached revision as `list` reports it.
#[derive(Serialize)]
struct RevisionRow {
    commit: String,
    refs: Vec<String>,
    /// Whether every file the model needs is there and its configs are valid.
    complete: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    family: Option<&'static str>,
}

#[derive(Serialize)]
struct RepoRow {
    repo: String,
    size_on_disk: u64,
    path: std::path::PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    alias: Option<&'static str>,
    revisions: Vec<RevisionRow>,
}

fn repo_row(r: &CachedRepo) -> RepoRow {
    let revisions = r
        .revisions
        .iter()
        .map(|rev| match inspect(&ModelSource::Dir(rev.dir.clone())) {
            Ok(m) => RevisionRow {
                commit: rev.commit.clone(),
                refs: rev.refs.clone(),
                complete: true,
                problem: None,
                family: Some(m.family.as_str()),
            },
            Err(e) => RevisionRow {
                commit: rev.commit.clone(),
                refs: rev.refs.clone(),
                complete: false,
                problem: Some(e.to_string()),
                family: None,
            },
        })
        .collect();
    RepoRow {
        repo: r.repo.clone(),
        size_on_disk: r.size_on_disk,
        path: r.dir.clone(),
        alias: ALIASES
            .iter()
            .find(|a| a.repo.eq_ignore_ascii_case(&r.repo))
            .map(|a| a.name),
        revisions,
    }
}

fn list(ctx: &Context) -> Result<u8> {
    let cache = HubCache::from_env();
    let repos: Vec<RepoRow> = cache
        .list()
        .context("cannot list the Hugging Face cache")?
        .iter()
        .map(repo_row)
        .collect();
    let bundled = inspect(&ModelSource::Bundled).ok();
    let p = &ctx.printer;
    if p.is_json() {
        p.json(&json!({
            "bundled": bundled.as_ref().map(|m| json!({
                "name": m.name, "family": m.family, "kind": m.kind, "bytes": m.bytes,
            })),
            "aliases": ALIASES,
            "cache": { "path": cache.root(), "repos": repos },
        }))?;
        return Ok(0);
    }
    let mut out = String::new();
    if let Some(m) = &bundled {
        out.push_str(&format!(
            "Bundled:  {} ({}, {}), `--model bundled` or no --model\n",
            m.name,
            m.family.as_str(),
            human_bytes(m.bytes)
        ));
    }
    out.push_str("\nAliases:\n");
    for a in ALIASES {
        let cached = repos.iter().any(|r| r.repo.eq_ignore_ascii_case(a.repo));
        out.push_str(&format!(
            "  {:<18} {:<36} {:<11} up to {:>5.1} GB  {}\n",
            a.name,
            a.repo,
            a.license,
            a.max_size_gb,
            if cached { "cached" } else { "not cached" }
        ));
    }
    out.push_str(&format!(
        "\nHugging Face cache: {}\n",
        cache.root().display()
    ));
    if repos.is_empty() {
        out.push_str("  (no models)\n");
    }
    for r in &repos {
        out.push_str(&format!("  {}  {}\n", r.repo, human_bytes(r.size_on_disk)));
        for rev in &r.revisions {
            let names = if rev.refs.is_empty() {
                String::new()
            } else {
                format!(" ({})", rev.refs.join(", "))
            };
            let state = match (&rev.problem, rev.family) {
                (None, Some(f)) => format!("complete, {f}"),
                (Some(p), _) => format!("incomplete: {p}"),
                (None, None) => "incomplete".into(),
            };
            out.push_str(&format!("    {}{names}  {state}\n", &rev.commit[..12]));
        }
    }
    p.result(&out)?;
    Ok(0)
}

/// What `info` adds to a manifest: the licence and, for aliases, the alias entry.
#[derive(Serialize)]
struct Info<'a> {
    #[serde(flatten)]
    manifest: &'a Manifest,
    license: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alias: Option<&'static Alias>,
}

fn info(ctx: &Context, model: &str) -> Result<u8> {
    let source = ModelSource::from_arg(Some(model)).context("cannot read the model")?;
    let manifest = inspect(&source).context("cannot read the model")?;
    let alias = manifest.hub.as_ref().and_then(|h| {
        ALIASES
            .iter()
            .find(|a| a.repo.eq_ignore_ascii_case(&h.repo))
    });
    let license = alias
        .map(|a| a.license.to_string())
        .or_else(|| readme_license(&source));
    let p = &ctx.printer;
    if p.is_json() {
        p.json(&Info {
            manifest: &manifest,
            license,
            alias,
        })?;
        return Ok(0);
    }
    let l = &manifest.limits;
    let mut out = format!(
        "Model:    {} ({}, {})\nSource:   {}\nLicence:  {}\n",
        manifest.name,
        manifest.family.as_str(),
        manifest.kind,
        manifest.source,
        license.as_deref().unwrap_or("unknown")
    );
    if let Some(h) = &manifest.hub {
        out.push_str(&format!(
            "Hub:      {} at {} (commit {})\n",
            h.repo, h.revision, h.commit
        ));
    }
    out.push_str(&format!(
        "Size:     {} × {} by default; width {}–{}, height {}–{}, multiples of {}\n",
        l.width.default,
        l.height.default,
        l.width.min,
        l.width.max,
        l.height.min,
        l.height.max,
        l.size_multiple
    ));
    out.push_str(&format!(
        "Frames:   {} by default, {}–{}{}; {} fps by default ({}–{})\n",
        l.frames.default,
        l.frames.min,
        l.frames.max,
        if l.frame_step > 1 {
            format!(" in steps of {}", l.frame_step)
        } else {
            String::new()
        },
        l.fps.default,
        l.fps.min,
        l.fps.max
    ));
    out.push_str(&format!(
        "Guidance: {} by default ({}–{})\n",
        l.guidance.default, l.guidance.min, l.guidance.max
    ));
    out.push_str(&format!(
        "Files:    {} in {}\n",
        manifest.files.len(),
        human_bytes(manifest.bytes)
    ));
    for f in &manifest.files {
        out.push_str(&format!("  {:>10}  {}\n", human_bytes(f.bytes), f.path));
    }
    p.result(&out)?;
    Ok(0)
}

/// The `license:` of a model folder's `README.md` front matter (Hub model cards have one).
fn readme_license(source: &ModelSource) -> Option<String> {
    let dir = match source {
        ModelSource::Dir(d) => d.clone(),
        ModelSource::Hub { repo, revision, .. } => {
            HubCache::from_env().resolve(repo, revision).ok()?.dir
        }
        ModelSource::Bundled => return Some("MIT (this repository's licence)".into()),
    };
    let text = std::fs::read_to_string(dir.join("README.md")).ok()?;
    let front = text.strip_prefix("---")?.split("\n---").next()?;
    front.lines().find_map(|l| {
        let v = l.strip_prefix("license:")?.trim().trim_matches(['"', '\'']);
        (!v.is_empty()).then(|| v.to_string())
    })
}

fn rm(ctx: &Context, name: &str) -> Result<u8> {
    let (repo, revision) = match crate::hub::ModelRef::parse(name) {
        Ok(ModelRef::Hub { repo, revision, .. }) => (repo, name.contains('@').then_some(revision)),
        Ok(_) | Err(_) => {
            return Err(CliError::new(
                ErrorCode::UsageError,
                format!(
                    "`{name}` is not a Hub repository or alias; `models rm` only deletes from the Hugging Face cache"
                ),
            )
            .into());
        }
    };
    let cache = HubCache::from_env();
    let freed = match &revision {
        Some(rev) => cache.remove_revision(&repo, rev),
        None => cache.remove_repo(&repo),
    }
    .map_err(|e| match e {
        crate::hub::HubError::NotCached { .. } => {
            CliError::new(ErrorCode::NotFound, e.to_string()).into()
        }
        other => anyhow::Error::new(other).context(format!("cannot delete {name}")),
    })?;
    let p = &ctx.printer;
    if p.is_json() {
        p.json(&json!({ "repo": repo.to_string(), "revision": revision, "freed_bytes": freed }))?;
    } else {
        let what = revision.map_or(repo.to_string(), |r| format!("{repo}@{r}"));
        p.result(&format!(
            "deleted {what} from the cache, freeing {}\n",
            human_bytes(freed)
        ))?;
    }
    Ok(0)
}
