//! The rejection log: every way a delivery is refused, kept newest first behind the read
//! token, bounded, without the text, the signature, the secret or the token; and counted by
//! reason in `/metrics`.

use crate::support::{message, parse_prometheus, sign, App, Req, Resp, SECRET};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

const READ: &str = "rejections-read-tok";
const TEXT: &str = "do not keep this text";

fn read(app: &App, path: &str) -> Resp {
    app.send(&Req::new("GET", path).header("Authorization", &format!("Bearer {READ}")))
}

fn sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// A body with [`TEXT`] in it.
fn body(id: &str) -> Vec<u8> {
    let mut msg = message(id);
    msg["text"] = json!(TEXT);
    msg.to_string().into_bytes()
}

on_each_backend! {
fn each_refusal_is_kept_newest_first_without_its_content(backend: Backend) {
    let app = App::with_vars_on(backend, &[("webhook_secret", SECRET), ("read_token", READ)]);
    let unsigned = body("m1");
    let forged = body("m2");
    let forged_signature = sign("not-the-secret", &forged);
    let stale = body("m3");
    let invalid = br#"{"message_id":"m4","to":"+14155550100","ts":"2025-01-15T10:00:00Z"}"#;

    let mut sent: Vec<(Resp, Value)> = Vec::new();
    let mut send = |req: Req, expected: Value| {
        let resp = app.send(&req);
        assert_eq!(resp.status, expected["status"], "{}", resp.text());
        sent.push((resp, expected));
    };
    send(
        Req::new("POST", "/webhook").body(&unsigned),
        json!({"status": 401, "reason": "invalid_signature", "detail": "signature_missing",
               "locs": [], "body_bytes": unsigned.len(), "body_sha256": sha256(&unsigned)}),
    );
    send(
        Req::new("POST", "/webhook")
            .header("X-Signature", &forged_signature)
            .body(&forged),
        json!({"status": 401, "reason": "invalid_signature", "detail": "signature_mismatch",
               "locs": [], "body_bytes": forged.len(), "body_sha256": sha256(&forged)}),
    );
    let an_hour_ago = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - 3600;
    send(
        Req::new("POST", "/webhook")
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", &an_hour_ago.to_string())
            .header("webhook-signature", "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=")
            .body(&stale),
        json!({"status": 401, "reason": "timestamp_out_of_tolerance",
               "detail": "timestamp_too_old", "locs": [],
               "body_bytes": stale.len(), "body_sha256": sha256(&stale)}),
    );
    send(
        Req::new("POST", "/webhook")
            .header("X-Signature", &sign(SECRET, invalid))
            .body(invalid),
        json!({"status": 422, "reason": "validation_error", "detail": "validation_error",
               "locs": [["body", "from"]], "body_bytes": invalid.len(),
               "body_sha256": sha256(invalid)}),
    );
    send(
        Req::new("POST", "/webhook")
            .header("X-Signature", &sign(SECRET, &unsigned))
            .header("Content-Length", "70000")
            .body(&unsigned),
        json!({"status": 413, "reason": "payload_too_large",
               "detail": "content_length_over_limit", "locs": [],
               "body_bytes": 70000, "body_sha256": null}),
    );
    // A stored message and a read are not rejections.
    assert_eq!(app.deliver(&message("ok")).status, 200);
    assert_eq!(read(&app, "/messages").status, 200);

    // Behind the read token, like the messages.
    let refused = app.get("/rejections");
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));

    let resp = read(&app, "/rejections");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let page = resp.json();
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(page["limit"], 50);
    let entries = page["data"].as_array().unwrap();
    assert_eq!(entries.len(), sent.len());
    for (entry, (resp, expected)) in entries.iter().zip(sent.iter().rev()) {
        for field in ["status", "reason", "detail", "locs", "body_bytes", "body_sha256"] {
            assert_eq!(entry[field], expected[field], "{field} of {entry}");
        }
        assert_eq!(entry["route"], "/webhook");
        assert_eq!(entry["source"], "webhook");
        assert_eq!(
            entry["request_id"].as_str(),
            resp.header("x-request-id"),
            "{entry}"
        );
        let at = entry["at"].as_str().unwrap();
        assert!(at.len() == 24 && at.ends_with('Z'), "{at}");
    }
    let raw = resp.text();
    for kept_out in [TEXT, &forged_signature, SECRET, READ, "K5oZfzN95Z9UVu1"] {
        assert!(!raw.contains(kept_out), "the log keeps {kept_out:?}: {raw}");
    }

    // Pages of two, newest first, by cursor.
    let mut seen = Vec::new();
    let mut next = "/rejections?limit=2".to_owned();
    loop {
        let page = read(&app, &next).json();
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|e| e["request_id"].clone()));
        match page["next_cursor"].as_str() {
            Some(cursor) => next = format!("/rejections?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let all: Vec<Value> = entries.iter().map(|e| e["request_id"].clone()).collect();
    assert_eq!(seen, all);

    for bad in ["/rejections?cursor=abc", "/rejections?limit=0", "/rejections?limit=101"] {
        assert_eq!(read(&app, bad).status, 422, "{bad}");
    }

    // Counted by reason, with every reason's series present.
    let metrics = parse_prometheus(&app.get("/metrics").text());
    let count = |reason: &str| metrics[&format!("webhook_rejections_total{{source=\"webhook\",reason=\"{reason}\"}}")];
    assert_eq!(count("invalid_signature"), 2.0);
    assert_eq!(count("timestamp_out_of_tolerance"), 1.0);
    assert_eq!(count("validation_error"), 1.0);
    assert_eq!(count("payload_too_large"), 1.0);
    assert_eq!(count("not_configured"), 0.0);
}

fn the_log_never_holds_more_than_its_bound(backend: Backend) {
    let app = App::with_vars_on(backend, &[("webhook_secret", SECRET), ("rejection_log_size", "3")]);
    // The table is trimmed every so many entries; what is served is the bound at once.
    let every = webhook_inbox::storage::REJECTION_LOG_TRIM_EVERY as usize;
    let mut ids = Vec::new();
    for n in 0..every + 7 {
        let resp = app.send(&Req::new("POST", "/webhook").body(&body(&format!("m{n}"))));
        assert_eq!(resp.status, 401);
        ids.push(resp.header("x-request-id").unwrap().to_owned());
        let stored = app.query_i64("SELECT count(*) FROM rejections") as usize;
        assert!(stored < 3 + every, "{stored} after {n}");
        let page = app.get("/rejections").json();
        let kept: Vec<&str> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["request_id"].as_str().unwrap())
            .collect();
        let newest: Vec<&str> = ids.iter().rev().take(3).map(String::as_str).collect();
        assert_eq!(kept, newest);
    }
    assert_eq!(app.query_i64("SELECT count(*) FROM rejections"), 3 + 7);
}

fn an_unconfigured_inbox_logs_what_it_turned_away(backend: Backend) {
    let app = App::with_vars_on(backend, &[]);
    let sent = body("m1");
    let resp = app.send(
        &Req::new("POST", "/webhook")
            .header("X-Signature", &sign(SECRET, &sent))
            .body(&sent),
    );
    assert_eq!(resp.status, 503);
    let page = app.get("/rejections").json();
    assert_eq!(page["data"][0]["reason"], "not_configured");
    assert_eq!(page["data"][0]["detail"], "webhook_secret_empty");
    assert_eq!(page["data"][0]["body_sha256"], sha256(&sent));
}
}

#[test]
fn a_log_size_of_zero_keeps_nothing_but_still_counts() {
    let app = App::with_vars(&[("webhook_secret", SECRET), ("rejection_log_size", "0")]);
    assert_eq!(app.post_signed(b"[]").status, 422);
    assert_eq!(app.get("/rejections").json()["data"], json!([]));
    assert_eq!(app.query_i64("SELECT count(*) FROM rejections"), 0);
    let metrics = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(
        metrics["webhook_rejections_total{source=\"webhook\",reason=\"validation_error\"}"],
        1.0
    );
}

#[test]
fn an_unreadable_log_size_keeps_the_default_and_fails_readiness() {
    let app = App::with_vars(&[("webhook_secret", SECRET), ("rejection_log_size", "lots")]);
    assert_eq!(app.post_signed(b"[]").status, 422);
    assert_eq!(
        app.get("/rejections").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let ready = app.get("/health/ready");
    assert_eq!(ready.status, 503);
    assert!(ready.json()["checks"]["config"]
        .as_str()
        .unwrap()
        .contains("rejection_log_size"));
}
