//! Many instances, one inbox: two hosts (two replicas, each with its own connections) on one
//! libSQL server, as SpinKube replicas share one database.

use crate::support::{message, parallel, parse_prometheus, App, Backend};

#[test]
fn parallel_deliveries_to_two_replicas_store_one_row_and_agree() {
    let first = std::sync::Arc::new(App::start_on(Backend::Libsql));
    let second = std::sync::Arc::new(first.replica());
    let jobs: Vec<Box<dyn FnOnce() -> u16 + Send>> = (0..60)
        .map(|i| {
            let app = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            Box::new(move || app.deliver(&message("shared-id")).status)
                as Box<dyn FnOnce() -> u16 + Send>
        })
        .collect();
    let statuses = parallel(60, jobs);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    for app in [&first, &second] {
        assert_eq!(app.total(""), 1);
        let m = parse_prometheus(&app.get("/metrics").text());
        assert_eq!(m[r#"webhook_requests_total{result="created"}"#], 1.0);
        assert_eq!(m[r#"webhook_requests_total{result="duplicate"}"#], 59.0);
    }
    let stats = first.get("/stats");
    assert_eq!(stats.status, 200);
    assert_eq!(stats.json()["total_messages"], 1);
    assert_eq!(stats.body, second.get("/stats").body);
}

#[test]
fn distinct_messages_through_two_replicas_are_all_counted_once() {
    let first = std::sync::Arc::new(App::start_on(Backend::Libsql));
    let second = std::sync::Arc::new(first.replica());
    let jobs: Vec<Box<dyn FnOnce() -> u16 + Send>> = (0..80)
        .map(|i| {
            let app = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            Box::new(move || {
                let mut m = message(&format!("msg-{}", i / 2));
                m["from"] = format!("+1{}", i % 7).into();
                app.deliver(&m).status
            }) as Box<dyn FnOnce() -> u16 + Send>
        })
        .collect();
    // Each id goes to both replicas at once: 40 messages, 80 deliveries.
    let statuses = parallel(16, jobs);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(first.total(""), 40);
    assert_eq!(second.get("/stats").json()["total_messages"], 40);
    assert_eq!(first.get("/stats").body, second.get("/stats").body);
}
