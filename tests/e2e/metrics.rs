//! GET /metrics: strict Prometheus text, counters equal to the traffic sent.

use crate::support::{message, parse_prometheus, App, Req};
use std::time::{SystemTime, UNIX_EPOCH};

on_each_backend! {
fn counters_match_the_traffic_and_parse_strictly(backend: Backend) {
    let app = App::start_on(backend);
    assert_eq!(app.deliver(&message("m1")).status, 200); // created
    assert_eq!(app.deliver(&message("m1")).status, 200); // duplicate
    assert_eq!(app.deliver(&message("m2")).status, 200); // created
    assert_eq!(
        app.send(&Req::new("POST", "/webhook").body(b"{}")).status,
        401
    );
    assert_eq!(app.post_signed(b"[]").status, 422);
    assert_eq!(app.get("/messages?limit=0").status, 422);
    assert_eq!(app.get("/messages").status, 200);
    assert_eq!(app.get("/stats").status, 200);
    assert_eq!(app.get("/nope").status, 404);
    assert_eq!(app.get("/wp-admin/../../etc/passwd").status, 404);
    assert_eq!(app.get("/webhook").status, 405);

    let first = app.get("/metrics");
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let m = parse_prometheus(&first.text());
    let get = |series: &str| {
        m.get(series)
            .copied()
            .unwrap_or_else(|| panic!("missing {series}"))
    };
    assert_eq!(
        get(r#"http_requests_total{path="/webhook",status="200"}"#),
        3.0
    );
    assert_eq!(
        get(r#"http_requests_total{path="/webhook",status="401"}"#),
        1.0
    );
    assert_eq!(
        get(r#"http_requests_total{path="/webhook",status="422"}"#),
        1.0
    );
    assert_eq!(
        get(r#"http_requests_total{path="/webhook",status="405"}"#),
        1.0
    );
    assert_eq!(
        get(r#"http_requests_total{path="/messages",status="422"}"#),
        1.0
    );
    assert_eq!(
        get(r#"http_requests_total{path="/messages",status="200"}"#),
        1.0
    );
    assert_eq!(
        get(r#"http_requests_total{path="/stats",status="200"}"#),
        1.0
    );
    assert_eq!(
        get(r#"http_requests_total{path="other",status="404"}"#),
        2.0
    );
    assert!(
        !m.keys()
            .any(|k| k.contains("/nope") || k.contains("passwd")),
        "raw paths never become labels"
    );
    assert_eq!(get(r#"webhook_requests_total{source="webhook",result="created"}"#), 2.0);
    assert_eq!(get(r#"webhook_requests_total{source="webhook",result="duplicate"}"#), 1.0);
    assert_eq!(
        get(r#"webhook_requests_total{source="webhook",result="invalid_signature"}"#),
        1.0
    );
    assert_eq!(
        get(r#"webhook_requests_total{source="webhook",result="validation_error"}"#),
        1.0
    );

    // Histogram: 11 requests so far, cumulative buckets, +Inf = count, 100 and 500 present.
    assert_eq!(get("request_latency_ms_count"), 11.0);
    assert_eq!(get(r#"request_latency_ms_bucket{le="+Inf"}"#), 11.0);
    let _ = get(r#"request_latency_ms_bucket{le="100"}"#);
    let _ = get(r#"request_latency_ms_bucket{le="500"}"#);
    let mut buckets: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|(k, v)| {
            let le = k
                .strip_prefix("request_latency_ms_bucket{le=\"")?
                .strip_suffix("\"}")?;
            Some((
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                },
                *v,
            ))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "cumulative: {buckets:?}"
    );
    assert!(get("request_latency_ms_sum") > 0.0);

    // Gauges: the stored total, when the newest was received (by the component's clock,
    // this very run), the newest message's own ts (2025-01-15T10:00:00Z).
    assert_eq!(get("webhook_messages_stored"), 2.0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let received = get("webhook_last_received_timestamp_seconds");
    assert!(received <= now && received > now - 120.0, "{received} vs {now}");
    assert_eq!(get("webhook_last_message_ts_seconds"), 1_736_935_200.0);
    for gauge in [
        "webhook_messages_stored",
        "webhook_last_received_timestamp_seconds",
        "webhook_last_message_ts_seconds",
    ] {
        assert!(first.text().contains(&format!("# TYPE {gauge} gauge\n")), "{gauge}");
    }

    // The scrape itself is counted, and shows up in the next one.
    let second = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(
        second[r#"http_requests_total{path="/metrics",status="200"}"#],
        1.0
    );
    assert_eq!(second["request_latency_ms_count"], 12.0);
}
}

on_each_backend! {
fn an_empty_store_exposes_every_family(backend: Backend) {
    let app = App::start_on(backend);
    let text = app.get("/metrics").text();
    let m = parse_prometheus(&text);
    for family in [
        "http_requests_total",
        "webhook_requests_total",
        "webhook_messages_total",
        "webhook_ignored_total",
        "webhook_rejections_total",
        "messages_removed_total",
        "request_latency_ms",
        "webhook_feed_lag",
        "webhook_messages_stored",
        "webhook_last_received_timestamp_seconds",
        "webhook_last_message_ts_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }
    // No feed consumer: the gauge has no series. Nothing stored: 0 stored, and neither
    // instant is known, so neither has a sample.
    assert!(!m.keys().any(|k| k.starts_with("webhook_feed_lag")));
    assert_eq!(m["webhook_messages_stored"], 0.0);
    assert!(!m.contains_key("webhook_last_received_timestamp_seconds"));
    assert!(!m.contains_key("webhook_last_message_ts_seconds"));
    assert_eq!(m["request_latency_ms_count"], 0.0);
    // The fixed families, every series from zero: providers x results, providers x kinds,
    // sources x reasons.
    let zeros = |prefix: &str| {
        m.iter()
            .filter(|(series, value)| series.starts_with(prefix) && **value == 0.0)
            .count()
    };
    assert_eq!(zeros("webhook_messages_total{"), 6);
    assert_eq!(zeros("webhook_ignored_total{"), 8);
    assert_eq!(zeros("webhook_rejections_total{"), 15);
    assert_eq!(
        m[r#"webhook_rejections_total{source="twilio",reason="invalid_signature"}"#],
        0.0
    );
}
}
