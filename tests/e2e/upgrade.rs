//! A database left by an older version of the component (1, 4 or 6) is upgraded in place by
//! the running one, through the real host's error texts: no request fails, nothing is lost or
//! counted twice, and running the upgrade again changes nothing.

use crate::support::{parse_prometheus, App, SECRET};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use webhook_inbox::timestamp::format_utc;

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
    // The new message waits in `received`; the hour counts cover the rest.
    assert_eq!(app.query_i64("SELECT sum(n) FROM tallies WHERE kind = 'hour'"), 3);
    assert_eq!(app.query_i64("SELECT count(*) FROM received"), 1);
    let m = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(m[r#"webhook_requests_total{source="webhook",result="created"}"#], 4.0);
    assert_eq!(m[r#"webhook_requests_total{source="webhook",result="duplicate"}"#], 1.0);
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
    assert_eq!(app.query_i64("SELECT count(*) FROM received"), 1);
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
    assert_eq!(m[r#"webhook_requests_total{source="webhook",result="created"}"#], 5.0);
    assert_eq!(m[r#"webhook_requests_total{source="webhook",result="duplicate"}"#], 1.0);

    // The waiting rows got numbers above every stored one; a new message goes above them.
    assert_eq!(app.query_i64("SELECT min(seq) FROM received"), 4);
    assert_eq!(app.deliver(&at("m6", "2025-01-15T13:00:00Z")).status, 200);
    assert_eq!(app.deliver(&at("m4", "2025-01-15T12:00:00Z")).status, 200);
    assert_eq!(app.query_i64("SELECT max(seq) FROM received"), 6);
    assert_eq!(app.get("/stats").json()["total_messages"], 6);
    let m = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(m[r#"webhook_requests_total{source="webhook",result="duplicate"}"#], 2.0);
}
}

type Str = &'static str;

/// A message of the version 4 fixture: (id, from, to, ts, text).
type Sent = (Str, Str, Str, String, Option<Str>);

/// The version 4 fixture's two recipients.
const TO_A: &str = "+14155550100";
const TO_B: &str = "+14155550199";

/// The start of the hour 30 hours ago, in seconds since the epoch: the version 4 fixture's
/// messages fall in the three hours from it, inside the window `/stats/hourly?days=3` shows.
fn fixture_hour() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (now / 3600 - 30) * 3600
}

/// The version 4 fixture's messages in list order (by instant): four stored in `messages`,
/// then two waiting in `incoming`. Timestamps with and without a fraction, kept as sent.
fn version_4_messages(hour: u64) -> [Sent; 6] {
    let utc = |secs: u64| format_utc(UNIX_EPOCH + Duration::from_secs(hour + secs));
    let plain = |secs: u64| format!("{}Z", &utc(secs)[..19]);
    let with_millis = format_utc(UNIX_EPOCH + Duration::from_millis((hour + 1800) * 1000 + 250));
    [
        ("m1", "+1", TO_A, plain(0), Some("Hello world")),
        ("m2", "+2", TO_A, with_millis, Some("other")),
        ("m3", "+1", TO_B, utc(3600), None),
        ("m4", "+3", TO_A, plain(6300), Some("hello again")),
        ("m5", "+2", TO_A, plain(7200), Some("waiting, one")),
        ("m6", "+4", TO_B, plain(9000), Some("Waiting, TWO")),
    ]
}

/// The hour key (`2025-01-15T10`) of a fixture message's timestamp.
fn hour_key(ts: &str) -> String {
    webhook_inbox::timestamp::instant_key(ts).unwrap()[..13].to_owned()
}

/// A database as version 4 left it (`tests/fixtures/schema-v4.sql`, the schema at the commit
/// that made version 4): four messages folded and counted (senders, recipients, hours,
/// totals, `created`, `counted_through`), two in `incoming` numbered from 1 (one written on
/// a local file, with the latency that stands for its request's counters, one on a server,
/// whose request wrote its counters itself), the counters of twelve requests in
/// `metric_counters` and three refused deliveries in the rejection log. Version 4 had no
/// tombstones and no search index.
fn version_4_database(hour: u64) -> Vec<String> {
    let sent = version_4_messages(hour);
    let values = |(id, from, to, ts, text): &Sent| {
        let key = webhook_inbox::timestamp::instant_key(ts).unwrap();
        let text = text.map_or("NULL".to_owned(), |t| format!("'{t}'"));
        format!("'{id}', '{from}', '{to}', '{ts}', '{key}', {text}, lower({text})")
    };
    let mut sql = vec![include_str!("../fixtures/schema-v4.sql").to_owned()];
    sql.push(format!(
        "INSERT INTO messages (seq, message_id, sender, recipient, ts, ts_key, body_text, \
         text_folded) VALUES (1, {}), (2, {}), (3, {}), (4, {})",
        values(&sent[0]),
        values(&sent[1]),
        values(&sent[2]),
        values(&sent[3]),
    ));
    sql.extend([
        "INSERT INTO sender_counts VALUES ('+1', 2), ('+2', 1), ('+3', 1)".to_owned(),
        "INSERT INTO recipient_counts VALUES ('+14155550100', 3), ('+14155550199', 1)".to_owned(),
        format!(
            "INSERT INTO hour_counts VALUES ('{}', 2), ('{}', 2)",
            hour_key(&sent[0].3),
            hour_key(&sent[2].3)
        ),
        "UPDATE inbox_totals SET messages = 4, senders = 3".to_owned(),
        "UPDATE fold_state SET counted_through = 4".to_owned(),
        // Twelve requests: the four that stored m1 to m4, a duplicate, m6's (on a server a
        // stored message's request wrote its counters, all but `created`), three refused, three
        // reads. `created` counts the folded messages.
        "INSERT INTO metric_counters VALUES \
         ('http_requests_total', 'path=\"/webhook\",status=\"200\"', 6), \
         ('http_requests_total', 'path=\"/webhook\",status=\"401\"', 2), \
         ('http_requests_total', 'path=\"/webhook\",status=\"422\"', 1), \
         ('http_requests_total', 'path=\"/messages\",status=\"200\"', 3), \
         ('webhook_requests_total', 'result=\"created\"', 4), \
         ('webhook_requests_total', 'result=\"duplicate\"', 1), \
         ('webhook_requests_total', 'result=\"invalid_signature\"', 2), \
         ('webhook_requests_total', 'result=\"validation_error\"', 1), \
         ('webhook_rejections_total', 'reason=\"invalid_signature\"', 2), \
         ('webhook_rejections_total', 'reason=\"validation_error\"', 1), \
         ('request_latency_ms_bucket', 'le=\"1\"', 4), \
         ('request_latency_ms_bucket', 'le=\"2.5\"', 5), \
         ('request_latency_ms_bucket', 'le=\"5\"', 2), \
         ('request_latency_ms_bucket', 'le=\"10\"', 1), \
         ('request_latency_ms_sum', '', 20.5)"
            .to_owned(),
    ]);
    let rejections: Vec<String> = version_4_rejections(hour)
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let locs = match r["locs"].as_array().unwrap().is_empty() {
                true => "NULL".to_owned(),
                false => format!("'{}'", r["locs"]),
            };
            format!(
                "({}, {}, '/webhook', {}, {}, {}, {locs}, {}, {}, {})",
                i + 1,
                quoted(&r["at"]),
                r["status"],
                quoted(&r["reason"]),
                quoted(&r["detail"]),
                quoted(&r["request_id"]),
                r["body_bytes"],
                quoted(&r["body_sha256"]),
            )
        })
        .collect();
    sql.push(format!(
        "INSERT INTO rejections (seq, at, route, status, reason, detail, locs, request_id, \
         body_bytes, body_sha256) VALUES {}",
        rejections.join(", ")
    ));
    sql.push(format!(
        "INSERT INTO incoming (seq, message_id, sender, recipient, ts, ts_key, body_text, \
         text_folded, latency_ms) VALUES (1, {}, 3.5), (2, {}, NULL)",
        values(&sent[4]),
        values(&sent[5]),
    ));
    sql
}

/// A JSON string or null as an SQL literal.
fn quoted(value: &Value) -> String {
    match value.as_str() {
        Some(text) => format!("'{text}'"),
        None => "NULL".to_owned(),
    }
}

/// The version 4 fixture's rejection log, oldest first, as `/rejections` shows an entry.
fn version_4_rejections(hour: u64) -> [Value; 3] {
    let at = |secs: u64| format_utc(UNIX_EPOCH + Duration::from_secs(hour - secs));
    [
        json!({"at": at(900), "route": "/webhook", "source": "webhook", "status": 401,
               "reason": "invalid_signature", "detail": "signature_missing", "locs": [], "request_id": "req-1",
               "body_bytes": 120, "body_sha256": "0f".repeat(32)}),
        json!({"at": at(600), "route": "/webhook", "source": "webhook", "status": 401,
               "reason": "invalid_signature", "detail": "signature_mismatch", "locs": [], "request_id": "req-2",
               "body_bytes": 118, "body_sha256": "a5".repeat(32)}),
        json!({"at": at(300), "route": "/webhook", "source": "webhook", "status": 422,
               "reason": "validation_error", "detail": "validation_error", "locs": [["body", "from"]], "request_id": "req-3",
               "body_bytes": 80, "body_sha256": "3c".repeat(32)}),
    ]
}

/// What version 4's counters and waiting rows add up to, as `/metrics` shows them: the
/// stored counters, plus for each row in `incoming` its `created`, plus for the row with a
/// latency (3.5 ms) its request (`/webhook` 200, the 5 ms bucket, the sum); and the gauges:
/// six stored, the newest `ts` (m6's), and no received instant (version 4 kept none).
fn version_4_metrics(hour: u64) -> HashMap<String, f64> {
    let mut expected: HashMap<String, f64> = [
        (r#"http_requests_total{path="/webhook",status="200"}"#, 7.0),
        (r#"http_requests_total{path="/webhook",status="401"}"#, 2.0),
        (r#"http_requests_total{path="/webhook",status="422"}"#, 1.0),
        (r#"http_requests_total{path="/messages",status="200"}"#, 3.0),
        (
            r#"webhook_requests_total{source="webhook",result="created"}"#,
            6.0,
        ),
        (
            r#"webhook_requests_total{source="webhook",result="duplicate"}"#,
            1.0,
        ),
        (
            r#"webhook_requests_total{source="webhook",result="invalid_signature"}"#,
            2.0,
        ),
        (
            r#"webhook_requests_total{source="webhook",result="validation_error"}"#,
            1.0,
        ),
        (
            r#"webhook_rejections_total{source="webhook",reason="invalid_signature"}"#,
            2.0,
        ),
        (
            r#"webhook_rejections_total{source="webhook",reason="timestamp_out_of_tolerance"}"#,
            0.0,
        ),
        (
            r#"webhook_rejections_total{source="webhook",reason="payload_too_large"}"#,
            0.0,
        ),
        (
            r#"webhook_rejections_total{source="webhook",reason="validation_error"}"#,
            1.0,
        ),
        (
            r#"webhook_rejections_total{source="webhook",reason="not_configured"}"#,
            0.0,
        ),
        (r#"messages_removed_total{cause="retention"}"#, 0.0),
        (r#"messages_removed_total{cause="erasure"}"#, 0.0),
        (r#"request_latency_ms_bucket{le="1"}"#, 4.0),
        (r#"request_latency_ms_bucket{le="2.5"}"#, 9.0),
        ("request_latency_ms_sum", 24.0),
        ("request_latency_ms_count", 13.0),
    ]
    .into_iter()
    .map(|(series, value)| (series.to_owned(), value))
    .collect();
    for bound in [
        "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000",
    ] {
        let value = if bound == "5" { 12.0 } else { 13.0 };
        expected.insert(
            format!("request_latency_ms_bucket{{le=\"{bound}\"}}"),
            value,
        );
    }
    expected.insert(r#"request_latency_ms_bucket{le="+Inf"}"#.to_owned(), 13.0);
    expected.insert("webhook_messages_stored".to_owned(), 6.0);
    expected.insert(
        "webhook_last_message_ts_seconds".to_owned(),
        (hour + 9000) as f64,
    );
    // The native sources' series, every one from zero.
    for source in ["whatsapp", "twilio"] {
        for result in ["created", "duplicate", "invalid"] {
            expected.insert(
                format!("webhook_messages_total{{source=\"{source}\",result=\"{result}\"}}"),
                0.0,
            );
        }
        for kind in ["status", "other_field", "no_messages", "other_object"] {
            expected.insert(
                format!("webhook_ignored_total{{source=\"{source}\",kind=\"{kind}\"}}"),
                0.0,
            );
        }
        for reason in [
            "invalid_signature",
            "timestamp_out_of_tolerance",
            "payload_too_large",
            "validation_error",
            "not_configured",
        ] {
            expected.insert(
                format!("webhook_rejections_total{{source=\"{source}\",reason=\"{reason}\"}}"),
                0.0,
            );
        }
    }
    expected
}

/// What the reads show of the version 4 fixture, upgraded: every message as sent, every
/// total, `/stats` and its hours, the rejection log, and the counts as tallies hold them.
fn assert_version_4_figures(app: &App, hour: u64) {
    let sent = version_4_messages(hour);
    let as_listed = |(id, from, to, ts, text): &Sent| json!({"message_id": id, "from": from, "to": to, "ts": ts, "text": text});
    let page = app.get("/messages");
    assert_eq!(page.status, 200, "{}", page.text());
    let expected: Vec<Value> = sent.iter().map(as_listed).collect();
    assert_eq!(page.json()["data"], json!(expected));
    assert_eq!(page.json()["total"], 6);
    for message in &sent {
        let one = app.get(&format!("/messages/{}", message.0));
        assert_eq!(one.status, 200, "{}", one.text());
        assert_eq!(one.json(), as_listed(message));
    }
    assert_eq!(app.total("from=%2B1"), 2);
    assert_eq!(app.total("from=%2B2"), 2, "one stored, one waiting");
    assert_eq!(app.total("to=%2B14155550199"), 2);
    assert_eq!(app.total("from=%2B4&to=%2B14155550199"), 1);
    let since = format!("{}Z", &sent[2].3[..19]);
    assert_eq!(app.total(&format!("since={since}")), 4);
    // The search index starts empty; searches stay exact by scanning meanwhile.
    assert_eq!(app.total("q=waiting"), 2);
    assert_eq!(app.total("q=HELLO"), 2);

    let stats = app.get("/stats");
    assert_eq!(stats.status, 200, "{}", stats.text());
    assert_eq!(
        stats.json(),
        json!({"total_messages": 6, "senders_count": 4,
               "messages_per_sender": [{"from": "+1", "count": 2}, {"from": "+2", "count": 2},
                                       {"from": "+3", "count": 1}, {"from": "+4", "count": 1}],
               "first_message_ts": sent[0].3, "last_message_ts": sent[5].3})
    );
    let hourly = app.get("/stats/hourly?days=3");
    assert_eq!(hourly.status, 200, "{}", hourly.text());
    let hours: Vec<Value> = [0, 2, 4]
        .iter()
        .map(|&i| json!({"hour": format!("{}:00:00Z", hour_key(&sent[i].3)), "count": 2}))
        .collect();
    assert_eq!(hourly.json()["data"], json!(hours));

    let log = app.get("/rejections");
    assert_eq!(log.status, 200, "{}", log.text());
    let mut newest_first = version_4_rejections(hour).to_vec();
    newest_first.reverse();
    assert_eq!(
        log.json(),
        json!({"data": newest_first, "limit": 50, "next_cursor": null})
    );

    // The counts moved into tallies as they were (the search index's watermark moves as
    // searches index the backlog); the waiting rows got numbers above every stored one and
    // are counted by reads until the next fold.
    let tallies = app.query_texts(
        "SELECT json_array(kind, key, n) FROM tallies WHERE kind NOT IN ('metric', 'search') \
         ORDER BY kind, key",
    );
    let expected_tallies: Vec<String> = [
        json!(["hour", hour_key(&sent[0].3), 2]),
        json!(["hour", hour_key(&sent[2].3), 2]),
        json!(["inbox", "counted_through", 4]),
        json!(["inbox", "messages", 4]),
        json!(["inbox", "senders", 3]),
        json!(["recipient", "+14155550100", 3]),
        json!(["recipient", "+14155550199", 1]),
        json!(["sender", "+1", 2]),
        json!(["sender", "+2", 1]),
        json!(["sender", "+3", 1]),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    assert_eq!(tallies, expected_tallies);
    assert_eq!(
        app.query_texts(
            "SELECT json_array(seq, message_id, latency_ms) FROM received ORDER BY seq"
        ),
        [r#"[5,"m5",3.5]"#, r#"[6,"m6",null]"#]
    );
    assert_eq!(app.query_i64("SELECT count(*) FROM tombstones"), 0);
    assert_eq!(
        app.query_i64("PRAGMA user_version"),
        webhook_inbox::storage::SCHEMA_VERSION
    );
    let old = "SELECT count(*) FROM sqlite_schema WHERE name IN ('incoming', 'fold_state', \
               'inbox_totals', 'sender_counts', 'recipient_counts', 'hour_counts', \
               'metric_counters')";
    assert_eq!(app.query_i64(old), 0);
}

/// Everything an upgrade could touch, as text, to compare before and after running it again.
fn database_contents(app: &App) -> Vec<String> {
    [
        "SELECT json_array(type, name, tbl_name, sql) FROM sqlite_schema ORDER BY type, name",
        "SELECT json_array(kind, key, n) FROM tallies ORDER BY kind, key",
        "SELECT json_array(seq, message_id, sender, recipient, ts, ts_key, body_text, \
         text_folded) FROM messages ORDER BY seq",
        "SELECT json_array(seq, message_id, sender, recipient, ts, ts_key, body_text, \
         text_folded, latency_ms) FROM received ORDER BY seq",
        "SELECT json_array(seq, at, route, status, reason, detail, locs, request_id, \
         body_bytes, body_sha256) FROM rejections ORDER BY seq",
        "SELECT json_array(id_hash, expires_at) FROM tombstones ORDER BY id_hash",
        "SELECT json_array(rowid) FROM messages_search ORDER BY rowid",
    ]
    .iter()
    .flat_map(|sql| app.query_texts(sql))
    .collect()
}

/// The series a read leaves alone: every one but the reads' own requests and latencies.
fn not_counting_reads(metrics: &HashMap<String, f64>) -> Vec<(String, f64)> {
    let mut kept: Vec<(String, f64)> = metrics
        .iter()
        .filter(|(series, _)| {
            !series.starts_with("request_latency_ms")
                && (!series.starts_with("http_requests_total")
                    || series.contains(r#"path="/webhook""#))
        })
        .map(|(series, value)| (series.clone(), *value))
        .collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    kept
}

/// Every request is counted once in `http_requests_total` and once in the latency histogram.
fn assert_each_request_counted_once(metrics: &HashMap<String, f64>) {
    let requests: f64 = metrics
        .iter()
        .filter(|(series, _)| series.starts_with("http_requests_total"))
        .map(|(_, value)| value)
        .sum();
    assert_eq!(requests, metrics["request_latency_ms_count"], "{metrics:?}");
}

on_each_backend! {
fn a_version_4_database_holding_data_is_upgraded_in_place_and_every_figure_survives(backend: Backend) {
    let hour = fixture_hour();
    let app = App::with_sqlite_on(backend, &[("webhook_secret", SECRET)], version_4_database(hour));
    // The first request upgrades; its own counters are written after its answer.
    let scrape = app.get("/metrics");
    assert_eq!(scrape.status, 200, "{}", scrape.text());
    let metrics = parse_prometheus(&scrape.text());
    assert_eq!(metrics, version_4_metrics(hour));
    assert_version_4_figures(&app, hour);

    // Upgrading again (migrations.sql, statement by statement as the component runs it,
    // twice) changes nothing: not a row, not a count, not the schema.
    let before = database_contents(&app);
    for _ in 0..2 {
        for statement in webhook_inbox::storage::schema_statements() {
            app.execute_sql(&statement);
        }
    }
    assert_eq!(database_contents(&app), before);
    let metrics_before = parse_prometheus(&app.get("/metrics").text());
    assert_version_4_figures(&app, hour);
    let metrics_after = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(not_counting_reads(&metrics_after), not_counting_reads(&metrics_before));
    assert_each_request_counted_once(&metrics_after);

    // Writes after the upgrade count each message once: a new one goes above the waiting
    // rows; re-deliveries of a waiting and of a stored message are duplicates.
    let new = json!({"message_id": "m7", "from": "+4", "to": "+14155550100",
                     "ts": format!("{}Z", &format_utc(SystemTime::now())[..19])});
    assert_eq!(app.deliver(&new).status, 200);
    for (id, from, to, ts, _) in &version_4_messages(hour)[..] {
        if ["m1", "m5"].contains(id) {
            let again = json!({"message_id": id, "from": from, "to": to, "ts": ts});
            assert_eq!(app.deliver(&again).status, 200);
        }
    }
    assert_eq!(app.query_i64("SELECT max(seq) FROM received"), 7);
    let stats = app.get("/stats").json();
    assert_eq!(stats["total_messages"], 7, "{stats}");
    assert_eq!(stats["senders_count"], 4);
    assert_eq!(stats["messages_per_sender"][2], json!({"from": "+4", "count": 2}));
    let m = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(m[r#"webhook_requests_total{source="webhook",result="created"}"#], 7.0);
    assert_eq!(m[r#"webhook_requests_total{source="webhook",result="duplicate"}"#], 3.0);
    assert_each_request_counted_once(&m);
}

fn migrations_sql_run_twice_on_a_version_4_database_before_the_component_starts(backend: Backend) {
    // As `spin up --sqlite @migrations.sql` twice: the first run upgrades, the second finds
    // nothing to do, and the component then finds the current schema.
    let hour = fixture_hour();
    let migrations = include_str!("../../migrations.sql").to_owned();
    let mut sql = version_4_database(hour);
    sql.extend([migrations.clone(), migrations]);
    let app = App::with_sqlite_on(backend, &[("webhook_secret", SECRET)], sql);
    let metrics = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(metrics, version_4_metrics(hour));
    assert_version_4_figures(&app, hour);
}
}
