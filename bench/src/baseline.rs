//! The storage limit: single-row insert transactions straight into SQLite, with the
//! component's settings (WAL, synchronous=NORMAL) and schema, either on one long-lived
//! connection per thread, or on a new connection per transaction, which is what Spin gives
//! a component (each request opens its own). Runs the component's own `insert_message`: one
//! autocommit `INSERT ... RETURNING` into `incoming` (no folds: those run after the answer).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use webhook_inbox::domain::NewMessage;
use webhook_inbox::storage::native::NativeDb;
use webhook_inbox::storage::{self, Inserted, StorageError};

use crate::load::Measured;

/// How the baseline holds its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Connections {
    /// Opened and prepared once per thread, before the clock starts.
    PerThread,
    /// Opened, configured (the component's pragmas) and closed around every transaction.
    PerTransaction,
}

/// Inserts `messages` (parsed before timing starts) from `threads` threads until all are in
/// or `max_time` has passed. Failed transactions (e.g. "database is locked") count as errors
/// under status 503, the answer the component would give.
pub fn insert(
    db_path: &Path,
    threads: usize,
    connections: Connections,
    messages: Arc<Vec<NewMessage>>,
    max_time: Duration,
) -> Result<Measured> {
    let next = Arc::new(AtomicUsize::new(0));
    // Open and prepare every connection before the clock starts.
    let per_thread = (0..threads)
        .map(|_| {
            let db = NativeDb::open(db_path)?;
            storage::prepare(&db).map_err(|e| anyhow::anyhow!("prepare: {e}"))?;
            Ok(db)
        })
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    let deadline = started + max_time;
    let handles: Vec<_> = per_thread
        .into_iter()
        .map(|db| {
            let (next, messages) = (next.clone(), messages.clone());
            let db_path = db_path.to_owned();
            std::thread::spawn(move || {
                let mut out = Measured::default();
                while Instant::now() < deadline {
                    let Some(msg) = messages.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let t = Instant::now();
                    let result = match connections {
                        Connections::PerThread => storage::insert_message(&db, msg),
                        Connections::PerTransaction => insert_on_new_connection(&db_path, msg),
                    };
                    out.latencies.push(t.elapsed());
                    out.requests += 1;
                    let status = match result {
                        Ok(Inserted::Created) => 200,
                        Ok(Inserted::Duplicate) => 409,
                        Err(e) => {
                            out.first_error.get_or_insert(e.message);
                            503
                        }
                    };
                    *out.statuses.entry(status).or_default() += 1;
                }
                out
            })
        })
        .collect();
    let mut total = Measured::default();
    for h in handles {
        let part = h.join().expect("baseline thread");
        total.requests += part.requests;
        total.latencies.extend(part.latencies);
        for (s, n) in part.statuses {
            *total.statuses.entry(s).or_default() += n;
        }
        total.first_error = total.first_error.or(part.first_error);
    }
    total.elapsed = started.elapsed();
    total.latencies.sort_unstable();
    Ok(total)
}

/// What a component request does for its insert: open, set the pragmas, insert, close.
fn insert_on_new_connection(path: &Path, msg: &NewMessage) -> Result<Inserted, StorageError> {
    let db = NativeDb::open(path).map_err(|e| StorageError::from_text(e.to_string()))?;
    storage::apply_local_settings(&db)?;
    storage::insert_message(&db, msg)
}
