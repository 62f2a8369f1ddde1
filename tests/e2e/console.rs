//! GET /ui: the console page, its headers and its policy.

use crate::support::{App, Req};

#[test]
fn the_console_is_one_html_page_with_a_strict_policy() {
    let app = App::with_vars(&[("webhook_secret", "s"), ("read_token", "rt")]);
    // The page holds no data: it is served without the token.
    let resp = app.get("/ui");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(resp.header("x-frame-options"), Some("DENY"));
    assert_eq!(resp.header("referrer-policy"), Some("no-referrer"));
    let csp = resp.header("content-security-policy").expect("a policy");
    assert_eq!(csp, webhook_inbox::console::content_security_policy());
    assert!(
        csp.starts_with("default-src 'none'; script-src 'sha256-"),
        "{csp}"
    );
    let html = resp.text();
    assert!(html.starts_with("<!doctype html>"));
    assert_eq!(html, webhook_inbox::console::page().body);
    let resp = app.send(&Req::new("POST", "/ui"));
    assert_eq!((resp.status, resp.header("allow")), (405, Some("GET")));
    assert_eq!(app.get("/ui/").status, 404);
}
