//! webhook-inbox benchmark: builds the component, runs it on the project's wasmtime host over
//! loopback HTTP, and measures ingest, duplicates, reads on a seeded data set, and two
//! baselines (the host's floor, raw SQLite inserts). See `bench/README.md`.

mod baseline;
mod data;
mod explain;
mod load;
mod report;
mod scenarios;
mod seed;
mod sqlite;
mod verify;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use spin_test_host::sqld::Sqld;
use spin_test_host::{Host, HostOptions};

use baseline::Connections;
use data::Shape;
use load::{LoadGen, Plan};
use report::{Row, Target};

const SECRET: &str = "bench-secret";
const STORAGE_GROUP: &str =
    "storage limit (raw SQLite: the component's INSERT, autocommit; conc = threads)";

/// Command-line settings; `--quick` changes the defaults, explicit flags win.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    pub quick: bool,
    #[serde(skip)]
    pub json: Option<PathBuf>,
    pub explain: bool,
    pub messages: u64,
    pub senders: u64,
    pub recipients: u64,
    /// Cap per read scenario (and per floor scenario).
    pub read_requests: usize,
    /// Cap per ingest / duplicate scenario, and per storage baseline.
    pub write_requests: usize,
    /// Time cap per scenario, seconds.
    pub seconds: f64,
    pub read_concurrency: usize,
    /// Diagnostic: keep one idle connection to the served database open all run.
    pub hold_db_open: bool,
    #[serde(skip)]
    pub seed_only: bool,
    /// Only scenarios whose name contains one of these (all when empty).
    pub only: Vec<String>,
}

impl Options {
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| scenario.contains(o.as_str()))
    }
}

const USAGE: &str = "usage: webhook-inbox-bench [--quick] [--json FILE] [--explain]
    [--messages N] [--senders N] [--recipients N] [--read-requests N] [--write-requests N]
    [--seconds S] [--read-concurrency N]

  --quick            small data set and counts (CI); fails on any non-200 answer
  --json FILE        also write every figure to FILE
  --explain          print EXPLAIN QUERY PLAN of each read scenario's SQL
  --messages N       seeded messages (default 1000000; quick 20000)
  --senders N        distinct senders (default 10000; quick 200)
  --recipients N     distinct recipients (default 1000; quick 200)
  --read-requests N  requests per read scenario (default 2000; quick 100)
  --write-requests N requests per ingest scenario (default 20000; quick 400)
  --seconds S        time cap per scenario (default 10; quick 2)
  --read-concurrency N  connections for read scenarios (default 1)
  --only A,B         only the scenarios whose name contains A or B (e.g. storage,/stats,ingest)
  --hold-db-open     diagnostic: keep an idle SQLite connection to the served database open,
                     so no request's connection is the last one (no checkpoint on close)";

fn parse_args() -> Result<Options> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut o = Options {
        quick,
        json: None,
        explain: false,
        messages: if quick { 20_000 } else { 1_000_000 },
        senders: if quick { 200 } else { 10_000 },
        recipients: if quick { 200 } else { 1_000 },
        read_requests: if quick { 100 } else { 2_000 },
        write_requests: if quick { 400 } else { 20_000 },
        seconds: if quick { 2.0 } else { 10.0 },
        read_concurrency: 1,
        hold_db_open: false,
        seed_only: false,
        only: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--quick" => {}
            "--explain" => o.explain = true,
            "--hold-db-open" => o.hold_db_open = true,
            "--seed-only" => o.seed_only = true,
            "--json" => o.json = Some(PathBuf::from(value()?)),
            "--messages" => o.messages = value()?.parse()?,
            "--senders" => o.senders = value()?.parse()?,
            "--recipients" => o.recipients = value()?.parse()?,
            "--read-requests" => o.read_requests = value()?.parse()?,
            "--write-requests" => o.write_requests = value()?.parse()?,
            "--seconds" => o.seconds = value()?.parse()?,
            "--read-concurrency" => o.read_concurrency = value()?.parse()?,
            "--only" => o.only = value()?.split(',').map(str::to_owned).collect(),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if o.senders == 0 || o.recipients == 0 || o.messages < o.senders {
        bail!("need messages >= senders > 0 and recipients > 0");
    }
    Ok(o)
}

#[derive(Serialize)]
struct Output<'a> {
    options: &'a Options,
    /// The commit the component was built from, and whether its sources had local changes.
    revision: &'a str,
    wasm_bytes: u64,
    seeding: Seeding,
    /// VmHWM of this process: host, instances, SQLite, load generator (seeding runs in a
    /// child process).
    peak_rss_kib: Option<u64>,
    db_locked_total: usize,
    /// 1-minute load average at start and end: other work on the machine skews the figures.
    load_average: [String; 2],
    checks: Vec<String>,
    rows: &'a [Row],
    targets: &'a [Target],
    failures: &'a [String],
}

#[derive(Serialize, Clone)]
struct Seeding {
    reused: bool,
    seconds: f64,
    rows_per_s: Option<f64>,
    db_bytes: u64,
    path: PathBuf,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("webhook-inbox-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One storage baseline: its report row and its insert rate.
fn storage_baseline(
    db: &Path,
    threads: usize,
    connections: Connections,
    messages: Arc<Vec<webhook_inbox::payload::NewMessage>>,
    cap: Duration,
) -> Result<(Row, f64)> {
    let name = match connections {
        Connections::PerThread => "insert, 1 row per transaction",
        Connections::PerTransaction => "insert, new connection per transaction (as in Spin)",
    };
    eprintln!("storage baseline: {name}, {threads} thread(s) ...");
    let m = baseline::insert(db, threads, connections, messages, cap)?;
    let mut row = Row::new(STORAGE_GROUP, name, threads, &m);
    // A failed transaction here is SQLite's own "database is locked" (the busy handler gave
    // up), not an answer of the component: shown, but not a benchmark failure.
    row.db_locked = Some(m.statuses.get(&503).copied().unwrap_or(0));
    Ok((row, m.rate()))
}

/// Everything; `Ok(false)` when a scenario had errors or a check failed.
fn run() -> Result<bool> {
    let opts = parse_args()?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("bench/ has a parent")?;
    let shape = Shape {
        messages: opts.messages,
        senders: opts.senders,
        recipients: opts.recipients,
    };
    if opts.seed_only {
        let seeded = seed::build_cache(repo, shape)?;
        eprintln!(
            "seeded {} rows in {:.1} s ({:.0} rows/s)",
            shape.messages,
            seeded.seconds,
            shape.messages as f64 / seeded.seconds
        );
        return Ok(true);
    }

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
    let expected = expected.join().expect("expectations thread");

    // Everything this run writes goes to copies; the cached database stays pristine.
    let work = tempfile::tempdir()?;
    let served_db = work.path().join("inbox.db");
    std::fs::copy(&seeded.path, &served_db)?;
    let cap = Duration::from_secs_f64(opts.seconds);
    let mut fresh = scenarios::Fresh::new(shape);
    let mut rows = Vec::new();

    // Baseline (b): the storage limit, on its own copy of the same data set.
    let mut storage_rate = HashMap::new();
    if opts.wants("storage") {
        let storage_db = work.path().join("storage-baseline.db");
        std::fs::copy(&seeded.path, &storage_db)?;
        for (threads, connections) in [
            (1, Connections::PerThread),
            (16, Connections::PerThread),
            (1, Connections::PerTransaction),
            (16, Connections::PerTransaction),
        ] {
            let messages = Arc::new(fresh.parsed(opts.write_requests));
            let (row, rate) = storage_baseline(&storage_db, threads, connections, messages, cap)?;
            storage_rate.insert((threads, connections), rate);
            rows.push(row);
        }
        std::fs::remove_file(&storage_db)?;
    }

    let mut reads = scenarios::reads(shape, &opts);
    reads.retain(|r| opts.wants(&r.name));
    // The SQL of every read scenario, natively, before the host adds any load.
    let mut profiles = HashMap::new();
    for r in &reads {
        let targets: Vec<String> = (0..5).map(|i| (r.source)(i).target).collect();
        let runs = if opts.quick { 1 } else { 3 };
        let budget = Duration::from_secs(3);
        let profile = explain::profile(&served_db, &targets, runs, budget)?;
        profiles.insert(r.name.clone(), profile);
    }

    // With an idle connection open, no request's connection is ever the last one, so none
    // checkpoints and deletes the WAL on close (what a host with a connection pool would do).
    let holder = if opts.hold_db_open {
        let conn = rusqlite::Connection::open(&served_db)?;
        conn.query_row("SELECT messages FROM inbox_totals", [], |_| Ok(()))?;
        Some(conn)
    } else {
        None
    };
    let host = start_host(repo, work.path(), Served::LocalFile(&served_db), &wasm)?;
    let load = LoadGen::new(host.addr())?;
    // First instantiations and connections; not measured.
    for _ in 0..20 {
        load.fetch(load::Req::get("/health/live"))?;
    }
    eprintln!("verifying the seeded data through HTTP ...");
    let mut failures = Vec::new();
    let checks = match verify::check(&load, shape, &expected) {
        Ok(checks) => checks,
        Err(e) => {
            failures.push(format!(
                "seeded data differs from the component's view: {e:#}"
            ));
            Vec::new()
        }
    };

    let mut locked_seen = host.stdout().len();
    let mut measure = |group: &'static str, plan: &Plan| {
        eprintln!("{} x{} ...", plan.name, plan.concurrency);
        let m = load.run(plan);
        let out = host.stdout();
        let locked = out[locked_seen..]
            .lines()
            .filter(|l| l.contains("database is locked"))
            .count();
        locked_seen = out.len();
        let mut row = Row::new(group, &plan.name, plan.concurrency, &m);
        row.db_locked = Some(locked);
        row
    };

    // Baseline (a): the host's floor.
    for plan in scenarios::floor(&opts, cap)
        .iter()
        .filter(|p| opts.wants(&p.name))
    {
        rows.push(measure("host floor", plan));
    }
    for plan in &reads {
        let mut row = measure("reads (seeded data set)", plan);
        row.sql_p50_ms = profiles
            .get(&plan.name)
            .map(|p| p.median.as_secs_f64() * 1000.0);
        rows.push(row);
    }
    let mut created = 0;
    for concurrency in [1, 16, 64, 256] {
        let plan = scenarios::ingest(&mut fresh, &opts, concurrency, cap);
        if !opts.wants(&plan.name) {
            continue;
        }
        let mut row = measure("ingest (unique messages)", &plan);
        created += row.statuses.get(&200).copied().unwrap_or(0);
        let ratio = |connections| {
            storage_rate
                .get(&(concurrency, connections))
                .map(|s| row.requests_per_s / s)
        };
        row.storage_ratio = ratio(Connections::PerThread);
        row.per_connection_ratio = ratio(Connections::PerTransaction);
        rows.push(row);
    }
    let duplicates = scenarios::duplicates(shape, &opts, 16, cap);
    if opts.wants(&duplicates.name) {
        rows.push(measure("duplicates (already stored)", &duplicates));
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
    // Peak memory is the local-file run's: the libSQL phase below adds sqld's client side.
    let peak_rss_kib = report::proc_status_kib("VmHWM");

    if opts.wants("libSQL") {
        let (libsql_rows, libsql_failures) = libsql_phase(
            repo,
            work.path(),
            &seeded.path,
            &wasm,
            shape,
            &opts,
            &mut fresh,
        )?;
        rows.extend(libsql_rows);
        failures.extend(libsql_failures);
    }

    // Retryable 503s from lock waits under 64+ concurrent writers are the documented limit
    // (reported as a target miss above); anything else is breakage and fails the run.
    let known_overload = |r: &&report::Row| {
        r.concurrency >= 64 && r.statuses.get(&503).copied().unwrap_or(0) == r.errors
    };
    for r in rows.iter().filter(|r| known_overload(r) && r.errors > 0) {
        println!(
            "NOTE: {} x{}: {} retryable 503s (lock waits)",
            r.scenario, r.concurrency, r.errors
        );
    }
    for r in rows
        .iter()
        .filter(|r| r.errors > 0 && r.group != STORAGE_GROUP && !known_overload(r))
    {
        failures.push(format!(
            "{} x{}: {} errors (first: {})",
            r.scenario,
            r.concurrency,
            r.errors,
            r.first_error.as_deref().unwrap_or("?")
        ));
    }

    println!();
    println!(
        "webhook-inbox benchmark ({} mode): {} seeded messages, {} senders, {} recipients; \
         per scenario at most {} requests (ingest {}) or {} s",
        if opts.quick { "quick" } else { "full" },
        shape.messages,
        shape.senders,
        shape.recipients,
        opts.read_requests,
        opts.write_requests,
        opts.seconds
    );
    report::print_table(&rows);
    println!();
    println!(
        "component .wasm: {wasm_bytes} bytes ({}), built from {revision}",
        wasm.display()
    );
    match (seeding.reused, seeding.rows_per_s) {
        (false, Some(rate)) => println!(
            "seeding: {:.1} s ({rate:.0} rows/s), database {} bytes",
            seeding.seconds, seeding.db_bytes
        ),
        _ => println!(
            "seeding: reused cached database ({} bytes)",
            seeding.db_bytes
        ),
    }
    println!(
        "peak RSS: {} (VmHWM of this process, which runs the host, every component instance, \
         SQLite and the load generator; seeding ran in a child process)",
        peak_rss_kib.map_or("n/a".to_owned(), |k| format!(
            "{:.1} MiB",
            k as f64 / 1024.0
        )),
    );
    println!(
        "host instance allocator: {}",
        if spin_test_host::pooling_allocator() {
            "pooling (as Spin's default)"
        } else {
            "on-demand (pooling unavailable on this machine)"
        }
    );
    if opts.hold_db_open {
        println!("diagnostic --hold-db-open: an idle connection kept the database open");
    }
    println!("'database is locked' log lines in total: {db_locked_total}");
    let load_after = load_average();
    println!(
        "load average (1 min) at start {load_before}, at end {load_after}, on {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("seeded data checked through HTTP:");
    for c in &checks {
        println!("  {c}");
    }
    let targets = scenarios::targets(&rows);
    println!("targets (reported, not enforced):");
    report::print_targets(&targets);
    if opts.explain {
        println!();
        for r in &reads {
            if let Some(p) = profiles.get(&r.name) {
                println!("{} -- {}", r.name, (r.source)(0).target);
                for (sql, plan) in &p.plans {
                    println!("  SQL: {sql}");
                    for line in plan {
                        println!("    {line}");
                    }
                }
            }
        }
    }
    println!(
        "run time after build: {:.1} s",
        began.elapsed().as_secs_f64()
    );

    if let Some(path) = &opts.json {
        let out = Output {
            options: &opts,
            revision: &revision,
            wasm_bytes,
            seeding,
            peak_rss_kib,
            db_locked_total,
            load_average: [load_before, load_after],
            checks,
            rows: &rows,
            targets: &targets,
            failures: &failures,
        };
        std::fs::write(path, serde_json::to_string_pretty(&out)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    for f in &failures {
        println!("FAILED: {f}");
    }
    Ok(failures.is_empty())
}

const LIBSQL_GROUP: &str = "libSQL (sqld 0.24.32)";

/// The core scenarios once more with `default` on a libSQL server (sqld serving a copy of
/// the same seeded set), in the same run as the local file: pages, `/stats`, and ingest at 1
/// (and, outside quick mode, 16) connections, whose 200s must all show up in `/stats`.
fn libsql_phase(
    repo: &Path,
    dir: &Path,
    seeded: &Path,
    wasm: &Path,
    shape: Shape,
    opts: &Options,
    fresh: &mut scenarios::Fresh,
) -> Result<(Vec<Row>, Vec<String>)> {
    eprintln!("starting sqld on a copy of the data set ...");
    let sqld = Sqld::serving_copy_of(seeded);
    let host = start_host(repo, dir, Served::Libsql(&sqld), wasm)?;
    let load = LoadGen::new(host.addr())?;
    for _ in 0..20 {
        load.fetch(load::Req::get("/health/live"))?;
    }
    let cap = Duration::from_secs_f64(opts.seconds);
    let mut plans: Vec<Plan> = scenarios::reads(shape, opts)
        .into_iter()
        .filter(|p| {
            [
                "GET /messages (first page)",
                "GET /messages?limit=30",
                "GET /messages?limit=100",
                "GET /messages?from=",
                "GET /stats",
            ]
            .contains(&p.name.as_str())
        })
        .collect();
    plans.push(scenarios::ingest(fresh, opts, 1, cap));
    // Not in CI's quick run: sqld 0.24.32 on 2 cores was seen to spin at 100%+ CPU after
    // 16 concurrent writers, answering nothing for minutes (see the README).
    if !opts.quick {
        plans.push(scenarios::ingest(fresh, opts, 16, cap));
    }
    let mut rows = Vec::new();
    let mut created = 0;
    for plan in &plans {
        eprintln!("libSQL: {} x{} ...", plan.name, plan.concurrency);
        let m = load.run(plan);
        let row = Row::new(LIBSQL_GROUP, &plan.name, plan.concurrency, &m);
        if plan.name.starts_with("POST") {
            created += row.statuses.get(&200).copied().unwrap_or(0);
        }
        rows.push(row);
    }
    let mut failures: Vec<String> = total_differs(
        &load,
        shape.messages as usize + created,
        "libSQL: after ingest",
    )?
    .into_iter()
    .collect();
    for r in rows.iter().filter(|r| r.errors > 0) {
        // 503s past the lock budget are the documented overload answer, not breakage.
        let overload = r.statuses.get(&503).copied().unwrap_or(0) == r.errors;
        if overload {
            println!(
                "NOTE: libSQL {} x{}: {} retryable 503s",
                r.scenario, r.concurrency, r.errors
            );
        } else {
            failures.push(format!(
                "libSQL: {} x{}: {} errors (first: {})",
                r.scenario,
                r.concurrency,
                r.errors,
                r.first_error.as_deref().unwrap_or("?")
            ));
        }
    }
    host.shutdown();
    Ok((rows, failures))
}

/// What is wrong, if `/stats` does not count exactly `want` messages.
fn total_differs(load: &LoadGen, want: usize, when: &str) -> Result<Option<String>> {
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
fn load_average() -> String {
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

/// The component on the project's host, on `db`, with the secret set and logs kept in memory
/// only (`Host::stdout`, scanned for "database is locked").
/// Where the served `default` database lives.
enum Served<'a> {
    LocalFile(&'a Path),
    Libsql(&'a Sqld),
}

fn start_host(repo: &Path, dir: &Path, db: Served, wasm: &Path) -> Result<Host> {
    let (file, database) = match db {
        Served::LocalFile(path) => (
            "runtime-config.toml",
            format!("type = \"spin\"\npath = {:?}\n", path.display().to_string()),
        ),
        Served::Libsql(sqld) => (
            "runtime-config-libsql.toml",
            format!(
                "type = \"libsql\"\nurl = {:?}\ntoken = \"bench\"\n",
                sqld.url()
            ),
        ),
    };
    let config = dir.join(file);
    std::fs::write(&config, format!("[sqlite_database.default]\n{database}"))?;
    let mut opts = HostOptions::new(repo);
    opts.runtime_config = Some(config);
    opts.base_dir = Some(dir.to_path_buf());
    opts.env = Some(HashMap::from([(
        "SPIN_VARIABLE_WEBHOOK_SECRET".to_owned(),
        SECRET.to_owned(),
    )]));
    opts.log_files = false;
    opts.echo_logs = false;
    opts.component_sources
        .insert("webhook-inbox".to_owned(), wasm.to_path_buf());
    Host::start(opts)
}
