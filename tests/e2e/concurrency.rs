//! Parallel deliveries: exactly-once storage and no failures under contention.

use crate::support::{message, parallel, parse_prometheus, App};

#[test]
fn parallel_deliveries_of_one_message_store_one_row() {
    let app = std::sync::Arc::new(App::start());
    let jobs: Vec<Box<dyn FnOnce() -> u16 + Send>> = (0..100)
        .map(|_| {
            let app = app.clone();
            Box::new(move || app.deliver(&message("same")).status)
                as Box<dyn FnOnce() -> u16 + Send>
        })
        .collect();
    let statuses = parallel(100, jobs);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(app.total(""), 1);
    let m = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(m[r#"webhook_requests_total{result="created"}"#], 1.0);
    assert_eq!(m[r#"webhook_requests_total{result="duplicate"}"#], 99.0);
}

#[test]
fn five_hundred_distinct_messages_at_concurrency_64() {
    let app = std::sync::Arc::new(App::start());
    let jobs: Vec<Box<dyn FnOnce() -> u16 + Send>> = (0..500)
        .map(|i| {
            let app = app.clone();
            Box::new(move || {
                let mut m = message(&format!("msg-{i}"));
                m["from"] = format!("+1{}", i % 37).into();
                app.deliver(&m).status
            }) as Box<dyn FnOnce() -> u16 + Send>
        })
        .collect();
    let statuses = parallel(64, jobs);
    let failures: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failures.is_empty(),
        "non-200 answers: {failures:?}\n{}",
        app.raw_stdout()
    );
    assert_eq!(app.total(""), 500);
    let stats = app.get("/stats").json();
    assert_eq!(stats["total_messages"], 500);
    assert_eq!(stats["senders_count"], 37);
    let m = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(m[r#"webhook_requests_total{result="created"}"#], 500.0);
    assert_eq!(
        m[r#"http_requests_total{path="/webhook",status="200"}"#],
        500.0
    );
}
