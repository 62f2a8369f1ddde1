//! The pull feed: a consumer that pulls and commits while 16 senders deliver at full speed
//! sees every acknowledged message once, in increasing offset order; through one instance
//! on each backend, and through two instances on one sqld (reading from one and committing
//! through the other). Then the consumers' list and the lag gauge agree it is caught up.

use crate::support::{message, parallel, parse_prometheus, App, Backend, Req};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const SENDERS: usize = 16;
const CONSUMER: &str = "crm-sync";

/// One pull and, when it returned messages, its commit; the messages as (offset, id).
fn pull_and_commit(read: &App, commit: &App) -> Vec<(i64, String)> {
    let resp = read.get(&format!("/feed?consumer={CONSUMER}&limit=50"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let page = resp.json();
    let messages: Vec<(i64, String)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let id = m["message_id"].as_str().unwrap().to_owned();
            (m["offset"].as_i64().unwrap(), id)
        })
        .collect();
    if let Some((last, _)) = messages.last() {
        assert_eq!(page["next_offset"], *last);
        let body = json!({"consumer": CONSUMER, "offset": last}).to_string();
        let resp = commit.send(&Req::new("POST", "/feed/commit").body(body.as_bytes()));
        assert_eq!(
            (resp.status, resp.json()),
            (200, json!({"consumer": CONSUMER, "committed": last}))
        );
    }
    messages
}

/// Delivers `count` distinct messages on [`SENDERS`] threads, alternating over `apps`,
/// while one consumer pulls and commits in a loop, alternating too; once every sender has
/// its answer, the consumer drains. It must have seen every acknowledged id exactly once,
/// at increasing offsets.
fn consume_while_delivering(apps: Vec<Arc<App>>, count: usize) {
    let done = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (apps, done) = (apps.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seen: Vec<(i64, String)> = Vec::new();
            let mut while_delivering = 0;
            for round in 0.. {
                // Read the flag before pulling: an empty page after it means drained.
                let finished = done.load(Ordering::SeqCst);
                let read = &apps[round % apps.len()];
                let commit = &apps[(round + 1) % apps.len()];
                let page = pull_and_commit(read, commit);
                if page.is_empty() && finished {
                    break;
                }
                if !finished {
                    while_delivering += page.len();
                }
                seen.extend(page);
            }
            (seen, while_delivering)
        })
    };
    let jobs: Vec<Box<dyn FnOnce() -> (u16, String) + Send>> = (0..count)
        .map(|i| {
            let app = apps[i % apps.len()].clone();
            Box::new(move || {
                let id = format!("feed-{i:04}");
                let mut m: Value = message(&id);
                // Older `ts` for later ids: the feed's order is storage order, not time.
                m["ts"] =
                    format!("2025-01-15T{:02}:{:02}:00Z", 23 - i / 60 % 24, 59 - i % 60).into();
                (app.deliver(&m).status, id)
            }) as Box<dyn FnOnce() -> (u16, String) + Send>
        })
        .collect();
    let answers = parallel(SENDERS, jobs);
    done.store(true, Ordering::SeqCst);
    let (seen, while_delivering) = consumer.join().expect("the consumer's checks passed");
    assert!(
        while_delivering > 0,
        "the consumer read while the senders delivered"
    );

    let acknowledged: HashSet<String> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(acknowledged.len(), count, "every delivery answered 200");
    let offsets: Vec<i64> = seen.iter().map(|(offset, _)| *offset).collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets increase: {offsets:?}"
    );
    let ids: Vec<&String> = seen.iter().map(|(_, id)| id).collect();
    let unique: HashSet<String> = ids.iter().map(|id| (*id).clone()).collect();
    assert_eq!(unique.len(), ids.len(), "each id once");
    assert_eq!(unique, acknowledged, "every acknowledged id");

    let last = *offsets.last().unwrap();
    for app in &apps {
        assert_eq!(
            app.get("/feed/consumers").json(),
            json!({"data": [{"consumer": CONSUMER, "committed": last, "lag": 0}]})
        );
        let metrics = parse_prometheus(&app.get("/metrics").text());
        assert_eq!(
            metrics[&format!("webhook_feed_lag{{consumer=\"{CONSUMER}\"}}")],
            0.0
        );
    }
    // A new delivery: one behind, then caught up again.
    assert_eq!(apps[0].deliver(&message("after")).status, 200);
    let page = apps[apps.len() - 1]
        .get(&format!("/feed?consumer={CONSUMER}"))
        .json();
    assert_eq!(page["lag"], 1);
    assert_eq!(page["messages"][0]["message_id"], "after");
    assert!(page["next_offset"].as_i64().unwrap() > last);
}

on_each_backend! {
fn a_consumer_sees_every_acknowledged_message_once_in_order(backend: Backend) {
    let app = Arc::new(App::start_on(backend));
    assert_eq!(app.get("/health/ready").status, 200);
    // Past a fold (every 256th message), so rows sit in both tables while it pulls.
    consume_while_delivering(vec![app], 320);
}
}

#[test]
fn two_instances_on_one_sqld_skip_nothing() {
    let first = Arc::new(App::start_on(Backend::Libsql));
    assert_eq!(first.get("/health/ready").status, 200);
    let second = Arc::new(first.replica());
    consume_while_delivering(vec![first, second], 320);
}

on_each_backend! {
fn commits_refuse_going_back_past_the_end_and_past_the_bound(backend: Backend) {
    let app = App::with_vars_on(
        backend,
        &[("webhook_secret", crate::support::SECRET), ("feed_max_consumers", "1")],
    );
    for id in ["a", "b", "c"] {
        assert_eq!(app.deliver(&message(id)).status, 200);
    }
    let commit = |consumer: &str, offset: i64| {
        let body = json!({"consumer": consumer, "offset": offset}).to_string();
        let resp = app.send(&Req::new("POST", "/feed/commit").body(body.as_bytes()));
        (resp.status, resp.json())
    };
    assert_eq!(commit("one", 2).0, 200);
    assert_eq!(commit("one", 2).0, 200, "idempotent");
    assert_eq!(commit("one", 1).0, 409);
    let (status, body) = commit("one", 4);
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "offset"]));
    assert_eq!(commit("two", 0).0, 409, "past the bound");
    assert_eq!(app.get("/feed?consumer=two").status, 409);
    let page = app.get("/feed?consumer=one").json();
    assert_eq!(page["messages"][0]["message_id"], "c");
    assert_eq!((page["lag"].clone(), page["next_offset"].clone()), (json!(1), json!(3)));
    // Forgetting needs the admin token, which is not set here: closed.
    assert_eq!(app.send(&Req::new("DELETE", "/feed/consumers/one")).status, 403);
}
}
