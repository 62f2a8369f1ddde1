//! The results table, target checks, memory figures and the `--json` file.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::load::Measured;

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub group: &'static str,
    pub scenario: String,
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
    /// Median time of the same SQL run natively (no host, no instance).
    pub sql_p50_ms: Option<f64>,
    pub first_error: Option<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Row {
    pub fn new(group: &'static str, scenario: &str, concurrency: usize, m: &Measured) -> Row {
        Row {
            group,
            scenario: scenario.to_owned(),
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
            sql_p50_ms: None,
            first_error: m.first_error.clone(),
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
        if let Some(n) = self.db_locked.filter(|n| *n > 0) {
            notes.push(format!("{n} 'database is locked'"));
        }
        notes.join(", ")
    }
}

pub fn print_table(rows: &[Row]) {
    let width = rows
        .iter()
        .map(|r| r.scenario.len())
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
    let mut group = "";
    for r in rows {
        if r.group != group {
            group = r.group;
            println!("-- {group}");
        }
        println!(
            "{:<w$} {:>5} {:>8} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>6}  {}",
            r.scenario,
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
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
