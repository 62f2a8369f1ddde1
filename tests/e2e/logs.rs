//! One JSON log line per request, with the spec's fields, and no secrets or content.

use crate::support::{message, sign, App, Req, SECRET};
use serde_json::Value;

#[test]
fn one_line_per_request_with_the_fields_and_nothing_secret() {
    let app = App::start();
    let mut m = message("log-1");
    m["text"] = Value::from("top secret message body");
    let body = m.to_string();
    let signature = sign(SECRET, body.as_bytes());
    let req = Req::new("POST", "/webhook")
        .header("X-Signature", &signature)
        .header("X-Request-ID", "req-42");
    assert_eq!(app.send(&req.clone().body(body.as_bytes())).status, 200);
    assert_eq!(app.send(&req.body(body.as_bytes())).status, 200);
    assert_eq!(
        app.send(
            &Req::new("POST", "/webhook")
                .header("X-Signature", "bad")
                .body(b"{}")
        )
        .status,
        401
    );
    assert_eq!(app.post_signed(b"[1]").status, 422);
    assert_eq!(app.get("/messages?q=secret").status, 200);
    assert_eq!(app.get("/nowhere").status, 404);

    let lines = app.log_lines();
    assert_eq!(
        lines.len(),
        6,
        "exactly one line per request:\n{}",
        app.raw_stdout()
    );
    for line in &lines {
        for field in [
            "ts",
            "level",
            "request_id",
            "method",
            "path",
            "status",
            "latency_ms",
        ] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
        let ts = line["ts"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 24, "RFC 3339 UTC: {ts}");
        assert!(line["latency_ms"].as_f64().unwrap() >= 0.0);
    }
    let raw = app.raw_stdout();
    for forbidden in [SECRET, signature.as_str(), "top secret message body"] {
        assert!(!raw.contains(forbidden), "log leaks {forbidden:?}");
    }

    let created = &lines[0];
    assert_eq!(created["request_id"], "req-42");
    assert_eq!(created["method"], "POST");
    assert_eq!(created["path"], "/webhook");
    assert_eq!(created["status"], 200);
    assert_eq!(created["level"], "info");
    assert_eq!(created["message_id"], "log-1");
    assert_eq!(created["dup"], false);
    assert_eq!(created["result"], "created");
    assert_eq!(created["source"], "webhook");
    assert_eq!(lines[1]["dup"], true);
    assert_eq!(lines[1]["result"], "duplicate");
    assert_eq!(lines[2]["result"], "invalid_signature");
    assert!(
        lines[2].get("message_id").is_none(),
        "unknown before the signature is checked"
    );
    assert_eq!(lines[3]["result"], "validation_error");
    assert!(
        lines[4].get("result").is_none() && lines[4].get("source").is_none(),
        "only the delivery routes' lines carry a result and a source"
    );
    assert_eq!(lines[5]["status"], 404);
}

#[test]
fn log_level_filters_lines() {
    let app = App::with_vars(&[("webhook_secret", SECRET), ("log_level", "warn")]);
    assert_eq!(app.get("/health/live").status, 200);
    assert!(app.log_lines().is_empty(), "info lines are below warn");
    let unconfigured = App::with_vars(&[("log_level", "warn")]);
    assert_eq!(unconfigured.deliver(&message("m")).status, 503);
    let lines = unconfigured.log_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["level"], "warn");
    assert_eq!(lines[0]["result"], "not_configured");
}
