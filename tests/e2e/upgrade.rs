//! A database left by version 1 of the component is upgraded in place by the running one,
//! through the real host's error texts: no request fails and nothing is counted twice.

use crate::support::{parse_prometheus, App};
use serde_json::json;

/// A version 1 database: every message straight in `messages` (no `incoming`, which
/// version 3 added), and instead of the hour counts, the same trigger without them (and
/// without counting `created`, which version 1 did in the request's own transaction).
const VERSION_1: &str = "
UPDATE incoming_folds SET folds = folds + 1;
DROP TRIGGER fold_incoming;
DROP TABLE incoming;
DROP TABLE incoming_folds;
DROP TRIGGER messages_aggregate;
DROP TABLE hour_counts;
CREATE TRIGGER messages_aggregate AFTER INSERT ON messages
BEGIN
    INSERT INTO sender_counts (sender, messages) VALUES (NEW.sender, 1)
        ON CONFLICT (sender) DO UPDATE SET messages = messages + 1;
    INSERT INTO recipient_counts (recipient, messages) VALUES (NEW.recipient, 1)
        ON CONFLICT (recipient) DO UPDATE SET messages = messages + 1;
    UPDATE inbox_totals SET
        messages  = messages + 1,
        senders   = senders + (SELECT messages = 1 FROM sender_counts WHERE sender = NEW.sender),
        first_ts  = CASE WHEN first_key IS NULL OR NEW.ts_key < first_key THEN NEW.ts ELSE first_ts END,
        first_key = CASE WHEN first_key IS NULL OR NEW.ts_key < first_key THEN NEW.ts_key ELSE first_key END,
        last_ts   = CASE WHEN last_key IS NULL OR NEW.ts_key > last_key THEN NEW.ts ELSE last_ts END,
        last_key  = CASE WHEN last_key IS NULL OR NEW.ts_key > last_key THEN NEW.ts_key ELSE last_key END
    WHERE id = 1;
END;
PRAGMA user_version = 1;
";

fn at(id: &str, ts: &str) -> serde_json::Value {
    json!({"message_id": id, "from": "+919876543210", "to": "+14155550100", "ts": ts})
}

on_each_backend! {
fn a_version_1_database_is_upgraded_by_the_first_request_that_needs_it(backend: Backend) {
    let app = App::start_on(backend);
    for (id, ts) in [
        ("m1", "2025-01-15T10:00:00Z"),
        ("m2", "2025-01-15T10:30:00Z"),
        ("m3", "2025-01-15T11:00:00Z"),
    ] {
        assert_eq!(app.deliver(&at(id, ts)).status, 200);
    }
    app.execute_sql(VERSION_1);

    // The read finds no hour counts, upgrades, and answers from the filled table.
    let page = app.get("/messages?since=2025-01-15T10:15:00Z");
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(page.json()["total"], 2);
    assert_eq!(app.query_i64("PRAGMA user_version"), 3);

    // Writes after the upgrade keep every aggregate in step.
    assert_eq!(app.deliver(&at("m4", "2025-01-15T11:30:00Z")).status, 200);
    assert_eq!(app.deliver(&at("m1", "2025-01-15T10:00:00Z")).status, 200);
    assert_eq!(app.total("since=2025-01-15T10:15:00Z"), 3);
    assert_eq!(app.get("/stats").json()["total_messages"], 4);
    // The new message waits in `incoming`; the hour counts cover the rest.
    assert_eq!(app.query_i64("SELECT sum(messages) FROM hour_counts"), 3);
    assert_eq!(app.query_i64("SELECT count(*) FROM incoming"), 1);
    let m = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(m[r#"webhook_requests_total{result="created"}"#], 4.0);
    assert_eq!(m[r#"webhook_requests_total{result="duplicate"}"#], 1.0);
}
}

on_each_backend! {
fn a_write_upgrades_a_version_1_database_before_storing(backend: Backend) {
    let app = App::start_on(backend);
    assert_eq!(app.deliver(&at("m1", "2025-01-15T10:00:00Z")).status, 200);
    app.execute_sql(VERSION_1);

    // The first request after the downgrade is a write: it must not store through the old
    // trigger (which would leave the new message out of the hour counts).
    assert_eq!(app.deliver(&at("m2", "2025-01-15T11:00:00Z")).status, 200);
    app.execute_sql("UPDATE incoming_folds SET folds = folds + 1");
    let hour = |h: &str| {
        app.query_i64(&format!(
            "SELECT coalesce((SELECT messages FROM hour_counts WHERE hour = '{h}'), 0)"
        ))
    };
    assert_eq!((hour("2025-01-15T10"), hour("2025-01-15T11")), (1, 1));
    assert_eq!(app.query_i64("SELECT count(*) FROM hour_counts"), 2);
    assert_eq!(app.total("since=2025-01-15T10:30:00Z"), 1);
}
}
