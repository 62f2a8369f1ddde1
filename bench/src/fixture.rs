//! The minimal-write component (`bench/minimal-write`): the least a Spin component can do to
//! store a webhook, served by the same host as webhook-inbox, so the component's ingest is
//! priced as a share of it in the same run. Also the per-webhook figures that explain the
//! gap: guest -> host calls, WAL bytes per stored message, and peak RSS of the serving
//! process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use spin_test_host::{CallCounts, Host};

use crate::load::{LoadGen, Measured, Plan};
use crate::phases::{self, Setup};
use crate::report::Row;
use crate::scenarios::{self, Fresh, Group, Scenario};
use crate::serve::{Db, ServeSpec};
use crate::Options;

/// The fixture's one table; the benchmark creates it (in WAL mode on a local file) before
/// serving.
pub const SCHEMA: &str = "CREATE TABLE bodies (body BLOB NOT NULL)";
/// Connections of every comparison here: the figure is at 16.
const CONCURRENCY: usize = 16;

/// Everything this module measured, for the report and the JSON file.
#[derive(Debug, Default, Serialize)]
pub struct Figures {
    /// Ingest x16, alternating component / minimal-write.
    pub rounds: Vec<Round>,
    pub calls_per_webhook: Option<CallsPerWebhook>,
    pub wal_bytes_per_message: Option<WalBytes>,
    pub instance_memory: Option<InstanceMemory>,
    pub memory: Option<Memory>,
}

/// The largest linear memory one instance grew to during the ingest rounds, in bytes: what
/// the pooling allocator resets after every request (memset up to
/// `linear_memory_keep_resident`, 2 MiB as Spin sets it; returned to the kernel beyond).
#[derive(Debug, Serialize)]
pub struct InstanceMemory {
    pub component: u64,
    pub minimal_write: u64,
}

/// The component's shares of the minimal write over the rounds.
pub struct Shares {
    pub median: f64,
    pub low: f64,
    pub high: f64,
    pub rounds: usize,
}

impl Shares {
    /// Median, lowest and highest of per-round shares; `None` without rounds.
    pub fn of(mut shares: Vec<f64>) -> Option<Shares> {
        shares.sort_by(f64::total_cmp);
        let n = shares.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => shares[n / 2],
            _ => (shares[n / 2 - 1] + shares[n / 2]) / 2.0,
        };
        Some(Shares {
            median,
            low: shares[0],
            high: shares[n - 1],
            rounds: n,
        })
    }

    /// "52% (47%-57% over 5 rounds)": the median, then the range it came from.
    pub fn percent(&self) -> String {
        format!(
            "{:.0}% ({:.0}%-{:.0}% over {} rounds)",
            self.median * 100.0,
            self.low * 100.0,
            self.high * 100.0,
            self.rounds
        )
    }

    /// "0.52 (0.47-0.57 over 5 rounds)", or with `suffix` "x" "1.52x (1.47x-1.57x over ...)".
    pub fn ratio(&self, suffix: &str) -> String {
        format!(
            "{:.2}{suffix} ({:.2}{suffix}-{:.2}{suffix} over {} round{})",
            self.median,
            self.low,
            self.high,
            self.rounds,
            if self.rounds == 1 { "" } else { "s" }
        )
    }
}

impl Figures {
    pub fn shares(&self) -> Option<Shares> {
        Shares::of(self.rounds.iter().map(|r| r.share).collect())
    }
}

#[derive(Debug, Serialize)]
pub struct Round {
    pub round: usize,
    pub component_per_s: f64,
    pub minimal_write_per_s: f64,
    /// component / minimal-write.
    pub share: f64,
    pub component_cpu: Option<CpuUse>,
    pub minimal_write_cpu: Option<CpuUse>,
}

impl Round {
    /// minimal-write's CPU per request / the component's: the share the component would
    /// reach if the rate followed CPU alone. Below it, the rest of the gap is waiting.
    pub fn cpu_share(&self) -> Option<f64> {
        let (c, m) = (
            self.component_cpu.as_ref()?,
            self.minimal_write_cpu.as_ref()?,
        );
        Some(m.per_request_us / c.per_request_us.max(1e-9))
    }
}

/// What one arm's round cost this process (the host, the instances, SQLite and the load
/// generator) in CPU.
#[derive(Debug, Serialize)]
pub struct CpuUse {
    pub per_request_us: f64,
    /// Share of the machine's cores busy.
    pub busy: f64,
}

impl CpuUse {
    /// `None` where the process's CPU time could not be read.
    fn of(m: &Measured, cores: usize) -> Option<CpuUse> {
        let cpu = m.cpu?.as_secs_f64();
        Some(CpuUse {
            per_request_us: m.cpu_per_request()?.as_secs_f64() * 1e6,
            busy: cpu / (m.elapsed.as_secs_f64() * cores.max(1) as f64).max(1e-9),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct CallsPerWebhook {
    pub component: PerRequest,
    pub minimal_write: PerRequest,
}

/// A host's call tally over an ingest run, divided by the instances it ran.
#[derive(Debug, Serialize)]
pub struct PerRequest {
    pub instances: u64,
    pub sqlite_open: f64,
    pub sqlite_execute: f64,
    pub sqlite_counters: f64,
    pub sqlite_close: f64,
    pub variables_get: f64,
    /// The raw counts behind the averages.
    pub totals: CallCounts,
}

impl PerRequest {
    fn of(c: CallCounts) -> PerRequest {
        let per = |n: u64| n as f64 / c.instances.max(1) as f64;
        PerRequest {
            instances: c.instances,
            sqlite_open: per(c.sqlite_open),
            sqlite_execute: per(c.sqlite_execute),
            sqlite_counters: per(c.sqlite_counters),
            sqlite_close: per(c.sqlite_close),
            variables_get: per(c.variables_get),
            totals: c,
        }
    }

    pub fn summary(&self) -> String {
        let t = &self.totals;
        let per = |n: u64| per(n, t.instances);
        let mut s = format!(
            "sqlite open {}, execute {}, variables get {}",
            per(t.sqlite_open),
            per(t.sqlite_execute),
            per(t.variables_get)
        );
        if t.sqlite_counters > 0 {
            s.push_str(&format!(", changes/rowid {}", per(t.sqlite_counters)));
        }
        s.push_str(&format!(" (over {} requests)", self.instances));
        s
    }
}

/// `n` per request: a whole number when exact, else three decimals (an occasional extra
/// call, e.g. a retry, must not round away).
fn per(n: u64, requests: u64) -> String {
    if requests == 0 {
        "n/a".to_owned()
    } else if n.is_multiple_of(requests) {
        (n / requests).to_string()
    } else {
        format!("{:.3}", n as f64 / requests as f64)
    }
}

#[derive(Debug, Serialize)]
pub struct WalBytes {
    pub component: f64,
    pub minimal_write: f64,
    /// component / minimal-write.
    pub ratio: f64,
    /// Messages sent to each, at 16 connections.
    pub messages: usize,
}

#[derive(Debug, Serialize)]
pub struct Memory {
    /// VmHWM of a child process serving webhook-inbox under ingest x16, KiB.
    pub component_ingest_kib: Option<u64>,
    /// The same for the minimal-write component.
    pub fixture_ingest_kib: Option<u64>,
    /// webhook-inbox serving only `/health/live` x16 (its no-op), KiB.
    pub component_noop_kib: Option<u64>,
    pub requests: usize,
}

/// The fixture built, and where its database and the component's copy live.
pub struct Apps {
    fixture: ServeSpec,
    fixture_db: PathBuf,
    component: ServeSpec,
    component_db: PathBuf,
}

impl Apps {
    /// Builds the fixture (its manifest's build command, once), creates its database, and
    /// copies the seeded set for the component.
    pub fn prepare(setup: &Setup) -> Result<Apps> {
        let (app_dir, wasm) = build_fixture(setup)?;
        let dir = setup.work.path();
        let fixture_db = dir.join("minimal-write.db");
        create_db(&fixture_db)?;
        let fixture = ServeSpec::new(
            &app_dir,
            dir,
            "runtime-config-minimal-write.toml",
            Db::LocalFile(&fixture_db),
            ("minimal-write", &wasm),
            HashMap::new(),
        )?;
        let component_db = setup.copy_of_seeded("inbox-vs-minimal-write.db")?;
        let component = phases::component_spec(
            setup,
            "runtime-config-vs-minimal-write.toml",
            Db::LocalFile(&component_db),
        )?;
        Ok(Apps {
            fixture,
            fixture_db,
            component,
            component_db,
        })
    }
}

/// Builds the fixture (its manifest's build command): its app dir and its `.wasm`.
pub fn build_fixture(setup: &Setup) -> Result<(PathBuf, PathBuf)> {
    let app_dir = setup.repo.join("bench/minimal-write");
    eprintln!("building the minimal-write component ...");
    let wasm = spin_test_host::build_component(&app_dir)?;
    Ok((app_dir, wasm))
}

/// A fresh WAL database with the fixture's one table.
fn create_db(path: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let conn = rusqlite::Connection::open(path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    ensure!(mode == "wal", "{}: journal_mode {mode}", path.display());
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// One served app, in this process, with its load generator.
pub struct Served {
    pub host: Host,
    pub load: LoadGen,
    /// 200 answers so far (rows it must hold).
    pub stored: usize,
}

impl Served {
    pub fn start(spec: &ServeSpec) -> Result<Served> {
        let host = spec.start()?;
        let load = LoadGen::new(host.addr())?;
        phases::warm_up(&load)?;
        Ok(Served {
            host,
            load,
            stored: 0,
        })
    }

    pub fn run(&mut self, plan: &Plan) -> Measured {
        eprintln!("{} x{} ...", plan.name, plan.concurrency);
        let m = self.load.run(plan);
        self.stored += m.statuses.get(&200).copied().unwrap_or(0);
        m
    }

    /// The call tally once the last instances have ended (a response can complete before its
    /// instance has closed its connection).
    fn settled_calls(&self) -> CallCounts {
        std::thread::sleep(Duration::from_millis(200));
        self.host.calls()
    }
}

/// The comparison: ingest x16 of unique messages, alternating webhook-inbox and the
/// minimal-write component (`--rounds` rounds, five by default), each on its own host in
/// this process; the host's call tally over the component's and the fixture's rounds; then
/// WAL bytes per stored message, with a reader held open. Returns the table rows, the
/// figures, and failures (a row count that does not match the 200s).
pub fn compare(
    setup: &Setup,
    apps: &Apps,
    opts: &Options,
    fresh: &mut Fresh,
) -> Result<(Vec<Row>, Figures, Vec<String>)> {
    let mut component = Served::start(&apps.component)?;
    let mut fixture = Served::start(&apps.fixture)?;
    // The fixture stores every request, the warm-up's included.
    fixture.stored = 20;
    let rounds = opts.rounds;
    let cap = Duration::from_secs_f64(opts.seconds * 2.0);
    // Quick mode's 400 writes take a third of a second at x16: too noisy for a ratio.
    let count = opts
        .write_requests
        .max(if opts.quick { 1_000 } else { CONCURRENCY * 2 });

    let mut rows = Vec::new();
    let mut figures = Figures::default();
    let mut locked_seen = component.host.stdout().len();
    let (component_before, fixture_before) = (component.host.calls(), fixture.host.calls());
    component.host.reset_peak_instance_memory();
    fixture.host.reset_peak_instance_memory();
    let mut component_calls = CallCounts::default();
    let mut fixture_calls = CallCounts::default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for round in 1..=rounds {
        // Fresh bodies every round, of the same kind for both; who goes first alternates, so
        // a machine growing busier or quieter during the run favours neither.
        let plans = [
            scenarios::ingest_as(Scenario::Ingest, fresh, count, CONCURRENCY, cap),
            scenarios::ingest_as(Scenario::MinimalWriteIngest, fresh, count, CONCURRENCY, cap),
        ];
        let mut measured: [Option<Measured>; 2] = Default::default();
        for arm in (0..2).map(|i| (i + round) % 2) {
            let served = if arm == 0 {
                &mut component
            } else {
                &mut fixture
            };
            measured[arm] = Some(served.run(&plans[arm]));
            if round == rounds && arm == 0 {
                component_calls = component.settled_calls().since(&component_before);
            } else if round == rounds && arm == 1 {
                fixture_calls = fixture.settled_calls().since(&fixture_before);
            }
        }
        let [Some(c), Some(f)] = measured else {
            unreachable!("every arm runs once per round");
        };
        let mut c_row = Row::of(Group::MinimalWrite, &plans[0], &c);
        c_row.db_locked = Some(phases::locked_lines_since(
            &component.host,
            &mut locked_seen,
        ));
        let f_row = Row::of(Group::MinimalWrite, &plans[1], &f);
        let share = c_row.requests_per_s / f_row.requests_per_s.max(1e-9);
        c_row.minimal_write_ratio = Some(share);
        figures.rounds.push(Round {
            round,
            component_per_s: c_row.requests_per_s,
            minimal_write_per_s: f_row.requests_per_s,
            share,
            component_cpu: CpuUse::of(&c, cores),
            minimal_write_cpu: CpuUse::of(&f, cores),
        });
        for mut row in [c_row, f_row] {
            row.round = Some(round);
            rows.push(row);
        }
    }
    figures.instance_memory = Some(InstanceMemory {
        component: component.host.peak_instance_memory(),
        minimal_write: fixture.host.peak_instance_memory(),
    });
    figures.calls_per_webhook = Some(CallsPerWebhook {
        component: PerRequest::of(component_calls),
        minimal_write: PerRequest::of(fixture_calls),
    });

    let messages = if opts.quick { 200 } else { 2_000 };
    let mut wal = Vec::new();
    for (served, db, scenario) in [
        (&mut component, &apps.component_db, Scenario::Ingest),
        (&mut fixture, &apps.fixture_db, Scenario::MinimalWriteIngest),
    ] {
        let plan = scenarios::ingest_as(scenario, fresh, messages, CONCURRENCY, cap);
        wal.push(wal_bytes_per_message(served, db, &plan)?);
    }
    figures.wal_bytes_per_message = Some(WalBytes {
        component: wal[0],
        minimal_write: wal[1],
        ratio: wal[0] / wal[1].max(1e-9),
        messages,
    });

    // Every 200 is one stored row, on both.
    let mut failures: Vec<String> = phases::total_differs(
        &component.load,
        setup.shape.messages as usize + component.stored,
        "minimal-write comparison: webhook-inbox",
    )?
    .into_iter()
    .collect();
    let bodies: usize = rusqlite::Connection::open(&apps.fixture_db)?.query_row(
        "SELECT count(*) FROM bodies",
        [],
        |r| r.get(0),
    )?;
    if bodies != fixture.stored {
        failures.push(format!(
            "minimal-write comparison: the fixture holds {bodies} bodies after {} 200s",
            fixture.stored
        ));
    }
    component.host.shutdown();
    fixture.host.shutdown();
    Ok((rows, figures, failures))
}

/// WAL bytes per stored message: a connection of ours truncates the WAL, then holds a read
/// transaction open while `plan` runs, so no checkpoint can copy frames back or restart the
/// log; the WAL file's growth over the 200 answers is what each stored message wrote. The
/// reader is released right after (it would grow the WAL without bound).
fn wal_bytes_per_message(served: &mut Served, db: &Path, plan: &Plan) -> Result<f64> {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let reader = rusqlite::Connection::open(db)?;
    reader.busy_timeout(Duration::from_secs(10))?;
    let busy: i64 = reader.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    ensure!(busy == 0, "{}: WAL checkpoint was blocked", db.display());
    reader.execute_batch("BEGIN")?;
    reader.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
    let size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let before = size();
    eprintln!("WAL bytes: {} x{} ...", plan.name, plan.concurrency);
    let m = served.load.run(plan);
    let stored = m.statuses.get(&200).copied().unwrap_or(0);
    served.stored += stored;
    // Instances may still be finishing their last statements.
    std::thread::sleep(Duration::from_millis(200));
    let after = size();
    reader.execute_batch("COMMIT")?;
    drop(reader);
    ensure!(
        m.errors() == 0,
        "WAL bytes run {}: {} errors (first: {})",
        plan.name,
        m.errors(),
        m.first_error.as_deref().unwrap_or("?")
    );
    Ok(after.saturating_sub(before) as f64 / stored.max(1) as f64)
}

/// Peak RSS of the serving process, each app in a child process of its own (this binary with
/// `--serve-child`) under the same 16-connection ingest plan, plus webhook-inbox answering
/// only `/health/live` (its no-op). The children keep no log lines in memory.
pub fn memory(apps: &Apps, opts: &Options, fresh: &mut Fresh) -> Result<(Vec<Row>, Memory)> {
    let requests = if opts.quick { 1_000 } else { 5_000 };
    let cap = Duration::from_secs(if opts.quick { 2 } else { 10 });
    let mut rows = Vec::new();
    let mut measure = |spec: &ServeSpec, plan: Plan| -> Result<Option<u64>> {
        let mut spec = spec.clone();
        spec.capture_logs = false;
        let child = spec.spawn()?;
        let load = LoadGen::new(child.addr())?;
        phases::warm_up(&load)?;
        eprintln!("{} x{} (own process) ...", plan.name, plan.concurrency);
        let m = load.run(&plan);
        let peak = child.peak_rss_kib();
        child.stop().context("stopping the serving child")?;
        let mut row = Row::of(Group::Memory, &plan, &m);
        row.peak_rss_kib = peak;
        rows.push(row);
        Ok(peak)
    };
    let component_ingest_kib = measure(
        &apps.component,
        scenarios::ingest_as(Scenario::Ingest, fresh, requests, CONCURRENCY, cap),
    )?;
    let fixture_ingest_kib = measure(
        &apps.fixture,
        scenarios::ingest_as(
            Scenario::MinimalWriteIngest,
            fresh,
            requests,
            CONCURRENCY,
            cap,
        ),
    )?;
    let component_noop_kib = measure(
        &apps.component,
        scenarios::health_live(CONCURRENCY, requests, cap),
    )?;
    Ok((
        rows,
        Memory {
            component_ingest_kib,
            fixture_ingest_kib,
            component_noop_kib,
            requests,
        },
    ))
}

/// The report's lines for these figures.
pub fn print(f: &Figures) {
    if f.rounds.is_empty() && f.memory.is_none() {
        return;
    }
    println!(
        "minimal-write comparison (bench/minimal-write: open default, synchronous=NORMAL, one \
         INSERT of the body):"
    );
    for r in &f.rounds {
        println!(
            "  round {}: webhook-inbox {:.1} req/s, minimal-write {:.1} req/s -> {:.0}%",
            r.round,
            r.component_per_s,
            r.minimal_write_per_s,
            r.share * 100.0
        );
        if let (Some(share), Some(c), Some(m)) =
            (r.cpu_share(), &r.component_cpu, &r.minimal_write_cpu)
        {
            println!(
                "    CPU per request (whole process): webhook-inbox {:.0} us, minimal-write \
                 {:.0} us -> {:.0}%; cores busy {:.0}% and {:.0}%",
                c.per_request_us,
                m.per_request_us,
                share * 100.0,
                c.busy * 100.0,
                m.busy * 100.0
            );
        }
    }
    if let Some(s) = f.shares() {
        println!(
            "  ingest x16 share of the minimal-write component: median {}",
            s.percent()
        );
    }
    if let Some(s) = Shares::of(f.rounds.iter().filter_map(Round::cpu_share).collect()) {
        println!(
            "  CPU per request, minimal-write's as a share of webhook-inbox's: median {}",
            s.percent()
        );
    }
    if let Some(c) = &f.calls_per_webhook {
        println!("  host calls per webhook:");
        println!("    webhook-inbox: {}", c.component.summary());
        println!("    minimal-write: {}", c.minimal_write.summary());
    }
    if let Some(m) = &f.instance_memory {
        println!(
            "  largest linear memory of one instance during the rounds: webhook-inbox {} KiB, \
             minimal-write {} KiB",
            m.component / 1024,
            m.minimal_write / 1024
        );
    }
    if let Some(w) = &f.wal_bytes_per_message {
        println!(
            "  WAL bytes per stored message ({} messages x16, reader held): webhook-inbox {:.0}, \
             minimal-write {:.0} ({:.2}x)",
            w.messages, w.component, w.minimal_write, w.ratio
        );
    }
    if let Some(m) = &f.memory {
        let mib = |k: Option<u64>| {
            k.map_or("n/a".to_owned(), |k| {
                format!("{:.1} MiB", k as f64 / 1024.0)
            })
        };
        let ratio = match (m.component_ingest_kib, m.fixture_ingest_kib) {
            (Some(c), Some(f)) => format!(" ({:.2}x)", c as f64 / f as f64),
            _ => String::new(),
        };
        println!(
            "  peak RSS of the serving process (own child, {} requests x16): webhook-inbox \
             ingest {}, minimal-write ingest {}{ratio}; webhook-inbox /health/live {}",
            m.requests,
            mib(m.component_ingest_kib),
            mib(m.fixture_ingest_kib),
            mib(m.component_noop_kib)
        );
    }
}
