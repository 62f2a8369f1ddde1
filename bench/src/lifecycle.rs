//! The data lifecycle figures (issue 13), a phase of their own (`--only lifecycle`):
//!
//! 1. Purge rate: `POST /admin/purge` on one connection until `more` is false, on a copy of
//!    the seeded set with `retention_days` such that a known share of it is due. Messages
//!    removed per second, and the latency of a request that runs a batch; `/stats` must then
//!    count exactly the purged messages fewer.
//! 2. Ingest x16 with retention on and nothing due (`retention_days = 36500`) against
//!    retention off (`0`): what checking for due messages after each fold costs.
//! 3. Ingest x16 with a full batch due at every fold: what the purges that follow folds cost
//!    ingest, against the same "off" figure.
//!
//! 2 and 3 run in `--rounds` rounds, each serving on its own fresh copy of the seeded set,
//! all three hosts up in this process the whole time, the order reversed every other round
//! (off, on, purging; then purging, on, off), so a machine growing busier or quieter favours
//! none of them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use serde::Serialize;

use crate::data::{instant_key_of, seeded_instant};
use crate::fixture::{Served, Shares};
use crate::load::{LoadGen, Plan, Req};
use crate::phases::{self, Setup};
use crate::report::Row;
use crate::scenarios::{self, Fresh, Group, Scenario};
use crate::serve::{Db, ServeSpec};
use crate::verify::{self, Due};
use crate::Options;

/// Connections of the ingest figures (the figure is at 16).
const CONCURRENCY: usize = 16;
const ADMIN_TOKEN: &str = "bench-admin-token";
/// The component's default `purge_batch_size`, which the benchmark leaves unset.
const BATCH: u32 = 500;
/// Share of the seeded set due in the purge-rate figure. Quick mode makes nearly all of its
/// 20k due instead: a tenth would be four batches.
const PURGE_SHARE: f64 = 0.1;
/// "Nearly all due" stops this long before the end of the seeded span: new messages continue
/// the series past it, so none of them is ever due.
const MARGIN: Duration = Duration::from_secs(3600);
/// On, and a hundred years (the largest value the component takes): nothing is due.
const NOTHING_DUE_DAYS: u32 = 36_500;
const DAY_SECS: u64 = 86_400;

/// How retention is set for an ingest serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// `retention_days = 0`: kept forever; a fold still looks for expired tombstones.
    Off,
    /// `retention_days = 36500`: on, but nothing is due.
    NothingDue,
    /// Nearly every seeded message due: each fold is followed by a full batch.
    Purging,
}

impl Retention {
    const ALL: [Retention; 3] = [Retention::Off, Retention::NothingDue, Retention::Purging];

    fn slug(self) -> &'static str {
        match self {
            Retention::Off => "off",
            Retention::NothingDue => "nothing-due",
            Retention::Purging => "purging",
        }
    }
}

/// Everything this phase measured, for the report and the JSON file.
#[derive(Debug, Default, Serialize)]
pub struct Figures {
    pub purge: Option<PurgeRate>,
    /// Ingest x16 per round, for each retention setting.
    pub rounds: Vec<Round>,
    /// `retention_days` of the purging serving, and the seeded messages it had due.
    pub purging_retention_days: Option<u32>,
    pub purging_due_at_start: Option<u64>,
    /// Messages the purging serving removed after folds, over all its rounds
    /// (`messages_removed_total{cause="retention"}`).
    pub purged_while_ingesting: Option<u64>,
    /// Whether messages were still due after its last round: if so, every fold found a full
    /// batch.
    pub still_due_after: Option<bool>,
}

/// The purge loop on one connection.
#[derive(Debug, Serialize)]
pub struct PurgeRate {
    pub retention_days: u32,
    pub batch: u32,
    /// Seeded messages due before the first request, and their share of the set.
    pub due_at_start: u64,
    pub due_share: f64,
    pub requests: usize,
    pub purged: u64,
    pub tombstones_purged: u64,
    pub seconds: f64,
    pub purged_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The last answer said `more: false` (rather than a cap stopping the loop).
    pub complete: bool,
    /// What the check through HTTP found (when it passed).
    pub checked: Option<String>,
}

/// One round of ingest x16: requests/s and p99 for each setting.
#[derive(Debug, Serialize)]
pub struct Round {
    pub round: usize,
    pub order: [Retention; 3],
    pub off_per_s: f64,
    pub nothing_due_per_s: f64,
    pub purging_per_s: f64,
    pub off_p99_ms: f64,
    pub nothing_due_p99_ms: f64,
    pub purging_p99_ms: f64,
    /// Messages the purging serving removed during this round.
    pub purged: u64,
}

impl Figures {
    /// Nothing-due over off, requests/s, over the rounds.
    pub fn nothing_due_shares(&self) -> Option<Shares> {
        Shares::of(
            self.rounds
                .iter()
                .map(|r| r.nothing_due_per_s / r.off_per_s.max(1e-9))
                .collect(),
        )
    }

    /// Purging over off, requests/s, over the rounds.
    pub fn purging_shares(&self) -> Option<Shares> {
        Shares::of(
            self.rounds
                .iter()
                .map(|r| r.purging_per_s / r.off_per_s.max(1e-9))
                .collect(),
        )
    }

    /// Purging p99 over off p99, over the rounds.
    pub fn purging_p99_ratios(&self) -> Option<Shares> {
        Shares::of(
            self.rounds
                .iter()
                .map(|r| r.purging_p99_ms / r.off_p99_ms.max(1e-9))
                .collect(),
        )
    }
}

/// The phase: the purge rate, then the ingest rounds. Returns the table rows, the figures,
/// and failures (an answer or a count that is not what it must be).
pub fn run(
    setup: &Setup,
    opts: &Options,
    fresh: &mut Fresh,
) -> Result<(Vec<Row>, Figures, Vec<String>)> {
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut figures = Figures::default();

    let (row, purge) = purge_rate(setup, opts, &mut failures)?;
    rows.push(row);
    figures.purge = Some(purge);
    rows.extend(ingest_rounds(
        setup,
        opts,
        fresh,
        &mut figures,
        &mut failures,
    )?);
    Ok((rows, figures, failures))
}

/// `retention_days` whose cutoff (now minus that many days) falls at `target` or up to a
/// day before it.
fn days_before(target: SystemTime) -> u32 {
    let age = SystemTime::now()
        .duration_since(target)
        .unwrap_or_default()
        .as_secs();
    age.div_ceil(DAY_SECS).clamp(1, u64::from(NOTHING_DUE_DAYS)) as u32
}

/// The component's cutoff for `retention_days`, as of now.
fn cutoff(retention_days: u32) -> SystemTime {
    SystemTime::now() - Duration::from_secs(u64::from(retention_days) * DAY_SECS)
}

/// `retention_days` that makes nearly all of the seeded set due, and no new message.
fn nearly_all_due() -> u32 {
    days_before(seeded_instant(1.0) - MARGIN)
}

/// The component on a fresh copy of the seeded set, with `retention_days` (and the admin
/// token, for the purge loop) set.
fn serve(setup: &Setup, name: &str, retention_days: u32) -> Result<(Served, PathBuf)> {
    let db = setup.copy_of_seeded(&format!("lifecycle-{name}.db"))?;
    let mut spec: ServeSpec = phases::component_spec(
        setup,
        &format!("runtime-config-lifecycle-{name}.toml"),
        Db::LocalFile(&db),
    )?;
    spec.env.insert(
        "SPIN_VARIABLE_RETENTION_DAYS".to_owned(),
        retention_days.to_string(),
    );
    spec.env.insert(
        "SPIN_VARIABLE_ADMIN_TOKEN".to_owned(),
        ADMIN_TOKEN.to_owned(),
    );
    Ok((Served::start(&spec)?, db))
}

/// A served copy is not needed after its phase: 565 MB each in a full run.
fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

/// 1: `POST /admin/purge` on one connection until nothing is due (or the caps: at most
/// `--write-requests` requests or twice `--seconds`), then the check through HTTP.
fn purge_rate(
    setup: &Setup,
    opts: &Options,
    failures: &mut Vec<String>,
) -> Result<(Row, PurgeRate)> {
    let shape = setup.shape;
    let retention_days = if opts.quick {
        nearly_all_due()
    } else {
        days_before(seeded_instant(PURGE_SHARE))
    };
    let (served, db) = serve(setup, "purge", retention_days)?;
    let before = verify::stats_total(&served.load)?;
    ensure!(
        before == shape.messages,
        "lifecycle: a fresh copy holds {before} messages, not {}",
        shape.messages
    );
    let start = cutoff(retention_days);
    let due_at_start = shape.older_than(start);
    let request = Req {
        method: "POST",
        target: "/admin/purge".to_owned(),
        body: Bytes::new(),
        signature: None,
        authorization: Some(format!("Bearer {ADMIN_TOKEN}")),
    };
    let plan = Plan {
        scenario: Scenario::Purge,
        name: format!("POST /admin/purge (batch {BATCH}, until nothing is due)"),
        concurrency: 1,
        max_requests: opts.write_requests,
        max_time: Duration::from_secs_f64(opts.seconds * 2.0),
        warmup: 0,
        source: std::sync::Arc::new(move |_| request.clone()),
        request_timeout: None,
    };
    eprintln!(
        "{} with retention_days {retention_days} ({due_at_start} due) ...",
        plan.name
    );
    let (mut purged, mut tombstones, mut complete) = (0, 0, false);
    let mut locked_seen = served.host.stdout().len();
    let m = served.load.run_until(&plan, |status, body| {
        let answer: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        purged += answer["purged"].as_u64().unwrap_or(0);
        tombstones += answer["tombstones_purged"].as_u64().unwrap_or(0);
        complete = status == 200 && answer["more"] == false;
        status == 200 && !complete
    });
    let due = Due {
        at_start: due_at_start,
        at_end: shape.older_than(cutoff(retention_days)),
        start_key: instant_key_of(start),
    };
    let checked = match verify::after_purge(&served.load, before, purged, complete.then_some(&due))
    {
        Ok(checked) => Some(checked),
        Err(e) => {
            failures.push(format!("lifecycle: after the purge loop: {e:#}"));
            None
        }
    };
    if !complete && m.errors() == 0 {
        println!(
            "NOTE: lifecycle: the purge loop stopped at its cap with messages still due \
             ({purged} of {due_at_start} purged)"
        );
    }
    let mut row = Row::new(Group::Lifecycle, Scenario::Purge, &plan.name, 1, &m);
    row.db_locked = Some(phases::locked_lines_since(&served.host, &mut locked_seen));
    let seconds = m.elapsed.as_secs_f64();
    row.purged_per_s = Some(purged as f64 / seconds.max(1e-9));
    served.host.shutdown();
    remove_db(&db);
    let figures = PurgeRate {
        retention_days,
        batch: BATCH,
        due_at_start,
        due_share: due_at_start as f64 / shape.messages as f64,
        requests: m.requests,
        purged,
        tombstones_purged: tombstones,
        seconds,
        purged_per_s: purged as f64 / seconds.max(1e-9),
        p50_ms: row.p50_ms,
        p99_ms: row.p99_ms,
        max_ms: row.max_ms,
        complete,
        checked,
    };
    Ok((row, figures))
}

/// `messages_removed_total{cause="retention"}` from `/metrics`.
fn removed_by_retention(load: &LoadGen) -> Result<u64> {
    let (status, body) = load.fetch(Req::get("/metrics"))?;
    ensure!(status == 200, "GET /metrics -> {status}");
    let text = String::from_utf8_lossy(&body);
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("messages_removed_total{cause=\"retention\"} "))
        .context("/metrics: no messages_removed_total{cause=\"retention\"}")?;
    Ok(value.trim().parse::<f64>()? as u64)
}

/// 2 and 3: ingest x16 in `--rounds` rounds for each retention setting, each on its own copy;
/// then every serving's `/stats` must count its 200s, less what retention removed.
fn ingest_rounds(
    setup: &Setup,
    opts: &Options,
    fresh: &mut Fresh,
    figures: &mut Figures,
    failures: &mut Vec<String>,
) -> Result<Vec<Row>> {
    let seeded = setup.shape.messages as usize;
    let purging_days = nearly_all_due();
    let purging_due = setup.shape.older_than(cutoff(purging_days));
    figures.purging_retention_days = Some(purging_days);
    figures.purging_due_at_start = Some(purging_due);
    let mut servings = Vec::new();
    for retention in Retention::ALL {
        let days = match retention {
            Retention::Off => 0,
            Retention::NothingDue => NOTHING_DUE_DAYS,
            Retention::Purging => purging_days,
        };
        let (served, db) = serve(setup, retention.slug(), days)?;
        let seen = served.host.stdout().len();
        servings.push((retention, served, db, seen));
    }
    // As in the minimal-write comparison: quick mode's 400 writes take a third of a second
    // at x16, too noisy for a ratio.
    let count = opts
        .write_requests
        .max(if opts.quick { 1_000 } else { CONCURRENCY * 2 });
    let cap = Duration::from_secs_f64(opts.seconds * 2.0);
    let mut rows = Vec::new();
    let mut removed_so_far = 0;
    for round in 1..=opts.rounds {
        let mut order = Retention::ALL;
        if round % 2 == 0 {
            order.reverse();
        }
        let mut measured: Vec<Row> = Vec::new();
        let mut purged = 0;
        for retention in order {
            let plan = scenarios::ingest_as(
                Scenario::IngestRetention(retention),
                fresh,
                count,
                CONCURRENCY,
                cap,
            );
            let (_, served, _, seen) = servings
                .iter_mut()
                .find(|(r, ..)| *r == retention)
                .expect("a serving per setting");
            let m = served.run(&plan);
            let mut row = Row::of(Group::Lifecycle, &plan, &m);
            row.round = Some(round);
            row.db_locked = Some(phases::locked_lines_since(&served.host, seen));
            if retention == Retention::Purging {
                // The last purges run after their requests' answers.
                std::thread::sleep(Duration::from_millis(200));
                let removed = removed_by_retention(&served.load)?;
                purged = removed - removed_so_far;
                removed_so_far = removed;
            }
            measured.push(row);
        }
        let per_s = |r: Retention| figure(&measured, r, |row| row.requests_per_s);
        let p99 = |r: Retention| figure(&measured, r, |row| row.p99_ms);
        let off = per_s(Retention::Off);
        figures.rounds.push(Round {
            round,
            order,
            off_per_s: off,
            nothing_due_per_s: per_s(Retention::NothingDue),
            purging_per_s: per_s(Retention::Purging),
            off_p99_ms: p99(Retention::Off),
            nothing_due_p99_ms: p99(Retention::NothingDue),
            purging_p99_ms: p99(Retention::Purging),
            purged,
        });
        for row in &mut measured {
            if row.key != Scenario::IngestRetention(Retention::Off) {
                row.retention_off_ratio = Some(row.requests_per_s / off.max(1e-9));
            }
        }
        // The table lists every round in the same order, whichever ran first.
        measured.sort_by_key(|row| {
            Retention::ALL
                .iter()
                .position(|r| row.key == Scenario::IngestRetention(*r))
        });
        rows.extend(measured);
    }

    check_servings(servings, seeded, purging_days, figures, failures)?;
    Ok(rows)
}

/// After the rounds: each serving's `/stats` counts the seeded set and its 200s, less what
/// retention removed (only the purging serving may remove anything); then it stops.
fn check_servings(
    servings: Vec<(Retention, Served, PathBuf, usize)>,
    seeded: usize,
    purging_days: u32,
    figures: &mut Figures,
    failures: &mut Vec<String>,
) -> Result<()> {
    for (retention, served, db, _) in servings {
        let removed = removed_by_retention(&served.load)?;
        let stored_less_removed = (served.stored + seeded).checked_sub(removed as usize);
        let want = match retention {
            // Only the purging serving may remove anything.
            Retention::Off | Retention::NothingDue if removed > 0 => None,
            _ => stored_less_removed,
        };
        let what = format!("lifecycle: retention {}", retention.slug());
        match want {
            Some(want) => failures.extend(phases::total_differs(&served.load, want, &what)?),
            None => failures.push(format!("{what}: {removed} messages removed")),
        }
        if retention == Retention::Purging {
            figures.purged_while_ingesting = Some(removed);
            let (status, body) = served.load.fetch(Req::get("/stats"))?;
            let stats: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let first = stats["first_message_ts"].as_str().unwrap_or("");
            let cutoff_key = instant_key_of(cutoff(purging_days));
            figures.still_due_after = (status == 200).then(|| {
                webhook_inbox::timestamp::instant_key(first).is_ok_and(|key| key < cutoff_key)
            });
        }
        served.host.shutdown();
        remove_db(&db);
    }
    Ok(())
}

/// A figure of the row measured for `retention` (0 when it is missing).
fn figure(rows: &[Row], retention: Retention, f: impl Fn(&Row) -> f64) -> f64 {
    rows.iter()
        .find(|row| row.key == Scenario::IngestRetention(retention))
        .map_or(0.0, f)
}

/// The report's lines for these figures.
pub fn print(f: &Figures) {
    if f.purge.is_none() && f.rounds.is_empty() {
        return;
    }
    println!("data lifecycle (retention purges, issue 13):");
    if let Some(p) = &f.purge {
        println!(
            "  purge rate: retention_days {} made {} of the seeded messages due ({:.1}%); \
             POST /admin/purge on 1 connection, batch {}: {} purged (+{} tombstones) in {} \
             requests, {:.2} s -> {:.0} messages/s{}",
            p.retention_days,
            p.due_at_start,
            p.due_share * 100.0,
            p.batch,
            p.purged,
            p.tombstones_purged,
            p.requests,
            p.seconds,
            p.purged_per_s,
            if p.complete {
                " (until more = false)"
            } else {
                " (stopped by the cap, more due)"
            },
        );
        println!(
            "  latency of a request that runs a purge batch: p50 {:.2} ms, p99 {:.2} ms, \
             max {:.2} ms",
            p.p50_ms, p.p99_ms, p.max_ms
        );
        if let Some(checked) = &p.checked {
            println!("  checked through HTTP: {checked}");
        }
    }
    for r in &f.rounds {
        println!(
            "  round {} ({}): ingest x16 off {:.1} req/s (p99 {:.2} ms), on & nothing due \
             {:.1} req/s (p99 {:.2} ms) -> {:.2}, purging {:.1} req/s (p99 {:.2} ms, {} \
             purged) -> {:.2}",
            r.round,
            r.order.map(Retention::slug).join(", "),
            r.off_per_s,
            r.off_p99_ms,
            r.nothing_due_per_s,
            r.nothing_due_p99_ms,
            r.nothing_due_per_s / r.off_per_s.max(1e-9),
            r.purging_per_s,
            r.purging_p99_ms,
            r.purged,
            r.purging_per_s / r.off_per_s.max(1e-9),
        );
    }
    let range = |s: Shares| {
        format!(
            "median {:.2} ({:.2}-{:.2} over {} round(s))",
            s.median, s.low, s.high, s.rounds
        )
    };
    if let Some(s) = f.nothing_due_shares() {
        println!(
            "  ingest x16, retention on ({NOTHING_DUE_DAYS} days, nothing due) / off: {}",
            range(s)
        );
    }
    if let (Some(s), Some(p99)) = (f.purging_shares(), f.purging_p99_ratios()) {
        println!(
            "  ingest x16 with a batch due at every fold (retention_days {}, {} seeded \
             messages due) / off: req/s {}; p99 {}",
            f.purging_retention_days.unwrap_or(0),
            f.purging_due_at_start.unwrap_or(0),
            range(s),
            range(p99)
        );
    }
    if let Some(removed) = f.purged_while_ingesting {
        println!(
            "  purged after folds while ingesting: {removed} messages{}",
            match f.still_due_after {
                Some(true) => "; messages still due after the last round (every fold found a \
                               full batch)"
                    .to_owned(),
                Some(false) => "; NOTE: nothing was due by the end, so the last folds found \
                                less than a batch"
                    .to_owned(),
                None => String::new(),
            }
        );
    }
}
