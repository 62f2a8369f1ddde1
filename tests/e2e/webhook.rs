//! POST /webhook: storage, idempotency, signatures, validation, limits, order of checks.

use crate::support::{message, sign, App, Req, SECRET};
use serde_json::{json, Value};

on_each_backend! {
fn stores_the_spec_example_exactly_as_sent(backend: Backend) {
    let app = App::start_on(backend);
    let resp = app.deliver(&message("m1"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json(), json!({"status": "ok"}));
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let listed = app.get("/messages").json();
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["data"][0], message("m1"));
}
}

on_each_backend! {
fn a_known_message_id_answers_ok_and_changes_nothing(backend: Backend) {
    let app = App::start_on(backend);
    assert_eq!(app.deliver(&message("m1")).status, 200);
    let mut changed = message("m1");
    changed["text"] = json!("rewritten");
    changed["from"] = json!("+1");
    let resp = app.deliver(&changed);
    assert_eq!((resp.status, resp.json()), (200, json!({"status": "ok"})));
    let listed = app.get("/messages").json();
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["data"][0], message("m1"), "first write wins");
    assert_eq!(app.get("/stats").json()["total_messages"], 1);
}
}

fn post_with_signature(app: &App, body: &[u8], signature: Option<&[u8]>) -> u16 {
    let mut req = Req::new("POST", "/webhook").body(body);
    if let Some(sig) = signature {
        req = req.raw_header("X-Signature", sig);
    }
    app.send(&req).status
}

#[test]
fn signature_battery() {
    let app = App::start();
    let body = message("sig").to_string().into_bytes();
    let good = sign(SECRET, &body);
    let cases: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("missing", None),
        ("empty", Some(b"".to_vec())),
        ("odd length", Some(good.as_bytes()[..63].to_vec())),
        ("non-hex", Some(format!("{}zz", &good[..62]).into_bytes())),
        ("too long", Some(format!("{good}00").into_bytes())),
        ("truncated prefix", Some(good.as_bytes()[..32].to_vec())),
        ("another body", Some(sign(SECRET, b"{}").into_bytes())),
        (
            "another secret",
            Some(sign("not-the-secret", &body).into_bytes()),
        ),
        ("wrong scheme", Some(format!("sha1={good}").into_bytes())),
        ("64 KiB header", Some(vec![b'a'; 64 * 1024])),
        // (Non-UTF-8 header bytes never reach the component: Spin refuses them itself.)
    ];
    for (name, sig) in cases {
        let status = post_with_signature(&app, &body, sig.as_deref());
        assert_eq!(status, 401, "{name}");
    }
    let resp = app.send(&Req::new("POST", "/webhook").body(&body));
    assert_eq!(resp.json(), json!({"detail": "invalid signature"}));
    assert_eq!(app.total(""), 0, "nothing stored from unsigned requests");

    assert_eq!(
        post_with_signature(&app, &body, Some(good.to_uppercase().as_bytes())),
        200
    );
    assert_eq!(
        post_with_signature(&app, &body, Some(format!("sha256={good}").as_bytes())),
        200
    );
    assert_eq!(app.total(""), 1);
}

#[test]
fn both_secrets_verify_during_a_rotation() {
    let app = App::with_vars(&[
        ("webhook_secret", "new-key"),
        ("webhook_secret_previous", "old-key"),
    ]);
    for (id, key) in [("by-new", "new-key"), ("by-old", "old-key")] {
        let body = message(id).to_string();
        let req = Req::new("POST", "/webhook")
            .header("X-Signature", &sign(key, body.as_bytes()))
            .body(body.as_bytes());
        assert_eq!(app.send(&req).status, 200, "{id}");
    }
    let body = message("by-neither").to_string();
    let req = Req::new("POST", "/webhook")
        .header("X-Signature", &sign("third-key", body.as_bytes()))
        .body(body.as_bytes());
    assert_eq!(app.send(&req).status, 401);
    assert_eq!(app.total(""), 2);
}

/// Posts a signed raw body and returns (status, the `loc`s of the 422 detail).
fn validation_locs(app: &App, body: &[u8]) -> (u16, Vec<String>) {
    let resp = app.post_signed(body);
    let locs = if resp.status == 422 {
        let detail = resp.json()["detail"]
            .as_array()
            .expect("detail list")
            .clone();
        detail
            .iter()
            .map(|e| {
                assert!(e["msg"].is_string() && e["type"].is_string(), "{e}");
                e["loc"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(".")
            })
            .collect()
    } else {
        Vec::new()
    };
    (resp.status, locs)
}

fn with(field: &str, value: Value) -> Vec<u8> {
    let mut m = message(&format!("v-{field}-{value}"));
    m[field] = value;
    m.to_string().into_bytes()
}

#[test]
fn validation_battery() {
    let app = App::start();
    let ok = |body: Vec<u8>| {
        let (status, locs) = validation_locs(&app, &body);
        assert_eq!(
            status,
            200,
            "{} -> {locs:?}",
            String::from_utf8_lossy(&body)
        );
    };
    let bad = |body: Vec<u8>, loc: &str| {
        let (status, locs) = validation_locs(&app, &body);
        assert_eq!(
            (status, locs),
            (422, vec![loc.to_owned()]),
            "{}",
            String::from_utf8_lossy(&body)
        );
    };

    // text: characters, not bytes; absent and null are fine.
    ok(with("text", json!("a".repeat(4096))));
    ok(with("text", json!("é".repeat(4096))));
    ok(with("text", json!("😀".repeat(4096))));
    ok(with("text", Value::Null));
    bad(with("text", json!("a".repeat(4097))), "body.text");
    bad(with("text", json!("😀".repeat(4097))), "body.text");
    bad(with("text", json!(5)), "body.text");
    bad(with("text", json!(["x"])), "body.text");

    // Phone numbers: + then 1 to 15 digits.
    ok(with("from", json!("+1")));
    ok(with("to", json!(format!("+{}", "9".repeat(15)))));
    bad(with("to", json!(format!("+{}", "9".repeat(16)))), "body.to");
    bad(with("from", json!("919876543210")), "body.from");
    bad(with("from", json!("+")), "body.from");
    bad(with("from", json!("+91 98765")), "body.from");
    bad(with("from", json!(919876543210_u64)), "body.from");

    // Timestamps.
    ok(with("ts", json!("2025-01-15T10:00:00.250Z")));
    ok(with("ts", json!("2024-02-29T23:59:59Z")));
    bad(with("ts", json!("2025-02-30T10:00:00Z")), "body.ts");
    bad(with("ts", json!("2025-02-29T10:00:00Z")), "body.ts");
    bad(with("ts", json!("2025-01-15T24:00:00Z")), "body.ts");
    bad(with("ts", json!("2025-01-15T10:00:00")), "body.ts");
    bad(with("ts", json!("2025-01-15T10:00:00+05:30")), "body.ts");
    bad(with("ts", json!("2025-01-15T10:00:00.Z")), "body.ts");
    bad(with("ts", json!(1736935200)), "body.ts");

    // message_id.
    bad(with("message_id", json!("")), "body.message_id");
    bad(with("message_id", json!(7)), "body.message_id");
    bad(with("message_id", Value::Null), "body.message_id");

    // Bodies that are not an object.
    for raw in [
        &b"[]"[..],
        b"1",
        b"null",
        b"\"text\"",
        b"",
        b"{",
        b"\xff\xfe{}",
        b"[{\"message_id\":\"m\"}]",
    ] {
        let (status, locs) = validation_locs(&app, raw);
        assert_eq!((status, locs), (422, vec!["body".to_owned()]), "{raw:?}");
    }
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    assert_eq!(validation_locs(&app, nested.as_bytes()).0, 422);

    // Every problem at once.
    let (status, locs) = validation_locs(&app, br#"{"from":"x","ts":"nope","text":1}"#);
    assert_eq!(status, 422);
    assert_eq!(
        locs,
        [
            "body.message_id",
            "body.from",
            "body.to",
            "body.ts",
            "body.text"
        ]
    );

    // Unknown fields are ignored; nothing invalid was stored.
    let mut extra = message("with-extra");
    extra["unknown"] = json!({"deep": [1, 2, 3]});
    ok(extra.to_string().into_bytes());
    let stored = app.total("");
    assert_eq!(stored, 9, "only the accepted bodies are stored");
}

/// A valid message body padded (with an ignored field) to exactly `size` bytes.
fn body_of_size(id: &str, size: usize) -> Vec<u8> {
    let mut m = message(id);
    m["pad"] = json!("");
    let base = m.to_string().len();
    m["pad"] = json!("x".repeat(size - base));
    let body = m.to_string().into_bytes();
    assert_eq!(body.len(), size);
    body
}

#[test]
fn body_limit_by_content_length_and_while_reading() {
    let app = App::start();
    let limit = 65_536;
    assert_eq!(app.post_signed(&body_of_size("exact", limit)).status, 200);

    let over = body_of_size("over", limit + 1);
    let sig = sign(SECRET, &over);
    let resp = app.send(
        &Req::new("POST", "/webhook")
            .header("X-Signature", &sig)
            .body(&over),
    );
    assert_eq!(
        (resp.status, resp.json()),
        (413, json!({"detail": "payload too large"}))
    );
    let chunked = Req::new("POST", "/webhook")
        .header("X-Signature", &sig)
        .body(&over)
        .chunked();
    assert_eq!(app.send(&chunked).status, 413);
    let exact = body_of_size("exact-chunked", limit);
    let exact_req = Req::new("POST", "/webhook")
        .header("X-Signature", &sign(SECRET, &exact))
        .body(&exact)
        .chunked();
    assert_eq!(app.send(&exact_req).status, 200);

    // A declared length over the limit is refused before any byte is read.
    let liar = Req::new("POST", "/webhook")
        .header("Content-Length", "10000000")
        .header("X-Signature", &sig);
    let mut raw = liar.clone();
    raw.body = Vec::new();
    assert_eq!(app.send(&raw).status, 413);
    assert_eq!(app.total(""), 2);
}

#[test]
fn configured_body_limit_applies() {
    let app = App::with_vars(&[("webhook_secret", SECRET), ("max_body_bytes", "300")]);
    assert_eq!(app.post_signed(&body_of_size("fits", 300)).status, 200);
    assert_eq!(app.post_signed(&body_of_size("too-big", 301)).status, 413);
}

#[test]
fn order_of_checks() {
    // Too large wins over everything, even an unconfigured secret.
    let unconfigured = App::with_vars(&[("max_body_bytes", "200")]);
    let big = vec![b'x'; 201];
    let resp = unconfigured.send(&Req::new("POST", "/webhook").body(&big));
    assert_eq!(resp.status, 413);
    // Not configured wins over a bad signature and a bad body.
    let resp = unconfigured.send(&Req::new("POST", "/webhook").body(b"not json"));
    assert_eq!(
        (resp.status, resp.json()),
        (503, json!({"detail": "webhook secret not configured"}))
    );

    let app = App::start();
    // A bad signature wins over a bad body: unsigned junk learns nothing about validation.
    let resp = app.send(
        &Req::new("POST", "/webhook")
            .header("X-Signature", "00")
            .body(b"not json"),
    );
    assert_eq!(resp.status, 401);
    // A good signature on a bad body is a 422.
    assert_eq!(app.post_signed(b"not json").status, 422);
}

#[test]
fn an_unconfigured_secret_fails_closed_until_set() {
    let mut app = App::with_vars(&[]);
    let body = message("early").to_string();
    let req = Req::new("POST", "/webhook")
        .header("X-Signature", &sign("", body.as_bytes()))
        .body(body.as_bytes());
    let resp = app.send(&req);
    assert_eq!(
        (resp.status, resp.json()),
        (503, json!({"detail": "webhook secret not configured"}))
    );
    let ready = app.get("/health/ready");
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.json()["checks"]["secret"],
        "webhook secret not configured"
    );

    app.restart_with_vars(&[("webhook_secret", SECRET)]);
    assert_eq!(app.get("/health/ready").json()["status"], "ready");
    assert_eq!(app.deliver(&message("late")).status, 200);
}

#[test]
fn an_unreadable_body_limit_fails_closed() {
    let app = App::with_vars(&[("webhook_secret", SECRET), ("max_body_bytes", "64KB")]);
    let resp = app.deliver(&message("m1"));
    assert_eq!(resp.status, 503, "retryable, so nothing is lost");
    assert_eq!(app.get("/health/ready").status, 503);
}

#[test]
fn request_ids_are_echoed_or_generated() {
    let app = App::start();
    let resp = app.send(&Req::new("GET", "/health/live").header("X-Request-ID", "abc-123"));
    assert_eq!(resp.header("x-request-id"), Some("abc-123"));
    for unacceptable in ["has space", &"x".repeat(200), ""] {
        let resp = app.send(&Req::new("GET", "/health/live").header("X-Request-ID", unacceptable));
        let id = resp.header("x-request-id").unwrap();
        assert!(
            id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
    }
    let a = app.get("/health/live");
    let b = app.get("/health/live");
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}
