//! The run's phases, each with one job: build and seed, the raw-SQLite storage baselines,
//! the native SQL profiles of the reads, the component on a local file. The libSQL phase is
//! in `libsql.rs`, the minimal-write comparison and the memory figures in `fixture.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use spin_test_host::Host;

use crate::baseline::{self, Connections};
use crate::data::Shape;
use crate::explain::{self, SqlProfile};
use crate::load::{self, LoadGen, Measured, Plan};
use crate::report::Row;
use crate::scenarios::{self, Fresh, Group, Scenario};
use crate::serve::{Db, ServeSpec};
use crate::verify::{self, Expected};
use crate::{seed, Options, SECRET};

/// What every later phase starts from: the built component and the seeded data set.
pub struct Setup {
    pub repo: PathBuf,
    pub shape: Shape,
    pub wasm: PathBuf,
    pub wasm_bytes: u64,
    pub revision: String,
    pub seeding: Seeding,
    pub expected: Expected,
    /// Everything this run writes goes to copies in here; the cache stays pristine.
    pub work: tempfile::TempDir,
    pub began: Instant,
    /// 1-minute load average at the start.
    pub load_before: String,
}

#[derive(Serialize, Clone)]
pub struct Seeding {
    pub reused: bool,
    pub seconds: f64,
    pub rows_per_s: Option<f64>,
    pub db_bytes: u64,
    pub path: PathBuf,
}

impl Setup {
    /// A copy of the seeded database, `name` in the work dir.
    pub fn copy_of_seeded(&self, name: &str) -> Result<PathBuf> {
        let path = self.work.path().join(name);
        std::fs::copy(&self.seeding.path, &path)?;
        Ok(path)
    }
}

/// Builds the component and seeds (or reuses) the data set.
pub fn setup(repo: &Path, shape: Shape) -> Result<Setup> {
    eprintln!("building the component (cargo build --target wasm32-wasip1 --release) ...");
    let wasm = spin_test_host::build_component(repo)?;
    let wasm_bytes = std::fs::metadata(&wasm)?.len();
    let revision = revision(repo);
    let began = Instant::now();
    // Other work on the machine skews every figure; the load average says how much.
    let load_before = load_average();

    // The expected figures come from the generator alone; compute them while seeding.
    let expected = std::thread::spawn(move || verify::expected(shape));
    eprintln!(
        "data set: {} messages, {} senders, {} recipients",
        shape.messages, shape.senders, shape.recipients
    );
    let seeded = seed::ensure(repo, shape)?;
    let seeding = Seeding {
        reused: seeded.reused,
        seconds: seeded.seconds,
        rows_per_s: (!seeded.reused).then(|| shape.messages as f64 / seeded.seconds),
        db_bytes: std::fs::metadata(&seeded.path)?.len(),
        path: seeded.path.clone(),
    };
    if seeded.reused {
        eprintln!("seeding: reused {}", seeded.path.display());
    } else {
        eprintln!(
            "seeding: {} rows in {:.1} s ({:.0} rows/s) -> {}",
            shape.messages,
            seeded.seconds,
            shape.messages as f64 / seeded.seconds,
            seeded.path.display()
        );
    }
    Ok(Setup {
        repo: repo.to_path_buf(),
        shape,
        wasm,
        wasm_bytes,
        revision,
        seeding,
        expected: expected.join().expect("expectations thread"),
        work: tempfile::tempdir()?,
        began,
        load_before,
    })
}

/// Raw-SQLite insert rates by (threads, connections), for the ingest rows' ratios.
pub type StorageRates = HashMap<(usize, Connections), f64>;

/// Baseline (b): the storage limit, on its own copy of the same data set.
pub fn storage(
    setup: &Setup,
    opts: &Options,
    fresh: &mut Fresh,
) -> Result<(Vec<Row>, StorageRates)> {
    let storage_db = setup.copy_of_seeded("storage-baseline.db")?;
    let cap = Duration::from_secs_f64(opts.seconds);
    let mut rows = Vec::new();
    let mut rates = HashMap::new();
    for (threads, connections) in [
        (1, Connections::PerThread),
        (16, Connections::PerThread),
        (1, Connections::PerTransaction),
        (16, Connections::PerTransaction),
    ] {
        let name = match connections {
            Connections::PerThread => "insert, 1 row per transaction",
            Connections::PerTransaction => "insert, new connection per transaction (as in Spin)",
        };
        eprintln!("storage baseline: {name}, {threads} thread(s) ...");
        let messages = Arc::new(fresh.parsed(opts.write_requests));
        let m = baseline::insert(&storage_db, threads, connections, messages, cap)?;
        let mut row = Row::new(
            Group::Storage,
            Scenario::StorageInsert(connections),
            name,
            threads,
            &m,
        );
        // A failed transaction here is SQLite's own "database is locked" (the busy handler
        // gave up), not an answer of the component: shown, but not a benchmark failure.
        row.db_locked = Some(m.statuses.get(&503).copied().unwrap_or(0));
        rates.insert((threads, connections), m.rate());
        rows.push(row);
    }
    std::fs::remove_file(&storage_db)?;

    // The search index is written by folds, after answers; what every request pays for it
    // is parsing its tables with the schema. The same inserts on a copy without them:
    let without = setup.copy_of_seeded("storage-without-search.db")?;
    rusqlite::Connection::open(&without)?.execute_batch("DROP TABLE messages_search;")?;
    eprintln!("storage baseline: new connection per transaction, without the search index ...");
    let messages = Arc::new(fresh.parsed(opts.write_requests));
    let m = baseline::insert(&without, 16, Connections::PerTransaction, messages, cap)?;
    let mut row = Row::new(
        Group::Storage,
        Scenario::StorageInsertWithoutSearchIndex,
        "insert, new connection per transaction, schema without the search index",
        16,
        &m,
    );
    row.db_locked = Some(m.statuses.get(&503).copied().unwrap_or(0));
    rows.push(row);
    std::fs::remove_file(&without)?;
    Ok((rows, rates))
}

/// The SQL of every read scenario, natively, before the host adds any load.
pub fn profile_reads(
    db: &Path,
    reads: &[Plan],
    opts: &Options,
) -> Result<HashMap<Scenario, SqlProfile>> {
    let mut profiles = HashMap::new();
    for r in reads {
        let targets: Vec<String> = (0..5).map(|i| (r.source)(i).target).collect();
        let runs = if opts.quick { 1 } else { 3 };
        let budget = Duration::from_secs(3);
        profiles.insert(r.scenario, explain::profile(db, &targets, runs, budget)?);
    }
    Ok(profiles)
}

/// Whole exports of the seeded data set, one at a time (`rounds` of them): each must bring
/// every row and end properly. The row reports rows per second (its latency is one export).
fn export(load: &LoadGen, messages: u64, opts: &Options) -> (Row, Option<String>) {
    let name = format!("GET /messages/export (all {messages} rows)");
    eprintln!("{name} ...");
    let mut m = Measured::default();
    let mut rows = 0u64;
    let started = Instant::now();
    for _ in 0..opts.rounds.max(1) {
        m.requests += 1;
        match load.stream("/messages/export") {
            Ok(s) => {
                eprintln!(
                    "  {} rows, {} bytes in {:.2} s",
                    s.lines,
                    s.bytes,
                    s.elapsed.as_secs_f64()
                );
                *m.statuses.entry(s.status).or_default() += 1;
                m.latencies.push(s.elapsed);
                rows += s.lines;
                if s.lines != messages && m.first_error.is_none() {
                    m.first_error = Some(format!("{} rows of {messages}", s.lines));
                }
            }
            Err(e) => {
                m.transport_errors += 1;
                m.first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    m.elapsed = started.elapsed();
    m.latencies.sort_unstable();
    let mut row = Row::new(Group::Reads, Scenario::Export, &name, 1, &m);
    let streaming: Duration = m.latencies.iter().sum();
    row.rows_per_s = Some(rows as f64 / streaming.as_secs_f64().max(1e-9));
    let failure = m.first_error.as_ref().map(|e| format!("export: {e}"));
    (row, failure)
}

/// What the local-file phase found.
pub struct Local {
    pub rows: Vec<Row>,
    pub checks: Vec<String>,
    pub failures: Vec<String>,
    pub db_locked_total: usize,
    /// VmHWM of this process after it (before the libSQL and minimal-write phases).
    pub peak_rss_kib: Option<u64>,
}

/// The component on a copy of the seeded file: the data check through HTTP, the host floor,
/// the reads, ingest at 1/16/64/256 connections, duplicates, and the `/stats` total after.
pub fn local_file(
    setup: &Setup,
    opts: &Options,
    fresh: &mut Fresh,
    served_db: &Path,
    reads: &[Plan],
    profiles: &HashMap<Scenario, SqlProfile>,
    storage_rates: &StorageRates,
) -> Result<Local> {
    let shape = setup.shape;
    let cap = Duration::from_secs_f64(opts.seconds);
    // With an idle connection open, no request's connection is ever the last one, so none
    // checkpoints and deletes the WAL on close (what a host with a connection pool would do).
    let holder = if opts.hold_db_open {
        let conn = rusqlite::Connection::open(served_db)?;
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
        Some(conn)
    } else {
        None
    };
    let host = component_spec(setup, "runtime-config.toml", Db::LocalFile(served_db))?.start()?;
    let load = LoadGen::new(host.addr())?;
    warm_up(&load)?;
    eprintln!("verifying the seeded data through HTTP ...");
    let mut failures = Vec::new();
    let checks = match verify::check(&load, shape, &setup.expected) {
        Ok(checks) => checks,
        Err(e) => {
            failures.push(format!(
                "seeded data differs from the component's view: {e:#}"
            ));
            Vec::new()
        }
    };

    let mut locked_seen = host.stdout().len();
    let mut measure = |group: Group, plan: &Plan| {
        eprintln!("{} x{} ...", plan.name, plan.concurrency);
        let m = load.run(plan);
        let mut row = Row::of(group, plan, &m);
        row.db_locked = Some(locked_lines_since(&host, &mut locked_seen));
        row
    };

    let mut rows = Vec::new();
    // Baseline (a): the host's floor.
    for plan in scenarios::floor(opts, cap)
        .iter()
        .filter(|p| opts.wants(&p.name))
    {
        rows.push(measure(Group::HostFloor, plan));
    }
    for plan in reads {
        let mut row = measure(Group::Reads, plan);
        row.sql_p50_ms = profiles
            .get(&plan.scenario)
            .map(|p| p.median.as_secs_f64() * 1000.0);
        rows.push(row);
    }
    if opts.wants("export") {
        let (row, failure) = export(&load, shape.messages, opts);
        rows.push(row);
        failures.extend(failure);
    }
    let mut created = 0;
    for concurrency in [1, 16, 64, 256] {
        let plan = scenarios::ingest(fresh, opts, concurrency, cap);
        if !opts.wants(&plan.name) {
            continue;
        }
        let mut row = measure(Group::Ingest, &plan);
        created += row.statuses.get(&200).copied().unwrap_or(0);
        let ratio = |connections| {
            storage_rates
                .get(&(concurrency, connections))
                .map(|s| row.requests_per_s / s)
        };
        row.storage_ratio = ratio(Connections::PerThread);
        row.per_connection_ratio = ratio(Connections::PerTransaction);
        rows.push(row);
    }
    let duplicates = scenarios::duplicates(shape, opts, 16, cap);
    if opts.wants(&duplicates.name) {
        rows.push(measure(Group::Duplicates, &duplicates));
    }

    // Every 200 from ingest is one new row; duplicates added none.
    failures.extend(total_differs(
        &load,
        shape.messages as usize + created,
        "after ingest",
    )?);
    let db_locked_total = host
        .stdout()
        .lines()
        .filter(|l| l.contains("database is locked"))
        .count();
    host.shutdown();
    drop(holder);
    Ok(Local {
        rows,
        checks,
        failures,
        db_locked_total,
        // Peak memory is the local-file run's: later phases add sqld's client side and a
        // second app.
        peak_rss_kib: crate::report::proc_status_kib("VmHWM"),
    })
}

/// "database is locked" lines the component logged since `seen` (a byte offset, advanced).
pub fn locked_lines_since(host: &Host, seen: &mut usize) -> usize {
    let out = host.stdout();
    let locked = out[*seen..]
        .lines()
        .filter(|l| l.contains("database is locked"))
        .count();
    *seen = out.len();
    locked
}

/// First instantiations and connections; not measured.
pub fn warm_up(load: &LoadGen) -> Result<()> {
    for _ in 0..20 {
        load.fetch(load::Req::get("/health/live"))?;
    }
    Ok(())
}

/// The component on the project's host with `default` at `db`, the secret set, and logs
/// kept in memory only (`Host::stdout`, scanned for "database is locked").
pub fn component_spec(setup: &Setup, config_name: &str, db: Db) -> Result<ServeSpec> {
    ServeSpec::new(
        &setup.repo,
        setup.work.path(),
        config_name,
        db,
        ("webhook-inbox", &setup.wasm),
        HashMap::from([("SPIN_VARIABLE_WEBHOOK_SECRET".to_owned(), SECRET.to_owned())]),
    )
}

/// Errors in the local-file and minimal-write rows: retryable 503s from lock waits under 64+
/// concurrent writers are the documented limit (a NOTE and a target miss); anything else is
/// breakage and fails the run. Storage-baseline failures are SQLite's own, shown only; the
/// libSQL phase judges its own rows.
pub fn row_failures(rows: &[Row]) -> Vec<String> {
    let known_overload =
        |r: &&Row| r.concurrency >= 64 && r.statuses.get(&503).copied().unwrap_or(0) == r.errors;
    for r in rows.iter().filter(|r| known_overload(r) && r.errors > 0) {
        println!(
            "NOTE: {} x{}: {} retryable 503s (lock waits)",
            r.scenario, r.concurrency, r.errors
        );
    }
    rows.iter()
        .filter(|r| r.errors > 0)
        .filter(|r| {
            !matches!(
                r.group,
                Group::Storage | Group::Libsql | Group::LibsqlReads | Group::LibsqlIngest
            )
        })
        .filter(|r| !known_overload(r))
        .map(|r| {
            format!(
                "{} x{}: {} errors (first: {})",
                r.scenario,
                r.concurrency,
                r.errors,
                r.first_error.as_deref().unwrap_or("?")
            )
        })
        .collect()
}

/// What is wrong, if `/stats` does not count exactly `want` messages.
pub fn total_differs(load: &LoadGen, want: usize, when: &str) -> Result<Option<String>> {
    let (status, body) = load.fetch(load::Req::get("/stats"))?;
    let stats: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    Ok((status != 200 || stats["total_messages"] != want).then(|| {
        format!(
            "{when} /stats total_messages = {} (status {status}), expected {want}",
            stats["total_messages"]
        )
    }))
}

/// The 1-minute load average, as text ("?" when unavailable).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// `git describe`-like: the commit, plus a note when the component's sources differ from it
/// (the benchmark builds the working tree).
fn revision(repo: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "an unknown revision".to_owned();
    };
    match git(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "migrations.sql",
        "spin.toml",
    ]) {
        Some(changes) if !changes.is_empty() => {
            format!("{head} plus uncommitted changes in src/, migrations.sql or spin.toml")
        }
        _ => head,
    }
}
