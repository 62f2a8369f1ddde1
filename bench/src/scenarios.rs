//! The scenarios: which requests, how many, at what concurrency; and the targets.
//! Scenarios and table groups are keyed by type ([`Scenario`], [`Group`]); their names are
//! only for display and `--only`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use webhook_inbox::domain::NewMessage;

use crate::baseline::Connections;
use crate::data::{mix, Shape};
use crate::lifecycle::Retention;
use crate::load::{Plan, Req, Source};
use crate::report::{Row, Target};
use crate::verify::{encode, COMMON_TERM};
use crate::{Options, SECRET};

/// What a row measured, independent of its display name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// `/.well-known/spin/health`, answered by the host alone.
    HostHealth,
    /// `/health/live`, the component's cheapest route.
    HealthLive,
    FirstPage,
    Page30,
    Page100,
    FromFilter,
    ToFilter,
    SinceFilter,
    CommonTerm,
    AllFilters,
    DeepOffset,
    RareTerm,
    /// `q` with a rare term, and `since`.
    RareTermSince,
    /// `q` with a common term, and `from`.
    CommonTermFrom,
    /// `q` with a common term, and `to`.
    CommonTermTo,
    /// `from` and `to` together, `from` the heaviest sender (a hundredth of the set).
    FromToTopSender,
    /// `q` with a common term, and the heaviest sender.
    CommonTermTopSender,
    /// `q` of two characters: no trigram, always a scan.
    ShortTerm,
    Stats,
    Metrics,
    HealthReady,
    /// `GET /ui`, the console page (no database).
    Console,
    /// `GET /messages/export` of every stored message, streamed; reported in rows/s.
    Export,
    /// `POST /webhook` of unique messages.
    Ingest,
    /// `POST /webhook` of already-stored messages.
    Duplicates,
    /// `POST /admin/purge`: one retention batch per request.
    Purge,
    /// `POST /webhook` of unique messages, with retention as given (lifecycle phase).
    IngestRetention(Retention),
    /// The minimal-write component storing unique bodies (`bench/minimal-write`).
    MinimalWriteIngest,
    /// The minimal-write component's `GET /read?id=N`: one SELECT of one row by its key.
    MinimalRead,
    /// `POST /webhook` of unique messages through two hosts on one libSQL server at once,
    /// half the connections each.
    IngestTwoHosts,
    /// A mix of the read routes, taken in turn (libSQL phase).
    MixedReads,
    /// `GET /feed?limit=1000` from offset 0, committing each page; reported in messages/s.
    FeedPull,
    /// `POST /webhook` of unique messages, no feed consumer (the feed phase).
    IngestNoConsumer,
    /// The same with one feed consumer pulling and committing at the same time.
    IngestWithConsumer,
    /// That consumer's pages during the ingest.
    FeedDuringIngest,
    /// Raw SQLite inserts (no host).
    StorageInsert(Connections),
    /// The same as `StorageInsert(PerTransaction)` on a copy without the search index's
    /// tables: what the index costs every new connection (parsing the schema).
    StorageInsertWithoutSearchIndex,
}

/// The table's groups, in the order a run adds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    Storage,
    HostFloor,
    Reads,
    Ingest,
    Duplicates,
    Libsql,
    /// Reads on libSQL against the minimal read on libSQL, alternating rounds.
    LibsqlReads,
    /// Ingest on libSQL against the minimal write on libSQL, alternating rounds.
    LibsqlIngest,
    /// Ingest x16 against the minimal-write component, alternating rounds.
    MinimalWrite,
    /// Each app in a child process of its own, for its peak RSS.
    Memory,
    /// Retention purges, and ingest x16 with retention off / on, alternating rounds.
    Lifecycle,
    /// The pull feed: a consumer from offset 0; ingest x16 without / with a consumer.
    Feed,
}

impl Group {
    pub fn label(self) -> &'static str {
        match self {
            Group::Storage => {
                "storage limit (raw SQLite: the component's INSERT, autocommit; conc = threads)"
            }
            Group::HostFloor => "host floor",
            Group::Reads => "reads (seeded data set)",
            Group::Ingest => "ingest (unique messages)",
            Group::Duplicates => "duplicates (already stored)",
            Group::Libsql => "libSQL (sqld 0.24.32)",
            Group::LibsqlReads => {
                "libSQL: reads vs the minimal read (one SELECT by key) on a sqld of its own \
                 (same run, alternating rounds)"
            }
            Group::LibsqlIngest => {
                "libSQL: ingest vs the minimal write on a sqld of its own (same run, \
                 alternating rounds)"
            }
            Group::MinimalWrite => {
                "ingest x16 vs the minimal-write component (same run, alternating rounds)"
            }
            Group::Memory => "served from a child process of its own (for its peak RSS)",
            Group::Lifecycle => {
                "data lifecycle: purge loop; ingest x16 with retention off / on, nothing due / \
                 purging (same run, alternating rounds)"
            }
            Group::Feed => {
                "pull feed: GET /feed limit=1000 + commit from offset 0; ingest x16 without / \
                 with one consumer pulling (same run, alternating rounds)"
            }
        }
    }
}

impl Serialize for Group {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

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
            .map(|i| {
                webhook_inbox::sources::webhook::payload::parse(&self.shape.message(i).body())
                    .expect("valid")
            })
            .collect()
    }
}

/// A `POST /webhook` signed with the component's own `signature::sign`, built before timing.
fn signed(body: Vec<u8>) -> Req {
    Req {
        method: "POST",
        target: "/webhook".to_owned(),
        signature: Some(webhook_inbox::sources::webhook::signature::sign(
            SECRET.as_bytes(),
            &body,
        )),
        body: Bytes::from(body),
        authorization: None,
    }
}

fn prebuilt(reqs: Vec<Req>) -> Source {
    let reqs = Arc::new(reqs);
    Arc::new(move |i| reqs[i % reqs.len()].clone())
}

fn plan(
    scenario: Scenario,
    name: &str,
    concurrency: usize,
    max: usize,
    cap: Duration,
    source: Source,
) -> Plan {
    Plan {
        scenario,
        name: name.to_owned(),
        concurrency,
        max_requests: max,
        max_time: cap,
        warmup: 0,
        source,
        request_timeout: None,
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
            Scenario::HostHealth,
            "GET /.well-known/spin/health (host only)",
            c,
            opts.read_requests * 2,
            cap,
            get(|_| "/.well-known/spin/health".to_owned()),
        ));
        plans.push(health_live(c, opts.read_requests * 2, cap));
    }
    plans
}

/// The component's cheapest route (its no-op).
pub fn health_live(concurrency: usize, max: usize, cap: Duration) -> Plan {
    plan(
        Scenario::HealthLive,
        "GET /health/live (component no-op)",
        concurrency,
        max,
        cap,
        get(|_| "/health/live".to_owned()),
    )
}

/// The read scenarios. Parameters rotate over the data set (`mix(i)` picks), so one cached
/// page does not stand in for all of them.
pub fn reads(shape: Shape, opts: &Options) -> Vec<Plan> {
    let n = shape.messages;
    let sender = move |i: usize| shape.sender(mix(i as u64) % shape.senders);
    let recipient = move |i: usize| shape.recipient(mix(i as u64 + 1) % shape.recipients);
    let some_ts = move |i: usize| shape.message(mix(i as u64 + 2) % n).ts;
    let deep = (n * 9 / 10).min(900_000);
    let scenarios: Vec<(Scenario, String, Source)> = vec![
        (
            Scenario::FirstPage,
            "GET /messages (first page)".into(),
            get(|_| "/messages".into()),
        ),
        (
            Scenario::Page30,
            // ~7 KB: fitted in one segment even when written in flushed pieces.
            "GET /messages?limit=30".into(),
            get(|_| "/messages?limit=30".into()),
        ),
        (
            Scenario::Page100,
            // ~22 KB: a page that stalled 40 ms on Spin when written in flushed pieces.
            "GET /messages?limit=100".into(),
            get(|_| "/messages?limit=100".into()),
        ),
        (
            Scenario::FromFilter,
            "GET /messages?from=".into(),
            get(move |i| format!("/messages?from={}", encode(&sender(i)))),
        ),
        (
            Scenario::ToFilter,
            "GET /messages?to=".into(),
            get(move |i| format!("/messages?to={}", encode(&recipient(i)))),
        ),
        (
            Scenario::SinceFilter,
            "GET /messages?since=".into(),
            get(move |i| format!("/messages?since={}", encode(&some_ts(i)))),
        ),
        (
            Scenario::CommonTerm,
            format!("GET /messages?q={COMMON_TERM}"),
            get(|_| format!("/messages?q={COMMON_TERM}")),
        ),
        (
            Scenario::AllFilters,
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
            Scenario::DeepOffset,
            format!("GET /messages?offset={deep}"),
            get(move |_| format!("/messages?offset={deep}")),
        ),
        (
            Scenario::RareTerm,
            "GET /messages?q=tk-NNNN (rare)".into(),
            get(|i| format!("/messages?q=tk-{:04}", mix(i as u64 + 4) % 10_000)),
        ),
        (
            Scenario::RareTermSince,
            "GET /messages?q=tk-NNNN&since=".into(),
            get(move |i| {
                format!(
                    "/messages?q=tk-{:04}&since={}",
                    mix(i as u64 + 5) % 10_000,
                    encode(&some_ts(i))
                )
            }),
        ),
        (
            Scenario::CommonTermFrom,
            format!("GET /messages?q={COMMON_TERM}&from="),
            get(move |i| format!("/messages?q={COMMON_TERM}&from={}", encode(&sender(i)))),
        ),
        (
            Scenario::CommonTermTo,
            format!("GET /messages?q={COMMON_TERM}&to="),
            get(move |i| format!("/messages?q={COMMON_TERM}&to={}", encode(&recipient(i)))),
        ),
        (
            Scenario::FromToTopSender,
            "GET /messages?from=(top sender)&to=".into(),
            get(move |i| {
                format!(
                    "/messages?from={}&to={}",
                    encode(&shape.sender(0)),
                    encode(&recipient(i))
                )
            }),
        ),
        (
            Scenario::CommonTermTopSender,
            format!("GET /messages?q={COMMON_TERM}&from=(top sender)"),
            get(move |_| {
                format!(
                    "/messages?q={COMMON_TERM}&from={}",
                    encode(&shape.sender(0))
                )
            }),
        ),
        (
            Scenario::ShortTerm,
            "GET /messages?q=he (2 characters, scanned)".into(),
            get(|_| "/messages?q=he".into()),
        ),
        (
            Scenario::Stats,
            "GET /stats".into(),
            get(|_| "/stats".into()),
        ),
        (
            Scenario::Metrics,
            "GET /metrics".into(),
            get(|_| "/metrics".into()),
        ),
        (
            Scenario::HealthReady,
            "GET /health/ready".into(),
            get(|_| "/health/ready".into()),
        ),
        (
            Scenario::Console,
            // ~26 KB of HTML, CSS and JS, and a SHA-256 of the script and style for the CSP.
            "GET /ui (console page)".into(),
            get(|_| "/ui".into()),
        ),
    ];
    scenarios
        .into_iter()
        .map(|(scenario, name, source)| Plan {
            warmup: if opts.quick { 1 } else { 3 },
            ..plan(
                scenario,
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
    // Writes get twice the time: 256 connections need a while to reach a steady state.
    ingest_as(Scenario::Ingest, fresh, count, concurrency, cap * 2)
}

/// `count` unique, pre-signed messages at `concurrency`, as `scenario` (the minimal-write
/// component gets the same kind of bodies, and ignores the signature).
pub fn ingest_as(
    scenario: Scenario,
    fresh: &mut Fresh,
    count: usize,
    concurrency: usize,
    cap: Duration,
) -> Plan {
    let reqs = fresh
        .take(count)
        .map(|i| signed(fresh.shape.message(i).body()))
        .collect();
    let name = match scenario {
        Scenario::MinimalWriteIngest => "minimal-write POST (new body)",
        Scenario::IngestTwoHosts => "POST /webhook (new), one of two hosts on one sqld",
        Scenario::IngestRetention(Retention::Off) => "POST /webhook (new), retention off",
        Scenario::IngestRetention(Retention::NothingDue) => {
            "POST /webhook (new), retention on, nothing due"
        }
        Scenario::IngestRetention(Retention::Purging) => {
            "POST /webhook (new), a batch due at every fold"
        }
        Scenario::IngestNoConsumer => "POST /webhook (new), no feed consumer",
        Scenario::IngestWithConsumer => "POST /webhook (new), one feed consumer pulling",
        _ => "POST /webhook (new)",
    };
    plan(scenario, name, concurrency, count, cap, prebuilt(reqs))
}

/// The minimal-write component's minimal read: `GET /read?id=N`, N over the rowids `1..=rows`
/// (every one of them stored), at the read scenarios' concurrency and warm-up.
pub fn minimal_read(opts: &Options, rows: usize, max: usize, cap: Duration) -> Plan {
    let rows = rows.max(1) as u64;
    Plan {
        warmup: if opts.quick { 1 } else { 3 },
        ..plan(
            Scenario::MinimalRead,
            "minimal-write GET /read?id= (one row by key)",
            opts.read_concurrency,
            max,
            cap,
            get(move |i| format!("/read?id={}", 1 + mix(i as u64 + 6) % rows)),
        )
    }
}

/// `count` reads at `concurrency`, request `i` of the `i % n`-th of these read scenarios in
/// turn (each with its own parameters rotating as in [`reads`]).
pub fn mixed_reads(
    shape: Shape,
    opts: &Options,
    scenarios: &[Scenario],
    count: usize,
    concurrency: usize,
    cap: Duration,
) -> Plan {
    let sources: Vec<Source> = reads(shape, opts)
        .into_iter()
        .filter(|p| scenarios.contains(&p.scenario))
        .map(|p| p.source)
        .collect();
    assert!(!sources.is_empty(), "mixed reads need read scenarios");
    let n = sources.len();
    plan(
        Scenario::MixedReads,
        &format!("mixed reads ({n} read routes in turn)"),
        concurrency,
        count,
        cap,
        Arc::new(move |i| (sources[i % n])(i / n)),
    )
}

/// Re-deliveries of seeded messages: answered 200 with nothing stored.
pub fn duplicates(shape: Shape, opts: &Options, concurrency: usize, cap: Duration) -> Plan {
    let count = opts.write_requests / 2;
    let reqs = (0..count as u64)
        .map(|i| signed(shape.message(mix(i) % shape.messages).body()))
        .collect();
    plan(
        Scenario::Duplicates,
        "POST /webhook (duplicate)",
        concurrency,
        count,
        cap,
        prebuilt(reqs),
    )
}

/// The issues' targets, judged on this run's rows, the minimal-write and the lifecycle
/// figures.
pub fn targets(
    rows: &[Row],
    minimal: &crate::fixture::Figures,
    lifecycle: &crate::lifecycle::Figures,
) -> Vec<Target> {
    let find = |group: Group, scenario: Scenario, c: usize| {
        rows.iter()
            .find(|r| r.group == group && r.key == scenario && r.concurrency == c)
    };
    let mut out = Vec::new();
    if let Some(r) = find(Group::Ingest, Scenario::Ingest, 16) {
        let ratio = r.storage_ratio.unwrap_or(0.0);
        out.push(Target {
            target: "ingest x16 >= 50% of the raw storage limit x16".into(),
            measured: format!("{:.0}%", ratio * 100.0),
            met: ratio >= 0.5,
        });
        if let Some(floor) = find(Group::HostFloor, Scenario::HealthLive, 16) {
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
    if let Some(s) = minimal.shares() {
        // The median of paired rounds: one lucky or unlucky round must not decide it.
        out.push(Target {
            target: "ingest x16 >= 75% of the minimal-write component (median of rounds)".into(),
            measured: s.percent(),
            met: s.median >= 0.75,
        });
    }
    if let Some(m) = &minimal.memory {
        if let (Some(c), Some(f)) = (m.component_ingest_kib, m.fixture_ingest_kib) {
            let ratio = c as f64 / f as f64;
            out.push(Target {
                target: "peak RSS serving ingest x16 <= 1.5x the minimal-write component's".into(),
                measured: format!(
                    "{ratio:.2}x ({:.1} vs {:.1} MiB)",
                    c as f64 / 1024.0,
                    f as f64 / 1024.0
                ),
                met: ratio <= 1.5,
            });
        }
    }
    if let (Some(with), Some(without)) = (
        find(
            Group::Storage,
            Scenario::StorageInsert(Connections::PerTransaction),
            16,
        ),
        find(
            Group::Storage,
            Scenario::StorageInsertWithoutSearchIndex,
            16,
        ),
    ) {
        let ratio = with.requests_per_s / without.requests_per_s;
        out.push(Target {
            target: "insert on a new connection x16 with the search index >= 90% of without it \
                     (native: the schema each request parses)"
                .into(),
            measured: format!("{:.0}%", ratio * 100.0),
            met: ratio >= 0.9,
        });
    }
    if let Some(s) = lifecycle.nothing_due_shares() {
        out.push(Target {
            target: "ingest x16 with retention on and nothing due >= 0.95 of retention off \
                     (median of rounds)"
                .into(),
            measured: format!(
                "{:.2} ({:.2}-{:.2} over {} rounds)",
                s.median, s.low, s.high, s.rounds
            ),
            met: s.median >= 0.95,
        });
    }
    if let Some(r) = find_any(rows, Group::Reads, Scenario::Export) {
        out.push(Target {
            target: "export: every row, streamed (rows/s reported)".into(),
            measured: format!(
                "{} rows/s",
                r.rows_per_s.map_or("?".to_owned(), |n| format!("{n:.0}"))
            ),
            met: r.errors == 0,
        });
    }
    if let Some(r) = find(Group::Ingest, Scenario::Ingest, 256) {
        let locked = r.db_locked.unwrap_or(0);
        out.push(Target {
            target: "ingest x256: zero errors, zero 'database is locked'".into(),
            measured: format!("{} errors, {locked} locked", r.errors),
            met: r.errors == 0 && locked == 0,
        });
    }
    out.extend(read_targets(rows));
    out
}

/// Each read scenario's median against its limit.
fn read_targets(rows: &[Row]) -> Vec<Target> {
    let mut out = Vec::new();
    let read_c = find_any(rows, Group::Reads, Scenario::Stats).map_or(1, |r| r.concurrency);
    for (scenario, limit) in [
        (Scenario::Stats, 2.0),
        (Scenario::Metrics, 2.0),
        (Scenario::FromFilter, 5.0),
        (Scenario::ToFilter, 5.0),
        (Scenario::SinceFilter, 5.0),
        (Scenario::AllFilters, 5.0),
        // Text search (issue 12).
        (Scenario::RareTerm, 10.0),
        (Scenario::CommonTerm, 100.0),
        (Scenario::RareTermSince, 10.0),
        (Scenario::CommonTermFrom, 10.0),
        (Scenario::CommonTermTo, 10.0),
        (Scenario::FromToTopSender, 5.0),
        (Scenario::CommonTermTopSender, 10.0),
        (Scenario::DeepOffset, 50.0),
    ] {
        if let Some(r) = rows
            .iter()
            .find(|r| r.group == Group::Reads && r.key == scenario && r.concurrency == read_c)
        {
            out.push(Target {
                target: format!("{} median <= {limit} ms", r.scenario),
                measured: format!("{:.2} ms", r.p50_ms),
                met: r.p50_ms <= limit,
            });
        }
    }
    out
}

fn find_any(rows: &[Row], group: Group, scenario: Scenario) -> Option<&Row> {
    rows.iter().find(|r| r.group == group && r.key == scenario)
}
