//! `aivideo models list|info|rm`: the bundled model, the aliases and the Hugging Face cache,
//! from metadata alone (no weights are read).

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde_json::json;

use super::Context;
use crate::cli::ModelsCommand;
use crate::error::{CliError, ErrorCode};
use crate::hub::{ALIASES, Alias, CachedRepo, HubCache, ModelRef};
use crate::models::{Manifest, ModelSource, inspect};

pub fn run(ctx: &Context, cmd: &ModelsCommand) -> Result<u8> {
    match cmd {
        ModelsCommand::List => list(ctx),
        ModelsCommand::Info { model } => info(ctx, model),
        ModelsCommand::Rm { name } => rm(ctx, name),
    }
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

/// Bytes in the largest unit that keeps a number ≥ 1 (decimal units, as disk sizes are sold).
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
