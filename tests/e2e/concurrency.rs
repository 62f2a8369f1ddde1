//! Parallel deliveries: exactly-once storage and no failures under contention.

use crate::support::{message, parallel, parse_prometheus, App, Backend};

on_each_backend! {
fn parallel_deliveries_of_one_message_store_one_row(backend: Backend) {
    let app = std::sync::Arc::new(App::start_on(backend));
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
    assert_eq!(m[r#"webhook_requests_total{source="webhook",result="created"}"#], 1.0);
    assert_eq!(m[r#"webhook_requests_total{source="webhook",result="duplicate"}"#], 99.0);
}
}

on_each_backend! {
fn distinct_messages_under_concurrency(backend: Backend) {
    // 64 senders at once on both; a libSQL server takes fewer messages in the same time
    // (tests/e2e/load.rs loads it further, through two replicas too).
    let (count, senders) = match backend {
        Backend::LocalFile => (500, 64),
        Backend::Libsql => (192, 64),
    };
    let app = std::sync::Arc::new(App::start_on(backend));
    // Readiness first, as an orchestrator gates traffic on it: this measures writes, and
    // first use under parallel deliveries is covered above and by the replica tests.
    assert_eq!(app.get("/health/ready").status, 200);
    let jobs: Vec<Box<dyn FnOnce() -> u16 + Send>> = (0..count)
        .map(|i| {
            let app = app.clone();
            Box::new(move || {
                let mut m = message(&format!("msg-{i}"));
                m["from"] = format!("+1{}", i % 37).into();
                app.deliver(&m).status
            }) as Box<dyn FnOnce() -> u16 + Send>
        })
        .collect();
    let statuses = parallel(senders, jobs);
    let failures: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failures.is_empty(),
        "non-200 answers: {failures:?}\n{}",
        app.raw_stdout()
    );
    assert_eq!(app.total(""), count);
    let stats = app.get("/stats").json();
    assert_eq!(stats["total_messages"], count);
    assert_eq!(stats["senders_count"], 37);
    let m = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(
        m[r#"webhook_requests_total{source="webhook",result="created"}"#],
        count as f64
    );
    assert_eq!(
        m[r#"http_requests_total{path="/webhook",status="200"}"#],
        count as f64
    );
}
}
