//! Prometheus metrics: which counters a request bumps, and the text exposition format.
//!
//! Counters live in SQLite (instances do not outlive a request), as rows of
//! `(name, labels, value)`. Histogram buckets are stored per bucket (not cumulative) so that
//! a request touches exactly one bucket row; rendering accumulates them.

use crate::rejections::Reason;
use crate::sources::Source;
use std::fmt::Write;

/// Upper bounds (ms) of the latency histogram buckets; `+Inf` is implicit.
pub const LATENCY_BUCKETS_MS: [f64; 12] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const WEBHOOK_REQUESTS: &str = "webhook_requests_total";
/// Provider messages by outcome (a `/webhook` request is one message: see
/// [`WEBHOOK_REQUESTS`]).
pub const WEBHOOK_MESSAGES: &str = "webhook_messages_total";
pub const LATENCY_BUCKET: &str = "request_latency_ms_bucket";
pub const LATENCY_SUM: &str = "request_latency_ms_sum";
pub const REJECTIONS: &str = "webhook_rejections_total";
pub const REMOVED: &str = "messages_removed_total";

/// Why stored messages were removed: the `cause` label of [`REMOVED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// Purged by `retention_days`.
    Retention,
    /// Erased through an admin route.
    Erasure,
}

impl Removed {
    const ALL: [Removed; 2] = [Removed::Retention, Removed::Erasure];

    fn labels(self) -> String {
        let cause = match self {
            Removed::Retention => "retention",
            Removed::Erasure => "erasure",
        };
        format!("cause=\"{cause}\"")
    }
}

/// `count` messages removed for `cause`.
pub fn removed(cause: Removed, count: u64) -> Increment {
    Increment {
        name: REMOVED,
        labels: cause.labels(),
        delta: Delta::Count(i64::try_from(count).unwrap_or(i64::MAX)),
    }
}

/// Outcome of a `POST /webhook`, the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResult {
    Created,
    Duplicate,
    InvalidSignature,
    ValidationError,
    PayloadTooLarge,
    NotConfigured,
    StorageError,
}

impl WebhookResult {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookResult::Created => "created",
            WebhookResult::Duplicate => "duplicate",
            WebhookResult::InvalidSignature => "invalid_signature",
            WebhookResult::ValidationError => "validation_error",
            WebhookResult::PayloadTooLarge => "payload_too_large",
            WebhookResult::NotConfigured => "not_configured",
            WebhookResult::StorageError => "storage_error",
        }
    }

    /// `created` is counted from the stored rows (see `storage::counters`), so it always
    /// equals the messages stored; the request adds the rest.
    pub fn counted_by_storage(self) -> bool {
        self == WebhookResult::Created
    }

    /// The labels of this result's `webhook_requests_total` series, for `source`.
    pub fn labels(self, source: Source) -> String {
        format!(
            "source=\"{}\",result=\"{}\"",
            source.as_str(),
            self.as_str()
        )
    }
}

/// The `created` series a stored row stands for, by the source that stored it: a `/webhook`
/// row is its request (`webhook_requests_total`, which the row also counts in
/// `http_requests_total` and the latency histogram, see `storage::counters`); a provider's
/// row is one message of its delivery (`webhook_messages_total`; the delivery's request
/// records its own counters).
pub fn stored_row_series(source: Source) -> String {
    match source {
        Source::Webhook => series_key(WEBHOOK_REQUESTS, &WebhookResult::Created.labels(source)),
        _ => series_key(WEBHOOK_MESSAGES, &WebhookResult::Created.labels(source)),
    }
}

/// One counter row to add to.
#[derive(Debug, Clone, PartialEq)]
pub struct Increment {
    pub name: &'static str,
    pub labels: String,
    pub delta: Delta,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delta {
    Count(i64),
    Amount(f64),
}

impl Delta {
    pub fn value(self) -> f64 {
        match self {
            Delta::Count(n) => n as f64,
            Delta::Amount(x) => x,
        }
    }

    /// Both added up: a count while both are counts.
    pub fn plus(self, other: Delta) -> Delta {
        match (self, other) {
            (Delta::Count(a), Delta::Count(b)) => Delta::Count(a + b),
            (a, b) => Delta::Amount(a.value() + b.value()),
        }
    }
}

/// What one finished request adds to the counters (a stored message's `created` is already
/// counted, see [`WebhookResult::counted_by_storage`]). `route` is a fixed route label (never
/// the raw path), so a scanner cannot create new series.
pub fn increments(
    route: &'static str,
    status: u16,
    latency_ms: f64,
    webhook: Option<WebhookResult>,
) -> Vec<Increment> {
    let mut out = vec![
        Increment {
            name: HTTP_REQUESTS,
            labels: format!("path=\"{route}\",status=\"{status}\""),
            delta: Delta::Count(1),
        },
        Increment {
            name: LATENCY_BUCKET,
            labels: format!("le=\"{}\"", bucket_label(latency_ms)),
            delta: Delta::Count(1),
        },
        Increment {
            name: LATENCY_SUM,
            labels: String::new(),
            delta: Delta::Amount(latency_ms),
        },
    ];
    if let Some(result) = webhook.filter(|r| !r.counted_by_storage()) {
        out.push(Increment {
            name: WEBHOOK_REQUESTS,
            labels: result.labels(Source::Webhook),
            delta: Delta::Count(1),
        });
    }
    out
}

/// A refused delivery's count by reason (one of a fixed few: the series stay bounded).
pub fn rejected(reason: Reason) -> Increment {
    Increment {
        name: REJECTIONS,
        labels: rejection_labels(reason),
        delta: Delta::Count(1),
    }
}

fn rejection_labels(reason: Reason) -> String {
    format!("reason=\"{}\"", reason.as_str())
}

/// Each latency bucket's upper bound (`None` for `+Inf`) with the labels its row is stored
/// under, in order: what the fold's SQL needs to put a stored request in its bucket.
pub fn latency_buckets() -> Vec<(Option<f64>, String)> {
    LATENCY_BUCKETS_MS
        .iter()
        .map(|bound| (Some(*bound), format!("le=\"{}\"", format_number(*bound))))
        .chain([(None, "le=\"+Inf\"".to_owned())])
        .collect()
}

/// How storage keys one series: its name, a space, its labels (names hold no spaces).
pub fn series_key(name: &str, labels: &str) -> String {
    format!("{name} {labels}")
}

/// A series key back into its name and labels (see [`series_key`]).
pub fn split_series_key(key: &str) -> (&str, &str) {
    key.split_once(' ').unwrap_or((key, ""))
}

fn bucket_label(latency_ms: f64) -> String {
    LATENCY_BUCKETS_MS
        .iter()
        .find(|bound| latency_ms <= **bound)
        .map_or_else(|| "+Inf".to_owned(), |bound| format_number(*bound))
}

/// A stored counter row, as read back for rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterRow {
    pub name: String,
    pub labels: String,
    pub value: f64,
}

/// Renders stored rows as Prometheus text format 0.0.4.
pub fn render(rows: &[CounterRow]) -> String {
    let mut out = String::new();
    stored_series(
        &mut out,
        rows,
        HTTP_REQUESTS,
        "HTTP requests by route and status code.",
    );
    stored_series(
        &mut out,
        rows,
        WEBHOOK_REQUESTS,
        "POST /webhook requests by outcome.",
    );
    // Every reason and cause, from zero: a rate over a series that appears only later misses
    // its start.
    let reasons: Vec<String> = Reason::ALL.into_iter().map(rejection_labels).collect();
    fixed_series(
        &mut out,
        rows,
        REJECTIONS,
        "Refused POST /webhook deliveries by reason (see GET /rejections).",
        &reasons,
    );
    let causes: Vec<String> = Removed::ALL.into_iter().map(Removed::labels).collect();
    fixed_series(
        &mut out,
        rows,
        REMOVED,
        "Stored messages removed, by cause (retention or erasure).",
        &causes,
    );
    latency_histogram(&mut out, rows);
    out
}

/// A counter family with a sample for each stored series, by labels.
fn stored_series(out: &mut String, rows: &[CounterRow], name: &str, help: &str) {
    family(out, name, "counter", help);
    let mut picked: Vec<&CounterRow> = rows.iter().filter(|r| r.name == name).collect();
    picked.sort_by(|a, b| a.labels.cmp(&b.labels));
    for row in picked {
        sample(out, name, &row.labels, row.value);
    }
}

/// A counter family with a sample for each of `labels`, zero when nothing is stored.
fn fixed_series(out: &mut String, rows: &[CounterRow], name: &str, help: &str, labels: &[String]) {
    family(out, name, "counter", help);
    for labels in labels {
        sample(out, name, labels, sum_of(rows, name, labels));
    }
}

fn sum_of(rows: &[CounterRow], name: &str, labels: &str) -> f64 {
    rows.iter()
        .filter(|r| r.name == name && r.labels == labels)
        .map(|r| r.value)
        .sum()
}

/// The latency histogram: stored per bucket, exposed cumulative.
fn latency_histogram(out: &mut String, rows: &[CounterRow]) {
    family(
        out,
        "request_latency_ms",
        "histogram",
        "Time from request start to answer, in milliseconds.",
    );
    let mut cumulative = 0.0;
    for bound in LATENCY_BUCKETS_MS {
        let labels = format!("le=\"{}\"", format_number(bound));
        cumulative += sum_of(rows, LATENCY_BUCKET, &labels);
        sample(out, LATENCY_BUCKET, &labels, cumulative);
    }
    cumulative += sum_of(rows, LATENCY_BUCKET, "le=\"+Inf\"");
    sample(out, LATENCY_BUCKET, "le=\"+Inf\"", cumulative);
    let sum = rows
        .iter()
        .filter(|r| r.name == LATENCY_SUM)
        .map(|r| r.value)
        .sum();
    sample(out, LATENCY_SUM, "", sum);
    sample(out, "request_latency_ms_count", "", cumulative);
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: f64) {
    let value = format_number(value);
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Whole numbers without a fraction (`100`, not `100.0`); others as Rust prints them.
fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(increments: &[Increment]) -> Vec<CounterRow> {
        increments
            .iter()
            .map(|i| CounterRow {
                name: i.name.to_owned(),
                labels: i.labels.clone(),
                value: i.delta.value(),
            })
            .collect()
    }

    #[test]
    fn a_request_bumps_its_route_one_bucket_and_the_sum() {
        let inc = increments("/webhook", 200, 3.5, Some(WebhookResult::Duplicate));
        let labels: Vec<_> = inc.iter().map(|i| (i.name, i.labels.as_str())).collect();
        assert_eq!(
            labels,
            [
                (HTTP_REQUESTS, "path=\"/webhook\",status=\"200\""),
                (LATENCY_BUCKET, "le=\"5\""),
                (LATENCY_SUM, ""),
                (WEBHOOK_REQUESTS, "result=\"duplicate\""),
            ]
        );
        let created = increments("/webhook", 200, 3.5, Some(WebhookResult::Created));
        assert!(
            created.iter().all(|i| i.name != WEBHOOK_REQUESTS),
            "created is counted by the storing statement, never twice"
        );
        assert_eq!(increments("/x", 404, 100.0, None)[1].labels, "le=\"100\"");
        assert_eq!(increments("/x", 404, 100.01, None)[1].labels, "le=\"250\"");
        assert_eq!(increments("/x", 404, 9e9, None)[1].labels, "le=\"+Inf\"");
    }

    #[test]
    fn renders_cumulative_histogram_and_counters() {
        let mut all = Vec::new();
        all.extend(rows(&increments(
            "/webhook",
            200,
            0.5,
            Some(WebhookResult::Created),
        )));
        all.extend(rows(&increments(
            "/webhook",
            200,
            120.0,
            Some(WebhookResult::Duplicate),
        )));
        all.extend(rows(&increments("other", 404, 7000.0, None)));
        let text = render(&all);
        assert!(text.contains("# TYPE http_requests_total counter\n"));
        assert!(text.contains("http_requests_total{path=\"/webhook\",status=\"200\"} 1\n"));
        assert!(text.contains("webhook_requests_total{result=\"duplicate\"} 1\n"));
        assert!(text.contains("# TYPE request_latency_ms histogram\n"));
        assert!(text.contains("request_latency_ms_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("request_latency_ms_bucket{le=\"100\"} 1\n"));
        assert!(text.contains("request_latency_ms_bucket{le=\"250\"} 2\n"));
        assert!(text.contains("request_latency_ms_bucket{le=\"500\"} 2\n"));
        assert!(text.contains("request_latency_ms_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("request_latency_ms_sum 7120.5\n"));
        assert!(text.contains("request_latency_ms_count 3\n"));
    }

    #[test]
    fn rejections_are_counted_by_reason() {
        let mut all = rows(&[rejected(Reason::TimestampOutOfTolerance)]);
        all.extend(rows(&[rejected(Reason::TimestampOutOfTolerance)]));
        let text = render(&all);
        assert!(text.contains("# TYPE webhook_rejections_total counter\n"));
        assert!(
            text.contains("webhook_rejections_total{reason=\"timestamp_out_of_tolerance\"} 2\n")
        );
        assert!(text.contains("webhook_rejections_total{reason=\"invalid_signature\"} 0\n"));
    }

    #[test]
    fn empty_store_still_renders_every_family() {
        let text = render(&[]);
        for family in [
            "http_requests_total",
            "webhook_requests_total",
            "request_latency_ms",
        ] {
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        }
        assert!(text.contains("request_latency_ms_count 0\n"));
        for reason in Reason::ALL {
            let series = format!(
                "webhook_rejections_total{{reason=\"{}\"}} 0\n",
                reason.as_str()
            );
            assert!(text.contains(&series), "{series}");
        }
    }
}
