//! Prometheus metrics: which counters a request bumps, and the text exposition format.
//!
//! Counters live in SQLite (instances do not outlive a request), as rows of
//! `(name, labels, value)`. Histogram buckets are stored per bucket (not cumulative) so that
//! a request touches exactly one bucket row; rendering accumulates them.

use crate::rejections::Reason;
use crate::sources::{Ignored, Source};
use std::fmt::Write;

/// Upper bounds (ms) of the latency histogram buckets; `+Inf` is implicit.
pub const LATENCY_BUCKETS_MS: [f64; 12] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];

pub const HTTP_REQUESTS: &str = "http_requests_total";
/// Deliveries by source and outcome: one per request to a delivery route.
pub const WEBHOOK_REQUESTS: &str = "webhook_requests_total";
/// Provider messages by outcome (a `/webhook` request is one message: see
/// [`WEBHOOK_REQUESTS`]).
pub const WEBHOOK_MESSAGES: &str = "webhook_messages_total";
/// What provider deliveries held that is not a message, by source and kind.
pub const WEBHOOK_IGNORED: &str = "webhook_ignored_total";
pub const LATENCY_BUCKET: &str = "request_latency_ms_bucket";
pub const LATENCY_SUM: &str = "request_latency_ms_sum";
pub const REJECTIONS: &str = "webhook_rejections_total";
pub const REMOVED: &str = "messages_removed_total";
/// A gauge: stored messages after a feed consumer's committed offset (`consumer` label), one
/// series per consumer, so at most `feed_max_consumers`.
pub const FEED_LAG: &str = "webhook_feed_lag";
/// Gauges of freshness and size, read from what storage already keeps (no scan).
pub const LAST_RECEIVED: &str = "webhook_last_received_timestamp_seconds";
pub const LAST_MESSAGE_TS: &str = "webhook_last_message_ts_seconds";
pub const MESSAGES_STORED: &str = "webhook_messages_stored";

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

/// Outcome of a delivery (`POST /webhook`, `/webhook/whatsapp`, `/webhook/twilio`), the
/// `result` label of [`WEBHOOK_REQUESTS`]. A provider's delivery that got its 200 is
/// `created` when it stored a new message, else `duplicate` when it held only messages
/// already stored (and perhaps invalid ones), else `ignored`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResult {
    Created,
    Duplicate,
    /// A provider's delivery with nothing to store: statuses, other fields, or only
    /// messages that failed validation (each counted in [`WEBHOOK_MESSAGES`] or
    /// [`WEBHOOK_IGNORED`]).
    Ignored,
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
            WebhookResult::Ignored => "ignored",
            WebhookResult::InvalidSignature => "invalid_signature",
            WebhookResult::ValidationError => "validation_error",
            WebhookResult::PayloadTooLarge => "payload_too_large",
            WebhookResult::NotConfigured => "not_configured",
            WebhookResult::StorageError => "storage_error",
        }
    }

    /// `created` of `/webhook` is counted from the stored rows (see `storage::counters`),
    /// so it always equals the messages stored; the request adds the rest. A provider's
    /// request counts all of its own (its rows count messages, not requests).
    pub fn counted_by_storage(self, source: Source) -> bool {
        self == WebhookResult::Created && source == Source::Webhook
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
        _ => series_key(WEBHOOK_MESSAGES, &MessageResult::Created.labels(source)),
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

/// What one finished request adds to the counters, for `/webhook` and every request that
/// is not a provider's delivery: [`request_increments`] with [`Source::Webhook`].
pub fn increments(
    route: &'static str,
    status: u16,
    latency_ms: f64,
    webhook: Option<WebhookResult>,
) -> Vec<Increment> {
    request_increments(
        route,
        status,
        latency_ms,
        webhook.map(|result| (Source::Webhook, result)),
    )
}

/// What one finished request adds to the counters: its route and status, its latency, and
/// for a delivery its outcome by source (except what storage counts, see
/// [`WebhookResult::counted_by_storage`]). `route` is a fixed route label (never the raw
/// path), so a scanner cannot create new series.
pub fn request_increments(
    route: &'static str,
    status: u16,
    latency_ms: f64,
    webhook: Option<(Source, WebhookResult)>,
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
    if let Some((source, result)) = webhook.filter(|(s, r)| !r.counted_by_storage(*s)) {
        out.push(Increment {
            name: WEBHOOK_REQUESTS,
            labels: result.labels(source),
            delta: Delta::Count(1),
        });
    }
    out
}

/// What became of one message of a provider's delivery: the `result` label of
/// [`WEBHOOK_MESSAGES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageResult {
    /// Stored: counted from the stored row ([`stored_row_series`]), never by the request.
    Created,
    /// Already stored (or removed and still tombstoned), or repeated in its delivery.
    Duplicate,
    /// Failed validation: not stored, and logged with its id and reason.
    Invalid,
}

impl MessageResult {
    const ALL: [MessageResult; 3] = [
        MessageResult::Created,
        MessageResult::Duplicate,
        MessageResult::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageResult::Created => "created",
            MessageResult::Duplicate => "duplicate",
            MessageResult::Invalid => "invalid",
        }
    }

    fn labels(self, source: Source) -> String {
        format!(
            "source=\"{}\",result=\"{}\"",
            source.as_str(),
            self.as_str()
        )
    }
}

/// The sources whose messages and ignored items are counted apart from their requests.
const PROVIDERS: [Source; 2] = [Source::WhatsApp, Source::Twilio];

/// `count` messages of a provider's delivery that ended as `result` (`created` is counted
/// by the stored rows: `None` for it, so it is never counted twice).
pub fn messages(source: Source, result: MessageResult, count: u64) -> Option<Increment> {
    (result != MessageResult::Created && count > 0).then(|| Increment {
        name: WEBHOOK_MESSAGES,
        labels: result.labels(source),
        delta: Delta::Count(i64::try_from(count).unwrap_or(i64::MAX)),
    })
}

/// `count` items of `kind` a provider's delivery held that are not messages.
pub fn ignored(source: Source, kind: Ignored, count: u64) -> Increment {
    Increment {
        name: WEBHOOK_IGNORED,
        labels: ignored_labels(source, kind),
        delta: Delta::Count(i64::try_from(count).unwrap_or(i64::MAX)),
    }
}

fn ignored_labels(source: Source, kind: Ignored) -> String {
    format!("source=\"{}\",kind=\"{}\"", source.as_str(), kind.as_str())
}

/// A refused `/webhook` delivery's count by reason: [`rejected_from`] [`Source::Webhook`].
pub fn rejected(reason: Reason) -> Increment {
    rejected_from(Source::Webhook, reason)
}

/// A refused delivery's count by source and reason (a fixed few each: the series stay
/// bounded).
pub fn rejected_from(source: Source, reason: Reason) -> Increment {
    Increment {
        name: REJECTIONS,
        labels: rejection_labels(source, reason),
        delta: Delta::Count(1),
    }
}

fn rejection_labels(source: Source, reason: Reason) -> String {
    format!(
        "source=\"{}\",reason=\"{}\"",
        source.as_str(),
        reason.as_str()
    )
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
        "Deliveries (POST /webhook, /webhook/whatsapp, /webhook/twilio) by source and \
         outcome; a provider's delivery counts once, however many messages it holds.",
    );
    // Every source and reason, kind or result, from zero: a rate over a series that appears
    // only later misses its start. Each is a fixed few, so the series stay bounded.
    let results: Vec<String> = PROVIDERS
        .into_iter()
        .flat_map(|source| MessageResult::ALL.map(|result| result.labels(source)))
        .collect();
    fixed_series(
        &mut out,
        rows,
        WEBHOOK_MESSAGES,
        "Messages in WhatsApp and Twilio deliveries by source and outcome: created (stored), \
         duplicate (already stored, nothing changed), invalid (failed validation, not stored).",
        &results,
    );
    let kinds: Vec<String> = PROVIDERS
        .into_iter()
        .flat_map(|source| Ignored::ALL.map(|kind| ignored_labels(source, kind)))
        .collect();
    fixed_series(
        &mut out,
        rows,
        WEBHOOK_IGNORED,
        "What WhatsApp and Twilio deliveries held that is not a message (status updates, \
         other fields, other objects, nothing at all), by source and kind; none is stored.",
        &kinds,
    );
    let reasons: Vec<String> = Source::ALL
        .into_iter()
        .flat_map(|source| Reason::ALL.map(|reason| rejection_labels(source, reason)))
        .collect();
    fixed_series(
        &mut out,
        rows,
        REJECTIONS,
        "Refused deliveries by source and reason (see GET /rejections).",
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
    family(
        &mut out,
        FEED_LAG,
        "gauge",
        "Stored messages after each feed consumer's committed offset (GET /feed).",
    );
    let mut lags: Vec<&CounterRow> = rows.iter().filter(|r| r.name == FEED_LAG).collect();
    lags.sort_by(|a, b| a.labels.cmp(&b.labels));
    for row in lags {
        sample(&mut out, FEED_LAG, &row.labels, row.value);
    }
    gauge(
        &mut out,
        rows,
        MESSAGES_STORED,
        "Messages stored now (GET /stats' total_messages); goes down on purges and erasures.",
    );
    gauge(
        &mut out,
        rows,
        LAST_RECEIVED,
        "When the newest message was received and stored, in Unix seconds by the \
         component's clock; absent until one is.",
    );
    gauge(
        &mut out,
        rows,
        LAST_MESSAGE_TS,
        "The newest stored message's own ts, in Unix seconds; absent while none is stored.",
    );
    out
}

/// A gauge family without labels: its header always, its sample only when storage has one.
fn gauge(out: &mut String, rows: &[CounterRow], name: &str, help: &str) {
    family(out, name, "gauge", help);
    if let Some(row) = rows.iter().find(|r| r.name == name && r.labels.is_empty()) {
        sample(out, name, "", row.value);
    }
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
                (WEBHOOK_REQUESTS, "source=\"webhook\",result=\"duplicate\""),
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
    fn a_providers_request_counts_all_of_its_own_outcomes() {
        // Its rows count messages, not the request: created is the request's to count.
        for (source, result) in [
            (Source::WhatsApp, WebhookResult::Created),
            (Source::Twilio, WebhookResult::Created),
            (Source::WhatsApp, WebhookResult::Ignored),
            (Source::Twilio, WebhookResult::InvalidSignature),
        ] {
            let inc = request_increments("/webhook/x", 200, 1.0, Some((source, result)));
            let counted: Vec<_> = inc
                .iter()
                .filter(|i| i.name == WEBHOOK_REQUESTS)
                .map(|i| i.labels.as_str())
                .collect();
            assert_eq!(counted, [result.labels(source).as_str()]);
        }
        assert_eq!(
            WebhookResult::Ignored.labels(Source::WhatsApp),
            "source=\"whatsapp\",result=\"ignored\""
        );
        // Messages: created never by the request; the others by their count.
        assert_eq!(messages(Source::WhatsApp, MessageResult::Created, 3), None);
        assert_eq!(messages(Source::WhatsApp, MessageResult::Invalid, 0), None);
        let duplicate = messages(Source::Twilio, MessageResult::Duplicate, 2).unwrap();
        assert_eq!(
            (duplicate.name, duplicate.labels.as_str(), duplicate.delta),
            (
                WEBHOOK_MESSAGES,
                "source=\"twilio\",result=\"duplicate\"",
                Delta::Count(2)
            )
        );
        let status = ignored(Source::WhatsApp, Ignored::Status, 4);
        assert_eq!(
            (status.name, status.labels.as_str(), status.delta),
            (
                WEBHOOK_IGNORED,
                "source=\"whatsapp\",kind=\"status\"",
                Delta::Count(4)
            )
        );
        // What a provider's stored row counts is the created series rendered here.
        assert_eq!(
            stored_row_series(Source::WhatsApp),
            series_key(
                WEBHOOK_MESSAGES,
                &MessageResult::Created.labels(Source::WhatsApp)
            )
        );
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
        assert!(
            text.contains("webhook_requests_total{source=\"webhook\",result=\"duplicate\"} 1\n")
        );
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
    fn rejections_are_counted_by_source_and_reason() {
        let mut all = rows(&[rejected(Reason::TimestampOutOfTolerance)]);
        all.extend(rows(&[rejected(Reason::TimestampOutOfTolerance)]));
        all.extend(rows(&[rejected_from(
            Source::Twilio,
            Reason::InvalidSignature,
        )]));
        let text = render(&all);
        assert!(text.contains("# TYPE webhook_rejections_total counter\n"));
        assert!(text.contains(
            "webhook_rejections_total{source=\"webhook\",reason=\"timestamp_out_of_tolerance\"} 2\n"
        ));
        assert!(text.contains(
            "webhook_rejections_total{source=\"webhook\",reason=\"invalid_signature\"} 0\n"
        ));
        assert!(text.contains(
            "webhook_rejections_total{source=\"twilio\",reason=\"invalid_signature\"} 1\n"
        ));
    }

    #[test]
    fn provider_messages_and_ignored_items_are_rendered_by_source() {
        let mut all = rows(&[
            messages(Source::WhatsApp, MessageResult::Duplicate, 2).unwrap(),
            messages(Source::WhatsApp, MessageResult::Invalid, 1).unwrap(),
            ignored(Source::WhatsApp, Ignored::Status, 3),
            ignored(Source::Twilio, Ignored::Status, 1),
        ]);
        // A stored row's created, as storage reads it back.
        let key = stored_row_series(Source::Twilio);
        let (name, labels) = split_series_key(&key);
        all.push(CounterRow {
            name: name.to_owned(),
            labels: labels.to_owned(),
            value: 5.0,
        });
        let text = render(&all);
        for line in [
            "# TYPE webhook_messages_total counter\n",
            "webhook_messages_total{source=\"whatsapp\",result=\"duplicate\"} 2\n",
            "webhook_messages_total{source=\"whatsapp\",result=\"invalid\"} 1\n",
            "webhook_messages_total{source=\"whatsapp\",result=\"created\"} 0\n",
            "webhook_messages_total{source=\"twilio\",result=\"created\"} 5\n",
            "# TYPE webhook_ignored_total counter\n",
            "webhook_ignored_total{source=\"whatsapp\",kind=\"status\"} 3\n",
            "webhook_ignored_total{source=\"whatsapp\",kind=\"other_field\"} 0\n",
            "webhook_ignored_total{source=\"twilio\",kind=\"status\"} 1\n",
        ] {
            assert!(text.contains(line), "{line}");
        }
        assert!(!text.contains("webhook_messages_total{source=\"webhook\""));
    }

    #[test]
    fn empty_store_still_renders_every_family() {
        let text = render(&[]);
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
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        }
        assert!(text.contains("request_latency_ms_count 0\n"));
        for source in Source::ALL {
            for reason in Reason::ALL {
                let series = format!(
                    "webhook_rejections_total{{source=\"{}\",reason=\"{}\"}} 0\n",
                    source.as_str(),
                    reason.as_str()
                );
                assert!(text.contains(&series), "{series}");
            }
        }
        // Bounded: every fixed family is sources x a fixed set of words.
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples, 6 + 8 + 15 + 2 + 15);
    }

    #[test]
    fn freshness_and_size_are_gauges_present_only_when_known() {
        let gauge_row = |name: &str, value: f64| CounterRow {
            name: name.to_owned(),
            labels: String::new(),
            value,
        };
        // An empty inbox: the stored total is 0, the two instants are unknown.
        let text = render(&[gauge_row(MESSAGES_STORED, 0.0)]);
        for name in [MESSAGES_STORED, LAST_RECEIVED, LAST_MESSAGE_TS] {
            assert!(text.contains(&format!("# TYPE {name} gauge\n")), "{name}");
        }
        assert!(text.contains("\nwebhook_messages_stored 0\n"));
        let samples = |text: &str, name: &str| {
            text.lines()
                .filter(|l| l.split([' ', '{']).next() == Some(name))
                .count()
        };
        assert_eq!(samples(&text, LAST_RECEIVED), 0);
        assert_eq!(samples(&text, LAST_MESSAGE_TS), 0);

        let text = render(&[
            gauge_row(MESSAGES_STORED, 42.0),
            gauge_row(LAST_RECEIVED, 1_736_938_801.25),
            gauge_row(LAST_MESSAGE_TS, 1_736_938_800.0),
        ]);
        assert!(text.contains("\nwebhook_messages_stored 42\n"));
        assert!(text.contains("\nwebhook_last_received_timestamp_seconds 1736938801.25\n"));
        assert!(text.contains("\nwebhook_last_message_ts_seconds 1736938800\n"));
        for name in [MESSAGES_STORED, LAST_RECEIVED, LAST_MESSAGE_TS] {
            assert_eq!(samples(&text, name), 1, "{name}");
        }
    }
}
