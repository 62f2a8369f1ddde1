//! webhook-inbox benchmark: builds the component, runs it on the project's wasmtime host over
//! loopback HTTP, and measures ingest, duplicates, reads on a seeded data set, and baselines
//! (the host's floor, raw SQLite inserts, and a minimal-write component on the same host,
//! with its call counts, WAL bytes and peak RSS beside the component's), the same on a
//! libSQL server against the minimal write and read there, the data lifecycle (retention
//! purges, and what they cost ingest), and the pull feed (a consumer's throughput, and what
//! one costs ingest). See `bench/README.md`.

mod baseline;
mod data;
mod explain;
mod feed;
mod fixture;
mod libsql;
mod lifecycle;
mod load;
mod phases;
mod report;
mod scenarios;
mod seed;
mod serve;
mod sqlite;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use data::Shape;
use phases::{Seeding, Setup};
use report::{Row, Target};

const SECRET: &str = "bench-secret";

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
    /// Rounds of the minimal-write comparison, of the lifecycle and of the feed ingest figures.
    pub rounds: usize,
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
    [--seconds S] [--read-concurrency N] [--rounds N]

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
  --rounds N         rounds of the minimal-write comparison, of the lifecycle and of the
                     feed ingest figures, order alternating; targets are judged on their median
                     (default 5; quick 1)
  --only A,B         only the scenarios whose name contains A or B (e.g. storage,/stats,ingest);
                     phases: storage, libSQL (webhook-inbox on sqld vs the minimal write and
                     read on sqld, sqld's CPU after load, mixed reads), minimal-write (the comparison, call counts and
                     WAL bytes), memory (peak RSS of child processes), lifecycle (purge
                     rate, ingest with retention off / on / purging), feed (pull throughput
                     from offset 0, ingest x16 without / with one consumer pulling)
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
        rounds: if quick { 1 } else { 5 },
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
            "--rounds" => o.rounds = value()?.parse::<usize>()?.max(1),
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
    seeding: &'a Seeding,
    /// VmHWM of this process after the local-file phase: host, instances, SQLite, load
    /// generator (seeding runs in a child process).
    peak_rss_kib: Option<u64>,
    db_locked_total: usize,
    /// 1-minute load average at start and end: other work on the machine skews the figures.
    load_average: [String; 2],
    checks: &'a [String],
    rows: &'a [Row],
    /// The minimal-write comparison: rounds, host calls per webhook, WAL bytes per message,
    /// peak RSS of the serving processes.
    minimal_write: &'a fixture::Figures,
    /// Retention: the purge loop, and ingest x16 with retention off / on / purging by round.
    lifecycle: &'a lifecycle::Figures,
    /// libSQL against the minimal write / read on libSQL: rounds, sqld's CPU after the load,
    /// mixed reads.
    libsql: &'a libsql::Figures,
    /// The pull feed: a consumer from offset 0, and ingest x16 without / with a consumer.
    feed: &'a feed::Figures,
    targets: &'a [Target],
    failures: &'a [String],
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        // Internal: a serving child of the memory phase.
        [flag, spec] if flag == "--serve-child" => serve::child_main(spec).map(|()| true),
        _ => run(),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("webhook-inbox-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
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
        return seed_only(repo, shape);
    }

    let setup = phases::setup(repo, shape)?;
    let mut fresh = scenarios::Fresh::new(shape);
    let mut rows = Vec::new();
    let mut failures = Vec::new();

    let storage_rates = if opts.wants("storage") {
        let (storage_rows, rates) = phases::storage(&setup, &opts, &mut fresh)?;
        rows.extend(storage_rows);
        rates
    } else {
        Default::default()
    };

    let served_db = setup.copy_of_seeded("inbox.db")?;
    let mut reads = scenarios::reads(shape, &opts);
    reads.retain(|r| opts.wants(&r.name));
    let profiles = phases::profile_reads(&served_db, &reads, &opts)?;
    let local = phases::local_file(
        &setup,
        &opts,
        &mut fresh,
        &served_db,
        &reads,
        &profiles,
        &storage_rates,
    )?;
    rows.extend(local.rows);
    failures.extend(local.failures);

    let mut libsql = libsql::Figures::default();
    if opts.wants("libSQL") {
        let (libsql_rows, figures, libsql_failures) = libsql::run(&setup, &opts, &mut fresh)?;
        rows.extend(libsql_rows);
        libsql = figures;
        failures.extend(libsql_failures);
    }

    let (minimal, lifecycle) = comparisons(&setup, &opts, &mut fresh, &mut rows, &mut failures)?;

    let mut feed = feed::Figures::default();
    let mut feed_failed = false;
    if opts.wants("feed") {
        let (feed_rows, figures, feed_failures) = feed::run(&setup, &opts, &mut fresh)?;
        feed_failed = !feed_failures.is_empty() || feed_rows.iter().any(|r| r.errors > 0);
        rows.extend(feed_rows);
        feed = figures;
        failures.extend(feed_failures);
    }

    failures.extend(phases::row_failures(&rows));
    let mut targets = scenarios::targets(&rows, &minimal, &lifecycle);
    targets.extend(libsql::targets(&libsql));
    targets.extend(feed::targets(&feed, feed_failed));
    let load_after = phases::load_average();
    print_report(
        &setup,
        &opts,
        &rows,
        &local.checks,
        local.peak_rss_kib,
        local.db_locked_total,
        &minimal,
        &lifecycle,
        &libsql,
        &feed,
        &targets,
        &profiles,
        &reads,
        &load_after,
    );

    if let Some(path) = &opts.json {
        let out = Output {
            options: &opts,
            revision: &setup.revision,
            wasm_bytes: setup.wasm_bytes,
            seeding: &setup.seeding,
            peak_rss_kib: local.peak_rss_kib,
            db_locked_total: local.db_locked_total,
            load_average: [setup.load_before.clone(), load_after],
            checks: &local.checks,
            rows: &rows,
            minimal_write: &minimal,
            lifecycle: &lifecycle,
            libsql: &libsql,
            feed: &feed,
            targets: &targets,
            failures: &failures,
        };
        write_json(path, &out)?;
    }
    for f in &failures {
        println!("FAILED: {f}");
    }
    Ok(failures.is_empty())
}

/// `--seed-only`: builds the cached data set and says how long it took.
fn seed_only(repo: &Path, shape: Shape) -> Result<bool> {
    let seeded = seed::build_cache(repo, shape)?;
    eprintln!(
        "seeded {} rows in {:.1} s ({:.0} rows/s)",
        shape.messages,
        seeded.seconds,
        shape.messages as f64 / seeded.seconds
    );
    Ok(true)
}

fn write_json(path: &Path, out: &Output) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(out)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("figures written to {}", path.display());
    Ok(())
}

/// The phases that compare with other servings: the minimal-write component (paired
/// rounds, and peak memory in child processes) and the data lifecycle's servings.
fn comparisons(
    setup: &Setup,
    opts: &Options,
    fresh: &mut scenarios::Fresh,
    rows: &mut Vec<Row>,
    failures: &mut Vec<String>,
) -> Result<(fixture::Figures, lifecycle::Figures)> {
    let mut minimal = fixture::Figures::default();
    if opts.wants("minimal-write") || opts.wants("memory") {
        let apps = fixture::Apps::prepare(setup)?;
        if opts.wants("minimal-write") {
            let (compare_rows, figures, compare_failures) =
                fixture::compare(setup, &apps, opts, fresh)?;
            rows.extend(compare_rows);
            minimal = figures;
            failures.extend(compare_failures);
        }
        if opts.wants("memory") {
            let (memory_rows, memory) = fixture::memory(&apps, opts, fresh)?;
            rows.extend(memory_rows);
            minimal.memory = Some(memory);
        }
    }

    let mut lifecycle = lifecycle::Figures::default();
    if opts.wants("lifecycle") {
        let (lifecycle_rows, figures, lifecycle_failures) = lifecycle::run(setup, opts, fresh)?;
        rows.extend(lifecycle_rows);
        lifecycle = figures;
        failures.extend(lifecycle_failures);
    }

    Ok((minimal, lifecycle))
}

/// The table, the run's facts, the minimal-write figures, the targets, and (with
/// `--explain`) the query plans.
#[allow(clippy::too_many_arguments)]
fn print_report(
    setup: &Setup,
    opts: &Options,
    rows: &[Row],
    checks: &[String],
    peak_rss_kib: Option<u64>,
    db_locked_total: usize,
    minimal: &fixture::Figures,
    lifecycle: &lifecycle::Figures,
    libsql: &libsql::Figures,
    feed: &feed::Figures,
    targets: &[Target],
    profiles: &std::collections::HashMap<scenarios::Scenario, explain::SqlProfile>,
    reads: &[load::Plan],
    load_after: &str,
) {
    let shape = setup.shape;
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
    report::print_table(rows);
    println!();
    println!(
        "component .wasm: {} bytes ({}), built from {}",
        setup.wasm_bytes,
        setup.wasm.display(),
        setup.revision
    );
    let seeding = &setup.seeding;
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
        "peak RSS: {} (VmHWM of this process after the local-file phase: the host, every \
         component instance, SQLite and the load generator; seeding ran in a child process)",
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
    println!(
        "load average (1 min) at start {}, at end {load_after}, on {} CPUs",
        setup.load_before,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    libsql::print(libsql);
    fixture::print(minimal);
    lifecycle::print(lifecycle);
    feed::print(feed);
    println!("seeded data checked through HTTP:");
    for c in checks {
        println!("  {c}");
    }
    println!("targets (reported, not enforced):");
    report::print_targets(targets);
    if opts.explain {
        println!();
        for r in reads {
            if let Some(p) = profiles.get(&r.scenario) {
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
        setup.began.elapsed().as_secs_f64()
    );
}
