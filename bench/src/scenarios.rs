//! The scenarios: which requests, how many, at what concurrency; and the targets.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use webhook_inbox::payload::NewMessage;

use crate::data::{mix, Shape};
use crate::load::{Plan, Req, Source};
use crate::report::{Row, Target};
use crate::verify::{encode, COMMON_TERM};
use crate::{Options, SECRET};

/// Hands out message indices past the seeded ones, so every new message is unique.
pub struct Fresh {
    shape: Shape,
    next: u64,
}

impl Fresh {
    pub fn new(shape: Shape) -> Fresh {
        Fresh {
            shape,
            next: shape.messages,
        }
    }

    fn take(&mut self, n: usize) -> std::ops::Range<u64> {
        let start = self.next;
        self.next += n as u64;
        start..self.next
    }

    /// `n` new messages, validated by the component's parser (for the storage baseline).
    pub fn parsed(&mut self, n: usize) -> Vec<NewMessage> {
        self.take(n)
            .map(|i| webhook_inbox::payload::parse(&self.shape.message(i).body()).expect("valid"))
            .collect()
    }
}

/// A signed `POST /webhook` (HMAC-SHA256 hex of the exact body), built before timing.
fn signed(body: Vec<u8>) -> Req {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(&body);
    Req {
        method: "POST",
        target: "/webhook".to_owned(),
        signature: Some(hex::encode(mac.finalize().into_bytes())),
        body: Bytes::from(body),
    }
}

fn prebuilt(reqs: Vec<Req>) -> Source {
    let reqs = Arc::new(reqs);
    Arc::new(move |i| reqs[i % reqs.len()].clone())
}

fn plan(name: &str, concurrency: usize, max: usize, cap: Duration, source: Source) -> Plan {
    Plan {
        name: name.to_owned(),
        concurrency,
        max_requests: max,
        max_time: cap,
        warmup: 0,
        source,
    }
}

fn get(f: impl Fn(usize) -> String + Send + Sync + 'static) -> Source {
    Arc::new(move |i| Req::get(f(i)))
}

/// Baseline (a): a path the host answers itself, and the component's cheapest route (which
/// still opens the database and records a metrics row).
pub fn floor(opts: &Options, cap: Duration) -> Vec<Plan> {
    let mut plans = Vec::new();
    for c in [1, 16] {
        plans.push(plan(
            "GET /.well-known/spin/health (host only)",
            c,
            opts.read_requests * 2,
            cap,
            get(|_| "/.well-known/spin/health".to_owned()),
        ));
        plans.push(plan(
            "GET /health/live (component no-op)",
            c,
            opts.read_requests * 2,
            cap,
            get(|_| "/health/live".to_owned()),
        ));
    }
    plans
}

/// The read scenarios. Parameters rotate over the data set (`mix(i)` picks), so one cached
/// page does not stand in for all of them.
pub fn reads(shape: Shape, opts: &Options) -> Vec<Plan> {
    let n = shape.messages;
    let sender = move |i: usize| shape.sender(mix(i as u64) % shape.senders);
    let recipient = move |i: usize| shape.recipient(mix(i as u64 + 1) % shape.recipients);
    let some_ts = move |i: usize| shape.message(mix(i as u64 + 2) % n).ts;
    let deep = (n * 9 / 10).min(900_000);
    let scenarios: Vec<(String, Source)> = vec![
        (
            "GET /messages (first page)".into(),
            get(|_| "/messages".into()),
        ),
        (
            // ~7 KB: fitted in one segment even when written in flushed pieces.
            "GET /messages?limit=30".into(),
            get(|_| "/messages?limit=30".into()),
        ),
        (
            // ~22 KB: a page that stalled 40 ms on Spin when written in flushed pieces.
            "GET /messages?limit=100".into(),
            get(|_| "/messages?limit=100".into()),
        ),
        (
            "GET /messages?from=".into(),
            get(move |i| format!("/messages?from={}", encode(&sender(i)))),
        ),
        (
            "GET /messages?to=".into(),
            get(move |i| format!("/messages?to={}", encode(&recipient(i)))),
        ),
        (
            "GET /messages?since=".into(),
            get(move |i| format!("/messages?since={}", encode(&some_ts(i)))),
        ),
        (
            format!("GET /messages?q={COMMON_TERM}"),
            get(|_| format!("/messages?q={COMMON_TERM}")),
        ),
        (
            "GET /messages?from&to&since&q".into(),
            // Taken from one stored message, so every page has at least that row.
            get(move |i| {
                let m = shape.message(mix(i as u64 + 3) % n);
                let word = m
                    .text
                    .as_deref()
                    .and_then(|t| t.split(' ').next())
                    .unwrap_or("a")
                    .to_owned();
                format!(
                    "/messages?from={}&to={}&since={}&q={}",
                    encode(&m.from),
                    encode(&m.to),
                    encode(&m.ts),
                    encode(&word)
                )
            }),
        ),
        (
            format!("GET /messages?offset={deep}"),
            get(move |_| format!("/messages?offset={deep}")),
        ),
        (
            "GET /messages?q=tk-NNNN (rare)".into(),
            get(|i| format!("/messages?q=tk-{:04}", mix(i as u64 + 4) % 10_000)),
        ),
        ("GET /stats".into(), get(|_| "/stats".into())),
        ("GET /metrics".into(), get(|_| "/metrics".into())),
        ("GET /health/ready".into(), get(|_| "/health/ready".into())),
    ];
    scenarios
        .into_iter()
        .map(|(name, source)| Plan {
            warmup: if opts.quick { 1 } else { 3 },
            ..plan(
                &name,
                opts.read_concurrency,
                opts.read_requests,
                Duration::from_secs_f64(opts.seconds),
                source,
            )
        })
        .collect()
}

/// Unique, pre-signed messages at `concurrency`; enough of them that every connection is busy.
pub fn ingest(fresh: &mut Fresh, opts: &Options, concurrency: usize, cap: Duration) -> Plan {
    let count = opts.write_requests.max(concurrency * 2);
    let reqs = fresh
        .take(count)
        .map(|i| signed(fresh.shape.message(i).body()))
        .collect();
    // Writes get twice the time: 256 connections need a while to reach a steady state.
    let cap = cap * 2;
    plan(
        "POST /webhook (new)",
        concurrency,
        count,
        cap,
        prebuilt(reqs),
    )
}

/// Re-deliveries of seeded messages: answered 200 with nothing stored.
pub fn duplicates(shape: Shape, opts: &Options, concurrency: usize, cap: Duration) -> Plan {
    let count = opts.write_requests / 2;
    let reqs = (0..count as u64)
        .map(|i| signed(shape.message(mix(i) % shape.messages).body()))
        .collect();
    plan(
        "POST /webhook (duplicate)",
        concurrency,
        count,
        cap,
        prebuilt(reqs),
    )
}

/// The targets, judged on this run's rows.
pub fn targets(rows: &[Row]) -> Vec<Target> {
    let find = |name: &str, c: usize| {
        rows.iter()
            .find(|r| r.scenario.starts_with(name) && r.concurrency == c)
    };
    let mut out = Vec::new();
    if let Some(r) = find("POST /webhook (new)", 16) {
        let ratio = r.storage_ratio.unwrap_or(0.0);
        out.push(Target {
            target: "ingest x16 >= 50% of the raw storage limit x16".into(),
            measured: format!("{:.0}%", ratio * 100.0),
            met: ratio >= 0.5,
        });
        if let Some(floor) = find("GET /health/live", 16) {
            // Every request is a new instance with a new SQLite connection; the cheapest
            // request the component serves shows what that costs, whatever the storage.
            out.push(Target {
                target: "ingest x16 vs the component's cheapest request x16 (/health/live)".into(),
                measured: format!("{:.0}%", 100.0 * r.requests_per_s / floor.requests_per_s),
                met: r.requests_per_s >= 0.5 * floor.requests_per_s,
            });
        }
        if let Some(spin) = r.per_connection_ratio {
            out.push(Target {
                target: "ingest x16 vs the same inserts on a new connection each (Spin's way)"
                    .into(),
                measured: format!("{:.0}%", spin * 100.0),
                met: spin >= 0.5,
            });
        }
    }
    if let Some(r) = find("POST /webhook (new)", 256) {
        let locked = r.db_locked.unwrap_or(0);
        out.push(Target {
            target: "ingest x256: zero errors, zero 'database is locked'".into(),
            measured: format!("{} errors, {locked} locked", r.errors),
            met: r.errors == 0 && locked == 0,
        });
    }
    let read_c = rows
        .iter()
        .find(|r| r.scenario == "GET /stats")
        .map_or(1, |r| r.concurrency);
    let q_name = format!("GET /messages?q={COMMON_TERM}");
    for (name, limit) in [
        ("GET /stats", 2.0),
        ("GET /metrics", 2.0),
        ("GET /messages?from=", 5.0),
        ("GET /messages?to=", 5.0),
        ("GET /messages?since=", 5.0),
        (q_name.as_str(), 5.0),
        ("GET /messages?from&to&since&q", 5.0),
    ] {
        if let Some(r) = find(name, read_c) {
            out.push(Target {
                target: format!("{name} median <= {limit} ms"),
                measured: format!("{:.2} ms", r.p50_ms),
                met: r.p50_ms <= limit,
            });
        }
    }
    out
}
