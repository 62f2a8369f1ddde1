//! The pull feed (issue 25), a phase of its own (`--only feed`), on one fresh copy of the
//! seeded set served in this process:
//!
//! 1. Pull throughput: one new consumer pulls the seeded set from offset 0,
//!    `GET /feed?limit=1000` and `POST /feed/commit` of each page's `next_offset`, on one
//!    keep-alive connection, until an empty page or the caps (pages: `--read-requests`;
//!    time: twice `--seconds`). Messages per second over the loop's wall time (commits
//!    included), and p50/p99 per page. Checked as it goes: offsets strictly increase
//!    within and across pages, `next_offset` is the page's last offset, each commit answers
//!    what it committed, and (nothing else writes meanwhile) each page's `lag` is the
//!    previous one's less the previous page's messages; after an empty page the messages
//!    seen are the first page's lag.
//! 2. What an active consumer costs ingest: `--rounds` paired rounds of ingest x16 of unique
//!    messages alone, and the same with one consumer pulling (`limit=1000`, committing each
//!    non-empty page, pulling again at once, also after an empty page) on another
//!    connection from another thread at the same time; the first arm alternates. The
//!    consumer starts at the end of the seeded set (its first commit is the highest
//!    offset) and catches up, unmeasured, before each "with" arm, so it reads the new
//!    messages, not the old million. After the rounds it catches up once more: it must
//!    have seen every 200 of both arms exactly once (offsets strictly increasing), and
//!    `/stats` must count the seeded set plus them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::fixture::{Served, Shares};
use crate::load::{LoadGen, Measured, Req, Step};
use crate::phases::{self, Setup};
use crate::report::{Row, Target};
use crate::scenarios::{self, Fresh, Group, Scenario};
use crate::serve::Db;
use crate::Options;

/// The page size (the largest `limit` the component takes).
const LIMIT: u32 = 1_000;
/// Connections of the ingest figures (as in the other comparisons).
const CONCURRENCY: usize = 16;
const PULL_CONSUMER: &str = "bench-pull";
const LIVE_CONSUMER: &str = "bench-live";

/// Everything this phase measured, for the report and the JSON file.
#[derive(Debug, Default, Serialize)]
pub struct Figures {
    pub pull: Option<Pull>,
    /// Ingest x16 without and with a consumer pulling, per round.
    pub rounds: Vec<Round>,
    /// The live consumer's messages after the rounds, against the 200s it had to see.
    pub live_check: Option<String>,
}

/// The pull from offset 0.
#[derive(Debug, Serialize)]
pub struct Pull {
    pub seeded: u64,
    pub limit: u32,
    pub pages: usize,
    pub messages: u64,
    /// Wall time of the loop, pages and commits.
    pub seconds: f64,
    pub messages_per_s: f64,
    pub page_p50_ms: f64,
    pub page_p99_ms: f64,
    pub page_max_ms: f64,
    pub commit_p50_ms: f64,
    pub commit_p99_ms: f64,
    /// `lag` of the first page and of the last, and the last offset committed.
    pub first_lag: Option<i64>,
    pub last_lag: Option<i64>,
    pub last_offset: i64,
    /// It ended on an empty page (the whole set read), not at a cap.
    pub complete: bool,
}

/// One round: ingest x16 without a consumer and with one.
#[derive(Debug, Serialize)]
pub struct Round {
    pub round: usize,
    /// Which arm ran first.
    pub first: &'static str,
    pub without_per_s: f64,
    pub with_per_s: f64,
    /// with / without.
    pub share: f64,
    pub without_p99_ms: f64,
    pub with_p99_ms: f64,
    /// The consumer during the "with" arm: pages (empty ones among them), messages, and
    /// messages per second over its own time.
    pub consumer_pages: usize,
    pub consumer_empty_pages: u64,
    pub consumer_messages: u64,
    pub consumer_messages_per_s: f64,
    pub consumer_page_p50_ms: f64,
}

impl Figures {
    /// With a consumer over without, requests/s, over the rounds.
    pub fn shares(&self) -> Option<Shares> {
        Shares::of(self.rounds.iter().map(|r| r.share).collect())
    }

    /// The consumer's messages/s during the "with" arms, over the rounds.
    pub fn consumer_rates(&self) -> Option<Shares> {
        Shares::of(
            self.rounds
                .iter()
                .map(|r| r.consumer_messages_per_s)
                .collect(),
        )
    }
}

/// A page as the consumer reads it: offsets only.
#[derive(Deserialize)]
struct Page {
    messages: Vec<Offset>,
    next_offset: i64,
    lag: i64,
}

#[derive(Deserialize)]
struct Offset {
    offset: i64,
}

#[derive(Deserialize)]
struct Committed {
    committed: i64,
}

/// When a consumer loop stops asking for pages (a pending commit is always sent first, so
/// its committed offset is the last one it read).
struct Stop<'a> {
    at_empty_page: bool,
    max_pages: usize,
    deadline: Option<Instant>,
    flag: Option<&'a AtomicBool>,
}

/// One consumer: its position, its figures, and the first thing that was not as it must be.
struct Consumer {
    name: &'static str,
    /// The highest offset read (or committed at the start).
    last_offset: i64,
    messages: u64,
    empty_pages: u64,
    pages: Measured,
    commits: Measured,
    first_lag: Option<i64>,
    last_lag: Option<i64>,
    /// Nothing else writes: each page's lag must be the previous one's less its messages.
    lag_must_follow: bool,
    expected_lag: Option<i64>,
    /// The commit in flight, if the last request was one.
    committing: Option<i64>,
    problem: Option<String>,
}

impl Consumer {
    fn new(name: &'static str, start: i64, lag_must_follow: bool) -> Consumer {
        Consumer {
            name,
            last_offset: start,
            messages: 0,
            empty_pages: 0,
            pages: Measured::default(),
            commits: Measured::default(),
            first_lag: None,
            last_lag: None,
            lag_must_follow,
            expected_lag: None,
            committing: None,
            problem: None,
        }
    }

    /// Clears the figures (not the position) for a new measured stretch.
    fn reset_figures(&mut self) {
        self.messages = 0;
        self.empty_pages = 0;
        self.pages = Measured::default();
        self.commits = Measured::default();
    }

    fn page_request(&self) -> Req {
        Req::get(format!("/feed?consumer={}&limit={LIMIT}", self.name))
    }

    fn commit_request(&self, offset: i64) -> Req {
        Req {
            method: "POST",
            target: "/feed/commit".to_owned(),
            body: Bytes::from(
                serde_json::json!({ "consumer": self.name, "offset": offset }).to_string(),
            ),
            signature: None,
            authorization: None,
        }
    }

    fn fail(&mut self, problem: String) {
        self.problem.get_or_insert(problem);
    }

    /// Pages and commits on one connection until `stop` says so, or at the first problem.
    fn run(&mut self, load: &LoadGen, stop: &Stop) -> Duration {
        load.sequence(|step| self.next(step, stop))
    }

    /// The request after `step`'s answer, or `None` to stop.
    fn next(&mut self, step: Step, stop: &Stop) -> Option<Req> {
        let was_commit = self.committing.take();
        let figures = if was_commit.is_some() {
            &mut self.commits
        } else {
            &mut self.pages
        };
        let (status, body) = match step {
            Step::Start => return self.page_or_stop(stop),
            Step::Failed(e) => {
                figures.requests += 1;
                figures.transport_errors += 1;
                figures.first_error.get_or_insert_with(|| e.to_owned());
                self.fail(format!("{}: {e}", self.name));
                return None;
            }
            Step::Answer {
                status,
                body,
                latency,
            } => {
                figures.requests += 1;
                figures.latencies.push(latency);
                *figures.statuses.entry(status).or_default() += 1;
                (status, body)
            }
        };
        if status != 200 {
            let text = String::from_utf8_lossy(body).into_owned();
            let what = if was_commit.is_some() {
                "POST /feed/commit"
            } else {
                "GET /feed"
            };
            figures
                .first_error
                .get_or_insert_with(|| format!("{what} -> {status}: {text}"));
            self.fail(format!("{}: {what} -> {status}: {text}", self.name));
            return None;
        }
        if let Some(offset) = was_commit {
            match serde_json::from_slice::<Committed>(body) {
                Ok(c) if c.committed == offset => {}
                _ => {
                    self.fail(format!(
                        "{}: committing {offset} answered {}",
                        self.name,
                        String::from_utf8_lossy(body)
                    ));
                    return None;
                }
            }
            return self.page_or_stop(stop);
        }
        let page: Page = match serde_json::from_slice(body) {
            Ok(page) => page,
            Err(e) => {
                self.fail(format!("{}: a page that does not parse: {e}", self.name));
                return None;
            }
        };
        if let Some(problem) = self.check(&page) {
            self.fail(format!("{}: {problem}", self.name));
            return None;
        }
        self.first_lag.get_or_insert(page.lag);
        self.last_lag = Some(page.lag);
        let n = page.messages.len() as i64;
        self.messages += n as u64;
        self.expected_lag = Some(page.lag - n);
        if let Some(last) = page.messages.last() {
            self.last_offset = last.offset;
            self.committing = Some(page.next_offset);
            return Some(self.commit_request(page.next_offset));
        }
        self.empty_pages += 1;
        if stop.at_empty_page {
            return None;
        }
        self.page_or_stop(stop)
    }

    /// What is wrong with `page`, if anything: offsets not strictly above every offset read
    /// before, a `next_offset` that is not the last one, a lag that does not follow.
    fn check(&self, page: &Page) -> Option<String> {
        let mut previous = self.last_offset;
        for m in &page.messages {
            if m.offset <= previous {
                return Some(format!("offset {} after offset {previous}", m.offset));
            }
            previous = m.offset;
        }
        if let Some(last) = page.messages.last() {
            if page.next_offset != last.offset {
                return Some(format!(
                    "next_offset {} but the last message's offset is {}",
                    page.next_offset, last.offset
                ));
            }
        }
        match self.expected_lag {
            Some(want) if self.lag_must_follow && page.lag != want => Some(format!(
                "lag {} after a page that left {want} to read",
                page.lag
            )),
            _ => None,
        }
    }

    fn page_or_stop(&self, stop: &Stop) -> Option<Req> {
        let stopped = self.pages.requests >= stop.max_pages
            || stop.deadline.is_some_and(|d| Instant::now() >= d)
            || stop.flag.is_some_and(|f| f.load(Ordering::Relaxed));
        (!stopped).then(|| self.page_request())
    }

    /// Sorts the latencies and sets the elapsed time (figures complete).
    fn settle(&mut self, elapsed: Duration) {
        for m in [&mut self.pages, &mut self.commits] {
            m.latencies.sort_unstable();
            m.elapsed = elapsed;
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The phase. Returns the table rows, the figures, and failures (an answer or a count that
/// is not what it must be).
pub fn run(
    setup: &Setup,
    opts: &Options,
    fresh: &mut Fresh,
) -> Result<(Vec<Row>, Figures, Vec<String>)> {
    let db = setup.copy_of_seeded("feed.db")?;
    // The highest offset handed out (the live consumer starts there): `seq` of the newest
    // row, folded or not yet, read before the host opens the file.
    let highest: i64 = rusqlite::Connection::open(&db)?
        .query_row(
            "SELECT max(coalesce((SELECT max(seq) FROM messages), 0), \
                        coalesce((SELECT max(seq) FROM received), 0))",
            [],
            |r| r.get(0),
        )
        .context("the seeded set's highest offset")?;
    let spec = phases::component_spec(setup, "runtime-config-feed.toml", Db::LocalFile(&db))?;
    let mut served = Served::start(&spec)?;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut figures = Figures::default();

    let (row, pull) = pull(&served.load, setup.shape.messages, opts, &mut failures);
    rows.push(row);
    figures.pull = Some(pull);

    rows.extend(ingest_rounds(
        opts,
        fresh,
        &mut served,
        highest,
        &mut figures,
        &mut failures,
    )?);
    failures.extend(phases::total_differs(
        &served.load,
        setup.shape.messages as usize + served.stored,
        "feed phase: after the rounds",
    )?);
    served.host.shutdown();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    Ok((rows, figures, failures))
}

/// 1: a new consumer pulls from offset 0, committing every page.
fn pull(load: &LoadGen, seeded: u64, opts: &Options, failures: &mut Vec<String>) -> (Row, Pull) {
    let name = format!("GET /feed?limit={LIMIT} from offset 0, committing each page");
    eprintln!("{name} ...");
    let mut consumer = Consumer::new(PULL_CONSUMER, 0, true);
    let stop = Stop {
        at_empty_page: true,
        max_pages: opts.read_requests,
        deadline: Some(Instant::now() + Duration::from_secs_f64(opts.seconds * 2.0)),
        flag: None,
    };
    let elapsed = consumer.run(load, &stop);
    consumer.settle(elapsed);
    let complete = consumer.empty_pages > 0;
    if let Some(problem) = &consumer.problem {
        failures.push(format!("feed pull: {problem}"));
    }
    // Read to the end: every message the first page said was there, and the seeded set.
    if complete && consumer.problem.is_none() {
        let first = consumer.first_lag.unwrap_or(0);
        if consumer.messages as i64 != first || consumer.messages != seeded {
            failures.push(format!(
                "feed pull: {} messages read to the end, the first page's lag was {first}, \
                 {seeded} seeded",
                consumer.messages
            ));
        }
    }
    let seconds = elapsed.as_secs_f64();
    let p = &consumer.pages;
    let c = &consumer.commits;
    let mut row = Row::new(Group::Feed, Scenario::FeedPull, &name, 1, p);
    row.requests_per_s = p.requests as f64 / seconds.max(1e-9);
    row.rows_per_s = Some(consumer.messages as f64 / seconds.max(1e-9));
    let figures = Pull {
        seeded,
        limit: LIMIT,
        pages: p.requests,
        messages: consumer.messages,
        seconds,
        messages_per_s: consumer.messages as f64 / seconds.max(1e-9),
        page_p50_ms: ms(p.percentile(50.0)),
        page_p99_ms: ms(p.percentile(99.0)),
        page_max_ms: ms(p.max()),
        commit_p50_ms: ms(c.percentile(50.0)),
        commit_p99_ms: ms(c.percentile(99.0)),
        first_lag: consumer.first_lag,
        last_lag: consumer.last_lag,
        last_offset: consumer.last_offset,
        complete,
    };
    if c.errors() > 0 {
        row.errors += c.errors();
        row.first_error = row.first_error.or(c.first_error.clone());
    }
    (row, figures)
}

/// The live consumer reads until an empty page (unmeasured): it then stands at the end.
fn catch_up(consumer: &mut Consumer, load: &LoadGen) -> u64 {
    let before = consumer.messages;
    let stop = Stop {
        at_empty_page: true,
        max_pages: usize::MAX,
        deadline: Some(Instant::now() + Duration::from_secs(120)),
        flag: None,
    };
    consumer.run(load, &stop);
    consumer.messages - before
}

/// 2: ingest x16 alone and with the live consumer pulling, in paired rounds.
fn ingest_rounds(
    opts: &Options,
    fresh: &mut Fresh,
    served: &mut Served,
    highest: i64,
    figures: &mut Figures,
    failures: &mut Vec<String>,
) -> Result<Vec<Row>> {
    // Start at the end of the seeded set: its first commit is the highest offset.
    let mut live = Consumer::new(LIVE_CONSUMER, highest, false);
    let (status, body) = served.load.fetch(live.commit_request(highest))?;
    if status != 200 {
        failures.push(format!(
            "feed: committing the highest offset {highest} -> {status}: {}",
            String::from_utf8_lossy(&body)
        ));
        return Ok(Vec::new());
    }
    // As in the other comparisons: quick mode's 400 writes take a third of a second at x16.
    let count = opts
        .write_requests
        .max(if opts.quick { 1_000 } else { CONCURRENCY * 2 });
    let cap = Duration::from_secs_f64(opts.seconds * 2.0);
    let mut rows = Vec::new();
    let mut seen = 0u64;
    let mut locked_seen = served.host.stdout().len();
    for round in 1..=opts.rounds {
        // Fresh bodies for both arms; who goes first alternates.
        let plans = [
            scenarios::ingest_as(Scenario::IngestNoConsumer, fresh, count, CONCURRENCY, cap),
            scenarios::ingest_as(Scenario::IngestWithConsumer, fresh, count, CONCURRENCY, cap),
        ];
        let mut measured: [Option<Row>; 2] = Default::default();
        let mut consumer_row = None;
        let mut consumer_figures = (0, 0, 0, 0.0, 0.0);
        for arm in (0..2).map(|i| (i + round + 1) % 2) {
            if arm == 0 {
                let m = served.run(&plans[0]);
                let mut row = Row::of(Group::Feed, &plans[0], &m);
                row.db_locked = Some(phases::locked_lines_since(&served.host, &mut locked_seen));
                measured[0] = Some(row);
                continue;
            }
            seen += catch_up(&mut live, &served.load);
            live.reset_figures();
            let stop_flag = AtomicBool::new(false);
            let addr = served.host.addr();
            let (m, consumer_elapsed) = std::thread::scope(|s| -> Result<_> {
                let consumer = s.spawn(|| -> Result<Duration> {
                    let load = LoadGen::new(addr)?;
                    let stop = Stop {
                        at_empty_page: false,
                        max_pages: usize::MAX,
                        deadline: None,
                        flag: Some(&stop_flag),
                    };
                    Ok(live.run(&load, &stop))
                });
                let m = served.run(&plans[1]);
                stop_flag.store(true, Ordering::Relaxed);
                let elapsed = consumer.join().expect("consumer thread")?;
                Ok((m, elapsed))
            })?;
            live.settle(consumer_elapsed);
            seen += live.messages;
            let mut row = Row::of(Group::Feed, &plans[1], &m);
            row.db_locked = Some(phases::locked_lines_since(&served.host, &mut locked_seen));
            measured[1] = Some(row);
            let secs = consumer_elapsed.as_secs_f64().max(1e-9);
            let p = &live.pages;
            let mut c_row = Row::new(
                Group::Feed,
                Scenario::FeedDuringIngest,
                &format!("GET /feed?limit={LIMIT} + commit, one consumer during ingest"),
                1,
                p,
            );
            c_row.requests_per_s = p.requests as f64 / secs;
            c_row.rows_per_s = Some(live.messages as f64 / secs);
            c_row.round = Some(round);
            let c = &live.commits;
            if c.errors() > 0 {
                c_row.errors += c.errors();
                c_row.first_error = c_row.first_error.or(c.first_error.clone());
            }
            consumer_figures = (
                p.requests,
                live.empty_pages,
                live.messages,
                live.messages as f64 / secs,
                ms(p.percentile(50.0)),
            );
            consumer_row = Some(c_row);
            if let Some(problem) = &live.problem {
                failures.push(format!("feed, round {round}: {problem}"));
                break;
            }
        }
        let [Some(mut without), Some(mut with)] = measured else {
            break;
        };
        let share = with.requests_per_s / without.requests_per_s.max(1e-9);
        with.consumer_off_ratio = Some(share);
        let (pages, empty, messages, per_s, page_p50) = consumer_figures;
        figures.rounds.push(Round {
            round,
            first: if round % 2 == 1 { "without" } else { "with" },
            without_per_s: without.requests_per_s,
            with_per_s: with.requests_per_s,
            share,
            without_p99_ms: without.p99_ms,
            with_p99_ms: with.p99_ms,
            consumer_pages: pages,
            consumer_empty_pages: empty,
            consumer_messages: messages,
            consumer_messages_per_s: per_s,
            consumer_page_p50_ms: page_p50,
        });
        without.round = Some(round);
        with.round = Some(round);
        rows.extend([without, with]);
        rows.extend(consumer_row);
    }

    // Every 200 of both arms, once each, in offset order.
    if live.problem.is_none() {
        std::thread::sleep(Duration::from_millis(200));
        seen += catch_up(&mut live, &served.load);
        let check = format!(
            "the consumer read {seen} messages after the seeded set's offset {highest}; \
             ingest answered {} 200s",
            served.stored
        );
        if let Some(problem) = &live.problem {
            failures.push(format!("feed, after the rounds: {problem}"));
        } else if seen != served.stored as u64 {
            failures.push(format!("feed: {check}"));
        } else {
            figures.live_check = Some(check);
        }
    }
    Ok(rows)
}

/// Report-only lines (the issue sets no number): pull throughput, and ingest with a consumer
/// as a share of without. `met` says only that the figures were measured cleanly.
pub fn targets(f: &Figures, failed: bool) -> Vec<Target> {
    let mut out = Vec::new();
    if let Some(p) = &f.pull {
        out.push(Target {
            target: format!(
                "pull throughput at {} messages (GET /feed, limit={}, committing each page; \
                 reported, no target)",
                p.seeded, p.limit
            ),
            measured: format!(
                "{:.0} messages/s, page p50 {:.1} ms, p99 {:.1} ms ({} messages in {:.1} s{})",
                p.messages_per_s,
                p.page_p50_ms,
                p.page_p99_ms,
                p.messages,
                p.seconds,
                if p.complete {
                    ", to the end"
                } else {
                    ", stopped by the cap"
                }
            ),
            met: !failed,
        });
    }
    if let Some(s) = f.shares() {
        out.push(Target {
            target: "ingest x16 with one consumer pulling, share of without (median of rounds; \
                     reported, no target)"
                .into(),
            measured: s.percent(),
            met: !failed,
        });
    }
    out
}

/// The report's lines for these figures.
pub fn print(f: &Figures) {
    if f.pull.is_none() && f.rounds.is_empty() {
        return;
    }
    println!("pull feed (issue 25):");
    if let Some(p) = &f.pull {
        println!(
            "  pull from offset 0 (limit {}, one connection, commit after each page): {} \
             messages in {} pages, {:.2} s -> {:.0} messages/s{}; lag {} at the first page, \
             {} at the last; page p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; commit p50 {:.2} \
             ms, p99 {:.2} ms",
            p.limit,
            p.messages,
            p.pages,
            p.seconds,
            p.messages_per_s,
            if p.complete {
                " (to the end)"
            } else {
                " (stopped by the cap)"
            },
            p.first_lag.map_or("?".to_owned(), |l| l.to_string()),
            p.last_lag.map_or("?".to_owned(), |l| l.to_string()),
            p.page_p50_ms,
            p.page_p99_ms,
            p.page_max_ms,
            p.commit_p50_ms,
            p.commit_p99_ms,
        );
    }
    for r in &f.rounds {
        println!(
            "  round {} ({} first): ingest x16 without a consumer {:.1} req/s (p99 {:.2} ms), \
             with one {:.1} req/s (p99 {:.2} ms) -> {:.0}%; the consumer read {} messages in \
             {} pages ({} empty), {:.0} messages/s, page p50 {:.2} ms",
            r.round,
            r.first,
            r.without_per_s,
            r.without_p99_ms,
            r.with_per_s,
            r.with_p99_ms,
            r.share * 100.0,
            r.consumer_messages,
            r.consumer_pages,
            r.consumer_empty_pages,
            r.consumer_messages_per_s,
            r.consumer_page_p50_ms,
        );
    }
    if let Some(s) = f.shares() {
        println!(
            "  ingest x16 with one consumer pulling, share of without: median {}",
            s.percent()
        );
    }
    if let Some(s) = f.consumer_rates() {
        println!(
            "  the consumer's pull rate during ingest: median {:.0} messages/s ({:.0}-{:.0})",
            s.median, s.low, s.high
        );
    }
    if let Some(check) = &f.live_check {
        println!("  checked: {check}");
    }
}
