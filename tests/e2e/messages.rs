//! GET /messages: filters, their AND, order, totals, paging, bad parameters.

use crate::support::{App, Backend};
use serde_json::{json, Value};

fn msg(id: &str, from: &str, to: &str, ts: &str, text: Option<&str>) -> Value {
    json!({"message_id": id, "from": from, "to": to, "ts": ts, "text": text})
}

/// A small inbox with ties, fractions, literal wildcards and a message without text.
fn seeded(backend: Backend) -> App {
    let app = App::start_on(backend);
    for m in [
        msg(
            "b",
            "+911",
            "+100",
            "2025-01-15T10:00:00.5Z",
            Some("50% OFF_today"),
        ),
        msg(
            "a",
            "+911",
            "+200",
            "2025-01-15T10:00:00.500Z",
            Some("Hello there"),
        ),
        msg("c", "+922", "+100", "2025-01-15T10:00:00Z", None),
        msg(
            "d",
            "+911",
            "+100",
            "2025-01-15T10:00:00.05Z",
            Some("HÉLLO wörld"),
        ),
        msg(
            "e",
            "+911",
            "+100",
            "2025-01-15T10:00:01Z",
            Some("50 percent"),
        ),
        msg(
            "f",
            "+933",
            "+300",
            "2024-12-31T23:59:59.999999Z",
            Some("new year"),
        ),
    ] {
        assert_eq!(app.deliver(&m).status, 200);
    }
    app
}

fn ids(app: &App, query: &str) -> (Vec<String>, i64) {
    let resp = app.get(&format!("/messages?{query}"));
    assert_eq!(resp.status, 200, "{query}: {}", resp.text());
    let body = resp.json();
    let ids = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned());
    (ids.collect(), body["total"].as_i64().unwrap())
}

fn v(ids: &[&str], total: i64) -> (Vec<String>, i64) {
    (ids.iter().map(|s| s.to_string()).collect(), total)
}

on_each_backend! {
fn order_is_by_instant_then_message_id(backend: Backend) {
    let app = seeded(backend);
    // a and b share an instant (.5 and .500): message_id breaks the tie.
    assert_eq!(ids(&app, ""), v(&["f", "c", "d", "a", "b", "e"], 6));
    let body = app.get("/messages").json();
    assert_eq!(body["limit"], 50);
    assert_eq!(body["offset"], 0);
    assert_eq!(
        body["data"][1],
        msg("c", "+922", "+100", "2025-01-15T10:00:00Z", None)
    );
    assert_eq!(
        body["data"][3]["ts"], "2025-01-15T10:00:00.500Z",
        "returned as sent"
    );
}
}

on_each_backend! {
fn each_filter_and_their_conjunction(backend: Backend) {
    let app = seeded(backend);
    assert_eq!(ids(&app, "from=%2B911"), v(&["d", "a", "b", "e"], 4));
    assert_eq!(
        ids(&app, "from=+911"),
        v(&["d", "a", "b", "e"], 4),
        "unencoded +"
    );
    assert_eq!(ids(&app, "to=%2B100"), v(&["c", "d", "b", "e"], 4));
    assert_eq!(
        ids(&app, "since=2025-01-15T10:00:00.5Z"),
        v(&["a", "b", "e"], 3)
    );
    assert_eq!(
        ids(&app, "since=2025-01-15T10:00:00.05Z"),
        v(&["d", "a", "b", "e"], 4)
    );
    assert_eq!(ids(&app, "q=hello"), v(&["a"], 1));
    assert_eq!(
        ids(&app, "q=h%C3%A9llo"),
        v(&["d"], 1),
        "non-ASCII case-insensitive"
    );
    assert_eq!(ids(&app, "q=W%C3%96RLD"), v(&["d"], 1));
    assert_eq!(ids(&app, "from=%2B911&to=%2B100"), v(&["d", "b", "e"], 3));
    assert_eq!(
        ids(&app, "from=+911&to=+100&since=2025-01-15T10:00:00.1Z&q=T"),
        v(&["b", "e"], 2)
    );
    assert_eq!(ids(&app, "from=%2B999"), v(&[], 0));
}
}

on_each_backend! {
fn search_treats_wildcards_literally_and_skips_rows_without_text(backend: Backend) {
    let app = seeded(backend);
    assert_eq!(ids(&app, "q=%25"), v(&["b"], 1));
    assert_eq!(ids(&app, "q=_"), v(&["b"], 1));
    assert_eq!(ids(&app, "q=50%25"), v(&["b"], 1));
    assert_eq!(ids(&app, "q=0%25+off_"), v(&["b"], 1));
    assert_eq!(ids(&app, "q=50_"), v(&[], 0), "_ matches only _");
    assert_eq!(ids(&app, "q=%25%25"), v(&[], 0));
    assert_eq!(
        ids(&app, "q=e"),
        v(&["f", "a", "e"], 3),
        "c has no text and never matches"
    );
}
}

on_each_backend! {
fn total_ignores_limit_and_offset(backend: Backend) {
    let app = seeded(backend);
    assert_eq!(ids(&app, "limit=2"), v(&["f", "c"], 6));
    assert_eq!(ids(&app, "limit=2&offset=2"), v(&["d", "a"], 6));
    assert_eq!(ids(&app, "limit=2&offset=5"), v(&["e"], 6));
    assert_eq!(ids(&app, "offset=6"), v(&[], 6));
    assert_eq!(ids(&app, "from=%2B911&limit=1&offset=1"), v(&["a"], 4));
    assert_eq!(ids(&app, "limit=100&offset=9223372036854775807"), v(&[], 6));
    // From 10,000 on, an unfiltered page starts at its hour (src/storage/listing.rs).
    assert_eq!(ids(&app, "offset=10000"), v(&[], 6));
    assert_eq!(ids(&app, "order=desc&offset=10000"), v(&[], 6));
}
}

on_each_backend! {
fn cursor_pages_through_everything_once(backend: Backend) {
    let app = seeded(backend);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("/messages?limit=4&cursor={c}"),
            None => "/messages?limit=4".to_owned(),
        };
        let body = app.get(&query).json();
        assert_eq!(body["total"], 6);
        seen.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["message_id"].as_str().unwrap().to_owned()),
        );
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["f", "c", "d", "a", "b", "e"]);
}
}

#[test]
fn bad_parameters_get_422_with_their_location() {
    let app = seeded(Backend::LocalFile);
    for (query, loc) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("limit=-5", "limit"),
        ("offset=-1", "offset"),
        ("offset=1.5", "offset"),
        ("offset=99999999999999999999", "offset"),
        ("from=919876543210", "from"),
        ("to=%2B1234567890123456", "to"),
        ("since=2025-01-15", "since"),
        ("since=2025-02-30T00:00:00Z", "since"),
        ("since=2025-01-15T10:00:00%2B05:30", "since"),
        ("q=%FF", "q"),
        ("cursor=not-ours", "cursor"),
        ("limit=1&limit=2", "limit"),
    ] {
        let resp = app.get(&format!("/messages?{query}"));
        assert_eq!(resp.status, 422, "{query}");
        let detail = &resp.json()["detail"];
        assert_eq!(detail[0]["loc"], json!(["query", loc]), "{query}");
        assert!(detail[0]["msg"].is_string() && detail[0]["type"].is_string());
    }
    let resp = app.get("/messages?limit=0&offset=x");
    assert_eq!(
        resp.json()["detail"].as_array().unwrap().len(),
        2,
        "every problem reported"
    );
    assert_eq!(
        app.get("/messages?unknown=1&limit=1").status,
        200,
        "unknown params ignored"
    );
}
