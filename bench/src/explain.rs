//! The SQL behind each read scenario, run natively through the component's storage code:
//! its query plan (EXPLAIN QUERY PLAN of the exact statement) and its time without the host,
//! so slow answers can be split into "SQL" and "instance + HTTP".

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use webhook_inbox::storage::native::NativeDb;
use webhook_inbox::storage::{self, Database, StorageError};

use crate::sqlite::PlanRecorder;

pub struct SqlProfile {
    /// Median over the runs, on one warm connection.
    pub median: Duration,
    /// One entry per statement: (SQL, plan lines).
    pub plans: Vec<(String, Vec<String>)>,
}

/// The storage call the component makes for `target` (path and query string).
fn run(db: &dyn Database, target: &str) -> Result<(), StorageError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/messages" => {
            let q = webhook_inbox::query::parse(query)
                .map_err(|e| StorageError::other(format!("bad query {query}: {e:?}")))?;
            storage::list_messages(db, &q).map(drop)
        }
        "/stats" => storage::stats(db).map(drop),
        "/metrics" => storage::read_counters(db).map(drop),
        "/health/ready" => storage::schema_version(db).map(drop),
        _ => Ok(()),
    }
}

/// Profiles `targets` (the first few requests of a scenario): `runs` passes over them, or
/// fewer once `budget` is spent (full scans of a million rows take a while).
pub fn profile(
    db_path: &Path,
    targets: &[String],
    runs: usize,
    budget: Duration,
) -> Result<SqlProfile> {
    let db = NativeDb::open(db_path)?;
    storage::prepare(&db).map_err(|e| anyhow!("prepare: {e}"))?;
    let recorder = PlanRecorder::new(db.conn());
    run(&recorder, &targets[0]).map_err(|e| anyhow!("{e}"))?;
    let plans = recorder.plans.take();
    let mut times = Vec::new();
    let started = Instant::now();
    for _ in 0..runs {
        if !times.is_empty() && started.elapsed() > budget {
            break;
        }
        for t in targets {
            let started = Instant::now();
            run(&db, t).map_err(|e| anyhow!("{t}: {e}"))?;
            times.push(started.elapsed());
        }
    }
    times.sort_unstable();
    Ok(SqlProfile {
        median: times.get(times.len() / 2).copied().unwrap_or_default(),
        plans,
    })
}
