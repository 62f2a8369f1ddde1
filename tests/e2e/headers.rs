//! Response headers every answer carries: `X-Content-Type-Options: nosniff` on JSON and
//! text answers, and `Cache-Control: no-store` on the endpoints that serve stored data.

use crate::support::{message, App, Req};

on_each_backend! {
fn data_answers_are_nosniff_and_never_cached(backend: Backend) {
    let app = App::start_on(backend);
    assert_eq!(app.deliver(&message("m1")).status, 200);
    for (path, content_type) in [
        ("/messages", "application/json"),
        ("/messages?from=%2B919876543210&limit=1", "application/json"),
        ("/stats", "application/json"),
        ("/metrics", "text/plain; version=0.0.4; charset=utf-8"),
    ] {
        let resp = app.get(path);
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
        assert_eq!(resp.header("content-type"), Some(content_type), "{path}");
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(resp.header("cache-control"), Some("no-store"), "{path}");
    }
    // A refused read is not cached either.
    let resp = app.get("/messages?limit=0");
    assert_eq!(resp.status, 422);
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
}
}

#[test]
fn every_other_answer_is_nosniff() {
    let app = App::start();
    let answers = [
        app.deliver(&message("m1")),
        app.send(&Req::new("POST", "/webhook").body(b"{}")),
        app.get("/health/live"),
        app.get("/health/ready"),
        app.get("/nope"),
        app.send(&Req::new("PUT", "/messages")),
    ];
    for resp in &answers {
        assert_eq!(
            resp.header("x-content-type-options"),
            Some("nosniff"),
            "{} {}",
            resp.status,
            resp.text()
        );
        assert_eq!(resp.header("content-type"), Some("application/json"));
    }
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 401, 200, 200, 404, 405]);
    // Webhook answers and probes are not data reads: no cache directive is imposed on them.
    assert_eq!(answers[0].header("cache-control"), None);
    assert_eq!(answers[2].header("cache-control"), None);
}
