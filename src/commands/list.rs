//! `aivideo list`: jobs newest first, as an aligned table for people or a JSON array for scripts.

use anyhow::{Context as _, Result};

use super::Context;
use crate::cli::ListArgs;
use crate::output::{human_duration, sanitize, truncate};
use crate::store::{Job, JobStatus};

/// Longest prompt shown in the table, in characters.
const PROMPT_WIDTH: usize = 60;

pub fn run(ctx: &Context, args: &ListArgs) -> Result<u8> {
    let store = ctx.open_store_for_reading()?;
    let status = args.status.map(JobStatus::from);
    let jobs = store
        .list(args.limit, args.offset, status)
        .context("cannot list jobs")?;
    if ctx.printer.is_json() {
        ctx.printer.json(&jobs)?;
        return Ok(crate::error::exit::SUCCESS);
    }
    let total = store.count(status).context("cannot count jobs")?;
    if jobs.is_empty() {
        let what = status.map_or("jobs".to_string(), |s| format!("{s} jobs"));
        if total == 0 {
            ctx.printer.info(&format!("No {what} yet."));
        } else {
            ctx.printer.info(&format!(
                "No {what} past offset {} ({total} in all).",
                args.offset
            ));
        }
        return Ok(crate::error::exit::SUCCESS);
    }
    ctx.printer.result(&render_table(&jobs))?;
    let shown_to = args.offset + jobs.len() as u64;
    if shown_to < total {
        ctx.printer.info(&format!(
            "Showing {}-{shown_to} of {total}; use --offset {shown_to} for more.",
            args.offset + 1
        ));
    }
    Ok(crate::error::exit::SUCCESS)
}

/// The jobs as an aligned table: short id, status, created time (UTC), processing time, prompt.
pub fn render_table(jobs: &[Job]) -> String {
    let header = ["ID", "STATUS", "CREATED (UTC)", "TIME", "PROMPT"];
    let rows: Vec<[String; 5]> = jobs
        .iter()
        .map(|j| {
            [
                j.short_id().to_string(),
                j.status.to_string(),
                j.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                j.processing_time.map_or("-".into(), human_duration),
                truncate(&sanitize(&j.prompt), PROMPT_WIDTH),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            match i {
                // Durations align right; the last column is not padded.
                3 => s.push_str(&format!("{}{cell}  ", " ".repeat(pad))),
                4 => s.push_str(cell),
                _ => s.push_str(&format!("{cell}{}  ", " ".repeat(pad))),
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header);
    for row in &rows {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    out
}
