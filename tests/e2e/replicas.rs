//! Many instances, one inbox: two hosts (two replicas, each with its own connections) on one
//! libSQL server, as SpinKube replicas share one database.

use crate::support::{message, parallel, parse_prometheus, App, Backend};
use serde_json::Value;
use std::sync::Arc;

/// Two replicas on a fresh sqld; delivers `bodies` in parallel on `senders` threads,
/// alternating between the replicas, and checks every answer is 200.
fn deliver_through_two_replicas(bodies: Vec<Value>, senders: usize) -> (Arc<App>, Arc<App>) {
    let first = Arc::new(App::start_on(Backend::Libsql));
    let second = Arc::new(first.replica());
    let jobs: Vec<Box<dyn FnOnce() -> u16 + Send>> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let app = if i % 2 == 0 { &first } else { &second }.clone();
            Box::new(move || app.deliver(&body).status) as Box<dyn FnOnce() -> u16 + Send>
        })
        .collect();
    let statuses = parallel(senders, jobs);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    (first, second)
}

#[test]
fn parallel_deliveries_to_two_replicas_store_one_row_and_agree() {
    let (first, second) =
        deliver_through_two_replicas((0..60).map(|_| message("shared-id")).collect(), 60);
    for app in [&first, &second] {
        assert_eq!(app.total(""), 1);
        let m = parse_prometheus(&app.get("/metrics").text());
        assert_eq!(
            m[r#"webhook_requests_total{source="webhook",result="created"}"#],
            1.0
        );
        assert_eq!(
            m[r#"webhook_requests_total{source="webhook",result="duplicate"}"#],
            59.0
        );
    }
    let stats = first.get("/stats");
    assert_eq!(stats.status, 200);
    assert_eq!(stats.json()["total_messages"], 1);
    assert_eq!(stats.body, second.get("/stats").body);
}

#[test]
fn distinct_messages_through_two_replicas_are_all_counted_once() {
    // Each id goes to both replicas at once: 40 messages, 80 deliveries.
    let bodies = (0..80)
        .map(|i| {
            let mut m = message(&format!("msg-{}", i / 2));
            m["from"] = format!("+1{}", i % 7).into();
            m
        })
        .collect();
    let (first, second) = deliver_through_two_replicas(bodies, 16);
    assert_eq!(first.total(""), 40);
    assert_eq!(second.get("/stats").json()["total_messages"], 40);
    assert_eq!(first.get("/stats").body, second.get("/stats").body);
}
