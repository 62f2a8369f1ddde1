//! The native sources over HTTP on both backends: Meta's WhatsApp Cloud API
//! (`GET`/`POST /webhook/whatsapp`) and Twilio (`POST /webhook/twilio`), each signed here
//! with the provider's documented recipe, independently of the component's code.

use crate::support::{parse_prometheus, App, Backend, Req, SECRET};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::collections::HashMap;

const APP_SECRET: &str = "e2e-meta-app-secret";
const VERIFY_TOKEN: &str = "e2e-verify-token";
const AUTH_TOKEN: &str = "e2e-twilio-auth-token";
const BASE_URL: &str = "https://inbox.example.com";
const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#;

fn app_with_sources(backend: Backend) -> App {
    App::with_vars_on(
        backend,
        &[
            ("webhook_secret", SECRET),
            ("whatsapp_app_secret", APP_SECRET),
            ("whatsapp_verify_token", VERIFY_TOKEN),
            ("twilio_auth_token", AUTH_TOKEN),
            ("public_base_url", BASE_URL),
        ],
    )
}

fn metrics(app: &App) -> HashMap<String, f64> {
    parse_prometheus(&app.get("/metrics").text())
}

// ---- Meta -----------------------------------------------------------------------------

/// `X-Hub-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the raw body.
fn meta_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn text(id: &str, from: &str, timestamp: &str, body: &str) -> Value {
    json!({"from": from, "id": id, "timestamp": timestamp, "type": "text", "text": {"body": body}})
}

/// A delivery shaped like Meta's "messages webhook reference" example.
fn meta_delivery(messages: Vec<Value>, statuses: Vec<Value>) -> Vec<u8> {
    json!({
      "object": "whatsapp_business_account",
      "entry": [{
        "id": "102290129340398",
        "changes": [{
          "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
            "messages": messages,
            "statuses": statuses
          },
          "field": "messages"
        }]
      }]
    })
    .to_string()
    .into_bytes()
}

fn post_meta(app: &App, body: &[u8], signature: Option<&str>) -> crate::support::Resp {
    let mut req = Req::new("POST", "/webhook/whatsapp")
        .header("Content-Type", "application/json")
        .body(body);
    if let Some(signature) = signature {
        req = req.header("X-Hub-Signature-256", signature);
    }
    app.send(&req)
}

on_each_backend! {
fn a_signed_whatsapp_batch_is_stored_once(backend: Backend) {
    let app = app_with_sources(backend);

    // Meta's handshake.
    let challenge = app.get(&format!(
        "/webhook/whatsapp?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
    ));
    assert_eq!(challenge.status, 200, "{}", challenge.text());
    assert_eq!(challenge.text(), "1158201444");
    assert!(challenge.header("content-type").unwrap().starts_with("text/plain"));
    let refused = app.get(
        "/webhook/whatsapp?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1158201444",
    );
    assert_eq!(refused.status, 403);

    // A batch: two texts, an image with a caption, and a status.
    let image = json!({"from": "16315551234", "id": "wamid.e2e.3", "timestamp": "1749416390",
                       "type": "image",
                       "image": {"caption": "a caption", "mime_type": "image/jpeg", "id": "27548"}});
    let first = meta_delivery(
        vec![
            text("wamid.e2e.1", "16505551234", "1749416383", "Does it come in another color?"),
            text("wamid.e2e.2", "16505551234", "1749416385", "Or size?"),
            image,
        ],
        vec![json!({"id": "wamid.out", "status": "delivered", "timestamp": "1749416300",
                    "recipient_id": "16505551234"})],
    );
    let resp = post_meta(&app, &first, Some(&meta_signature(APP_SECRET, &first)));
    assert_eq!(resp.status, 200, "{}\n{}", resp.text(), app.last_log_lines(3));
    assert_eq!(resp.json(), json!({"status": "ok"}));
    assert_eq!(app.total(""), 3);
    // Meta's retry of the same delivery stores nothing.
    let resp = post_meta(&app, &first, Some(&meta_signature(APP_SECRET, &first)));
    assert_eq!(resp.status, 200);
    assert_eq!(app.total(""), 3);
    // A batch mixing an old id with a new one stores the new one.
    let mixed = meta_delivery(
        vec![
            text("wamid.e2e.2", "16505551234", "1749416385", "Or size?"),
            text("wamid.e2e.4", "16505550000", "1749416400", "Hello"),
        ],
        Vec::new(),
    );
    let resp = post_meta(&app, &mixed, Some(&meta_signature(APP_SECRET, &mixed)));
    assert_eq!(resp.status, 200);
    assert_eq!(app.total(""), 4);

    // The 401s: no signature, another secret's, the generic route's secret.
    for signature in [
        None,
        Some(meta_signature("not-the-app-secret", &mixed)),
        Some(meta_signature(SECRET, &mixed)),
        Some("sha256=zz".to_owned()),
    ] {
        let resp = post_meta(&app, &mixed, signature.as_deref());
        assert_eq!(resp.status, 401, "{signature:?}");
        assert_eq!(resp.json(), json!({"detail": "invalid signature"}));
    }
    // Signed, but not a delivery whose shape can be read.
    let resp = post_meta(&app, b"[]", Some(&meta_signature(APP_SECRET, b"[]")));
    assert_eq!(resp.status, 422);

    // Exact reads.
    assert_eq!(
        app.get("/stats").json(),
        json!({"total_messages": 4, "senders_count": 3,
               "messages_per_sender": [{"from": "+16505551234", "count": 2},
                                       {"from": "+16315551234", "count": 1},
                                       {"from": "+16505550000", "count": 1}],
               "first_message_ts": "2025-06-08T20:59:43.000Z",
               "last_message_ts": "2025-06-08T21:00:00.000Z"})
    );
    let one = app.get("/messages/wamid.e2e.3");
    assert_eq!(one.status, 200);
    assert_eq!(
        one.json(),
        json!({"message_id": "wamid.e2e.3", "from": "+16315551234", "to": "+15550783881",
               "ts": "2025-06-08T20:59:50.000Z", "text": "a caption",
               "source": "whatsapp", "type": "image"})
    );
    assert_eq!(app.get("/messages/wamid.e2e.1").json()["type"], "text");
    assert_eq!(app.total("to=%2B15550783881"), 4);
    assert_eq!(app.total("q=another%20color"), 1);

    // The counters: each request once, each message once, what was not one by kind.
    let m = metrics(&app);
    let get = |series: &str| *m.get(series).unwrap_or_else(|| panic!("missing {series}"));
    assert_eq!(get(r#"http_requests_total{path="/webhook/whatsapp",status="200"}"#), 4.0);
    assert_eq!(get(r#"http_requests_total{path="/webhook/whatsapp",status="403"}"#), 1.0);
    assert_eq!(get(r#"http_requests_total{path="/webhook/whatsapp",status="401"}"#), 4.0);
    assert_eq!(get(r#"http_requests_total{path="/webhook/whatsapp",status="422"}"#), 1.0);
    assert_eq!(get(r#"webhook_requests_total{source="whatsapp",result="created"}"#), 2.0);
    assert_eq!(get(r#"webhook_requests_total{source="whatsapp",result="duplicate"}"#), 1.0);
    assert_eq!(
        get(r#"webhook_requests_total{source="whatsapp",result="invalid_signature"}"#),
        4.0
    );
    assert_eq!(get(r#"webhook_messages_total{source="whatsapp",result="created"}"#), 4.0);
    assert_eq!(get(r#"webhook_messages_total{source="whatsapp",result="duplicate"}"#), 4.0);
    assert_eq!(get(r#"webhook_messages_total{source="whatsapp",result="invalid"}"#), 0.0);
    assert_eq!(get(r#"webhook_ignored_total{source="whatsapp",kind="status"}"#), 2.0);
    assert_eq!(
        get(r#"webhook_rejections_total{source="whatsapp",reason="invalid_signature"}"#),
        4.0
    );
    assert_eq!(
        get(r#"webhook_rejections_total{source="whatsapp",reason="validation_error"}"#),
        1.0
    );
    assert!(!m.keys().any(|k| k.contains(r#"source="webhook",result="created""#)));

    // The rejection log and the log lines name the source; the text is in neither.
    let log = app.get("/rejections").json();
    let entries = log["data"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    assert!(entries.iter().all(|e| e["source"] == "whatsapp" && e["route"] == "/webhook/whatsapp"));
    let lines = app.log_lines();
    let deliveries: Vec<&Value> =
        lines.iter().filter(|l| l["path"] == "/webhook/whatsapp").collect();
    assert_eq!(deliveries.len(), 10);
    assert!(deliveries.iter().all(|l| l["source"] == "whatsapp"));
    assert_eq!(
        deliveries[2]["messages"],
        json!({"created": 3, "duplicate": 0, "invalid": 0})
    );
    assert_eq!(deliveries[2]["ignored"], json!({"status": 1}));
    assert!(!app.raw_stdout().contains("another color"));
}
}

// ---- Twilio ---------------------------------------------------------------------------

/// `X-Twilio-Signature`: base64 of the HMAC-SHA1 of the URL, then every parameter sorted by
/// name, each as name and value.
fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

fn post_form(
    app: &App,
    target: &str,
    params: &[(&str, &str)],
    signature: Option<&str>,
) -> crate::support::Resp {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut req = Req::new("POST", target)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.as_bytes());
    if let Some(signature) = signature {
        req = req.header("X-Twilio-Signature", signature);
    }
    app.send(&req)
}

fn incoming(sid: &str) -> Vec<(&str, &str)> {
    vec![
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("ProfileName", "Sheena"),
        ("SmsSid", sid),
        ("WaId", "14155550100"),
        ("SmsStatus", "received"),
        ("Body", "Hello from Twilio & co: 100% +1"),
        ("To", "whatsapp:+14155238886"),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
        ("From", "whatsapp:+14155550100"),
        ("ApiVersion", "2010-04-01"),
    ]
}

on_each_backend! {
fn a_signed_twilio_message_is_stored_once_and_answered_with_twiml(backend: Backend) {
    let app = app_with_sources(backend);
    let target = "/webhook/twilio?inbox=main";
    let url = format!("{BASE_URL}{target}");
    let params = incoming("SMe2e0001");
    let signature = twilio_signature(AUTH_TOKEN, &url, &params);
    let before = webhook_inbox::timestamp::format_utc(std::time::SystemTime::now());
    for _ in 0..2 {
        let resp = post_form(&app, target, &params, Some(&signature));
        assert_eq!(resp.status, 200, "{}\n{}", resp.text(), app.last_log_lines(3));
        assert_eq!(resp.header("content-type"), Some("text/xml"));
        assert_eq!(resp.text(), EMPTY_TWIML);
    }
    let after = webhook_inbox::timestamp::format_utc(std::time::SystemTime::now());
    assert_eq!(app.total(""), 1, "Twilio's retry stores nothing");
    let one = app.get("/messages/SMe2e0001").json();
    assert_eq!(
        (&one["from"], &one["to"], &one["text"], &one["source"], &one["type"]),
        (
            &json!("+14155550100"),
            &json!("+14155238886"),
            &json!("Hello from Twilio & co: 100% +1"),
            &json!("twilio"),
            &json!("whatsapp")
        )
    );
    // ts is the time of receipt.
    let ts = one["ts"].as_str().unwrap();
    assert!(before.as_str() <= ts && ts <= after.as_str(), "{before} {ts} {after}");

    // The 401s: no signature, another token, and a signature over the address the
    // component is reached at instead of the public URL.
    let local = format!("http://{}{target}", app.addr());
    for signature in [
        None,
        Some(twilio_signature("not-the-token", &url, &params)),
        Some(twilio_signature(AUTH_TOKEN, &local, &params)),
        Some(twilio_signature(AUTH_TOKEN, &format!("{BASE_URL}/webhook/twilio"), &params)),
    ] {
        let resp = post_form(&app, target, &params, signature.as_deref());
        assert_eq!(resp.status, 401, "{signature:?}");
    }
    // A message that fails validation: 422.
    let mut no_plus = incoming("SMe2e0002");
    no_plus.retain(|(name, _)| *name != "From");
    no_plus.push(("From", "14155550100"));
    let resp = post_form(&app, target, &no_plus, Some(&twilio_signature(AUTH_TOKEN, &url, &no_plus)));
    assert_eq!(resp.status, 422);
    // A status callback: 200, TwiML, counted, nothing stored.
    let callback = [("MessageSid", "SMe2e0003"), ("MessageStatus", "delivered"),
                    ("To", "whatsapp:+14155550100"), ("From", "whatsapp:+14155238886")];
    let resp = post_form(&app, target, &callback, Some(&twilio_signature(AUTH_TOKEN, &url, &callback)));
    assert_eq!((resp.status, resp.text()), (200, EMPTY_TWIML.to_owned()));
    assert_eq!(app.total(""), 1);

    let m = metrics(&app);
    let get = |series: &str| *m.get(series).unwrap_or_else(|| panic!("missing {series}"));
    assert_eq!(get(r#"http_requests_total{path="/webhook/twilio",status="200"}"#), 3.0);
    assert_eq!(get(r#"http_requests_total{path="/webhook/twilio",status="401"}"#), 4.0);
    assert_eq!(get(r#"webhook_requests_total{source="twilio",result="created"}"#), 1.0);
    assert_eq!(get(r#"webhook_requests_total{source="twilio",result="duplicate"}"#), 1.0);
    assert_eq!(get(r#"webhook_requests_total{source="twilio",result="ignored"}"#), 1.0);
    assert_eq!(get(r#"webhook_requests_total{source="twilio",result="validation_error"}"#), 1.0);
    assert_eq!(get(r#"webhook_messages_total{source="twilio",result="created"}"#), 1.0);
    assert_eq!(get(r#"webhook_messages_total{source="twilio",result="duplicate"}"#), 1.0);
    assert_eq!(get(r#"webhook_messages_total{source="twilio",result="invalid"}"#), 1.0);
    assert_eq!(get(r#"webhook_ignored_total{source="twilio",kind="status"}"#), 1.0);
    assert_eq!(get(r#"webhook_rejections_total{source="twilio",reason="invalid_signature"}"#), 4.0);
    assert_eq!(get(r#"webhook_rejections_total{source="twilio",reason="validation_error"}"#), 1.0);
    let log = app.get("/rejections").json();
    assert!(log["data"].as_array().unwrap().iter().all(|e| e["source"] == "twilio"));
    assert!(!app.raw_stdout().contains("Hello from Twilio"));
}
}

#[test]
fn unconfigured_providers_refuse_and_readiness_says_so() {
    let app = App::with_vars(&[
        ("webhook_secret", SECRET),
        ("whatsapp_app_secret", APP_SECRET),
    ]);
    // Ready: a provider left unset is a deployment's choice, reported, not a failure.
    let ready = app.get("/health/ready");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(
        ready.json()["sources"],
        json!({"whatsapp": {"status": "partial", "unset": ["whatsapp_verify_token"]},
               "twilio": {"status": "off", "unset": ["twilio_auth_token", "public_base_url"]}})
    );
    let handshake =
        app.get("/webhook/whatsapp?hub.mode=subscribe&hub.verify_token=&hub.challenge=1");
    assert_eq!(handshake.status, 403);
    let resp = post_form(&app, "/webhook/twilio", &incoming("SM1"), None);
    assert_eq!(resp.status, 503);
    assert_eq!(
        resp.json(),
        json!({"detail": "twilio auth token not configured"})
    );
    assert_eq!(resp.header("retry-after"), Some("1"));
}
