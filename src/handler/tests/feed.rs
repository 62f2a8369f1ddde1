//! The feed's routes on the fake runtime: auth, pages, commits and their refusals, the
//! consumer bound, the consumers' list and deletion, and, on a database reached as a libSQL
//! server, one statement per route (plus one read on a refused commit).

use super::*;

const READ_TOKEN: &str = "reader";
const ADMIN_TOKEN: &str = "admin";

fn feed_runtime(extra: &[(&'static str, &str)]) -> FakeRuntime {
    let mut vars = vec![
        ("webhook_secret", SECRET),
        ("read_token", READ_TOKEN),
        ("admin_token", ADMIN_TOKEN),
    ];
    vars.extend_from_slice(extra);
    FakeRuntime::new(&vars)
}

fn get(target: &str) -> Request {
    let bearer = format!("Bearer {READ_TOKEN}");
    request("GET", target, &[("authorization", &bearer)], b"")
}

fn commit(consumer: &str, offset: i64) -> Request {
    let bearer = format!("Bearer {READ_TOKEN}");
    let body = json!({"consumer": consumer, "offset": offset}).to_string();
    request(
        "POST",
        "/feed/commit",
        &[("authorization", &bearer)],
        body.as_bytes(),
    )
}

fn answer(rt: &FakeRuntime, req: Request) -> (u16, Value) {
    let resp = run(rt, req);
    (resp.status.as_u16(), json_body(&resp))
}

#[test]
fn a_consumer_pulls_commits_and_is_refused_going_back_or_past_the_end() {
    let rt = feed_runtime(&[]);
    for i in 0..5 {
        assert_eq!(run(&rt, signed(&message(&format!("m{i}")))).status, 200);
    }
    // Behind the read token, every route.
    let anonymous = request("GET", "/feed?consumer=crm", &[], b"");
    assert_eq!(run(&rt, anonymous).status.as_u16(), 401);
    let anonymous = request("POST", "/feed/commit", &[], b"{}");
    assert_eq!(run(&rt, anonymous).status.as_u16(), 401);
    assert_eq!(
        run(&rt, request("GET", "/feed/consumers", &[], b"")).status,
        401
    );

    let (status, body) = answer(&rt, get("/feed?consumer=crm&limit=2"));
    assert_eq!(status, 200);
    assert_eq!(body["consumer"], "crm");
    assert_eq!(body["lag"], 5);
    assert_eq!(body["next_offset"], 2);
    assert_eq!(
        body["messages"][0],
        json!({"offset": 1, "message_id": "m0", "from": "+15550001", "to": "+15550002",
               "ts": "2025-01-15T10:00:00Z", "text": "hi"})
    );
    let resp = run(&rt, get("/feed?consumer=crm"));
    assert_eq!(header(&resp, "cache-control"), Some("no-store"));

    assert_eq!(
        answer(&rt, commit("crm", 2)),
        (200, json!({"consumer": "crm", "committed": 2}))
    );
    assert_eq!(
        answer(&rt, commit("crm", 2)),
        (200, json!({"consumer": "crm", "committed": 2}))
    );
    let (status, body) = answer(&rt, commit("crm", 1));
    assert_eq!(status, 409);
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("committed offset 2"));
    let (status, body) = answer(&rt, commit("crm", 6));
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "offset"]));
    let (_, body) = answer(&rt, get("/feed?consumer=crm&limit=1000"));
    assert_eq!(
        (body["lag"].clone(), body["next_offset"].clone()),
        (json!(3), json!(5))
    );
    assert_eq!(body["messages"][0]["message_id"], "m2");

    // Bad names, limits and bodies: the usual 422 shape.
    for target in [
        "/feed",
        "/feed?consumer=a%20b",
        "/feed?consumer=crm&limit=1001",
        "/feed?consumer=crm&limit=0",
    ] {
        let (status, body) = answer(&rt, get(target));
        assert_eq!(status, 422, "{target}");
        assert_eq!(body["detail"][0]["loc"][0], "query", "{target}");
    }
    let bearer = format!("Bearer {READ_TOKEN}");
    let bad = request(
        "POST",
        "/feed/commit",
        &[("authorization", &bearer)],
        br#"{"consumer":"crm","offset":-1}"#,
    );
    assert_eq!(run(&rt, bad).status.as_u16(), 422);
    let huge = request(
        "POST",
        "/feed/commit",
        &[("authorization", &bearer)],
        &vec![b' '; 5000],
    );
    assert_eq!(run(&rt, huge).status.as_u16(), 413);

    let (status, body) = answer(&rt, get("/feed/consumers"));
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"data": [{"consumer": "crm", "committed": 2, "lag": 3}]})
    );
    assert_eq!(
        rt.counter(
            "http_requests_total",
            "path=\"/feed/commit\",status=\"409\""
        ),
        1.0
    );
}

#[test]
fn the_bound_refuses_new_consumers_and_forgetting_one_needs_the_admin_token() {
    let rt = feed_runtime(&[("feed_max_consumers", "1")]);
    run(&rt, signed(&message("m1")));
    assert_eq!(answer(&rt, commit("a", 1)).0, 200);
    let (status, body) = answer(&rt, commit("b", 0));
    assert_eq!(status, 409);
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("feed_max_consumers"));
    assert_eq!(answer(&rt, get("/feed?consumer=b")).0, 409);
    assert_eq!(answer(&rt, get("/feed?consumer=a")).0, 200);

    let forget = |token: &str, name: &str| {
        let bearer = format!("Bearer {token}");
        let path = format!("/feed/consumers/{name}");
        request("DELETE", &path, &[("authorization", &bearer)], b"")
    };
    assert_eq!(run(&rt, forget(READ_TOKEN, "a")).status.as_u16(), 401);
    assert_eq!(
        answer(&rt, forget(ADMIN_TOKEN, "a")),
        (200, json!({"consumer": "a", "committed": 1}))
    );
    assert_eq!(answer(&rt, forget(ADMIN_TOKEN, "a")).0, 404);
    assert_eq!(answer(&rt, forget(ADMIN_TOKEN, "a%20b")).0, 404);
    assert_eq!(answer(&rt, commit("b", 0)).0, 200);

    // No admin token: closed, as every admin route.
    let open = FakeRuntime::configured();
    let resp = run(&open, request("DELETE", "/feed/consumers/a", &[], b""));
    assert_eq!(resp.status.as_u16(), 403);
}

#[test]
fn an_unusable_bound_is_a_503_and_a_readiness_problem() {
    let rt = feed_runtime(&[("feed_max_consumers", "0")]);
    assert_eq!(answer(&rt, get("/feed?consumer=a")).0, 503);
    assert_eq!(answer(&rt, commit("a", 0)).0, 503);
    assert_eq!(answer(&rt, get("/feed/consumers")).0, 200);
    let (status, body) = answer(&rt, request("GET", "/health/ready", &[], b""));
    assert_eq!(status, 503);
    assert!(body["checks"]["config"]
        .as_str()
        .unwrap()
        .contains("feed_max_consumers"));
}

/// On a libSQL server each feed route is ONE statement before its answer (a refused
/// commit, two: the upsert and the read that says why), and none leaves a transaction open.
#[test]
fn on_a_server_each_feed_route_is_one_statement_and_holds_no_transaction() {
    let mut rt = feed_runtime(&[("feed_max_consumers", "1")]);
    crate::storage::prepare(&rt.db).unwrap();
    for i in 0..5 {
        run(&rt, signed(&message(&format!("m{i}"))));
    }
    let server = ServerLike::open(&rt.db.path());
    rt.server = Some(server.clone());
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let forget = || {
        request(
            "DELETE",
            "/feed/consumers/a",
            &[("authorization", &bearer)],
            b"",
        )
    };
    let cases: Vec<(Request, u16, usize)> = vec![
        (get("/feed?consumer=a&limit=2"), 200, 1),
        (commit("a", 2), 200, 1),
        (commit("a", 2), 200, 1),
        (commit("a", 1), 409, 2),
        (commit("a", 9), 422, 2),
        (commit("b", 1), 409, 2),
        (get("/feed?consumer=b"), 409, 1),
        (get("/feed/consumers"), 200, 1),
        (forget(), 200, 1),
        (forget(), 404, 1),
    ];
    for (req, status, statements) in cases {
        let target = format!("{} {}?{}", req.method, req.path, req.query);
        let before = server.round_trips().len();
        let handled = handle(&rt, req);
        assert_eq!(handled.response.status.as_u16(), status, "{target}");
        let sent = server.round_trips()[before..].to_vec();
        assert_eq!(sent.len(), statements, "{target}: {sent:#?}");
        handled.after.complete();
    }
    assert_eq!(
        server.transactions_spanning_round_trips(),
        Vec::<String>::new()
    );
}
