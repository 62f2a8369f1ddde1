//! Seeding the read data set without HTTP, through the component's own validation and INSERT,
//! and caching the result under `target/bench-data/` keyed by shape, generator and schema.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use webhook_inbox::storage::native::NativeDb;
use webhook_inbox::storage::{self, Inserted};

use crate::data::{Shape, GENERATOR_VERSION};

pub struct Seeded {
    pub path: PathBuf,
    /// Whether an earlier run's database was reused.
    pub reused: bool,
    /// Seeding time (0 when reused).
    pub seconds: f64,
}

impl Seeded {
    fn reused(path: PathBuf) -> Seeded {
        Seeded {
            path,
            reused: true,
            seconds: 0.0,
        }
    }
}

/// Where the database for `shape` is cached; the name changes with the schema, the fold
/// and the generator.
pub fn cache_path(repo: &Path, shape: Shape) -> PathBuf {
    // The file's content follows from the schema and from the fold that fills it.
    let mut sql = storage::schema_statements();
    sql.extend(storage::fold_statements());
    let schema = Sha256::digest(sql.join("\n"));
    let name = format!(
        "inbox-g{GENERATOR_VERSION}-schema{}-{}-{}m-{}s-{}r.db",
        &hex::encode(schema)[..12],
        storage::SCHEMA_VERSION,
        shape.messages,
        shape.senders,
        shape.recipients,
    );
    repo.join("target").join("bench-data").join(name)
}

/// The seeded database for `shape`: the cached one if present, otherwise a new one, built by
/// a child process (this binary with `--seed-only`) so seeding's memory never counts towards
/// the serving phase's peak RSS.
pub fn ensure(repo: &Path, shape: Shape) -> Result<Seeded> {
    let path = cache_path(repo, shape);
    if path.exists() {
        return Ok(Seeded::reused(path));
    }
    let started = Instant::now();
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(["--seed-only", "--messages", &shape.messages.to_string()])
        .args(["--senders", &shape.senders.to_string()])
        .args(["--recipients", &shape.recipients.to_string()])
        .status()
        .context("starting the seeding process")?;
    if !status.success() || !path.exists() {
        bail!("seeding process failed ({status})");
    }
    Ok(Seeded {
        path,
        reused: false,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `--seed-only`: builds the cached database for `shape` in this process.
pub fn build_cache(repo: &Path, shape: Shape) -> Result<Seeded> {
    let path = cache_path(repo, shape);
    if path.exists() {
        return Ok(Seeded::reused(path));
    }
    std::fs::create_dir_all(path.parent().unwrap())?;
    // Built under another name and renamed at the end: an interrupted run leaves no cache.
    let partial = path.with_extension("partial");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", partial.display()));
    }
    let started = Instant::now();
    seed(&partial, shape).with_context(|| format!("seeding {}", partial.display()))?;
    std::fs::rename(&partial, &path)?;
    Ok(Seeded {
        path,
        reused: false,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Stores messages `0..shape.messages` exactly as `POST /webhook` would: the body goes
/// through `payload::parse` and `storage::insert_message`, and each full batch of
/// [`storage::FOLD_EVERY`] messages is folded into `messages` (which fills the aggregates
/// and counts each row as `created`), so the file ends as a served one would, with the last
/// partial batch waiting in `incoming`. Only the autocommit per insert is replaced by one
/// transaction per batch.
fn seed(path: &Path, shape: Shape) -> Result<()> {
    let db = NativeDb::open(path)?;
    storage::prepare(&db).map_err(|e| anyhow::anyhow!("prepare: {e}"))?;
    // Index pages stay cached while a million random message_ids go in.
    db.conn().execute_batch("PRAGMA cache_size = -262144")?;
    let batch = storage::FOLD_EVERY as u64;
    let mut i = 0;
    while i < shape.messages {
        let end = (i + batch).min(shape.messages);
        db.conn().execute_batch("BEGIN IMMEDIATE")?;
        for n in i..end {
            let message = webhook_inbox::sources::webhook::payload::parse(&shape.message(n).body())
                .map_err(|e| anyhow::anyhow!("generated message {n} is invalid: {e:?}"))?;
            match storage::insert_message(&db, &message) {
                Ok(Inserted::Created) => {}
                Ok(Inserted::Duplicate) => bail!("generated message {n} is a duplicate"),
                Err(e) => bail!("insert {n}: {e}"),
            }
        }
        db.conn().execute_batch("COMMIT")?;
        if end - i == batch {
            storage::fold(&db).map_err(|e| anyhow::anyhow!("fold after {end}: {e}"))?;
        }
        i = end;
    }
    // Fold the WAL into the main file so the cache is one self-contained file.
    db.conn()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    // No ANALYZE: the component never runs it, so plans here are the plans it gets.
    Ok(())
}
