//! Retention, erasure and tombstones: the admin routes' guard, purges in bounded batches,
//! erasure by id and by sender, re-deliveries of removed messages, and every aggregate
//! exact after each.

use crate::support::{message, parse_prometheus, App, Req, Resp, SECRET};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

const ADMIN: &str = "admin-tok-91c";
const READ: &str = "read-tok-5e2";

fn admin(app: &App, method: &str, path: &str) -> Resp {
    app.send(&Req::new(method, path).header("Authorization", &format!("Bearer {ADMIN}")))
}

fn read(app: &App, path: &str) -> Value {
    let resp = app.send(&Req::new("GET", path).header("Authorization", &format!("Bearer {READ}")));
    assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    resp.json()
}

fn at(id: &str, from: &str, ts: &str) -> Value {
    let mut m = message(id);
    m["from"] = json!(from);
    m["ts"] = json!(ts);
    m["text"] = json!(format!("private words of {id}"));
    m
}

/// An instant `days_ago` days before now, as a sender would write it.
fn days_ago(days_ago: u64) -> String {
    let then = SystemTime::now() - Duration::from_secs(days_ago * 86_400);
    webhook_inbox::timestamp::format_utc(then)
}

fn ids(page: &Value) -> Vec<&str> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect()
}

on_each_backend! {
fn admin_routes_are_closed_without_a_token_and_guarded_with_one(backend: Backend) {
    let closed = App::start_on(backend);
    assert_eq!(closed.deliver(&message("m1")).status, 200);
    for (method, path) in [
        ("POST", "/admin/purge"),
        ("DELETE", "/messages?from=%2B919876543210"),
        ("DELETE", "/messages/m1"),
    ] {
        let resp = admin(&closed, method, path);
        assert_eq!(resp.status, 403, "{method} {path}: {}", resp.text());
        assert_eq!(
            resp.json(),
            json!({"detail": "admin routes are disabled: set admin_token to use them"})
        );
    }
    assert_eq!(closed.total(""), 1, "nothing was removed");

    let app = App::with_vars_on(
        backend,
        &[("webhook_secret", SECRET), ("admin_token", ADMIN), ("read_token", READ)],
    );
    assert_eq!(app.deliver(&message("m1")).status, 200);
    for authorization in [None, Some("Bearer wrong".to_owned()), Some(format!("Bearer {READ}"))] {
        let mut req = Req::new("DELETE", "/messages/m1");
        if let Some(value) = &authorization {
            req = req.header("Authorization", value);
        }
        let resp = app.send(&req);
        assert_eq!(resp.status, 401, "{authorization:?}");
        assert_eq!(resp.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(read(&app, "/messages")["total"], 1);

    // The routes join the 405 logic.
    let resp = app.get("/admin/purge");
    assert_eq!((resp.status, resp.header("allow")), (405, Some("POST")));
    let resp = app.send(&Req::new("PUT", "/messages"));
    assert_eq!((resp.status, resp.header("allow")), (405, Some("GET, DELETE")));
    let resp = app.send(&Req::new("POST", "/messages/m1"));
    assert_eq!((resp.status, resp.header("allow")), (405, Some("GET, DELETE")));
    let resp = app.send(&Req::new("DELETE", "/messages/export"));
    assert_eq!((resp.status, resp.header("allow")), (405, Some("GET")));
}

fn retention_purges_old_messages_in_bounded_batches_and_keeps_every_figure_exact(backend: Backend) {
    let app = App::with_vars_on(
        backend,
        &[
            ("webhook_secret", SECRET),
            ("admin_token", ADMIN),
            ("retention_days", "30"),
            ("purge_batch_size", "2"),
        ],
    );
    let old = [
        at("old1", "+1001", "2020-01-01T00:00:00Z"),
        at("old2", "+1001", "2020-01-02T00:00:00Z"),
        at("old3", "+1002", &days_ago(45)),
        at("old4", "+1003", &days_ago(31)),
        at("old5", "+1003", &days_ago(40)),
    ];
    let recent = [
        at("new1", "+1003", &days_ago(29)),
        at("new2", "+1004", &days_ago(1)),
        at("new3", "+1004", &days_ago(0)),
    ];
    for m in old.iter().chain(&recent) {
        assert_eq!(app.deliver(m).status, 200);
    }
    let mut purged = 0;
    loop {
        let resp = admin(&app, "POST", "/admin/purge");
        assert_eq!(resp.status, 200, "{}", resp.text());
        let body = resp.json();
        let n = body["purged"].as_u64().unwrap();
        assert!(n <= 2, "a batch is bounded: {body}");
        purged += n;
        assert_eq!(body["retention_days"], 30);
        if body["more"] == false {
            break;
        }
    }
    assert_eq!(purged, 5);
    let page = app.get("/messages").json();
    assert_eq!(ids(&page), ["new1", "new2", "new3"]);
    assert_eq!(page["total"], 3);
    let stats = app.get("/stats").json();
    assert_eq!(stats["total_messages"], 3);
    assert_eq!(stats["senders_count"], 2);
    assert_eq!(
        stats["messages_per_sender"],
        json!([{"from": "+1004", "count": 2}, {"from": "+1003", "count": 1}])
    );
    assert_eq!(stats["first_message_ts"], recent[0]["ts"]);
    assert_eq!(stats["last_message_ts"], recent[2]["ts"]);
    assert_eq!(app.total("from=%2B1003"), 1);
    assert_eq!(app.total("from=%2B1001"), 0);
    assert_eq!(app.total("to=%2B14155550100"), 3);
    assert_eq!(app.total(&format!("since={}", days_ago(60))), 3);
    assert_eq!(app.total("q=private"), 3);

    // A purged message sent again is answered as before and stores nothing.
    assert_eq!(app.deliver(&old[0]).status, 200);
    assert_eq!(app.total(""), 3);
    let metrics = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(metrics["messages_removed_total{cause=\"retention\"}"], 5.0);
    assert_eq!(metrics["webhook_requests_total{source=\"webhook\",result=\"created\"}"], 8.0);
    assert_eq!(metrics["webhook_requests_total{source=\"webhook\",result=\"duplicate\"}"], 1.0);
}

fn erasure_by_id_and_by_sender_and_re_deliveries_after_it(backend: Backend) {
    let app = App::with_vars_on(
        backend,
        &[("webhook_secret", SECRET), ("admin_token", ADMIN), ("purge_batch_size", "2")],
    );
    let odd_id = "a b/c?d#é";
    let mut all = vec![at(odd_id, "+2001", "2025-01-15T10:00:00Z")];
    for i in 0..5 {
        all.push(at(&format!("s{i}"), "+2002", &format!("2025-01-15T1{i}:30:00Z")));
    }
    all.push(at("keep", "+2003", "2025-01-16T10:00:00Z"));
    for m in &all {
        assert_eq!(app.deliver(m).status, 200);
    }

    // One message, by its URL-encoded id.
    let encoded = "a%20b%2Fc%3Fd%23%C3%A9";
    let resp = admin(&app, "DELETE", &format!("/messages/{encoded}"));
    assert_eq!((resp.status, resp.json()), (200, json!({"erased": 1})));
    let again = admin(&app, "DELETE", &format!("/messages/{encoded}"));
    assert_eq!((again.status, again.json()), (404, json!({"detail": "message not found"})));
    for never in ["/messages/nope", "/messages/%FF%FE", "/messages/%00"] {
        assert_eq!(admin(&app, "DELETE", never).status, 404, "{never}");
    }
    assert_eq!(app.total(""), 6);
    assert_eq!(app.get("/stats").json()["senders_count"], 2);
    // Sent again: 200, nothing stored.
    assert_eq!(app.deliver(&all[0]).status, 200);
    assert_eq!(app.total(""), 6);

    // One sender, a bounded batch per call, until nothing is left.
    let mut remaining = Vec::new();
    loop {
        let resp = admin(&app, "DELETE", "/messages?from=%2B2002");
        assert_eq!(resp.status, 200, "{}", resp.text());
        let body = resp.json();
        assert!(body["erased"].as_u64().unwrap() <= 2, "{body}");
        remaining.push(body["remaining"].as_i64().unwrap());
        if body["remaining"] == 0 {
            break;
        }
    }
    assert_eq!(remaining, [3, 1, 0]);
    assert_eq!(app.total("from=%2B2002"), 0);
    let stats = app.get("/stats").json();
    assert_eq!(stats["total_messages"], 1);
    assert_eq!(stats["senders_count"], 1);
    assert_eq!(stats["messages_per_sender"], json!([{"from": "+2003", "count": 1}]));
    assert_eq!(stats["first_message_ts"], "2025-01-16T10:00:00Z");
    assert_eq!(app.total("since=2025-01-15T00:00:00Z"), 1);
    assert_eq!(app.deliver(&all[3]).status, 200, "a re-delivery is answered");
    assert_eq!(app.total(""), 1, "and stores nothing");

    for bad in ["/messages", "/messages?from=", "/messages?from=abc", "/messages?to=%2B1"] {
        assert_eq!(admin(&app, "DELETE", bad).status, 422, "{bad}");
    }

    let metrics = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(metrics["messages_removed_total{cause=\"erasure\"}"], 6.0);
    // Logged and counted, never with the text.
    let lines = app.log_lines();
    let erasures: Vec<&Value> = lines
        .iter()
        .filter(|l| l["method"] == "DELETE" && l["status"] == 200)
        .collect();
    let removed: u64 = erasures.iter().map(|l| l["removed"].as_u64().unwrap()).sum();
    assert_eq!(removed, 6);
    assert!(!app.raw_stdout().contains("private words"));
}
}

#[test]
fn retention_rides_on_the_folds_of_ordinary_deliveries() {
    let app = App::with_vars(&[("webhook_secret", SECRET), ("retention_days", "1")]);
    assert_eq!(
        app.deliver(&at("ancient", "+3001", "2020-01-01T00:00:00Z"))
            .status,
        200
    );
    assert_eq!(app.total(""), 1, "kept until a batch runs");
    // The delivery that fills a batch of `received` folds it, then purges what is due.
    let fold_every = webhook_inbox::storage::FOLD_EVERY;
    for i in 1..fold_every {
        let ts = days_ago(0);
        assert_eq!(app.deliver(&at(&format!("n{i}"), "+3002", &ts)).status, 200);
    }
    assert_eq!(app.total(""), fold_every - 1);
    assert_eq!(app.total("from=%2B3001"), 0);
    let stats = app.get("/stats").json();
    assert_eq!(stats["senders_count"], 1);
    let metrics = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(metrics["messages_removed_total{cause=\"retention\"}"], 1.0);
}
