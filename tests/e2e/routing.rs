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
    ] {
        let resp = app.send(&Req::new(method, path).body(b"x"));
        assert_eq!(resp.status, 405, "{method} {path}");
        assert_eq!(resp.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(resp.json(), json!({"detail": "method not allowed"}));
    }
}
