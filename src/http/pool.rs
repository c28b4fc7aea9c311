//! Job-history connections for the HTTP handlers: each request borrows one on a blocking
//! thread (SQLite calls block) and gives it back; connections are opened as needed and kept.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};

use crate::store::{Store, StoreError};

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 16;

#[derive(Clone)]
pub struct StorePool {
    db: PathBuf,
    idle: Arc<Mutex<Vec<Store>>>,
}

impl StorePool {
    pub fn new(db: PathBuf) -> StorePool {
        StorePool {
            db,
            idle: Arc::default(),
        }
    }

    /// Runs `f` with a connection on tokio's blocking threads.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut Store) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let taken = pool.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut store = match taken {
                Some(s) => s,
                None => Store::open(&pool.db).context("cannot open the job history")?,
            };
            let out = f(&mut store);
            let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(store);
            }
            out
        })
        .await
        .context("a job-history task failed")?
    }

    /// Runs `f` like [`StorePool::run`], answering `None` when the job it names does not
    /// exist.
    pub async fn run_found<T, F>(&self, f: F) -> Result<Option<T>>
    where
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.run(move |store| match f(store) {
            Ok(v) => Ok(Some(v)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
    }
}
