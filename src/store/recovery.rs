//! Crash recovery: jobs whose process is gone (see [`super::owner_alive`]) become `failed`
//! with code `INTERRUPTED` (or, for queued jobs with retries left, `pending` again for the
//! next worker), and the temporary files they left in their folders are removed.

use std::path::PathBuf;

use rusqlite::params;

use super::{ELAPSED, INTERRUPTED, Result, Store, StoreError, format_ts, now, owner_alive};

impl Store {
    /// Marks `failed` (code `INTERRUPTED`) every unfinished job that belongs to a process on
    /// this host that no longer runs (see [`owner_alive`]: a reboot or a reused pid counts as
    /// gone), and removes that job's temporary files from the folders it was writing into.
    /// A queued job whose runs so far (`attempts`) do not exceed its `max_retries` goes back
    /// to the queue instead, with the interruption noted in `metadata.interruptions`.
    /// Queued jobs still waiting have no owner and are left alone. Returns the ids it changed.
    pub fn recover_interrupted(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT video_id, pid, proc_start, work_dirs, queued, attempts, max_retries FROM jobs
                 WHERE status IN ('pending', 'processing') AND host = ?1 AND pid IS NOT NULL",
            )
            .map_err(|e| self.err(e))?;
        type Owned = (String, i64, Option<String>, Option<String>, bool, i64, i64);
        let owned: Vec<Owned> = stmt
            .query_map([&self.host], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        let mut recovered = Vec::new();
        for (id, pid, identity, work_dirs, queued, attempts, max_retries) in owned {
            if owner_alive(pid, identity.as_deref()) {
                continue;
            }
            let message = format!(
                "interrupted: the process running this job (pid {pid} on host {}) exited before finishing it",
                self.host
            );
            let now = format_ts(&now());
            let retry = queued && attempts <= max_retries;
            let changed = if retry {
                self.conn.execute(
                    "UPDATE jobs SET status = 'pending', started_at = NULL, pid = NULL,
                            host = NULL, proc_start = NULL, progress = NULL,
                            metadata = json_set(metadata, '$.interruptions',
                                json(COALESCE(json_extract(metadata, '$.interruptions'), '[]')),
                                '$.interruptions[#]', ?1)
                     WHERE video_id = ?2 AND pid = ?3 AND status = 'processing'",
                    params![format!("attempt {attempts}: {message}"), id, pid],
                )
            } else {
                self.conn.execute(
                    &format!(
                        "UPDATE jobs SET status = 'failed', completed_at = ?1, error_code = ?2,
                         error_message = ?3, processing_time = {ELAPSED}
                         WHERE video_id = ?4 AND pid = ?5 AND status IN ('pending', 'processing')"
                    ),
                    params![now, INTERRUPTED, message, id, pid],
                )
            }
            .map_err(|e| self.err(e))?;
            if changed == 1 {
                // Best effort: a folder that cannot be read keeps its leftovers.
                for dir in parse_work_dirs(work_dirs.as_deref()) {
                    let _ = crate::media::remove_temp_files(&dir, &id);
                }
                recovered.push(id);
            }
        }
        Ok(recovered)
    }

    /// Records the folders job `id` writes into (for [`Store::recover_interrupted`]).
    pub fn set_work_dirs(&self, id: &str, dirs: &[PathBuf]) -> Result<()> {
        let dirs: Vec<String> = dirs
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        let json = serde_json::to_string(&dirs).unwrap_or_else(|_| "[]".into());
        let changed = self
            .conn
            .execute(
                "UPDATE jobs SET work_dirs = ?1 WHERE video_id = ?2",
                params![json, id],
            )
            .map_err(|e| self.err(e))?;
        if changed == 0 {
            return Err(StoreError::NotFound { id: id.to_string() });
        }
        Ok(())
    }
}

/// The folders recorded by [`Store::set_work_dirs`] (none when unset or unreadable).
fn parse_work_dirs(json: Option<&str>) -> Vec<PathBuf> {
    json.and_then(|j| serde_json::from_str::<Vec<PathBuf>>(j).ok())
        .unwrap_or_default()
}
