//! GET /messages/{message_id}, GET /messages/export and GET /stats/hourly.

use crate::support::{App, Backend, Req, Streaming, SECRET};
use serde_json::{json, Value};

fn msg(id: &str, from: &str, ts: &str, text: Option<&str>) -> Value {
    json!({"message_id": id, "from": from, "to": "+14155550100", "ts": ts, "text": text})
}

/// `n` messages written straight into `messages` (as a bulk load would), one second apart
/// from 2025-01-15T10:00:00Z, senders `+10`..`+14` in turn, each with a 200-character text.
fn bulk_load(app: &App, n: u32) {
    // Reading readiness creates the schema.
    let ready = app.get("/health/ready");
    assert_eq!(ready.status, 200, "{} {:?}", ready.text(), app.log_lines());
    app.execute_sql(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
         INSERT INTO messages (message_id, sender, recipient, ts, ts_key, body_text, text_folded) \
         SELECT printf('bulk-%07d', i), '+1' || (i % 5), '+14155550100', \
                strftime('%Y-%m-%dT%H:%M:%SZ', 1736935200 + i, 'unixepoch'), \
                strftime('%Y-%m-%dT%H:%M:%S', 1736935200 + i, 'unixepoch'), \
                'row ' || i || ' ' || replace(hex(zeroblob(95)), '00', 'ab'), \
                'row ' || i || ' ' || replace(hex(zeroblob(95)), '00', 'ab') \
         FROM n"
    ));
}

fn lines(body: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "every line ends");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Every row of a listing, newest or oldest first, paged with the cursor.
fn paged(app: &App, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let body = app
            .get(&format!("/messages?limit=100&{query}{cursor}"))
            .json();
        out.extend(body["data"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return out,
        }
    }
}

on_each_backend! {
fn one_message_by_id_any_bytes(backend: Backend) {
    let app = App::start_on(backend);
    let ids = [
        "m1", "export", "a/b", "a b+c", "é🙂", "<script>alert(1)</script>", "%41", "..", "?x=1#y",
    ];
    for (i, id) in ids.iter().enumerate() {
        let m = msg(id, "+911", &format!("2025-01-15T10:00:0{i}Z"), Some(&format!("text {i}")));
        assert_eq!(app.deliver(&m).status, 200, "{id}");
    }
    assert_eq!(app.deliver(&msg("no-text", "+911", "2025-01-15T10:00:00Z", None)).status, 200);
    let encode = |id: &str| percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string();
    for (i, id) in ids.iter().enumerate() {
        // The literal path /messages/export is the export (below).
        let path = match *id {
            "export" => "/messages/%65xport".to_owned(),
            id => format!("/messages/{}", encode(id)),
        };
        let resp = app.get(&path);
        assert_eq!(resp.status, 200, "{id}");
        assert_eq!(
            resp.json(),
            msg(id, "+911", &format!("2025-01-15T10:00:0{i}Z"), Some(&format!("text {i}"))),
            "{id}"
        );
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.header("cache-control"), Some("no-store"));
    }
    assert_eq!(app.get("/messages/no-text").json()["text"], Value::Null);
    // Matching happens before decoding: the literal path is the export, an encoded one the id.
    assert_eq!(app.get("/messages/%65xport").json()["message_id"], "export");
    assert_eq!(app.get("/messages/a%2Fb").json()["message_id"], "a/b");
    assert_eq!(app.get("/messages/a/b").json()["message_id"], "a/b");
    for path in ["/messages/M1", "/messages/nope", "/messages/%ff", "/messages/%00", "/messages/m1%20"] {
        let resp = app.get(path);
        assert_eq!((resp.status, resp.json()), (404, json!({"detail": "not found"})), "{path}");
    }
    let resp = app.send(&Req::new("PUT", "/messages/m1"));
    assert_eq!((resp.status, resp.header("allow")), (405, Some("GET, DELETE")));
    // Folded or pending, the same answer.
    let before = app.get("/messages/m1").json();
    for i in 0..260 {
        app.deliver(&msg(&format!("fill{i}"), "+1", "2025-01-16T00:00:00Z", None));
    }
    assert_eq!(app.query_i64("SELECT count(*) FROM messages WHERE message_id = 'm1'"), 1);
    assert_eq!(app.get("/messages/m1").json(), before);
}
}

on_each_backend! {
fn export_streams_every_match_in_list_order(backend: Backend) {
    let app = App::start_on(backend);
    bulk_load(&app, 1000);
    // A few more through the component: still pending in `received`, merged in order.
    for (id, ts) in [("late", "2025-01-16T00:00:00Z"), ("early", "2025-01-14T00:00:00Z"),
                     ("tie", "2025-01-15T10:00:01.000Z")] {
        assert_eq!(app.deliver(&msg(id, "+10", ts, Some("pending <b>row</b>\nnext line"))).status, 200);
    }
    let resp = app.get("/messages/export");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(resp.header("content-length"), None);
    let all = lines(&resp.body);
    assert_eq!(all.len(), 1003);
    assert_eq!(all, paged(&app, ""), "the list's order, the list's shape");
    assert_eq!(all[0]["message_id"], "early");
    assert_eq!(all[1]["message_id"], "bulk-0000001");
    assert_eq!(all[2]["message_id"], "tie", "same instant as bulk-0000001: by id");
    assert_eq!(all[1002]["message_id"], "late");

    let newest_first = lines(&app.get("/messages/export?order=desc").body);
    assert_eq!(newest_first, paged(&app, "order=desc"));
    assert_eq!(newest_first.iter().rev().cloned().collect::<Vec<_>>(), all);

    for query in ["from=%2B10", "q=ROW+99", "since=2025-01-15T10:10:00Z&to=%2B14155550100",
                  "from=%2B10&q=pending", "from=%2B999"] {
        let resp = app.get(&format!("/messages/export?{query}"));
        assert_eq!(resp.status, 200, "{query}");
        assert_eq!(lines(&resp.body), paged(&app, query), "{query}");
    }
    let resp = app.get("/messages/export?from=%2B999");
    assert_eq!((resp.status, resp.body.len()), (200, 0), "nothing matches: no line");

    let resp = app.get("/messages/export?limit=5&cursor=x&since=soon");
    assert_eq!(resp.status, 422);
    let locs: Vec<_> = resp.json()["detail"].as_array().unwrap().iter()
        .map(|d| d["loc"][1].as_str().unwrap().to_owned()).collect();
    assert_eq!(locs, ["limit", "cursor", "since"]);
    let resp = app.send(&Req::new("POST", "/messages/export"));
    assert_eq!((resp.status, resp.header("allow")), (405, Some("GET")));
}
}

/// The instance's memory does not grow with the rows exported: one page at a time.
#[test]
fn an_exports_memory_does_not_grow_with_its_rows() {
    let app = App::start();
    bulk_load(&app, 2_000);
    let export = |expected: usize| {
        app.reset_peak_memory();
        let resp = app.get("/messages/export");
        assert_eq!(lines(&resp.body).len(), expected);
        app.peak_memory()
    };
    let small = export(2_000);
    app.execute_sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 48000) \
         INSERT INTO messages (message_id, sender, recipient, ts, ts_key, body_text, text_folded) \
         SELECT printf('more-%07d', i), '+1', '+2', '2025-02-01T00:00:00Z', '2025-02-01T00:00:00', \
                replace(hex(zeroblob(95)), '00', 'ab'), NULL FROM n",
    );
    let large = export(50_000);
    eprintln!("peak linear memory: {small} bytes for 2000 rows, {large} for 50000");
    // ~7.5 MB of NDJSON went through; the instance grew no more than for 300 KB of it.
    assert!(small > 0);
    assert!(
        large <= small + 256 * 1024,
        "peak linear memory {small} bytes for 2000 rows, {large} for 50000"
    );
}

/// The database goes away in the middle of an export: the response is cut off without its
/// terminating chunk (the connection closes), never ended as if it were complete.
#[test]
fn an_export_that_loses_its_database_is_cut_off_not_ended() {
    let mut app = App::start_on(Backend::Libsql);
    bulk_load(&app, 60_000);
    let mut export = Streaming::get(app.addr(), "/messages/export", &[]);
    assert_eq!(export.head.status, 200);
    assert_eq!(export.head.header("transfer-encoding"), Some("chunked"));
    // The client reads slowly: the component waits for room before it reads each next page.
    export.read_at_least(100_000);
    app.stop_database();
    export.read_to_end();
    let (body, terminated) = export.dechunked();
    assert!(!terminated, "no terminating chunk after a failed page");
    let text = String::from_utf8_lossy(&body);
    let complete_lines = text.matches('\n').count();
    assert!(
        complete_lines > 200 && complete_lines < 60_000,
        "{complete_lines} lines"
    );
    // The log says why.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let line = app
        .log_lines()
        .into_iter()
        .find(|l| l["path"] == "/messages/export")
        .expect("a log line");
    assert_eq!(line["status"], 200);
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .starts_with("export stopped after "),
        "{line}"
    );
}

on_each_backend! {
fn export_and_lookup_need_the_read_token(backend: Backend) {
    let app = App::with_vars_on(backend, &[("webhook_secret", SECRET), ("read_token", "rt")]);
    app.deliver(&msg("m1", "+1", "2025-01-15T10:00:00Z", None));
    for path in ["/messages/export", "/messages/m1", "/messages/%ff", "/stats/hourly",
                 "/messages/export?limit=x"] {
        let resp = app.get(path);
        assert_eq!(resp.status, 401, "{path}");
        assert_eq!(resp.header("www-authenticate"), Some("Bearer"));
        let ok = app.send(&Req::new("GET", path).header("Authorization", "Bearer rt"));
        assert_ne!(ok.status, 401, "{path}");
    }
    let resp = app.send(&Req::new("GET", "/messages/export").header("Authorization", "Bearer rt"));
    assert_eq!(lines(&resp.body).len(), 1);
}
}

on_each_backend! {
fn messages_per_hour_merge_folded_and_pending(backend: Backend) {
    let app = App::start_on(backend);
    let now = std::time::SystemTime::now();
    let at = |hours_ago: u64, minute: u64| {
        let t = now - std::time::Duration::from_secs(hours_ago * 3600);
        let hour = &webhook_inbox::timestamp::format_utc(t)[..13];
        format!("{hour}:{minute:02}:00Z")
    };
    let mut n = 0;
    let mut deliver = |ts: String| {
        n += 1;
        assert_eq!(app.deliver(&msg(&format!("h{n}"), "+1", &ts, None)).status, 200);
    };
    // 256 messages fill a batch and fold; more stay pending. Hours: now, 5 h ago, 30 h ago,
    // and 200 h ago (outside 7 days).
    for i in 0..250 { deliver(at(5, i % 60)); }
    for i in 0..10 { deliver(at(0, i)); }
    for i in 0..3 { deliver(at(30, i)); }
    deliver(at(200, 0));
    assert!(app.query_i64("SELECT count(*) FROM received") > 0);
    assert!(app.query_i64("SELECT count(*) FROM messages") > 0);
    let body = app.get("/stats/hourly").json();
    assert_eq!(body["days"], 7);
    let hour = |h: u64| format!("{}:00:00Z", &webhook_inbox::timestamp::format_utc(now - std::time::Duration::from_secs(h * 3600))[..13]);
    assert_eq!(body["to"], hour(0));
    assert_eq!(body["from"], hour(7 * 24 - 1));
    assert_eq!(
        body["data"],
        json!([{"hour": hour(30), "count": 3}, {"hour": hour(5), "count": 250},
               {"hour": hour(0), "count": 10}])
    );
    let one_day = app.get("/stats/hourly?days=1").json();
    assert_eq!(one_day["data"], json!([{"hour": hour(5), "count": 250}, {"hour": hour(0), "count": 10}]));
    let ninety = app.get("/stats/hourly?days=90").json();
    assert_eq!(ninety["data"].as_array().unwrap().len(), 4);
    for bad in ["days=0", "days=91", "days=x"] {
        let resp = app.get(&format!("/stats/hourly?{bad}"));
        assert_eq!(resp.status, 422, "{bad}");
        assert_eq!(resp.json()["detail"][0]["loc"], json!(["query", "days"]));
    }
    assert_eq!(app.get("/stats/hourly").header("cache-control"), Some("no-store"));
}
}
