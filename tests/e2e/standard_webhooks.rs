//! Standard Webhooks deliveries (`webhook-id`, `webhook-timestamp`, `webhook-signature`)
//! beside `X-Signature`: every way to fail, the tolerance window, `whsec_` secrets,
//! rotation, both schemes at once, and the order of checks.

use crate::support::{message, sign, App, Req, SECRET};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

/// A Standard Webhooks secret: `whsec_` + base64 of the key bytes.
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `v1,<base64>` over "{id}.{timestamp}.{body}", computed here independently.
fn sw_sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn whsec_key() -> Vec<u8> {
    STANDARD.decode(&WHSEC["whsec_".len()..]).unwrap()
}

/// A POST with the three headers (any of them left out when `None`).
fn sw_request(
    body: &[u8],
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
) -> Req {
    let mut req = Req::new("POST", "/webhook").body(body);
    for (name, value) in [
        ("webhook-id", id),
        ("webhook-timestamp", timestamp),
        ("webhook-signature", signature),
    ] {
        if let Some(value) = value {
            req = req.header(name, value);
        }
    }
    req
}

/// A correctly signed request at `timestamp`, under `key`.
fn signed_at(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Req {
    let ts = timestamp.to_string();
    let sig = sw_sign(key, id, &ts, body);
    sw_request(body, Some(id), Some(&ts), Some(&sig))
}

on_each_backend! {
fn a_standard_webhooks_delivery_is_stored(backend: Backend) {
    let app = App::with_vars_on(backend, &[("webhook_secret", WHSEC)]);
    let body = message("sw-1").to_string().into_bytes();
    let resp = app.send(&signed_at(&whsec_key(), "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now(), &body));
    assert_eq!((resp.status, resp.json()), (200, json!({"status": "ok"})));
    // The same secret keys X-Signature with the same decoded bytes.
    let body2 = message("x-1").to_string().into_bytes();
    let mut mac = Hmac::<Sha256>::new_from_slice(&whsec_key()).unwrap();
    mac.update(&body2);
    let x_sig = hex::encode(mac.finalize().into_bytes());
    let resp = app.send(&Req::new("POST", "/webhook").header("X-Signature", &x_sig).body(&body2));
    assert_eq!(resp.status, 200, "{}", resp.text());
    // The `whsec_…` text itself is not the X-Signature key.
    let body3 = message("x-2").to_string().into_bytes();
    let resp = app.send(
        &Req::new("POST", "/webhook")
            .header("X-Signature", &sign(WHSEC, &body3))
            .body(&body3),
    );
    assert_eq!(resp.status, 401);
    assert_eq!(app.total(""), 2);
    let lines = app.log_lines();
    assert_eq!(lines[0]["result"], "created");
    assert_eq!(lines[2]["reason"], "signature_mismatch");
}
}

#[test]
fn every_way_to_fail_is_a_401_and_the_log_says_why() {
    let app = App::start();
    let key = SECRET.as_bytes();
    let body = message("sw-fail").to_string().into_bytes();
    let id = "msg_fail";
    let ts = now().to_string();
    let good = sw_sign(key, id, &ts, &body);
    let good_b64 = &good[3..];
    let stale = (now() - 400).to_string();
    let future = (now() + 400).to_string();
    let cases: Vec<(&str, Req, &str)> = vec![
        (
            "only webhook-id",
            sw_request(&body, Some(id), None, None),
            "webhook_headers_incomplete",
        ),
        (
            "no signature",
            sw_request(&body, Some(id), Some(&ts), None),
            "webhook_headers_incomplete",
        ),
        (
            "no timestamp",
            sw_request(&body, Some(id), None, Some(&good)),
            "webhook_headers_incomplete",
        ),
        (
            "no id",
            sw_request(&body, None, Some(&ts), Some(&good)),
            "webhook_headers_incomplete",
        ),
        (
            "empty id",
            sw_request(&body, Some(""), Some(&ts), Some(&good)),
            "webhook_headers_incomplete",
        ),
        (
            "truncated signature",
            sw_request(&body, Some(id), Some(&ts), Some(&good[..good.len() - 4])),
            "signature_malformed",
        ),
        (
            "wrong version prefix",
            sw_request(&body, Some(id), Some(&ts), Some(&format!("v2,{good_b64}"))),
            "signature_malformed",
        ),
        (
            "v1, with nothing",
            sw_request(&body, Some(id), Some(&ts), Some("v1,")),
            "signature_malformed",
        ),
        (
            "another key",
            sw_request(
                &body,
                Some(id),
                Some(&ts),
                Some(&sw_sign(b"other", id, &ts, &body)),
            ),
            "signature_mismatch",
        ),
        (
            "another id",
            sw_request(&body, Some("msg_other"), Some(&ts), Some(&good)),
            "signature_mismatch",
        ),
        (
            "a dot in the id",
            sw_request(&body, Some("msg.1"), Some(&ts), Some(&good)),
            "webhook_id_invalid",
        ),
        (
            "timestamp too old",
            sw_request(
                &body,
                Some(id),
                Some(&stale),
                Some(&sw_sign(key, id, &stale, &body)),
            ),
            "timestamp_too_old",
        ),
        (
            "timestamp in the future",
            sw_request(
                &body,
                Some(id),
                Some(&future),
                Some(&sw_sign(key, id, &future, &body)),
            ),
            "timestamp_too_new",
        ),
        (
            "non-numeric timestamp",
            sw_request(
                &body,
                Some(id),
                Some("soon"),
                Some(&sw_sign(key, id, "soon", &body)),
            ),
            "timestamp_invalid",
        ),
        (
            "64 KiB signature header",
            sw_request(
                &body,
                Some(id),
                Some(&ts),
                Some(&format!("{good} ").repeat(1300)),
            ),
            "webhook_header_too_large",
        ),
        (
            "unsigned",
            Req::new("POST", "/webhook").body(&body),
            "signature_missing",
        ),
    ];
    let count = cases.len();
    for (name, req, _) in &cases {
        let resp = app.send(req);
        assert_eq!(
            (resp.status, resp.json()),
            (401, json!({"detail": "invalid signature"})),
            "{name}"
        );
    }
    assert_eq!(app.total(""), 0, "nothing stored");
    let lines = app.log_lines();
    let logged: Vec<_> = lines[..count]
        .iter()
        .map(|l| (l["result"].as_str().unwrap(), l["reason"].as_str().unwrap()))
        .collect();
    let expected: Vec<_> = cases
        .iter()
        .map(|(_, _, reason)| ("invalid_signature", *reason))
        .collect();
    assert_eq!(logged, expected);
    let raw = app.raw_stdout();
    assert!(!raw.contains(good_b64), "the signature is never logged");
}

#[test]
fn the_window_holds_on_both_sides_and_several_signatures_may_be_sent() {
    let app = App::with_vars(&[
        ("webhook_secret", SECRET),
        ("signature_tolerance_seconds", "60"),
    ]);
    let key = SECRET.as_bytes();
    let deliver = |n: &str, offset: i64| {
        let body = message(n).to_string().into_bytes();
        app.send(&signed_at(key, &format!("msg_{n}"), now() + offset, &body))
            .status
    };
    assert_eq!(deliver("in-past", -50), 200);
    assert_eq!(deliver("in-future", 50), 200);
    assert_eq!(deliver("out-past", -70), 401);
    assert_eq!(deliver("out-future", 70), 401);

    // Several signatures, one of them right (a sender mid-rotation signs with both keys).
    let body = message("multi").to_string().into_bytes();
    let ts = now().to_string();
    let header = [
        sw_sign(b"retired-key", "msg_multi", &ts, &body),
        "v1a,c29tZSBhc3ltbWV0cmljIHNpZ25hdHVyZQ==".to_owned(),
        sw_sign(key, "msg_multi", &ts, &body),
    ]
    .join(" ");
    let resp = app.send(&sw_request(
        &body,
        Some("msg_multi"),
        Some(&ts),
        Some(&header),
    ));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(app.total(""), 3);
}

#[test]
fn both_secrets_verify_both_schemes_during_a_rotation() {
    let app = App::with_vars(&[
        ("webhook_secret", "whsec_bmV3LWtleS1uZXcta2V5LW5ldy1rZXk="),
        ("webhook_secret_previous", "old-plain-key"),
    ]);
    let new_key = b"new-key-new-key-new-key".as_slice();
    let old_key = b"old-plain-key".as_slice();
    for (n, key) in [("sw-new", new_key), ("sw-old", old_key)] {
        let body = message(n).to_string().into_bytes();
        let resp = app.send(&signed_at(key, &format!("msg_{n}"), now(), &body));
        assert_eq!(resp.status, 200, "{n}");
    }
    for (n, key) in [("x-new", new_key), ("x-old", old_key)] {
        let body = message(n).to_string().into_bytes();
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(&body);
        let sig = hex::encode(mac.finalize().into_bytes());
        let resp = app.send(
            &Req::new("POST", "/webhook")
                .header("X-Signature", &sig)
                .body(&body),
        );
        assert_eq!(resp.status, 200, "{n}");
    }
    let body = message("neither").to_string().into_bytes();
    assert_eq!(
        app.send(&signed_at(b"third", "msg_x", now(), &body)).status,
        401
    );
    assert_eq!(app.total(""), 4);
}

#[test]
fn a_request_with_both_schemes_passes_when_either_verifies() {
    let app = App::start();
    let key = SECRET.as_bytes();
    let body = message("both-1").to_string().into_bytes();
    let req = signed_at(key, "msg_both1", now(), &body).header("X-Signature", "00");
    assert_eq!(
        app.send(&req).status,
        200,
        "good Standard Webhooks, bad X-Signature"
    );

    let body = message("both-2").to_string().into_bytes();
    let req = signed_at(key, "msg_both2", now() - 3600, &body)
        .header("X-Signature", &sign(SECRET, &body));
    assert_eq!(
        app.send(&req).status,
        200,
        "stale Standard Webhooks, good X-Signature"
    );

    let body = message("both-3").to_string().into_bytes();
    let req = signed_at(key, "msg_both3", now() - 3600, &body).header("X-Signature", "00");
    assert_eq!(app.send(&req).status, 401);
    let last = app.log_lines().pop().unwrap();
    assert_eq!(
        last["reason"], "timestamp_too_old",
        "the specific reason wins"
    );
}

#[test]
fn order_of_checks_holds_for_standard_webhooks() {
    // 413 before everything.
    let small = App::with_vars(&[("webhook_secret", SECRET), ("max_body_bytes", "100")]);
    let big = vec![b'x'; 101];
    assert_eq!(
        small
            .send(&signed_at(SECRET.as_bytes(), "msg_big", now(), &big))
            .status,
        413
    );
    // 503 (no secret) before the signature.
    let unconfigured = App::with_vars(&[]);
    let resp = unconfigured.send(&signed_at(b"", "msg_a", now(), b"not json"));
    assert_eq!(resp.status, 503);
    // 401 before the body's validation; 422 once signed.
    let app = App::start();
    let bad = sw_request(
        b"not json",
        Some("msg_b"),
        Some(&now().to_string()),
        Some("v1,"),
    );
    assert_eq!(app.send(&bad).status, 401);
    let signed = signed_at(SECRET.as_bytes(), "msg_c", now(), b"not json");
    assert_eq!(app.send(&signed).status, 422);
}

#[test]
fn unusable_signature_settings_fail_closed() {
    // A tolerance we cannot read: Standard Webhooks deliveries get 503 (retried), X-Signature
    // ones do not need it; readiness says why.
    let app = App::with_vars(&[
        ("webhook_secret", SECRET),
        ("signature_tolerance_seconds", "5m"),
    ]);
    let body = message("t-1").to_string().into_bytes();
    let resp = app.send(&signed_at(SECRET.as_bytes(), "msg_t1", now(), &body));
    assert_eq!(
        (resp.status, resp.json()),
        (503, json!({"detail": "invalid configuration"}))
    );
    assert_eq!(app.deliver(&message("t-2")).status, 200);
    let ready = app.get("/health/ready");
    assert_eq!(ready.status, 503);
    assert!(ready.json()["checks"]["config"]
        .as_str()
        .unwrap()
        .contains("signature_tolerance_seconds"));

    // A `whsec_` secret that is not base64: 503 for every delivery, readiness says so.
    let app = App::with_vars(&[("webhook_secret", "whsec_not base64!")]);
    let resp = app.deliver(&message("w-1"));
    assert_eq!(resp.status, 503);
    let ready = app.get("/health/ready");
    assert_eq!(ready.status, 503);
    assert!(ready.json()["checks"]["secret"]
        .as_str()
        .unwrap()
        .contains("whsec_"));
    let raw = app.raw_stdout();
    assert!(!raw.contains("not base64!"), "the secret is never logged");
}
