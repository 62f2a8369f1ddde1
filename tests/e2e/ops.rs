//! The operations kit cannot rot: the component is run through every outcome it can cheaply
//! produce, `/metrics` is scraped, and every metric name that `deploy/prometheus/alerts.yml`
//! or `deploy/grafana/webhook-inbox.json` uses must be in the scrape. Each alert's
//! `runbook_url` must point at a heading of `docs/operations.md`.

use crate::support::{message, parse_prometheus, App, Req, SECRET};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashSet};
use std::path::Path;

const ADMIN: &str = "e2e-ops-admin";
const APP_SECRET: &str = "e2e-ops-meta-secret";

/// Names the rules use that come from Prometheus itself or from the blackbox exporter,
/// never from `/metrics`.
const NOT_FROM_METRICS: [&str; 2] = ["up", "probe_success"];

fn repo_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_use_is_exposed() {
    let app = App::with_vars(&[
        ("webhook_secret", SECRET),
        ("admin_token", ADMIN),
        ("max_body_bytes", "2048"),
        ("whatsapp_app_secret", APP_SECRET),
        ("whatsapp_verify_token", "e2e-ops-verify"),
    ]);
    // /webhook: created, duplicate, invalid signature, validation error, payload too large.
    assert_eq!(app.deliver(&message("ops-1")).status, 200);
    assert_eq!(app.deliver(&message("ops-1")).status, 200);
    assert_eq!(app.deliver(&message("ops-2")).status, 200);
    let unsigned = Req::new("POST", "/webhook").body(b"{}");
    assert_eq!(app.send(&unsigned).status, 401);
    assert_eq!(app.post_signed(b"[]").status, 422);
    assert_eq!(app.post_signed(&vec![b' '; 4096]).status, 413);
    // WhatsApp: a message and a status update (created, ignored), then the same again
    // (duplicate), and a forged one (invalid signature).
    let delivery = meta_delivery();
    for _ in 0..2 {
        assert_eq!(
            post_meta(&app, &delivery, &meta_signature(&delivery)).status,
            200
        );
    }
    assert_eq!(post_meta(&app, &delivery, "sha256=00").status, 401);
    // A feed consumer that read one message and committed it.
    assert_eq!(app.get("/feed?consumer=ops&limit=1").status, 200);
    let commit = Req::new("POST", "/feed/commit").body(br#"{"consumer":"ops","offset":1}"#);
    assert_eq!(app.send(&commit).status, 200);
    // Reads, an unknown path, an erasure.
    assert_eq!(app.get("/messages").status, 200);
    assert_eq!(app.get("/stats").status, 200);
    assert_eq!(app.get("/nope").status, 404);
    let erase =
        Req::new("DELETE", "/messages/ops-2").header("Authorization", &format!("Bearer {ADMIN}"));
    assert_eq!(app.send(&erase).status, 200);
    assert_eq!(app.get("/health/ready").status, 200);

    let text = app.get("/metrics").text();
    let scrape = parse_prometheus(&text);
    let mut exposed: HashSet<String> = scrape
        .keys()
        .map(|series| series.split('{').next().unwrap().to_owned())
        .collect();
    exposed.extend(
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_owned()),
    );
    // Every outcome above shows in the series the rules and panels read.
    for series in [
        r#"webhook_requests_total{source="webhook",result="created"}"#,
        r#"webhook_requests_total{source="webhook",result="duplicate"}"#,
        r#"webhook_requests_total{source="webhook",result="invalid_signature"}"#,
        r#"webhook_requests_total{source="webhook",result="validation_error"}"#,
        r#"webhook_requests_total{source="webhook",result="payload_too_large"}"#,
        r#"webhook_requests_total{source="whatsapp",result="created"}"#,
        r#"webhook_requests_total{source="whatsapp",result="duplicate"}"#,
        r#"webhook_requests_total{source="whatsapp",result="invalid_signature"}"#,
        r#"webhook_rejections_total{source="webhook",reason="payload_too_large"}"#,
        r#"webhook_messages_total{source="whatsapp",result="duplicate"}"#,
        r#"webhook_ignored_total{source="whatsapp",kind="status"}"#,
        r#"messages_removed_total{cause="erasure"}"#,
        r#"webhook_feed_lag{consumer="ops"}"#,
        r#"http_requests_total{path="/health/ready",status="200"}"#,
    ] {
        assert!(
            scrape.get(series).is_some_and(|v| *v > 0.0),
            "{series} missing or 0 in\n{text}"
        );
    }
    for gauge in [
        "webhook_messages_stored",
        "webhook_last_received_timestamp_seconds",
        "webhook_last_message_ts_seconds",
    ] {
        assert!(scrape.contains_key(gauge), "{gauge} in\n{text}");
    }

    // The names the kit uses.
    let rules = repo_file("deploy/prometheus/alerts.yml");
    let recorded: HashSet<String> = yaml_values(&rules, "record").into_iter().collect();
    let mut used: BTreeSet<(String, &str)> = BTreeSet::new();
    for expr in yaml_values(&rules, "expr") {
        for name in metric_names(&expr) {
            used.insert((name, "deploy/prometheus/alerts.yml"));
        }
    }
    let dashboard: Value =
        serde_json::from_str(&repo_file("deploy/grafana/webhook-inbox.json")).unwrap();
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(queries.len() >= 15, "{queries:?}");
    for query in queries {
        for name in metric_names(&query) {
            used.insert((name, "deploy/grafana/webhook-inbox.json"));
        }
    }
    let names: BTreeSet<&str> = used.iter().map(|(name, _)| name.as_str()).collect();
    // The extraction itself works: the names every part of the kit rests on are found.
    for name in [
        "webhook_requests_total",
        "webhook_last_received_timestamp_seconds",
        "webhook_feed_lag",
        "http_requests_total",
        "request_latency_ms_bucket",
        "webhook_messages_stored",
        "up",
        "probe_success",
    ] {
        assert!(names.contains(name), "{name} not found in {names:?}");
    }
    let missing: Vec<&(String, &str)> = used
        .iter()
        .filter(|(name, _)| {
            !exposed.contains(name)
                && !recorded.contains(name)
                && !NOT_FROM_METRICS.contains(&name.as_str())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "metric names used but not in /metrics: {missing:?}"
    );

    // Runbooks: every alert's runbook_url is a heading of docs/operations.md.
    let anchors: HashSet<String> = repo_file("docs/operations.md")
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|heading| slug(heading.trim_start_matches('#')))
        .collect();
    let runbooks = yaml_values(&rules, "runbook_url");
    assert_eq!(runbooks.len(), yaml_values(&rules, "alert").len());
    for url in runbooks {
        let anchor = url
            .strip_prefix("docs/operations.md#")
            .unwrap_or_else(|| panic!("{url}"));
        assert!(
            anchors.contains(anchor),
            "no heading for {url} in {anchors:?}"
        );
    }
}

/// Readiness's 503s are counted per route, as WebhookInboxNotReady reads them.
#[test]
fn readiness_failures_are_counted_for_the_alert() {
    let app = App::with_vars(&[]);
    assert_eq!(app.get("/health/ready").status, 503);
    let scrape = parse_prometheus(&app.get("/metrics").text());
    assert_eq!(
        scrape.get(r#"http_requests_total{path="/health/ready",status="503"}"#),
        Some(&1.0)
    );
}

/// GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The values of `key:` in a YAML file as these rule files write them: inline (quoted or
/// not), or a `|` / `>` block of more indented lines after it. (CI parses every YAML file
/// under deploy/ with a real parser; this only has to read ours.)
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let Some(rest) = trimmed.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            let indent = line.len() - line.trim_start().len();
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            out.push(block.join("\n"));
        } else {
            out.push(rest.trim_matches(|c| c == '"' || c == '\'').to_owned());
        }
    }
    out
}

/// Every PromQL query of a Grafana dashboard: the targets' `expr`, and the metric of a
/// variable's `label_values(metric, label)`.
fn dashboard_queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    ("definition", Value::String(def)) => {
                        if let Some(args) = def.strip_prefix("label_values(") {
                            let metric = args.split([',', ')']).next().unwrap();
                            out.push(metric.trim().to_owned());
                        }
                    }
                    _ => dashboard_queries(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// The metric names a PromQL expression selects: identifiers outside strings, label
/// matchers (`{...}`), ranges (`[...]`) and grouping lists (`by (...)`, `on (...)`, ...),
/// that are not keywords and not called as functions or aggregations. Grafana's `$vars`
/// and numbers or durations (`1d`, `0.5`) are skipped.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Strings, label matchers (which hold strings) and ranges out first, each as a space.
    let mut plain = String::new();
    // The closing character of each open string, matcher or range, innermost last.
    let mut open: Vec<char> = Vec::new();
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match open.last().copied() {
            Some(quote @ ('"' | '\'' | '`')) => {
                if c == '\\' && quote != '`' {
                    chars.next();
                } else if c == quote {
                    open.pop();
                }
            }
            Some(end) if c == end => {
                open.pop();
            }
            Some(_) if matches!(c, '"' | '\'' | '`') => open.push(c),
            Some(_) => {}
            None => match c {
                '"' | '\'' | '`' => open.push(c),
                '{' => open.push('}'),
                '[' => open.push(']'),
                _ => plain.push(c),
            },
        }
        if !open.is_empty() && !plain.ends_with(' ') {
            plain.push(' ');
        }
    }
    // Binary operators and modifiers, and the aggregations (which may stand before their
    // grouping: `sum by (x) (...)`).
    const KEYWORDS: [&str; 22] = [
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "inf",
        "nan",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_ascii_digit() || c == '.' || c == '$' {
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_.".contains(chars[i])) {
                i += 1;
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            i += 1;
            continue;
        }
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut next = i;
        while next < chars.len() && chars[next].is_whitespace() {
            next += 1;
        }
        let called = chars.get(next) == Some(&'(');
        if GROUPING.contains(&word.as_str()) {
            if called {
                // Skip the label list.
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
            }
            continue;
        }
        if called || KEYWORDS.contains(&word.to_lowercase().as_str()) {
            continue;
        }
        names.insert(word);
    }
    names
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = |expr: &str| metric_names(expr).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum without (result) (max without (instance, pod) (rate(a_total{result="x, y}"}[15m]))) / sum by(source) (b_total offset 1d) > 0.5 and on() c_seconds"#
        ),
        ["a_total", "b_total", "c_seconds"]
    );
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le) (rate(lat_bucket{job=~"$job"}[$__rate_interval])))"#
        ),
        ["lat_bucket"]
    );
    assert_eq!(names("time() - max(x) > 30 * 60"), ["x"]);
    assert_eq!(names("up{job=~\".*inbox.*\"} == 0"), ["up"]);
}

/// A delivery shaped like Meta's: one text message and one status update.
fn meta_delivery() -> Vec<u8> {
    json!({
      "object": "whatsapp_business_account",
      "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "messages": [{"from": "16505551234", "id": "wamid.ops1", "timestamp": "1736935200",
                      "type": "text", "text": {"body": "hello"}}],
        "statuses": [{"id": "wamid.out1", "status": "delivered", "timestamp": "1736935201",
                      "recipient_id": "16505551234"}]
      }}]}]
    })
    .to_string()
    .into_bytes()
}

fn meta_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn post_meta(app: &App, body: &[u8], signature: &str) -> crate::support::Resp {
    app.send(
        &Req::new("POST", "/webhook/whatsapp")
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", signature)
            .body(body),
    )
}
