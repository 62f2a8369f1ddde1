//! Load on the libSQL backend: 64 concurrent writers on one sqld, through one host and
//! through two replicas, and a burst of deliveries of one message against a sqld that refuses
//! requests past a low limit ("Too many concurrent requests"). Every delivery must be answered
//! 200, and every distinct message stored exactly once.

use crate::support::{message, App, Backend, Resp};
use serde_json::Value;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The most one test's deliveries may take, all told. A server that stops answering fails
/// the test here instead of hanging it (each request may wait 60 s for its answer).
const DELIVERY_DEADLINE: Duration = Duration::from_secs(45);

/// One delivery's answer, or why there was none.
type Outcome = Result<Resp, String>;

struct Progress {
    jobs: Vec<(usize, Arc<App>, Value)>,
    outcomes: Vec<Option<Outcome>>,
    done: usize,
}

/// Delivers each (app, message) on `senders` threads at once, each thread taking the next
/// delivery as soon as it has its answer. Returns the outcomes in order; panics when they are
/// not all in within [`DELIVERY_DEADLINE`].
fn deliver_all(deliveries: Vec<(Arc<App>, Value)>, senders: usize) -> Vec<Outcome> {
    let count = deliveries.len();
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    let mut jobs: Vec<_> = deliveries
        .into_iter()
        .enumerate()
        .map(|(i, (app, body))| (i, app, body))
        .collect();
    jobs.reverse(); // popped from the end: delivered in order
    let shared = Arc::new((
        Mutex::new(Progress {
            jobs,
            outcomes: (0..count).map(|_| None).collect(),
            done: 0,
        }),
        Condvar::new(),
    ));
    for _ in 0..senders {
        let shared = shared.clone();
        // Detached: after a missed deadline they stop taking deliveries, and the test fails
        // without waiting for the answers still owed.
        std::thread::spawn(move || loop {
            let job = {
                let mut progress = shared.0.lock().unwrap();
                if Instant::now() > deadline {
                    return;
                }
                progress.jobs.pop()
            };
            let Some((i, app, body)) = job else { return };
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| app.deliver(&body)))
                .map_err(|panic| {
                    panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "the delivery panicked".into())
                });
            let mut progress = shared.0.lock().unwrap();
            progress.outcomes[i] = Some(outcome);
            progress.done += 1;
            shared.1.notify_all();
        });
    }
    let progress = shared.0.lock().unwrap();
    let (mut progress, _) = shared
        .1
        .wait_timeout_while(progress, DELIVERY_DEADLINE, |p| p.done < count)
        .unwrap();
    if progress.done < count {
        let statuses = tally(progress.outcomes.iter().flatten());
        panic!(
            "only {} of {count} deliveries answered within {DELIVERY_DEADLINE:?} \
             ({senders} senders); answers so far: {statuses:?}",
            progress.done
        );
    }
    progress.outcomes.drain(..).map(Option::unwrap).collect()
}

/// How many outcomes had each status (`"no answer"` for none).
fn tally<'a>(outcomes: impl Iterator<Item = &'a Outcome>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for outcome in outcomes {
        let key = match outcome {
            Ok(resp) => resp.status.to_string(),
            Err(_) => "no answer".to_owned(),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Fails unless every outcome is a 200, showing what the others were and why (the first
/// few bodies, and the distinct storage errors the apps logged for their failed deliveries).
fn assert_all_ok(outcomes: &[Outcome], apps: &[&App]) {
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !matches!(o, Ok(resp) if resp.status == 200))
        .collect();
    if failed.is_empty() {
        return;
    }
    let samples: Vec<String> = failed
        .iter()
        .take(3)
        .map(|o| match o {
            Ok(resp) => format!("{}: {}", resp.status, resp.text()),
            Err(e) => format!("no answer: {e}"),
        })
        .collect();
    let mut errors = BTreeMap::new();
    for app in apps {
        for line in app.raw_stdout().lines() {
            let Ok(line) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if line["path"] == "/webhook" && line["status"] != 200 {
                let error = line["error"]
                    .as_str()
                    .unwrap_or("(no error field)")
                    .to_owned();
                *errors.entry(error).or_insert(0) += 1;
            }
        }
    }
    let errors: Vec<String> = errors
        .into_iter()
        .take(5)
        .map(|(error, n)| format!("{n} x {error}"))
        .collect();
    panic!(
        "{} of {} deliveries were not answered 200: {:?}\nfirst answers: {samples:#?}\n\
         errors logged: {errors:#?}",
        failed.len(),
        outcomes.len(),
        tally(failed.into_iter()),
    );
}

/// Distinct messages from 37 senders.
fn distinct_message(i: usize) -> Value {
    let mut m = message(&format!("load-{i}"));
    m["from"] = format!("+1{}", i % 37).into();
    m
}

/// `/stats` as one app answers it.
fn stats(app: &App) -> Value {
    let resp = app.get("/stats");
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

/// 64 senders at once on one host, 3 distinct messages each: all answered 200, all stored.
#[test]
fn libsql_takes_64_concurrent_writers() {
    const SENDERS: usize = 64;
    const COUNT: usize = SENDERS * 3;
    let app = Arc::new(App::start_on(Backend::Libsql));
    // Readiness first, as an orchestrator gates traffic on it: this measures writes.
    assert_eq!(app.get("/health/ready").status, 200);
    let deliveries = (0..COUNT)
        .map(|i| (app.clone(), distinct_message(i)))
        .collect();
    let outcomes = deliver_all(deliveries, SENDERS);
    assert_all_ok(&outcomes, &[&app]);
    let stats = stats(&app);
    assert_eq!(stats["total_messages"], COUNT, "{stats}");
    assert_eq!(stats["senders_count"], 37, "{stats}");
    assert_eq!(app.total(""), COUNT as i64);
}

/// Two replicas (two hosts) on one sqld, 32 senders each at once, 3 distinct messages per
/// sender: all answered 200, all stored once, and both replicas count the same.
#[test]
fn libsql_takes_64_concurrent_writers_through_two_replicas() {
    const SENDERS: usize = 64;
    const COUNT: usize = SENDERS * 3;
    let first = Arc::new(App::start_on(Backend::Libsql));
    let second = Arc::new(first.replica());
    assert_eq!(first.get("/health/ready").status, 200);
    assert_eq!(second.get("/health/ready").status, 200);
    // Alternating, so that about half the senders are on each replica at any time.
    let deliveries = (0..COUNT)
        .map(|i| {
            let app = if i % 2 == 0 { &first } else { &second };
            (app.clone(), distinct_message(i))
        })
        .collect();
    let outcomes = deliver_all(deliveries, SENDERS);
    assert_all_ok(&outcomes, &[&first, &second]);
    let from_first = stats(&first);
    assert_eq!(from_first["total_messages"], COUNT, "{from_first}");
    assert_eq!(from_first["senders_count"], 37, "{from_first}");
    assert_eq!(stats(&second), from_first);
    assert_eq!(first.total(""), COUNT as i64);
    assert_eq!(second.total(""), COUNT as i64);
}

/// 200 deliveries of one message at once, on a sqld that takes at most 4 requests at a time
/// (`--max-concurrent-requests 4`; sqld's default is 128) and answers the others "Too many
/// concurrent requests". A refusal is transient: every delivery is still answered 200, and
/// the message is stored once.
#[test]
fn libsql_refusing_concurrent_requests_still_stores_one_message_once() {
    const DELIVERIES: usize = 200;
    let app = Arc::new(App::start_on_sqld_with_args(&[
        "--max-concurrent-requests",
        "4",
    ]));
    let deliveries = (0..DELIVERIES)
        .map(|_| (app.clone(), message("one-id")))
        .collect();
    let outcomes = deliver_all(deliveries, DELIVERIES);
    assert_all_ok(&outcomes, &[&app]);
    let stats = stats(&app);
    assert_eq!(stats["total_messages"], 1, "{stats}");
    assert_eq!(app.total(""), 1);
    let stored = app.get("/messages/one-id");
    assert_eq!(stored.status, 200, "{}", stored.text());
    assert_eq!(stored.json(), message("one-id"));
    // The test is only worth something if sqld did refuse requests under this load.
    let refusals = app
        .sqld_log()
        .matches("hrana server: Too many concurrent requests")
        .count();
    eprintln!("sqld refused {refusals} requests");
    assert!(
        refusals > 0,
        "sqld refused no request: the load did not reach its limit"
    );
}
