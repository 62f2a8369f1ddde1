//! Read tokens: `/messages` and `/stats` behind `read_token`, `/metrics` behind
//! `metrics_token`, health always open, and the tokens never in a log line.

use crate::support::{message, sources_off, App, Req, SECRET};
use serde_json::json;

const READ: &str = "read-tok-3f9a";
const READ_OLD: &str = "read-tok-old-77";
const METRICS: &str = "scrape-tok-c1";

fn get_with(app: &App, path: &str, authorization: Option<&str>) -> crate::support::Resp {
    let mut req = Req::new("GET", path);
    if let Some(value) = authorization {
        req = req.header("Authorization", value);
    }
    app.send(&req)
}

on_each_backend! {
fn reads_need_a_configured_token(backend: Backend) {
    let app = App::with_vars_on(
        backend,
        &[
            ("webhook_secret", SECRET),
            ("read_token", READ),
            ("read_token_previous", READ_OLD),
        ],
    );
    // Writes are signed, not token-gated.
    assert_eq!(app.deliver(&message("m1")).status, 200);

    for path in [
        "/messages",
        "/messages?limit=0",
        "/stats",
        "/feed?consumer=crm",
        "/feed?limit=0",
        "/feed/consumers",
    ] {
        for refused in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Bearer wrong"),
            Some(&format!("Bearer {READ}x")[..]),
            Some(&format!("Bearer {}", &READ[..READ.len() - 1])[..]),
            Some(&format!("Basic {READ}")[..]),
            Some(READ),
        ] {
            let resp = get_with(&app, path, refused);
            assert_eq!(resp.status, 401, "{path} with {refused:?}: {}", resp.text());
            assert_eq!(resp.header("www-authenticate"), Some("Bearer"));
            assert_eq!(resp.json(), json!({"detail": "not authenticated"}));
            assert_eq!(resp.header("cache-control"), Some("no-store"));
        }
        // Two Authorization headers are refused, even if one is right.
        let twice = Req::new("GET", path)
            .header("Authorization", &format!("Bearer {READ}"))
            .header("Authorization", "Bearer wrong");
        assert_eq!(app.send(&twice).status, 401, "{path}");
    }

    // Either token of a rotation works; the scheme is case-insensitive.
    for granted in [
        format!("Bearer {READ}"),
        format!("bearer {READ}"),
        format!("Bearer {READ_OLD}"),
    ] {
        let resp = get_with(&app, "/messages", Some(&granted));
        assert_eq!(resp.status, 200, "{granted}: {}", resp.text());
        assert_eq!(resp.json()["total"], 1);
        let resp = get_with(&app, "/stats", Some(&granted));
        assert_eq!(resp.json()["total_messages"], 1);
        let resp = get_with(&app, "/feed?consumer=crm", Some(&granted));
        assert_eq!(resp.json()["lag"], 1);
    }
    // A commit too needs the read token.
    let commit = Req::new("POST", "/feed/commit").body(br#"{"consumer":"crm","offset":1}"#);
    assert_eq!(app.send(&commit).status, 401);
    let commit = commit.header("Authorization", &format!("Bearer {READ}"));
    assert_eq!(app.send(&commit).status, 200);
    // Validation runs only once the caller is known.
    let bad_query = get_with(&app, "/messages?limit=0", Some(&format!("Bearer {READ}")));
    assert_eq!(bad_query.status, 422);

    // Health stays open for probes, and says reads need a token.
    assert_eq!(app.get("/health/live").status, 200);
    let ready = app.get("/health/ready");
    assert_eq!(
        (ready.status, ready.json()),
        (
            200,
            json!({"status": "ready", "read_auth": "required", "metrics_auth": "open",
                   "sources": sources_off()})
        )
    );
    // metrics_token is unset: /metrics stays open, and the read token is not needed.
    assert_eq!(app.get("/metrics").status, 200);
}
}

#[test]
fn metrics_has_its_own_token() {
    let app = App::with_vars(&[
        ("webhook_secret", SECRET),
        ("read_token", READ),
        ("metrics_token", METRICS),
        ("metrics_token_previous", "scrape-old"),
    ]);
    assert_eq!(get_with(&app, "/metrics", None).status, 401);
    let resp = get_with(&app, "/metrics", Some(&format!("Bearer {READ}")));
    assert_eq!(resp.status, 401, "the read token does not open /metrics");
    assert_eq!(resp.header("www-authenticate"), Some("Bearer"));
    for granted in [format!("Bearer {METRICS}"), "Bearer scrape-old".to_owned()] {
        let resp = get_with(&app, "/metrics", Some(&granted));
        assert_eq!(resp.status, 200, "{granted}");
        assert!(resp.text().contains("# TYPE http_requests_total counter"));
    }
    let resp = get_with(&app, "/messages", Some(&format!("Bearer {METRICS}")));
    assert_eq!(resp.status, 401, "the metrics token does not read messages");
    assert_eq!(
        app.get("/health/ready").json(),
        json!({"status": "ready", "read_auth": "required", "metrics_auth": "required",
               "sources": sources_off()})
    );

    // Refusals are counted like any answer (scraped with the token).
    let scraped = get_with(&app, "/metrics", Some(&format!("Bearer {METRICS}"))).text();
    assert!(
        scraped.contains("http_requests_total{path=\"/metrics\",status=\"401\"} 2"),
        "{scraped}"
    );
    assert!(scraped.contains("http_requests_total{path=\"/messages\",status=\"401\"} 1"));
}

#[test]
fn without_tokens_reads_stay_open() {
    // The seeds' contract: nothing configured, nothing asked.
    let app = App::with_vars(&[
        ("webhook_secret", SECRET),
        ("read_token_previous", READ_OLD),
    ]);
    assert_eq!(app.deliver(&message("m1")).status, 200);
    assert_eq!(app.get("/messages").status, 200);
    assert_eq!(app.get("/stats").status, 200);
    assert_eq!(app.get("/metrics").status, 200);
    let resp = get_with(&app, "/messages", Some("Bearer anything"));
    assert_eq!(resp.status, 200, "a token nobody asked for is ignored");
    assert_eq!(
        app.get("/health/ready").json(),
        json!({"status": "ready", "read_auth": "open", "metrics_auth": "open",
               "sources": sources_off()})
    );
    // Not ready for another reason: the body still says how reads stand.
    let unconfigured = App::with_vars(&[("read_token", READ)]);
    let ready = unconfigured.get("/health/ready");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["read_auth"], "required");
    assert_eq!(
        ready.json()["checks"]["secret"],
        "webhook secret not configured"
    );
}

#[test]
fn tokens_never_reach_the_log() {
    let app = App::with_vars(&[
        ("webhook_secret", SECRET),
        ("read_token", READ),
        ("read_token_previous", READ_OLD),
        ("metrics_token", METRICS),
    ]);
    get_with(&app, "/messages", Some(&format!("Bearer {READ}")));
    get_with(&app, "/stats", Some(&format!("Bearer {READ_OLD}")));
    get_with(&app, "/messages", Some("Bearer guessed-token-123"));
    get_with(&app, "/metrics", Some(&format!("Bearer {METRICS}")));
    app.get("/health/ready");
    let lines = app.log_lines();
    assert_eq!(lines.len(), 5, "{}", app.raw_stdout());
    let statuses: Vec<_> = lines
        .iter()
        .map(|l| l["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 401, 200, 200]);
    let raw = app.raw_stdout();
    for secret in [READ, READ_OLD, METRICS, "guessed-token-123", "Bearer"] {
        assert!(!raw.contains(secret), "log leaks {secret:?}");
    }
}
