//! A database left by version 1 of the component is upgraded in place by the running one,
//! through the real host's error texts: no request fails and nothing is counted twice.

use crate::support::{parse_prometheus, App, SECRET};
use serde_json::json;

/// A database as version 1 of the component left it: every message straight in `messages`,
/// aggregates kept by a trigger on each insert, no hour counts and no `incoming`. The
/// messages are inserted through that trigger, as version 1 stored them.
fn version_1_database(messages: &[(&str, &str)]) -> Vec<String> {
    let mut sql = vec![
        "CREATE TABLE messages (seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL UNIQUE, \
         sender TEXT NOT NULL, recipient TEXT NOT NULL, ts TEXT NOT NULL, ts_key TEXT NOT NULL, \
         body_text TEXT, text_folded TEXT)",
        "CREATE INDEX messages_by_ts ON messages (ts_key, message_id)",
        "CREATE INDEX messages_by_sender ON messages (sender, ts_key, message_id)",
        "CREATE INDEX messages_by_recipient ON messages (recipient, ts_key, message_id)",
        "CREATE TABLE sender_counts (sender TEXT PRIMARY KEY, messages INTEGER NOT NULL) \
         WITHOUT ROWID",
        "CREATE INDEX sender_counts_top ON sender_counts (messages DESC, sender)",
        "CREATE TABLE recipient_counts (recipient TEXT PRIMARY KEY, messages INTEGER NOT NULL) \
         WITHOUT ROWID",
        "CREATE TABLE inbox_totals (id INTEGER PRIMARY KEY CHECK (id = 1), \
         messages INTEGER NOT NULL, senders INTEGER NOT NULL, first_key TEXT, first_ts TEXT, \
         last_key TEXT, last_ts TEXT)",
        "INSERT INTO inbox_totals (id, messages, senders) VALUES (1, 0, 0)",
        "CREATE TABLE metric_counters (name TEXT NOT NULL, labels TEXT NOT NULL, value NOT NULL, \
         PRIMARY KEY (name, labels)) WITHOUT ROWID",
        "CREATE TRIGGER messages_aggregate AFTER INSERT ON messages
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
         END",
        // Version 1 counted `created` in the request's own transaction.
        "INSERT INTO metric_counters VALUES ('webhook_requests_total', 'result=\"created\"', 0)",
        "PRAGMA user_version = 1",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    for (id, ts) in messages {
        let key = webhook_inbox::timestamp::instant_key(ts).unwrap();
        sql.push(format!(
            "INSERT INTO messages (message_id, sender, recipient, ts, ts_key) \
             VALUES ('{id}', '+919876543210', '+14155550100', '{ts}', '{key}')"
        ));
        sql.push(
            "UPDATE metric_counters SET value = value + 1 \
             WHERE name = 'webhook_requests_total'"
                .to_owned(),
        );
    }
    sql
}

fn at(id: &str, ts: &str) -> serde_json::Value {
    json!({"message_id": id, "from": "+919876543210", "to": "+14155550100", "ts": ts})
}

on_each_backend! {
fn a_version_1_database_is_upgraded_by_the_first_request_that_needs_it(backend: Backend) {
    let app = App::with_sqlite_on(
        backend,
        &[("webhook_secret", SECRET)],
        version_1_database(&[
            ("m1", "2025-01-15T10:00:00Z"),
            ("m2", "2025-01-15T10:30:00Z"),
            ("m3", "2025-01-15T11:00:00Z"),
        ]),
    );

    // The read finds no hour counts, upgrades, and answers from the filled table.
    let page = app.get("/messages?since=2025-01-15T10:15:00Z");
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(page.json()["total"], 2);
    assert_eq!(
        app.query_i64("PRAGMA user_version"),
        webhook_inbox::storage::SCHEMA_VERSION
    );
    assert_eq!(app.query_i64("SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'"), 0);

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
    let app = App::with_sqlite_on(
        backend,
        &[("webhook_secret", SECRET)],
        version_1_database(&[("m1", "2025-01-15T10:00:00Z")]),
    );

    // The first request is a write: it upgrades, stores, and nothing is counted twice.
    assert_eq!(app.deliver(&at("m2", "2025-01-15T11:00:00Z")).status, 200);
    assert_eq!(app.deliver(&at("m1", "2025-01-15T10:00:00Z")).status, 200);
    assert_eq!(app.total("since=2025-01-15T10:30:00Z"), 1);
    assert_eq!(app.get("/stats").json()["total_messages"], 2);
    assert_eq!(app.query_i64("SELECT count(*) FROM hour_counts"), 1);
    assert_eq!(app.query_i64("SELECT count(*) FROM incoming"), 1);
}
}
