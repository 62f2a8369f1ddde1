//! GET /stats: empty, top 10 with ties, first and last by instant.

use crate::support::App;
use serde_json::json;

on_each_backend! {
fn empty_inbox(backend: Backend) {
    let app = App::start_on(backend);
    assert_eq!(
        app.get("/stats").json(),
        json!({"total_messages": 0, "senders_count": 0, "messages_per_sender": [],
               "first_message_ts": null, "last_message_ts": null})
    );
}
}

on_each_backend! {
fn top_ten_of_fifteen_senders_with_ties_and_instants(backend: Backend) {
    let app = App::start_on(backend);
    let mut n = 0;
    // Sender k sends (k % 4) + 1 messages: counts 1..4 with many ties.
    for k in 1..=15 {
        for _ in 0..(k % 4 + 1) {
            n += 1;
            let m = json!({"message_id": format!("m{n}"), "from": format!("+{k}"), "to": "+2",
                           "ts": format!("2025-01-15T10:{:02}:00Z", n % 60)});
            assert_eq!(app.deliver(&m).status, 200);
        }
    }
    // The earliest instant written with a fraction, the latest without; both sent by +15.
    for (id, ts) in [
        ("early", "2025-01-15T09:59:59.999Z"),
        ("late", "2025-01-15T11:00:00Z"),
        ("late-same-instant", "2025-01-15T11:00:00.000Z"),
    ] {
        let m = json!({"message_id": id, "from": "+15", "to": "+2", "ts": ts});
        assert_eq!(app.deliver(&m).status, 200);
    }
    // A duplicate changes nothing.
    let dup = json!({"message_id": "m1", "from": "+99", "to": "+2", "ts": "2030-01-01T00:00:00Z"});
    assert_eq!(app.deliver(&dup).status, 200);

    let stats = app.get("/stats").json();
    assert_eq!(stats["total_messages"], n + 3);
    assert_eq!(stats["senders_count"], 15);
    assert_eq!(stats["first_message_ts"], "2025-01-15T09:59:59.999Z");
    assert_eq!(
        stats["last_message_ts"], "2025-01-15T11:00:00.000Z",
        "of equal instants, the last in the list's order (by message_id)"
    );
    let top: Vec<String> = stats["messages_per_sender"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}:{}", e["from"].as_str().unwrap(), e["count"]))
        .collect();
    assert_eq!(
        top,
        ["+15:7", "+11:4", "+3:4", "+7:4", "+10:3", "+14:3", "+2:3", "+6:3", "+1:2", "+13:2"]
    );
}
}
