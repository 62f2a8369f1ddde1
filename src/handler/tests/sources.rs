//! The native sources' routes on the fake runtime: Meta's handshake and deliveries, Twilio's
//! deliveries, their order of checks, both secrets, batches, what is not a message, the
//! counters, the rejection log, the log lines and readiness.

use super::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};

pub(super) const APP_SECRET: &str = "meta-app-secret";
const OLD_APP_SECRET: &str = "meta-app-secret-before";
const VERIFY_TOKEN: &str = "verify-me-123";
pub(super) const AUTH_TOKEN: &str = "twilio-auth-token";
const OLD_AUTH_TOKEN: &str = "twilio-auth-token-before";
pub(super) const BASE_URL: &str = "https://inbox.example.com";
const TEXT: &str = "do not log this text";

fn providers() -> FakeRuntime {
    FakeRuntime::new(&[
        ("webhook_secret", SECRET),
        ("whatsapp_app_secret", APP_SECRET),
        ("whatsapp_verify_token", VERIFY_TOKEN),
        ("twilio_auth_token", AUTH_TOKEN),
        ("public_base_url", BASE_URL),
    ])
}

// ---- Meta -----------------------------------------------------------------------------

/// `X-Hub-Signature-256` for `body`, computed here from Meta's recipe.
pub(super) fn meta_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub(super) fn wa_text(id: &str) -> Value {
    json!({"from": "16505551234", "id": id, "timestamp": "1749416383",
           "type": "text", "text": {"body": TEXT}})
}

pub(super) fn wa_status(id: &str) -> Value {
    json!({"id": id, "status": "delivered", "timestamp": "1750263773",
           "recipient_id": "16505551234"})
}

/// A delivery in the shape of Meta's reference: one change of the `messages` field.
pub(super) fn wa_delivery(messages: Vec<Value>, statuses: Vec<Value>) -> Vec<u8> {
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
    });
    if !messages.is_empty() {
        value["messages"] = Value::Array(messages);
    }
    if !statuses.is_empty() {
        value["statuses"] = Value::Array(statuses);
    }
    json!({"object": "whatsapp_business_account",
           "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]})
    .to_string()
    .into_bytes()
}

fn wa_post(body: &[u8], signature: Option<&str>) -> Request {
    let headers: Vec<(&str, &str)> = signature
        .map(|s| ("x-hub-signature-256", s))
        .into_iter()
        .collect();
    request("POST", "/webhook/whatsapp", &headers, body)
}

fn wa_signed(body: &[u8]) -> Request {
    wa_post(body, Some(&meta_signature(APP_SECRET, body)))
}

fn total(rt: &FakeRuntime) -> i64 {
    json_body(&run(rt, request("GET", "/messages", &[], b"")))["total"]
        .as_i64()
        .unwrap()
}

fn counter(rt: &FakeRuntime, name: &str, labels: &str) -> f64 {
    rt.counter(name, labels)
}

fn requests(rt: &FakeRuntime, source: &str, result: &str) -> f64 {
    counter(
        rt,
        "webhook_requests_total",
        &format!("source=\"{source}\",result=\"{result}\""),
    )
}

fn messages(rt: &FakeRuntime, source: &str, result: &str) -> f64 {
    counter(
        rt,
        "webhook_messages_total",
        &format!("source=\"{source}\",result=\"{result}\""),
    )
}

fn rejections(rt: &FakeRuntime, source: &str, reason: &str) -> f64 {
    counter(
        rt,
        "webhook_rejections_total",
        &format!("source=\"{source}\",reason=\"{reason}\""),
    )
}

fn ignored(rt: &FakeRuntime, source: &str, kind: &str) -> f64 {
    counter(
        rt,
        "webhook_ignored_total",
        &format!("source=\"{source}\",kind=\"{kind}\""),
    )
}

fn rejection_log(rt: &FakeRuntime) -> Vec<Value> {
    json_body(&run(rt, request("GET", "/rejections", &[], b"")))["data"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn metas_handshake_echoes_the_challenge_for_the_configured_token_only() {
    let rt = providers();
    let query =
        format!("hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444");
    let resp = run(
        &rt,
        request("GET", &format!("/webhook/whatsapp?{query}"), &[], b""),
    );
    assert_eq!(resp.status.as_u16(), 200);
    assert_eq!(resp.body, b"1158201444");
    assert_eq!(
        header(&resp, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    for refused in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1".to_owned(),
        format!("hub.mode=unsubscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1"),
        format!("hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=%3Cb%3E"),
        format!("hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}"),
        String::new(),
    ] {
        let target = format!("/webhook/whatsapp?{refused}");
        let resp = run(&rt, request("GET", &target, &[], b""));
        assert_eq!(resp.status.as_u16(), 403, "{refused}");
        assert_eq!(json_body(&resp), json!({"detail": "verification refused"}));
    }
    let lines = rt.log_lines();
    assert_eq!(lines[0]["source"], "whatsapp");
    assert_eq!(lines[1]["reason"], "verify_token_mismatch");
    assert_eq!(lines[2]["reason"], "mode_invalid");
    assert_eq!(lines[3]["reason"], "challenge_invalid");
    assert!(lines.iter().all(|l| !l.to_string().contains(VERIFY_TOKEN)));
    // Counted as requests of its route; a handshake is no delivery.
    let http = |status: u16| {
        rt.counter(
            crate::metrics::HTTP_REQUESTS,
            &format!("path=\"/webhook/whatsapp\",status=\"{status}\""),
        )
    };
    assert_eq!((http(200), http(403)), (1.0, 5.0));
    for result in ["created", "ignored", "invalid_signature"] {
        assert_eq!(requests(&rt, "whatsapp", result), 0.0);
    }
    assert!(rejection_log(&rt).is_empty());

    // No verify token: every request is refused, and the log line says why.
    let unset = FakeRuntime::configured();
    let resp = run(
        &unset,
        request(
            "GET",
            "/webhook/whatsapp?hub.mode=subscribe&hub.verify_token=&hub.challenge=1",
            &[],
            b"",
        ),
    );
    assert_eq!(resp.status.as_u16(), 403);
    assert_eq!(unset.log_lines()[0]["reason"], "verify_token_unset");
}

#[test]
fn metas_deliveries_check_413_then_503_then_401_then_422() {
    let big = vec![b'x'; 2000];
    let unsigned = wa_delivery(vec![wa_text("wamid.1")], Vec::new());
    // Over its own limit, with no secret and no signature: 413 first.
    let small = FakeRuntime::new(&[("whatsapp_max_body_bytes", "1000")]);
    let resp = run(&small, wa_post(&big, None));
    assert_eq!(
        (resp.status.as_u16(), json_body(&resp)),
        (413, json!({"detail": "payload too large"}))
    );
    // The default limit is Meta's, not /webhook's 64 KiB.
    let unconfigured = FakeRuntime::new(&[]);
    let resp = run(&unconfigured, wa_post(&vec![b' '; 70_000], None));
    assert_eq!(resp.status.as_u16(), 503);
    let resp = run(
        &unconfigured,
        wa_post(&vec![b' '; 3 * 1024 * 1024 + 1], None),
    );
    assert_eq!(resp.status.as_u16(), 413);
    // An unusable limit is not guessed.
    let bad_limit = FakeRuntime::new(&[
        ("whatsapp_app_secret", APP_SECRET),
        ("whatsapp_max_body_bytes", "3MB"),
    ]);
    let resp = run(&bad_limit, wa_signed(&unsigned));
    assert_eq!(
        (resp.status.as_u16(), json_body(&resp)),
        (503, json!({"detail": "invalid configuration"}))
    );
    // No secret, unsigned and malformed: 503, with Retry-After.
    let resp = run(&unconfigured, wa_post(b"not json", None));
    assert_eq!(
        (resp.status.as_u16(), json_body(&resp)),
        (503, json!({"detail": "whatsapp app secret not configured"}))
    );
    assert_eq!(header(&resp, "retry-after"), Some("1"));
    assert_eq!(unconfigured.log_lines().last().unwrap()["level"], "warn");
    // Configured, unsigned and malformed: 401.
    let rt = providers();
    let resp = run(&rt, wa_post(b"not json", None));
    assert_eq!(
        (resp.status.as_u16(), json_body(&resp)),
        (401, json!({"detail": "invalid signature"}))
    );
    // Signed and malformed: 422, at its first problem.
    let resp = run(&rt, wa_signed(b"not json"));
    assert_eq!(resp.status.as_u16(), 422);
    assert_eq!(json_body(&resp)["detail"][0]["loc"], json!(["body"]));
    let bad_shape = br#"{"object":"whatsapp_business_account","entry":{"id":"1"}}"#;
    let resp = run(&rt, wa_signed(bad_shape));
    assert_eq!(resp.status.as_u16(), 422);
    assert_eq!(
        json_body(&resp)["detail"][0]["loc"],
        json!(["body", "entry"])
    );
    assert_eq!(total(&rt), 0);

    // Each refusal is counted by source and kept in the rejection log with its source.
    assert_eq!(requests(&small, "whatsapp", "payload_too_large"), 1.0);
    assert_eq!(rejections(&small, "whatsapp", "payload_too_large"), 1.0);
    assert_eq!(requests(&unconfigured, "whatsapp", "not_configured"), 2.0);
    assert_eq!(rejections(&unconfigured, "whatsapp", "not_configured"), 2.0);
    assert_eq!(requests(&rt, "whatsapp", "invalid_signature"), 1.0);
    assert_eq!(requests(&rt, "whatsapp", "validation_error"), 2.0);
    assert_eq!(rejections(&rt, "whatsapp", "validation_error"), 2.0);
    assert_eq!(rejections(&rt, "webhook", "validation_error"), 0.0);
    let log = rejection_log(&rt);
    let seen: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap(),
                e["route"].as_str().unwrap(),
                e["detail"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("whatsapp", "/webhook/whatsapp", "validation_error"),
            ("whatsapp", "/webhook/whatsapp", "validation_error"),
            ("whatsapp", "/webhook/whatsapp", "signature_missing"),
        ]
    );
    assert_eq!(log[0]["locs"], json!([["body", "entry"]]));
    let unconfigured_log = rejection_log(&unconfigured);
    assert_eq!(unconfigured_log[0]["detail"], "whatsapp_app_secret_empty");
    assert_eq!(unconfigured_log[0]["body_bytes"], 8);
}

#[test]
fn metas_signature_verifies_under_either_app_secret_and_no_other() {
    let body = wa_delivery(vec![wa_text("wamid.sig")], Vec::new());
    let rt = providers();
    let cases = [
        (None, "signature_missing"),
        (Some("sha256=00".to_owned()), "signature_malformed"),
        (
            Some(meta_signature(APP_SECRET, &body)[7..].to_owned()),
            "signature_malformed",
        ),
        (
            Some(meta_signature(OLD_APP_SECRET, &body)),
            "signature_mismatch",
        ),
        // The other sources' secrets sign nothing here.
        (Some(meta_signature(SECRET, &body)), "signature_mismatch"),
        (
            Some(meta_signature(AUTH_TOKEN, &body)),
            "signature_mismatch",
        ),
        (
            Some(meta_signature(APP_SECRET, b"another body")),
            "signature_mismatch",
        ),
    ];
    for (signature, reason) in &cases {
        let resp = run(&rt, wa_post(&body, signature.as_deref()));
        assert_eq!(resp.status.as_u16(), 401, "{signature:?}");
        let line = rt.log_lines().pop().unwrap();
        assert_eq!(line["reason"], *reason, "{signature:?}");
        assert_eq!(line["source"], "whatsapp");
    }
    // Sent twice is not sent at all.
    let sig = meta_signature(APP_SECRET, &body);
    let twice = request(
        "POST",
        "/webhook/whatsapp",
        &[("x-hub-signature-256", &sig), ("x-hub-signature-256", &sig)],
        &body,
    );
    assert_eq!(run(&rt, twice).status.as_u16(), 401);
    assert_eq!(total(&rt), 0);
    assert_eq!(run(&rt, wa_signed(&body)).status.as_u16(), 200);
    // Upper-case hex and prefix are the same signature.
    let upper = meta_signature(APP_SECRET, &body).to_uppercase();
    assert_eq!(run(&rt, wa_post(&body, Some(&upper))).status.as_u16(), 200);

    // During a rotation, the previous secret signs too.
    let mut rotating = providers();
    rotating
        .vars
        .insert("whatsapp_app_secret_previous", OLD_APP_SECRET.to_owned());
    let by_old = meta_signature(OLD_APP_SECRET, &body);
    assert_eq!(
        run(&rotating, wa_post(&body, Some(&by_old)))
            .status
            .as_u16(),
        200
    );
    let by_other = meta_signature("third", &body);
    assert_eq!(
        run(&rotating, wa_post(&body, Some(&by_other)))
            .status
            .as_u16(),
        401
    );
    assert_eq!(
        rotating.log_lines().last().unwrap()["reason"],
        "signature_mismatch"
    );
}

#[test]
fn a_meta_batch_stores_each_new_message_once_and_counts_the_rest() {
    let rt = providers();
    let first = wa_delivery(vec![wa_text("wamid.A"), wa_text("wamid.B")], Vec::new());
    let resp = run(&rt, wa_signed(&first));
    assert_eq!(
        (resp.status.as_u16(), json_body(&resp)),
        (200, json!({"status": "ok"}))
    );
    assert_eq!(header(&resp, "content-type"), Some("application/json"));
    assert_eq!(total(&rt), 2);
    // The same delivery again stores nothing.
    assert_eq!(run(&rt, wa_signed(&first)).status.as_u16(), 200);
    assert_eq!(total(&rt), 2);
    // Old and new ids, a message failing validation, a repeat and statuses: only the new.
    let mut bad = wa_text("wamid.D");
    bad["from"] = json!("not-a-number");
    let mixed = wa_delivery(
        vec![
            wa_text("wamid.B"),
            wa_text("wamid.C"),
            bad,
            wa_text("wamid.C"),
        ],
        vec![wa_status("wamid.out1"), wa_status("wamid.out2")],
    );
    assert_eq!(run(&rt, wa_signed(&mixed)).status.as_u16(), 200);
    assert_eq!(total(&rt), 3);

    // The lookup shows where a message came from, and its type.
    let one = json_body(&run(&rt, request("GET", "/messages/wamid.C", &[], b"")));
    assert_eq!(
        one,
        json!({"message_id": "wamid.C", "from": "+16505551234", "to": "+15550783881",
               "ts": "2025-06-08T20:59:43.000Z", "text": TEXT,
               "source": "whatsapp", "type": "text"})
    );
    // Lists stay as they are.
    let listed = json_body(&run(&rt, request("GET", "/messages", &[], b"")));
    assert!(listed["data"][0].get("source").is_none());

    // Requests, messages and what was not one, each counted once.
    assert_eq!(requests(&rt, "whatsapp", "created"), 2.0);
    assert_eq!(requests(&rt, "whatsapp", "duplicate"), 1.0);
    assert_eq!(messages(&rt, "whatsapp", "created"), 3.0);
    assert_eq!(messages(&rt, "whatsapp", "duplicate"), 4.0);
    assert_eq!(messages(&rt, "whatsapp", "invalid"), 1.0);
    assert_eq!(ignored(&rt, "whatsapp", "status"), 2.0);
    assert_eq!(
        rt.counter(
            crate::metrics::HTTP_REQUESTS,
            "path=\"/webhook/whatsapp\",status=\"200\""
        ),
        3.0
    );
    assert_eq!(
        requests(&rt, "webhook", "created"),
        0.0,
        "a provider's row is a message, not a /webhook request"
    );
    // A message failing inside a batch is no refused delivery.
    assert!(rejection_log(&rt).is_empty());

    // Its log line: the counts, the failing message's id and problem, never the text.
    let lines = rt.log_lines();
    let line = lines
        .iter()
        .find(|l| l["messages"]["invalid"] == 1)
        .expect("the mixed delivery's line");
    assert_eq!(line["level"], "warn");
    assert_eq!(line["source"], "whatsapp");
    assert_eq!(line["result"], "created");
    assert_eq!(
        line["messages"],
        json!({"created": 1, "duplicate": 2, "invalid": 1})
    );
    assert_eq!(line["ignored"], json!({"status": 2}));
    assert_eq!(
        line["invalid"],
        json!([{"message_id": "wamid.D", "errors": ["from:string_pattern_mismatch"]}])
    );
    assert!(line.get("message_id").is_none());
    assert_eq!(lines[0]["level"], "info");
    assert_eq!(lines[0]["messages"]["created"], 2);
    assert!(lines.iter().all(|l| !l.to_string().contains(TEXT)));
}

#[test]
fn what_is_not_a_message_answers_200_and_is_counted_by_kind() {
    let rt = providers();
    let statuses = wa_delivery(Vec::new(), vec![wa_status("s1"), wa_status("s2")]);
    let other_field = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"message_template_status_update","value":{"event":"APPROVED"}}]}]}"#;
    let other_object = br#"{"object":"page","entry":[{"id":"1","changes":[]}]}"#;
    let nothing = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    for body in [&statuses[..], other_field, other_object, nothing] {
        let resp = run(&rt, wa_signed(body));
        assert_eq!(resp.status.as_u16(), 200);
    }
    assert_eq!(total(&rt), 0);
    assert_eq!(ignored(&rt, "whatsapp", "status"), 2.0);
    assert_eq!(ignored(&rt, "whatsapp", "other_field"), 1.0);
    assert_eq!(ignored(&rt, "whatsapp", "other_object"), 1.0);
    assert_eq!(ignored(&rt, "whatsapp", "no_messages"), 1.0);
    assert_eq!(requests(&rt, "whatsapp", "ignored"), 4.0);
    let line = &rt.log_lines()[0];
    assert_eq!(line["result"], "ignored");
    assert_eq!(
        line["messages"],
        json!({"created": 0, "duplicate": 0, "invalid": 0})
    );
    assert_eq!(line["ignored"], json!({"status": 2}));
    assert_eq!(line["level"], "info");
}

#[test]
fn a_storage_failure_is_a_503_and_counts_no_message() {
    let mut rt = providers();
    rt.db_unavailable = true;
    let body = wa_delivery(vec![wa_text("wamid.A")], vec![wa_status("s1")]);
    let resp = run(&rt, wa_signed(&body));
    assert_eq!(resp.status.as_u16(), 503);
    assert_eq!(header(&resp, "retry-after"), Some("1"));
    let line = &rt.log_lines()[0];
    assert_eq!(line["level"], "error");
    assert_eq!(line["result"], "storage_error");
    assert_eq!(line["message_id"], "wamid.A");
    assert!(line.get("messages").is_none());
    crate::storage::prepare(&rt.db).unwrap();
    assert_eq!(ignored(&rt, "whatsapp", "status"), 0.0);
}

// ---- Twilio ---------------------------------------------------------------------------

/// `X-Twilio-Signature`, computed here from Twilio's recipe: base64 of the HMAC-SHA1 of the
/// URL and then each parameter, sorted by name, as name and value.
pub(super) fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
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

pub(super) fn form(params: &[(&str, &str)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
        .into_bytes()
}

/// An incoming WhatsApp message, as Twilio posts it.
pub(super) fn twilio_message(sid: &str) -> Vec<(&str, &str)> {
    vec![
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("ProfileName", "Sheena"),
        ("SmsSid", sid),
        ("WaId", "14155550100"),
        ("SmsStatus", "received"),
        ("Body", TEXT),
        ("To", "whatsapp:+14155238886"),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
        ("From", "whatsapp:+14155550100"),
        ("ApiVersion", "2010-04-01"),
    ]
}

pub(super) fn twilio_post(
    target: &str,
    params: &[(&str, &str)],
    signature: Option<&str>,
) -> Request {
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    headers.extend(signature.map(|s| ("x-twilio-signature", s)));
    request("POST", target, &headers, &form(params))
}

fn twilio_signed(params: &[(&str, &str)]) -> Request {
    let url = format!("{BASE_URL}/webhook/twilio");
    twilio_post(
        "/webhook/twilio",
        params,
        Some(&twilio_signature(AUTH_TOKEN, &url, params)),
    )
}

#[test]
fn a_twilio_message_is_stored_once_and_answered_with_empty_twiml() {
    let rt = providers();
    let params = twilio_message("SM0001");
    let before = crate::timestamp::format_utc(SystemTime::now());
    for _ in 0..2 {
        let resp = run(&rt, twilio_signed(&params));
        assert_eq!(resp.status.as_u16(), 200);
        assert_eq!(header(&resp, "content-type"), Some("text/xml"));
        assert_eq!(resp.body, crate::sources::twilio::EMPTY_TWIML.as_bytes());
    }
    let one = json_body(&run(&rt, request("GET", "/messages/SM0001", &[], b"")));
    assert_eq!(
        (&one["from"], &one["to"], &one["text"]),
        (&json!("+14155550100"), &json!("+14155238886"), &json!(TEXT))
    );
    assert_eq!(
        (&one["source"], &one["type"]),
        (&json!("twilio"), &json!("whatsapp"))
    );
    // ts is the time of receipt (the same format at a fixed width: text order is time order).
    let after = crate::timestamp::format_utc(SystemTime::now());
    let ts = one["ts"].as_str().unwrap();
    assert!(
        before.as_str() <= ts && ts <= after.as_str(),
        "{before} {ts} {after}"
    );
    assert_eq!(total(&rt), 1);

    // An SMS, without the whatsapp: prefix.
    let mut sms = twilio_message("SM0002");
    sms.retain(|(name, _)| !["From", "To", "WaId", "ProfileName"].contains(name));
    sms.extend([("From", "+14155550101"), ("To", "+14155238886")]);
    assert_eq!(run(&rt, twilio_signed(&sms)).status.as_u16(), 200);
    let one = json_body(&run(&rt, request("GET", "/messages/SM0002", &[], b"")));
    assert_eq!(
        (&one["from"], &one["type"]),
        (&json!("+14155550101"), &json!("sms"))
    );

    assert_eq!(requests(&rt, "twilio", "created"), 2.0);
    assert_eq!(requests(&rt, "twilio", "duplicate"), 1.0);
    assert_eq!(messages(&rt, "twilio", "created"), 2.0);
    assert_eq!(messages(&rt, "twilio", "duplicate"), 1.0);
    let lines = rt.log_lines();
    assert_eq!(
        (
            &lines[0]["source"],
            &lines[0]["message_id"],
            &lines[0]["dup"]
        ),
        (&json!("twilio"), &json!("SM0001"), &json!(false))
    );
    assert_eq!(lines[1]["dup"], true);
    assert!(lines.iter().all(|l| !l.to_string().contains(TEXT)));
}

#[test]
fn twilio_deliveries_check_413_then_503_then_401_then_422() {
    let params = twilio_message("SM0001");
    let pad = "y".repeat(70_000);
    let huge = [("Body", "x"), ("Pad", pad.as_str())];
    // Too large for max_body_bytes, nothing configured: 413 first.
    let unconfigured = FakeRuntime::new(&[]);
    let resp = run(&unconfigured, twilio_post("/webhook/twilio", &huge, None));
    assert_eq!(resp.status.as_u16(), 413);
    // No auth token: 503.
    let resp = run(&unconfigured, twilio_post("/webhook/twilio", &params, None));
    assert_eq!(
        (resp.status.as_u16(), json_body(&resp)),
        (503, json!({"detail": "twilio auth token not configured"}))
    );
    assert_eq!(header(&resp, "retry-after"), Some("1"));
    // A token but no public URL: 503 too (the URL Twilio signed cannot be known).
    let no_url = FakeRuntime::new(&[("twilio_auth_token", AUTH_TOKEN)]);
    let resp = run(&no_url, twilio_post("/webhook/twilio", &params, None));
    assert_eq!(
        (resp.status.as_u16(), json_body(&resp)),
        (503, json!({"detail": "public_base_url not configured"}))
    );
    let bad_url = FakeRuntime::new(&[
        ("twilio_auth_token", AUTH_TOKEN),
        ("public_base_url", "inbox.example.com"),
    ]);
    let resp = run(&bad_url, twilio_post("/webhook/twilio", &params, None));
    assert_eq!(
        (resp.status.as_u16(), json_body(&resp)),
        (503, json!({"detail": "invalid configuration"}))
    );
    assert!(bad_url.log_lines()[0]["error"]
        .as_str()
        .unwrap()
        .contains("public_base_url"));
    // Configured and unsigned: 401, whatever the form holds.
    let rt = providers();
    let resp = run(&rt, twilio_post("/webhook/twilio", &[("From", "x")], None));
    assert_eq!(
        (resp.status.as_u16(), json_body(&resp)),
        (401, json!({"detail": "invalid signature"}))
    );
    // Signed, and a From without +: 422, nothing stored.
    let mut invalid = params.clone();
    invalid.retain(|(name, _)| *name != "From");
    invalid.push(("From", "14155550100"));
    let resp = run(&rt, twilio_signed(&invalid));
    assert_eq!(resp.status.as_u16(), 422);
    assert_eq!(header(&resp, "content-type"), Some("application/json"));
    assert_eq!(
        json_body(&resp)["detail"][0]["loc"],
        json!(["body", "from"])
    );
    let line = rt.log_lines().pop().unwrap();
    assert_eq!(line["result"], "validation_error");
    assert_eq!(line["level"], "info", "a 422 like /webhook's");
    assert_eq!(
        line["invalid"],
        json!([{"message_id": "SM0001", "errors": ["from:string_pattern_mismatch"]}])
    );
    assert_eq!(total(&rt), 0);

    assert_eq!(requests(&unconfigured, "twilio", "payload_too_large"), 1.0);
    assert_eq!(requests(&unconfigured, "twilio", "not_configured"), 1.0);
    assert_eq!(requests(&no_url, "twilio", "not_configured"), 1.0);
    assert_eq!(rejections(&bad_url, "twilio", "not_configured"), 1.0);
    assert_eq!(requests(&rt, "twilio", "invalid_signature"), 1.0);
    assert_eq!(requests(&rt, "twilio", "validation_error"), 1.0);
    assert_eq!(messages(&rt, "twilio", "invalid"), 1.0);
    let log = rejection_log(&rt);
    assert_eq!(
        (&log[0]["source"], &log[0]["reason"], &log[0]["locs"]),
        (
            &json!("twilio"),
            &json!("validation_error"),
            &json!([["body", "from"]])
        )
    );
    assert_eq!(
        (&log[1]["source"], &log[1]["detail"]),
        (&json!("twilio"), &json!("signature_missing"))
    );
    assert_eq!(rejection_log(&no_url)[0]["detail"], "public_base_url_empty");
    assert!(!rt.log_lines().iter().any(|l| l.to_string().contains(TEXT)));
}

#[test]
fn twilios_signature_covers_the_public_url_its_query_and_every_parameter() {
    let params = twilio_message("SM0001");
    let rt = providers();
    let signed_for = |url: &str, token: &str| twilio_signature(token, url, &params);
    let target = "/webhook/twilio?channel=wa&x=%2B1";
    let url = format!("{BASE_URL}{target}");
    let cases = [
        // The component's own address is not what Twilio called.
        (
            signed_for(
                "http://127.0.0.1:3000/webhook/twilio?channel=wa&x=%2B1",
                AUTH_TOKEN,
            ),
            "signature_mismatch",
        ),
        // The query is part of the URL.
        (
            signed_for(&format!("{BASE_URL}/webhook/twilio"), AUTH_TOKEN),
            "signature_mismatch",
        ),
        (signed_for(&url, OLD_AUTH_TOKEN), "signature_mismatch"),
        (signed_for(&url, APP_SECRET), "signature_mismatch"),
        ("not base64".to_owned(), "signature_malformed"),
    ];
    for (signature, reason) in &cases {
        let resp = run(&rt, twilio_post(target, &params, Some(signature)));
        assert_eq!(resp.status.as_u16(), 401, "{reason}");
        assert_eq!(rt.log_lines().pop().unwrap()["reason"], *reason);
    }
    // A parameter changed after signing.
    let mut tampered = params.clone();
    tampered.push(("Extra", "1"));
    let resp = run(
        &rt,
        twilio_post(target, &tampered, Some(&signed_for(&url, AUTH_TOKEN))),
    );
    assert_eq!(resp.status.as_u16(), 401);
    assert_eq!(total(&rt), 0);
    let resp = run(
        &rt,
        twilio_post(target, &params, Some(&signed_for(&url, AUTH_TOKEN))),
    );
    assert_eq!(resp.status.as_u16(), 200);

    // A trailing slash on the base URL changes nothing; the previous token signs in a
    // rotation.
    let mut rotating = FakeRuntime::new(&[
        ("twilio_auth_token", AUTH_TOKEN),
        ("twilio_auth_token_previous", OLD_AUTH_TOKEN),
        ("public_base_url", "https://inbox.example.com/"),
    ]);
    let by_old = signed_for(&format!("{BASE_URL}/webhook/twilio"), OLD_AUTH_TOKEN);
    let resp = run(
        &rotating,
        twilio_post("/webhook/twilio", &params, Some(&by_old)),
    );
    assert_eq!(resp.status.as_u16(), 200);
    rotating.vars.remove("twilio_auth_token_previous");
    let resp = run(
        &rotating,
        twilio_post("/webhook/twilio", &params, Some(&by_old)),
    );
    assert_eq!(resp.status.as_u16(), 401);
}

#[test]
fn a_twilio_status_callback_answers_twiml_and_is_counted() {
    let rt = providers();
    let callback = [
        ("MessageSid", "SM0009"),
        ("MessageStatus", "delivered"),
        ("SmsStatus", "delivered"),
        ("To", "whatsapp:+14155550100"),
        ("From", "whatsapp:+14155238886"),
        ("AccountSid", "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
    ];
    let resp = run(&rt, twilio_signed(&callback));
    assert_eq!(resp.status.as_u16(), 200);
    assert_eq!(header(&resp, "content-type"), Some("text/xml"));
    assert_eq!(resp.body, crate::sources::twilio::EMPTY_TWIML.as_bytes());
    assert_eq!(total(&rt), 0);
    assert_eq!(ignored(&rt, "twilio", "status"), 1.0);
    assert_eq!(requests(&rt, "twilio", "ignored"), 1.0);
    assert_eq!(rt.log_lines()[0]["ignored"], json!({"status": 1}));
}

// ---- Readiness ------------------------------------------------------------------------

#[test]
fn readiness_reports_each_source_and_fails_only_on_unusable_values() {
    let ready = |rt: &FakeRuntime| {
        let resp = run(rt, request("GET", "/health/ready", &[], b""));
        (resp.status.as_u16(), json_body(&resp))
    };
    // /webhook alone: ready, both providers off.
    let (status, body) = ready(&FakeRuntime::configured());
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["sources"],
        json!({"whatsapp": {"status": "off", "unset": ["whatsapp_app_secret", "whatsapp_verify_token"]},
               "twilio": {"status": "off", "unset": ["twilio_auth_token", "public_base_url"]}})
    );
    // WhatsApp without its verify token: still ready, and readiness says what is missing.
    let partial = FakeRuntime::new(&[
        ("webhook_secret", SECRET),
        ("whatsapp_app_secret", APP_SECRET),
        ("twilio_auth_token", AUTH_TOKEN),
    ]);
    let (status, body) = ready(&partial);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["sources"]["whatsapp"],
        json!({"status": "partial", "unset": ["whatsapp_verify_token"]})
    );
    assert_eq!(
        body["sources"]["twilio"],
        json!({"status": "partial", "unset": ["public_base_url"]})
    );
    let (status, body) = ready(&providers());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sources"]["whatsapp"]["status"], "configured");
    assert_eq!(body["sources"]["twilio"]["status"], "configured");
    // A value that is set but unusable is a configuration problem.
    for (name, value) in [
        ("public_base_url", "inbox.example.com"),
        ("whatsapp_max_body_bytes", "lots"),
    ] {
        let mut rt = providers();
        rt.vars.insert(name, value.to_owned());
        let (status, body) = ready(&rt);
        assert_eq!(status, 503, "{name}");
        assert!(
            body["checks"]["config"].as_str().unwrap().contains(name),
            "{body}"
        );
    }
    // A provider that cannot be read is reported, never guessed.
    let mut down = providers();
    down.vars_unavailable = true;
    let (_, body) = ready(&down);
    assert_eq!(body["sources"]["whatsapp"]["status"], "unavailable");
}

// ---- The generic route is one source among them ---------------------------------------

#[test]
fn webhook_lines_and_rejections_name_their_source_too() {
    let rt = providers();
    run(&rt, signed(&message("m1")));
    run(&rt, request("POST", "/webhook", &[], &message("m2")));
    let lines = rt.log_lines();
    assert!(lines.iter().all(|l| l["source"] == "webhook"), "{lines:?}");
    assert_eq!(rejection_log(&rt)[0]["source"], "webhook");
    assert_eq!(rejections(&rt, "webhook", "invalid_signature"), 1.0);
    assert_eq!(rejections(&rt, "whatsapp", "invalid_signature"), 0.0);
    // Lines of other routes carry none.
    run(&rt, request("GET", "/stats", &[], b""));
    assert!(rt.log_lines().last().unwrap().get("source").is_none());
}
