//! Helpers shared by the benchmark binaries: medians, `--name value` arguments, and the
//! allocator the `aivideo` binary uses (so the timings are the binary's).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The median of `v` (the upper one for an even count).
#[allow(dead_code)] // not every bench binary reports medians
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The value after `--name` on the command line, or `default`.
#[allow(dead_code)] // not every bench binary takes arguments
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`).
#[allow(dead_code)] // not every bench binary reports memory
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs `cmd` and returns the last JSON object it printed on stdout (`None`, with its
/// stderr shown, when it failed).
#[allow(dead_code)] // not every bench binary runs child processes
pub fn last_json(mut cmd: std::process::Command) -> Option<serde_json::Value> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        eprintln!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
}

/// Fills the store with `n` completed jobs in one transaction (through the real schema);
/// returns the newest job's id.
#[allow(dead_code)] // only the binaries that read a large history use it
pub fn seed_jobs(db: &std::path::Path, n: usize) -> String {
    drop(aivideo::store::Store::open(db).expect("create store"));
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let tx = conn.transaction().unwrap();
    let mut last = String::new();
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO jobs (video_id, prompt, status, created_at, started_at, completed_at,
                 processing_time, video_path, thumbnail_path, metadata, frames)
                 VALUES (?1, ?2, 'completed', ?3, ?3, ?3, 1.5, ?4, ?5, ?6, 16)",
            )
            .unwrap();
        let start = chrono::Utc::now() - chrono::Duration::seconds(n as i64);
        for i in 0..n {
            let id = uuid::Uuid::new_v4().to_string();
            let ts = (start + chrono::Duration::seconds(i as i64))
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            let meta = format!(r#"{{"seed":{i},"frames":16,"num_steps":20,"quality":"medium"}}"#);
            stmt.execute(rusqlite::params![
                id,
                format!("a red ball number {i} bouncing on a black background"),
                ts,
                format!("/videos/{id}.mp4"),
                format!("/videos/{id}.jpg"),
                meta
            ])
            .unwrap();
            last = id;
        }
    }
    tx.commit().unwrap();
    last
}
