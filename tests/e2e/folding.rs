//! New messages wait in `received` and are folded into `messages` a batch at a time, by the
//! write that fills the batch, after its answer. Nothing a client reads may depend on it.

use crate::support::{parse_prometheus, App};
use serde_json::json;
use webhook_inbox::storage::FOLD_EVERY;

on_each_backend! {
fn reads_are_exact_before_during_and_after_a_fold(backend: Backend) {
    let app = App::start_on(backend);
    let batch = FOLD_EVERY as usize;
    let sent = batch + 44;
    for n in 0..sent {
        let m = json!({"message_id": format!("m{n:04}"), "from": format!("+{}", n % 7 + 1),
                       "to": "+2", "ts": format!("2025-01-15T{:02}:{:02}:00Z", n / 60 % 24, n % 60),
                       "text": if n % 2 == 0 { "even" } else { "odd" }});
        assert_eq!(app.deliver(&m).status, 200);
        if n + 1 == batch - 1 || n + 1 == sent {
            // Just before the fold, and well after it: everything counted once.
            let stored = n as i64 + 1;
            assert_eq!(app.get("/stats").json()["total_messages"], stored);
            assert_eq!(app.total(""), stored);
            let metrics = parse_prometheus(&app.get("/metrics").text());
            assert_eq!(metrics[r#"webhook_requests_total{source="webhook",result="created"}"#], stored as f64);
        }
    }
    // The batch's last write folded it; the rest wait.
    let warnings: Vec<_> = app.log_lines().into_iter().filter(|l| l["level"] != "info").collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(app.query_i64("SELECT count(*) FROM messages"), FOLD_EVERY);
    assert_eq!(app.query_i64("SELECT count(*) FROM received"), 44);

    let sent = sent as i64;
    assert_eq!(app.total("from=%2B1"), (sent + 6) / 7);
    assert_eq!(app.total("q=even"), (sent + 1) / 2);
    assert_eq!(app.total("since=2025-01-15T04:00:00Z"), sent - 240);
    let stats = app.get("/stats").json();
    assert_eq!(stats["senders_count"], 7);
    assert_eq!(stats["first_message_ts"], "2025-01-15T00:00:00Z");
    let last = sent - 1;
    assert_eq!(stats["last_message_ts"], format!("2025-01-15T{:02}:{:02}:00Z", last / 60, last % 60));
    // A page that spans both tables comes out in one order.
    let page = app.get(&format!("/messages?limit=100&offset={}", FOLD_EVERY - 50)).json();
    let ids: Vec<String> = page["data"].as_array().unwrap().iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned()).collect();
    let want: Vec<String> = (FOLD_EVERY - 50..FOLD_EVERY + 44).map(|n| format!("m{n:04}")).collect();
    assert_eq!(ids, want);
    // A re-delivery of a folded message and of a waiting one stores nothing.
    for n in [0, sent - 1] {
        let again = json!({"message_id": format!("m{n:04}"), "from": "+9", "to": "+2",
                           "ts": "2030-01-01T00:00:00Z"});
        assert_eq!(app.deliver(&again).status, 200);
    }
    assert_eq!(app.get("/stats").json()["total_messages"], sent);
}
}
