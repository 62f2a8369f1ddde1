//! A database left by version 1 of the component is upgraded in place by the running one,
//! through the real host's error texts: no request fails and nothing is counted twice.

use crate::support::{parse_prometheus, App, SECRET};
use serde_json::json;

/// A database as version 1 of the component left it (`tests/fixtures/schema-v1.sql`), with
/// `messages` inserted through its trigger, as version 1 stored them.
fn version_1_database(messages: &[(&str, &str)]) -> Vec<String> {
    let schema = include_str!("../fixtures/schema-v1.sql");
    let mut sql: Vec<String> = schema
        .split("\n\n")
        .filter(|s| !s.trim().is_empty() && !s.trim_start().starts_with("-- The schema"))
        .map(str::to_owned)
        .collect();
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
    // The new message waits in `arrivals`; the hour counts cover the rest.
    assert_eq!(app.query_i64("SELECT sum(n) FROM tallies WHERE kind = 'hour'"), 3);
    assert_eq!(app.query_i64("SELECT count(*) FROM arrivals"), 1);
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
    assert_eq!(app.query_i64("SELECT count(*) FROM tallies WHERE kind = 'hour'"), 1);
    assert_eq!(app.query_i64("SELECT count(*) FROM arrivals"), 1);
}
}

on_each_backend! {
fn an_upgraded_database_is_searchable_at_once_and_indexed_after_searches(backend: Backend) {
    // A version 1 database with texts: 5,000 messages, more than one batch of indexing.
    let mut sql = version_1_database(&[]);
    sql.push(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 4999) \
         INSERT INTO messages (message_id, sender, recipient, ts, ts_key, body_text, text_folded) \
         SELECT 'm' || i, '+1' || (i % 7), '+14155550100', '2025-01-15T10:00:00Z', \
                '2025-01-15T10:00:00', 'Note ' || i || CASE WHEN i % 1000 = 7 THEN ' Needle' ELSE '' END, \
                'note ' || i || CASE WHEN i % 1000 = 7 THEN ' needle' ELSE '' END \
         FROM n"
            .to_owned(),
    );
    let app = App::with_sqlite_on(backend, &[("webhook_secret", SECRET)], sql);
    // Exact before anything is indexed (the rows outside the index are scanned)...
    assert_eq!(app.total("q=needle"), 5);
    // ...and each such search indexes a bounded batch after its answer.
    let batch = webhook_inbox::storage::BACKFILL_ROWS;
    assert_eq!(app.query_i64("SELECT n FROM tallies WHERE kind = 'search'"), batch);
    assert_eq!(app.total("q=NOTE%204"), 1111, "half indexed, half scanned");
    assert_eq!(app.query_i64("SELECT n FROM tallies WHERE kind = 'search'"), 5000);
    assert_eq!(app.total("q=needle"), 5, "from the index alone");
    assert_eq!(app.total("q=needle&since=2025-01-15T10:00:00Z"), 5);
}
}

/// A database as version 6 left it (`tests/fixtures/schema-v6.sql`): three messages folded
/// and counted, two still in `incoming` numbered from 1 (one written on a local file, with
/// the latency that counts its request, one on a server, without), and the external-content
/// search index holding the folded three.
fn version_6_database() -> Vec<String> {
    let mut sql = vec![include_str!("../fixtures/schema-v6.sql").to_owned()];
    let row = |id: &str, from: &str, ts: &str, text: &str| {
        let key = webhook_inbox::timestamp::instant_key(ts).unwrap();
        format!("'{id}', '{from}', '+14155550100', '{ts}', '{key}', '{text}', lower('{text}')")
    };
    for (seq, (id, from, ts, text)) in [
        ("m1", "+1", "2025-01-15T10:00:00Z", "Hello world"),
        ("m2", "+2", "2025-01-15T10:30:00Z", "other"),
        ("m3", "+1", "2025-01-15T11:00:00Z", "hello again"),
    ]
    .into_iter()
    .enumerate()
    {
        sql.push(format!(
            "INSERT INTO messages (seq, message_id, sender, recipient, ts, ts_key, body_text, \
             text_folded) VALUES ({}, {})",
            seq + 1,
            row(id, from, ts, text)
        ));
    }
    sql.extend(
        [
            "INSERT INTO sender_counts VALUES ('+1', 2), ('+2', 1)",
            "INSERT INTO recipient_counts VALUES ('+14155550100', 3)",
            "INSERT INTO hour_counts VALUES ('2025-01-15T10', 2), ('2025-01-15T11', 1)",
            "UPDATE inbox_totals SET messages = 3, senders = 2",
            "UPDATE fold_state SET counted_through = 3",
            "INSERT INTO metric_counters VALUES ('webhook_requests_total', 'result=\"created\"', 3), \
             ('webhook_requests_total', 'result=\"duplicate\"', 1)",
            "INSERT INTO messages_fts (rowid, text_folded) SELECT seq, text_folded FROM messages",
            "UPDATE search_state SET indexed_through = 3",
        ]
        .map(str::to_owned),
    );
    sql.push(format!(
        "INSERT INTO incoming (seq, message_id, sender, recipient, ts, ts_key, body_text, \
         text_folded, latency_ms) VALUES (1, {}, 5.0), (2, {}, NULL)",
        row("m4", "+3", "2025-01-15T12:00:00Z", "hello from the queue"),
        row("m5", "+1", "2025-01-15T12:30:00Z", "late"),
    ));
    sql
}

on_each_backend! {
fn a_version_6_database_with_waiting_messages_is_upgraded_in_place_and_counts_each_once(backend: Backend) {
    let app = App::with_sqlite_on(backend, &[("webhook_secret", SECRET)], version_6_database());
    let stats = app.get("/stats").json();
    assert_eq!(stats["total_messages"], 5, "{stats}");
    assert_eq!(stats["senders_count"], 3);
    assert_eq!(stats["messages_per_sender"][0], json!({"from": "+1", "count": 3}));
    assert_eq!(app.query_i64("PRAGMA user_version"), webhook_inbox::storage::SCHEMA_VERSION);
    let old = "SELECT count(*) FROM sqlite_schema WHERE name IN ('incoming', 'fold_state', \
               'inbox_totals', 'sender_counts', 'recipient_counts', 'hour_counts', \
               'metric_counters', 'search_state', 'messages_fts')";
    assert_eq!(app.query_i64(old), 0);
    let ids: Vec<String> = app.get("/messages").json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(app.total("from=%2B1"), 3);
    assert_eq!(app.total("since=2025-01-15T10:15:00Z"), 4);
    // The index starts again from nothing; searches stay exact by scanning meanwhile.
    assert_eq!(app.total("q=hello"), 3);
    let m = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(m[r#"webhook_requests_total{result="created"}"#], 5.0);
    assert_eq!(m[r#"webhook_requests_total{result="duplicate"}"#], 1.0);

    // The waiting rows got numbers above every stored one; a new message goes above them.
    assert_eq!(app.query_i64("SELECT min(seq) FROM arrivals"), 4);
    assert_eq!(app.deliver(&at("m6", "2025-01-15T13:00:00Z")).status, 200);
    assert_eq!(app.deliver(&at("m4", "2025-01-15T12:00:00Z")).status, 200);
    assert_eq!(app.query_i64("SELECT max(seq) FROM arrivals"), 6);
    assert_eq!(app.get("/stats").json()["total_messages"], 6);
    let m = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(m[r#"webhook_requests_total{result="duplicate"}"#], 2.0);
}
}
