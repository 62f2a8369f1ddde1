//! The handler on a fake runtime: variables from a map, a real SQLite file through the
//! native adapter, log lines captured. No wasm build; each test runs in milliseconds.

use super::*;
use crate::storage::testing::{ServerLike, TestDb};
use crate::storage::{read_counters, SqlValue};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashMap;

mod feed;
mod sources;

const SECRET: &str = "handler-secret";

struct FakeRuntime {
    vars: HashMap<&'static str, String>,
    /// Every variable read fails, as a provider that does not answer.
    vars_unavailable: bool,
    db: TestDb,
    /// Opening the database fails, as an unreachable libSQL server.
    db_unavailable: bool,
    /// The database is reached as a libSQL server is, with its round trips recorded.
    server: Option<ServerLike>,
    logs: RefCell<Vec<String>>,
}

impl FakeRuntime {
    fn new(vars: &[(&'static str, &str)]) -> FakeRuntime {
        FakeRuntime {
            vars: vars.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            vars_unavailable: false,
            db: TestDb::new(),
            db_unavailable: false,
            server: None,
            logs: RefCell::new(Vec::new()),
        }
    }

    fn configured() -> FakeRuntime {
        FakeRuntime::new(&[("webhook_secret", SECRET)])
    }

    fn log_lines(&self) -> Vec<Value> {
        self.logs
            .borrow()
            .iter()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    fn counter(&self, name: &str, labels: &str) -> f64 {
        read_counters(&self.db)
            .unwrap()
            .iter()
            .filter(|c| c.name == name && c.labels == labels)
            .map(|c| c.value)
            .sum()
    }
}

impl Runtime for FakeRuntime {
    fn variable(&self, name: &str) -> Result<Option<String>, String> {
        if self.vars_unavailable {
            return Err("provider timed out".to_owned());
        }
        Ok(self.vars.get(name).cloned())
    }

    fn open_database(&self) -> Result<Box<dyn Database>, StorageError> {
        if self.db_unavailable {
            return Err(StorageError::other("connection refused"));
        }
        if let Some(server) = &self.server {
            return Ok(Box::new(server.reconnect()));
        }
        Ok(Box::new(TestDb::open(&self.db.path())))
    }

    fn log(&self, line: &str) {
        assert!(line.ends_with('\n'), "one complete line: {line:?}");
        self.logs.borrow_mut().push(line.trim_end().to_owned());
    }
}

struct Body(Vec<u8>);

impl RequestBody for Body {
    fn read_to_limit(self: Box<Self>, limit: usize) -> Result<Vec<u8>, BodyError> {
        if self.0.len() > limit {
            Err(BodyError::TooLarge)
        } else {
            Ok(self.0)
        }
    }
}

fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Request {
        method: Method::from_bytes(method.as_bytes()).unwrap(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect(),
        body: Box::new(Body(body.to_vec())),
    }
}

/// Handles `req` to the end (the work after the answer included), as the edge does.
fn run(runtime: &FakeRuntime, req: Request) -> Response {
    let handled = handle(runtime, req);
    handled.after.complete();
    handled.response
}

fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

fn json_body(resp: &Response) -> Value {
    serde_json::from_slice(&resp.body).expect("a JSON body")
}

fn message(id: &str) -> Vec<u8> {
    json!({"message_id": id, "from": "+15550001", "to": "+15550002",
           "ts": "2025-01-15T10:00:00Z", "text": "hi"})
    .to_string()
    .into_bytes()
}

/// Rows in a table of the runtime's database, read beside the component.
fn rows_in(runtime: &FakeRuntime, table: &str) -> i64 {
    runtime
        .db
        .conn()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn signed(body: &[u8]) -> Request {
    let signature = crate::sources::webhook::signature::sign(SECRET.as_bytes(), body);
    request("POST", "/webhook", &[("x-signature", &signature)], body)
}

#[test]
fn a_signed_message_is_stored_once_and_answered_ok_both_times() {
    let rt = FakeRuntime::configured();
    for _ in 0..2 {
        let resp = run(&rt, signed(&message("m1")));
        assert_eq!(resp.status.as_u16(), 200);
        assert_eq!(json_body(&resp), json!({"status": "ok"}));
        assert_eq!(header(&resp, "content-type"), Some("application/json"));
        assert_eq!(
            header(&resp, "content-length"),
            Some(resp.body.len().to_string().as_str())
        );
    }
    let listed = run(&rt, request("GET", "/messages", &[], b""));
    assert_eq!(json_body(&listed)["total"], 1);
    let results: Vec<Value> = rt.log_lines().iter().map(|l| l["result"].clone()).collect();
    assert_eq!(results[..2], [json!("created"), json!("duplicate")]);
}

#[test]
fn the_order_of_checks_is_413_503_401_422() {
    let big = vec![b'x'; 70_000];
    let bad_signature = [("x-signature", "00")];
    let invalid = br#"{"message_id":"m1"}"#;
    // Too large, unconfigured, unsigned: 413 first.
    let unconfigured = FakeRuntime::new(&[]);
    let resp = run(
        &unconfigured,
        request("POST", "/webhook", &bad_signature, &big),
    );
    assert_eq!(resp.status.as_u16(), 413);
    // Unconfigured and unsigned: 503, with Retry-After.
    let resp = run(
        &unconfigured,
        request("POST", "/webhook", &bad_signature, invalid),
    );
    assert_eq!(resp.status.as_u16(), 503);
    assert_eq!(header(&resp, "retry-after"), Some("1"));
    assert_eq!(
        json_body(&resp),
        json!({"detail": "webhook secret not configured"})
    );
    // Configured, unsigned and invalid: 401.
    let rt = FakeRuntime::configured();
    let resp = run(&rt, request("POST", "/webhook", &bad_signature, invalid));
    assert_eq!(
        (resp.status.as_u16(), json_body(&resp)),
        (401, json!({"detail": "invalid signature"}))
    );
    // Signed and invalid: 422, every problem listed.
    let resp = run(&rt, signed(invalid));
    assert_eq!(resp.status.as_u16(), 422);
    let locs: Vec<Value> = json_body(&resp)["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["loc"].clone())
        .collect();
    assert_eq!(
        locs,
        [
            json!(["body", "from"]),
            json!(["body", "to"]),
            json!(["body", "ts"])
        ]
    );
}

#[test]
fn routes_answer_with_their_status_headers_and_request_id() {
    let rt = FakeRuntime::configured();
    let resp = run(&rt, request("GET", "/nope", &[], b""));
    assert_eq!(
        (resp.status.as_u16(), json_body(&resp)),
        (404, json!({"detail": "not found"}))
    );
    let resp = run(&rt, request("PUT", "/messages", &[], b""));
    assert_eq!(resp.status.as_u16(), 405);
    assert_eq!(header(&resp, "allow"), Some("GET, DELETE"));
    for target in ["/messages", "/stats", "/metrics", "/rejections"] {
        let resp = run(&rt, request("GET", target, &[], b""));
        assert_eq!(resp.status.as_u16(), 200, "{target}");
        assert_eq!(header(&resp, "cache-control"), Some("no-store"), "{target}");
        assert_eq!(header(&resp, "x-content-type-options"), Some("nosniff"));
    }
    let resp = run(&rt, request("GET", "/health/live", &[], b""));
    assert_eq!(header(&resp, "cache-control"), None);

    let resp = run(
        &rt,
        request("GET", "/health/live", &[("x-request-id", "abc-123")], b""),
    );
    assert_eq!(header(&resp, "x-request-id"), Some("abc-123"));
    let resp = run(
        &rt,
        request("GET", "/health/live", &[("x-request-id", "has space")], b""),
    );
    let generated = header(&resp, "x-request-id").unwrap();
    assert!(generated.len() == 32 && generated.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(rt.log_lines().last().unwrap()["request_id"], generated);
}

#[test]
fn log_levels_follow_the_answer_and_the_configured_minimum() {
    let rt = FakeRuntime::configured();
    run(&rt, signed(&message("m1")));
    let mut down = FakeRuntime::configured();
    down.db_unavailable = true;
    let resp = run(&down, signed(&message("m1")));
    assert_eq!(resp.status.as_u16(), 503);
    assert_eq!(header(&resp, "retry-after"), Some("1"));
    let unconfigured = FakeRuntime::new(&[]);
    run(&unconfigured, signed(&message("m1")));

    assert_eq!(rt.log_lines()[0]["level"], "info");
    let storage = &down.log_lines()[0];
    assert_eq!(storage["level"], "error");
    assert_eq!(storage["result"], "storage_error");
    assert!(storage["error"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
    assert_eq!(unconfigured.log_lines()[0]["level"], "warn");

    let quiet = FakeRuntime::new(&[("webhook_secret", SECRET), ("log_level", "warn")]);
    run(&quiet, signed(&message("m1")));
    run(&quiet, request("GET", "/nope", &[], b""));
    assert!(quiet.log_lines().is_empty(), "{:?}", quiet.log_lines());
}

#[test]
fn each_answer_adds_its_increments_once() {
    let rt = FakeRuntime::configured();
    run(&rt, signed(&message("m1")));
    run(&rt, signed(&message("m1")));
    run(&rt, request("POST", "/webhook", &[], &message("m2")));
    run(&rt, request("GET", "/nope", &[], b""));
    let http = |path: &str, status: u16| {
        rt.counter(
            crate::metrics::HTTP_REQUESTS,
            &format!("path=\"{path}\",status=\"{status}\""),
        )
    };
    assert_eq!(http("/webhook", 200), 2.0);
    assert_eq!(http("/webhook", 401), 1.0);
    assert_eq!(http("other", 404), 1.0);
    let webhook = |result: WebhookResult| {
        rt.counter(
            crate::metrics::WEBHOOK_REQUESTS,
            &result.labels(crate::sources::Source::Webhook),
        )
    };
    assert_eq!(webhook(WebhookResult::Created), 1.0);
    assert_eq!(webhook(WebhookResult::Duplicate), 1.0);
    assert_eq!(webhook(WebhookResult::InvalidSignature), 1.0);
    assert_eq!(
        rt.counter(
            crate::metrics::REJECTIONS,
            "source=\"webhook\",reason=\"invalid_signature\""
        ),
        1.0
    );
    let rows = rt
        .db
        .execute("SELECT count(*) FROM rejections", &[])
        .unwrap();
    assert_eq!(rows[0][0], SqlValue::Integer(1));
}

#[test]
fn an_unreadable_token_is_a_503_never_an_open_door() {
    let mut rt = FakeRuntime::new(&[("webhook_secret", SECRET), ("read_token", "t")]);
    let resp = run(&rt, request("GET", "/messages", &[], b""));
    assert_eq!(resp.status.as_u16(), 401);
    assert_eq!(header(&resp, "www-authenticate"), Some("Bearer"));
    rt.vars_unavailable = true;
    for target in ["/messages", "/stats", "/rejections", "/admin/purge"] {
        let method = if target == "/admin/purge" {
            "POST"
        } else {
            "GET"
        };
        let resp = run(&rt, request(method, target, &[], b""));
        assert_eq!(resp.status.as_u16(), 503, "{target}");
        assert_eq!(
            json_body(&resp),
            json!({"detail": "configuration unavailable"})
        );
    }
}

#[test]
fn admin_routes_need_a_configured_token() {
    let open = FakeRuntime::configured();
    let resp = run(&open, request("POST", "/admin/purge", &[], b""));
    assert_eq!(resp.status.as_u16(), 403);
    let rt = FakeRuntime::new(&[("webhook_secret", SECRET), ("admin_token", "adm")]);
    run(&rt, signed(&message("m1")));
    let resp = run(&rt, request("DELETE", "/messages/m1", &[], b""));
    assert_eq!(resp.status.as_u16(), 401);
    let bearer = [("authorization", "Bearer adm")];
    let resp = run(&rt, request("DELETE", "/messages/m1", &bearer, b""));
    assert_eq!(
        (resp.status.as_u16(), json_body(&resp)),
        (200, json!({"erased": 1}))
    );
    assert_eq!(rt.log_lines().last().unwrap()["removed"], 1);
    let resp = run(&rt, request("DELETE", "/messages?to=%2B1", &bearer, b""));
    assert_eq!(resp.status.as_u16(), 422);
}

/// On a libSQL server every statement is a round trip, and a transaction holds the server's
/// only write slot from its first to its last: every writer of every instance waits. No
/// request that delivers (stored, duplicate, refused, or the one that folds a batch) may
/// leave a transaction open across round trips, and storing a new message is one round trip;
/// so is storing a provider's whole batch.
/// With retention on, the delivery that folds a batch on a local file also runs a retention
/// batch, a transaction of several statements. On a server it must not: the fold's
/// statements stand alone, and what is due waits for the scheduled `POST /admin/purge`.
#[test]
fn on_a_server_retention_waits_for_the_scheduled_purge() {
    let mut rt = FakeRuntime::new(&[("webhook_secret", SECRET), ("retention_days", "1")]);
    crate::storage::prepare(&rt.db).unwrap();
    let server = ServerLike::open(&rt.db.path());
    rt.server = Some(server.clone());
    let ancient = json!({"message_id": "ancient", "from": "+15550001", "to": "+15550002",
                         "ts": "2020-01-01T00:00:00Z"});
    let resp = run(&rt, signed(ancient.to_string().as_bytes()));
    assert_eq!(resp.status.as_u16(), 200);
    // The batch, and the four writes after it that run the rest of its fold.
    let stored = crate::storage::FOLD_EVERY + 4;
    for i in 1..stored {
        let resp = run(&rt, signed(&message(&format!("m{i:04}"))));
        assert_eq!(resp.status.as_u16(), 200);
    }
    let waiting = rows_in(&rt, "received");
    assert!(waiting <= 4, "folded: {waiting} waiting");
    assert_eq!(
        server.transactions_spanning_round_trips(),
        Vec::<String>::new()
    );
    let stats = crate::storage::stats(&rt.db).unwrap();
    assert_eq!(stats.total_messages, stored, "nothing purged");
}

#[test]
fn on_a_server_no_delivery_holds_a_transaction_across_round_trips() {
    let mut rt = FakeRuntime::configured();
    crate::storage::prepare(&rt.db).unwrap();
    let server = ServerLike::open(&rt.db.path());
    rt.server = Some(server.clone());
    let batch = crate::storage::FOLD_EVERY as usize;
    let mut per_message = Vec::new();
    for i in 0..batch + 10 {
        let before = server.round_trips().len();
        let resp = run(&rt, signed(&message(&format!("m{i:04}"))));
        assert_eq!(resp.status.as_u16(), 200);
        per_message.push(server.round_trips().len() - before);
    }
    // One round trip per new message. The request that filled the batch and the four after
    // it each run one step of its fold after the answer: one more write each (the search
    // index's step: a read and two writes). Each write waits its turn behind every other
    // writer of the server, and the sender's next delivery on the connection waits for it,
    // so no connection is kept for a whole fold.
    let fold_writes: Vec<usize> = per_message[batch - 1..batch + 4]
        .iter()
        .map(|n| n - 1)
        .collect();
    assert_eq!(fold_writes, [1, 1, 1, 1, 3], "{per_message:?}");
    assert!(
        per_message
            .iter()
            .enumerate()
            .all(|(i, n)| *n == 1 || (batch - 1..batch + 4).contains(&i)),
        "{per_message:?}"
    );
    let waiting = rows_in(&rt, "received");
    assert!(waiting <= 14, "the batch was folded: {waiting} waiting");
    let indexed = rows_in(&rt, "messages_search");
    assert_eq!(indexed, batch as i64, "and indexed for search");
    assert_eq!(
        rt.counter(
            "webhook_requests_total",
            "source=\"webhook\",result=\"created\""
        ),
        (batch + 10) as f64
    );
    // A duplicate, a bad signature, an invalid message.
    assert_eq!(run(&rt, signed(&message("m0001"))).status.as_u16(), 200);
    let forged = request(
        "POST",
        "/webhook",
        &[("x-signature", "sha256=00")],
        &message("x"),
    );
    assert_eq!(run(&rt, forged).status.as_u16(), 401);
    assert_eq!(run(&rt, signed(b"{}")).status.as_u16(), 422);

    // A WhatsApp batch (three messages, one already stored, and a status): its store is ONE
    // round trip, before the answer, the only one; its counters one upsert after it. Its
    // re-delivery and a Twilio message alike; a delivery of statuses stores nothing.
    for (name, value) in [
        ("whatsapp_app_secret", sources::APP_SECRET),
        ("twilio_auth_token", sources::AUTH_TOKEN),
        ("public_base_url", sources::BASE_URL),
    ] {
        rt.vars.insert(name, value.to_owned());
    }
    let wa = |messages: Vec<Value>, statuses: Vec<Value>| {
        let body = sources::wa_delivery(messages, statuses);
        let signature = sources::meta_signature(sources::APP_SECRET, &body);
        request(
            "POST",
            "/webhook/whatsapp",
            &[("x-hub-signature-256", &signature)],
            &body,
        )
    };
    let texts = |ids: &[&str]| ids.iter().map(|id| sources::wa_text(id)).collect();
    let twilio_params = sources::twilio_message("SM0001");
    let twilio_url = format!("{}/webhook/twilio", sources::BASE_URL);
    let twilio_signature =
        sources::twilio_signature(sources::AUTH_TOKEN, &twilio_url, &twilio_params);
    let deliveries = [
        (
            wa(
                texts(&["wamid.1", "wamid.2", "m0002"]),
                vec![sources::wa_status("s1")],
            ),
            1,
        ),
        (wa(texts(&["wamid.1", "wamid.2", "m0002"]), Vec::new()), 1),
        (wa(Vec::new(), vec![sources::wa_status("s2")]), 0),
        (
            sources::twilio_post("/webhook/twilio", &twilio_params, Some(&twilio_signature)),
            1,
        ),
    ];
    for (delivery, stores) in deliveries {
        let before = server.round_trips().len();
        let handled = handle(&rt, delivery);
        assert_eq!(handled.response.status.as_u16(), 200);
        let answered = server.round_trips()[before..].to_vec();
        assert_eq!(answered.len(), stores, "{answered:?}");
        assert!(answered
            .iter()
            .all(|sql| sql.contains("INSERT INTO received")));
        handled.after.complete();
        let after: Vec<String> = server.round_trips()[before + stores..].to_vec();
        assert_eq!(after.len(), 1, "the counters, in one upsert: {after:?}");
        assert!(after[0].starts_with("INSERT INTO tallies"), "{after:?}");
    }
    assert_eq!(
        rt.counter(
            "webhook_messages_total",
            "source=\"whatsapp\",result=\"created\""
        ),
        2.0
    );
    assert_eq!(
        rt.counter(
            "webhook_messages_total",
            "source=\"whatsapp\",result=\"duplicate\""
        ),
        4.0
    );
    assert_eq!(
        rt.counter(
            "webhook_messages_total",
            "source=\"twilio\",result=\"created\""
        ),
        1.0
    );

    // The search index lagging behind: a search indexes a batch after its answer.
    rt.db
        .conn()
        .execute_batch(
            "DELETE FROM messages_search; UPDATE tallies SET n = 0 WHERE kind = 'search';",
        )
        .unwrap();
    let token_free = request("GET", "/messages?q=hello", &[], b"");
    run(&rt, token_free);
    assert_eq!(
        server.transactions_spanning_round_trips(),
        Vec::<String>::new()
    );
    assert_eq!(
        rt.counter(
            "webhook_requests_total",
            "source=\"webhook\",result=\"duplicate\""
        ),
        1.0
    );
}
