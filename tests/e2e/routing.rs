//! Unknown paths, wrong methods, content types.

use crate::support::{App, Req};
use serde_json::json;

#[test]
fn unknown_paths_are_json_404() {
    let app = App::start();
    for path in [
        "/",
        "/nope",
        "/messages/",
        "/webhook/extra",
        "/%ff",
        "/health",
        "/feed/",
        "/feed/other",
        "/feed/consumers/",
    ] {
        let resp = app.get(path);
        assert_eq!(
            (resp.status, resp.json()),
            (404, json!({"detail": "not found"})),
            "{path}"
        );
        assert_eq!(resp.header("content-type"), Some("application/json"));
    }
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let app = App::start();
    for (method, path, allow) in [
        ("GET", "/webhook", "POST"),
        ("PUT", "/webhook", "POST"),
        ("POST", "/messages", "GET, DELETE"),
        ("GET", "/admin/purge", "POST"),
        ("DELETE", "/stats", "GET"),
        ("POST", "/health/live", "GET"),
        ("POST", "/health/ready", "GET"),
        ("PATCH", "/metrics", "GET"),
        ("POST", "/messages/m1", "GET, DELETE"),
        ("PUT", "/messages/export", "GET"),
        ("POST", "/stats/hourly", "GET"),
        ("DELETE", "/ui", "GET"),
        ("POST", "/feed", "GET"),
        ("GET", "/feed/commit", "POST"),
        ("POST", "/feed/consumers", "GET"),
        ("GET", "/feed/consumers/crm", "DELETE"),
    ] {
        let resp = app.send(&Req::new(method, path).body(b"x"));
        assert_eq!(resp.status, 405, "{method} {path}");
        assert_eq!(resp.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(resp.json(), json!({"detail": "method not allowed"}));
    }
}

#[test]
fn new_routes_have_fixed_metric_labels() {
    let app = App::start();
    for path in [
        "/messages/a",
        "/messages/b%2Fc",
        "/messages/export",
        "/stats/hourly",
        "/ui",
    ] {
        app.get(path);
    }
    app.send(&Req::new("POST", "/messages/zzz"));
    let metrics = crate::support::parse_prometheus(&app.get("/metrics").text());
    let paths: std::collections::BTreeSet<_> = metrics
        .keys()
        .filter_map(|k| k.strip_prefix("http_requests_total{path=\""))
        .map(|k| k.split('"').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        paths.into_iter().collect::<Vec<_>>(),
        [
            "/messages/export",
            "/messages/{message_id}",
            "/stats/hourly",
            "/ui"
        ]
    );
    assert_eq!(
        metrics["http_requests_total{path=\"/messages/{message_id}\",status=\"404\"}"],
        2.0
    );
    assert_eq!(
        metrics["http_requests_total{path=\"/messages/{message_id}\",status=\"405\"}"],
        1.0
    );
}
