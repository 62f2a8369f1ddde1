//! The results table, target checks, memory figures and the `--json` file.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::load::{Measured, Plan};
use crate::scenarios::{Group, Scenario};

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub group: Group,
    /// The scenario's display name.
    pub scenario: String,
    /// The scenario, as a key.
    pub key: Scenario,
    /// Which alternating round (minimal-write comparison only).
    pub round: Option<usize>,
    pub concurrency: usize,
    pub requests: usize,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Non-200 answers plus transport failures.
    pub errors: usize,
    pub statuses: BTreeMap<u16, usize>,
    pub transport_errors: usize,
    /// Component log lines mentioning "database is locked" during the scenario.
    pub db_locked: Option<usize>,
    /// Requests/s over the raw-SQLite insert rate at the same concurrency.
    pub storage_ratio: Option<f64>,
    /// Requests/s over the raw-SQLite rate with a new connection per transaction (as in Spin).
    pub per_connection_ratio: Option<f64>,
    /// Requests/s over the minimal-write component's in the same round.
    pub minimal_write_ratio: Option<f64>,
    /// p99 over the minimal-write component's in the same round (libSQL rows).
    pub minimal_write_p99_ratio: Option<f64>,
    /// p50 over the minimal read's in the same round (libSQL reads).
    pub minimal_read_ratio: Option<f64>,
    /// Answers that took more than 2 s (libSQL rows).
    pub over_2s: Option<usize>,
    /// Requests given up after the scenario's per-request timeout (also in `errors`).
    pub timeouts: usize,
    /// Requests/s over retention-off ingest in the same round (lifecycle rows).
    pub retention_off_ratio: Option<f64>,
    /// Requests/s over ingest without a feed consumer in the same round (feed rows).
    pub consumer_off_ratio: Option<f64>,
    /// Messages removed per second (the purge row).
    pub purged_per_s: Option<f64>,
    /// VmHWM of the serving child process (memory rows only), KiB.
    pub peak_rss_kib: Option<u64>,
    /// Median time of the same SQL run natively (no host, no instance).
    pub sql_p50_ms: Option<f64>,
    /// Rows per second of a streamed export (export rows only).
    pub rows_per_s: Option<f64>,
    pub first_error: Option<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Row {
    /// The row of `plan`'s run.
    pub fn of(group: Group, plan: &Plan, m: &Measured) -> Row {
        Row::new(group, plan.scenario, &plan.name, plan.concurrency, m)
    }

    pub fn new(
        group: Group,
        key: Scenario,
        scenario: &str,
        concurrency: usize,
        m: &Measured,
    ) -> Row {
        Row {
            group,
            scenario: scenario.to_owned(),
            key,
            round: None,
            concurrency,
            requests: m.requests,
            requests_per_s: m.rate(),
            p50_ms: ms(m.percentile(50.0)),
            p99_ms: ms(m.percentile(99.0)),
            max_ms: ms(m.max()),
            errors: m.errors(),
            statuses: m.statuses.clone(),
            transport_errors: m.transport_errors,
            db_locked: None,
            storage_ratio: None,
            per_connection_ratio: None,
            minimal_write_ratio: None,
            minimal_write_p99_ratio: None,
            minimal_read_ratio: None,
            over_2s: None,
            timeouts: m.timeouts,
            retention_off_ratio: None,
            consumer_off_ratio: None,
            purged_per_s: None,
            peak_rss_kib: None,
            sql_p50_ms: None,
            rows_per_s: None,
            first_error: m.first_error.clone(),
        }
    }

    /// The name in the table: the scenario, and its round if it has one.
    fn display_name(&self) -> String {
        match self.round {
            Some(n) => format!("{}, round {n}", self.scenario),
            None => self.scenario.clone(),
        }
    }

    fn notes(&self) -> String {
        let mut notes = Vec::new();
        if let Some(r) = self.storage_ratio {
            notes.push(format!("{:.0}% of storage limit", r * 100.0));
        }
        if let Some(r) = self.per_connection_ratio {
            notes.push(format!("{:.0}% of its connection-per-txn limit", r * 100.0));
        }
        if let Some(r) = self.minimal_write_ratio {
            notes.push(format!("{:.0}% of the minimal-write round", r * 100.0));
        }
        if let Some(r) = self.minimal_write_p99_ratio {
            notes.push(format!("p99 {r:.2}x the minimal write's"));
        }
        if let Some(r) = self.minimal_read_ratio {
            notes.push(format!("p50 {r:.2}x the minimal read's"));
        }
        if let Some(n) = self.over_2s.filter(|n| *n > 0) {
            notes.push(format!("{n} over 2 s"));
        }
        if let Some(r) = self.retention_off_ratio {
            notes.push(format!("{:.0}% of the retention-off round", r * 100.0));
        }
        if let Some(r) = self.consumer_off_ratio {
            notes.push(format!("{:.0}% of the round without a consumer", r * 100.0));
        }
        if let Some(r) = self.purged_per_s {
            notes.push(format!("{r:.0} messages purged/s"));
        }
        if let Some(k) = self.peak_rss_kib {
            notes.push(format!("peak RSS {:.1} MiB", k as f64 / 1024.0));
        }
        if let Some(rate) = self.rows_per_s {
            notes.push(format!("{rate:.0} rows/s"));
        }
        if let Some(sql) = self.sql_p50_ms {
            notes.push(format!("sql p50 {sql:.2} ms"));
        }
        let odd: Vec<_> = self
            .statuses
            .iter()
            .filter(|(s, _)| **s != 200)
            .map(|(s, n)| format!("{n}x{s}"))
            .collect();
        if !odd.is_empty() {
            notes.push(odd.join(" "));
        }
        if self.transport_errors > 0 {
            notes.push(format!("{} transport", self.transport_errors));
        }
        if self.timeouts > 0 {
            notes.push(format!("{} of them timeouts", self.timeouts));
        }
        if let Some(n) = self.db_locked.filter(|n| *n > 0) {
            notes.push(format!("{n} 'database is locked'"));
        }
        notes.join(", ")
    }
}

pub fn print_table(rows: &[Row]) {
    let width = rows
        .iter()
        .map(|r| r.display_name().len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!(
        "{:<w$} {:>5} {:>8} {:>10} {:>9} {:>9} {:>9} {:>6}  notes",
        "scenario",
        "conc",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        w = width
    );
    let mut group = None;
    for r in rows {
        if group != Some(r.group) {
            group = Some(r.group);
            println!("-- {}", r.group.label());
        }
        println!(
            "{:<w$} {:>5} {:>8} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>6}  {}",
            r.display_name(),
            r.concurrency,
            r.requests,
            r.requests_per_s,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.errors,
            r.notes(),
            w = width
        );
    }
}

/// One of the performance targets, judged (never enforced: timing is machine-bound).
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

pub fn print_targets(targets: &[Target]) {
    for t in targets {
        println!(
            "  [{}] {} -- {}",
            if t.met { " ok " } else { "MISS" },
            t.target,
            t.measured
        );
    }
}

/// A figure from /proc/self/status in KiB (VmHWM = peak RSS, VmRSS = current).
pub fn proc_status_kib(field: &str) -> Option<u64> {
    status_kib("/proc/self/status", field)
}

/// The same figure of another process (e.g. a serving child), while it is alive.
pub fn pid_status_kib(pid: u32, field: &str) -> Option<u64> {
    status_kib(&format!("/proc/{pid}/status"), field)
}

fn status_kib(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
