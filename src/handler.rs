//! One request, start to finish: route, answer, count, log. Free of Spin types: the
//! component's edge supplies a [`Runtime`] and a [`Request`], native tests supply fakes.
//!
//! This file routes a request and does what every request shares (its context, access
//! checks, the answer's headers, and the counting and logging after the answer). What each
//! endpoint does is in a submodule: `webhook` (`POST /webhook`, and the reading and refusing
//! every delivery route shares), `sources` (Meta's WhatsApp and Twilio routes), `reads`
//! (messages, export, stats, metrics, rejections), `feed` (the pull feed and its consumers),
//! `admin` (purges and erasure) and `ready`
//! (readiness). The imports here serve them too (`use super::*`).

use crate::auth::{self, Access};
use crate::config::{self, TokenPair};
use crate::console;
use crate::domain::NewMessage;
use crate::logline::{self, InvalidMessage, Level, LogLine, MessageCounts};
use crate::metrics::{self, MessageResult, Removed, WebhookResult};
use crate::problem;
use crate::query::{self, Cursor, MessageQuery};
use crate::rejections::{Body, Reason, Rejected};
use crate::responses;
use crate::routes::{self, Endpoint, Route};
use crate::sources::webhook::payload;
use crate::sources::webhook::signature::{self, Presented};
use crate::sources::webhook::standard_webhooks;
use crate::sources::{Ignored, RejectedElement, Source};
use crate::storage::{
    Database, Inserted, Removal, Session, StorageError, StoredMessage, EXPORT_PAGE_ROWS,
    SCHEMA_VERSION,
};
use crate::timestamp;
use http::{Method, StatusCode};
use std::time::{Instant, SystemTime};

mod admin;
mod feed;
mod reads;
mod ready;
mod sources;
mod webhook;

use admin::{admin, admin_refusal, retention_batch};
use reads::{
    export, guarded, hourly, list, one_message, rejection_log, rejection_log_size, scrape, stats,
    READ,
};
use ready::ready;
use sources::{twilio_delivery, whatsapp_delivery, whatsapp_handshake};
use webhook::webhook;

/// What the component needs from its host.
pub trait Runtime {
    /// A variable's value; `Ok(None)` when it is not defined.
    fn variable(&self, name: &str) -> Result<Option<String>, String>;
    /// A new connection to the `default` database.
    fn open_database(&self) -> Result<Box<dyn Database>, StorageError>;
    /// Writes one complete log line (it ends with a newline).
    fn log(&self, line: &str);
}

/// Reading the request body, stopping as soon as it exceeds a limit.
pub trait RequestBody {
    fn read_to_limit(self: Box<Self>, limit: usize) -> Result<Vec<u8>, BodyError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    Io(String),
}

pub struct Request {
    pub method: Method,
    /// Path without the query string.
    pub path: String,
    /// Query string without `?`.
    pub query: String,
    /// Header names in lower case; values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Box<dyn RequestBody>,
}

impl Request {
    /// The header's value when it was sent exactly once.
    fn single_header(&self, name: &str) -> Option<&[u8]> {
        single_header(&self.headers, name)
    }
}

/// `name`'s value among `headers` when it was sent exactly once.
fn single_header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    let mut values = headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice());
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    /// The whole body or, when [`Response::streamed`], its first part.
    pub body: Vec<u8>,
    /// The body goes on: the rest comes from [`AfterResponse::next_chunk`], and the headers
    /// carry no `Content-Length`.
    pub streamed: bool,
}

/// The next part of a streamed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Data(Vec<u8>),
    /// The body is complete.
    End,
    /// The body cannot be completed: the edge must abort it rather than end it, so the
    /// client sees a broken response, never a short one that looks whole.
    Failed,
}

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const TEXT_XML: &str = "text/xml";

/// What the client gets from the endpoint; the handler adds the headers every answer has.
struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: String,
    /// Headers of this endpoint's own (`allow`, `retry-after`, the console's policy).
    headers: Vec<(&'static str, String)>,
}

/// An endpoint's answer, plus what the log line, the metrics and the rejection log need to
/// know about the request.
struct Outcome {
    answer: Answer,
    webhook: Option<WebhookResult>,
    message_id: Option<String>,
    /// Our own failure (storage, configuration) for the log; never request content.
    error: Option<anyhow::Error>,
    /// Why a delivery was refused, for the log (a fixed word).
    reason: Option<&'static str>,
    /// Storage already counted this request's metrics (with the message it stored).
    counted: bool,
    /// A refused delivery, for the rejection log (written after the answer).
    rejected: Option<Rejected>,
    /// Messages this request removed, and why (for the log line and the metrics).
    removed: Option<(Removed, u64)>,
    /// An export whose later pages are still to be sent.
    export: Option<Export>,
    /// A provider's delivery: what it held and what became of it (counted and logged after
    /// the answer).
    delivery: Option<DeliveryReport>,
}

/// What a provider's delivery held, and what became of it: its messages by outcome, those
/// that failed validation (id and problems, never the text), and what was not a message.
#[derive(Debug, Default)]
struct DeliveryReport {
    counts: MessageCounts,
    /// At most [`logline::MAX_LOGGED_INVALID`]; `counts.invalid` counts them all.
    invalid: Vec<InvalidMessage>,
    /// By kind, each kind once, in [`Ignored::ALL`]'s order.
    ignored: Vec<(Ignored, u64)>,
}

impl DeliveryReport {
    fn new(
        created: u64,
        duplicate: u64,
        rejected: &[RejectedElement],
        ignored: &[Ignored],
    ) -> DeliveryReport {
        DeliveryReport {
            counts: MessageCounts {
                created,
                duplicate,
                invalid: rejected.len() as u64,
            },
            invalid: rejected
                .iter()
                .take(logline::MAX_LOGGED_INVALID)
                .map(InvalidMessage::of)
                .collect(),
            ignored: Ignored::ALL
                .into_iter()
                .map(|kind| (kind, ignored.iter().filter(|i| **i == kind).count() as u64))
                .filter(|(_, count)| *count > 0)
                .collect(),
        }
    }

    /// The counters it adds for `source`: duplicate and invalid messages (a created one is
    /// counted by its row) and each kind of ignored item.
    fn increments(&self, source: Source) -> impl Iterator<Item = metrics::Increment> + '_ {
        let messages = [
            (MessageResult::Duplicate, self.counts.duplicate),
            (MessageResult::Invalid, self.counts.invalid),
        ]
        .into_iter()
        .filter_map(move |(result, count)| metrics::messages(source, result, count));
        let ignored = self
            .ignored
            .iter()
            .map(move |(kind, count)| metrics::ignored(source, *kind, *count));
        messages.chain(ignored)
    }
}

/// Where a running export stands: its filters, and the last row it sent.
struct Export {
    query: MessageQuery,
    rows: u64,
    done: bool,
}

impl Export {
    /// Moves past `page`; a page shorter than asked for was the last.
    fn advance(&mut self, page: &[StoredMessage]) {
        self.rows += page.len() as u64;
        self.done = page.len() < self.query.limit as usize;
        if let Some(last) = page.last() {
            self.query.cursor = Some(Cursor {
                ts_key: last.ts_key.clone(),
                message_id: last.message_id.clone(),
            });
        }
    }
}

impl Outcome {
    /// An answer of `content_type`, with nothing yet to log or count.
    fn new(status: StatusCode, content_type: &'static str, body: String) -> Outcome {
        Outcome {
            answer: Answer {
                status,
                content_type,
                body,
                headers: Vec::new(),
            },
            webhook: None,
            message_id: None,
            error: None,
            reason: None,
            counted: false,
            rejected: None,
            removed: None,
            export: None,
            delivery: None,
        }
    }

    fn json(status: StatusCode, body: String) -> Outcome {
        Outcome::new(status, JSON, body)
    }

    /// 422 listing every problem found in the request.
    fn invalid(errors: &[crate::problem::FieldError]) -> Outcome {
        Outcome::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            problem::validation(errors),
        )
    }

    fn detail(status: StatusCode, text: &str) -> Outcome {
        Outcome::json(status, problem::detail(text))
    }

    /// 503 that tells clients when to come back.
    fn unavailable(text: &str, error: anyhow::Error) -> Outcome {
        let mut outcome = Outcome::detail(StatusCode::SERVICE_UNAVAILABLE, text);
        outcome.answer.headers.push(("retry-after", "1".to_owned()));
        outcome.error = Some(error);
        outcome
    }

    fn webhook(mut self, result: WebhookResult) -> Outcome {
        self.webhook = Some(result);
        self
    }

    /// Marks a refused delivery for the rejection log; `detail` also goes to the log line.
    fn rejected(mut self, reason: Reason, detail: &'static str, body: Body) -> Outcome {
        self.reason = Some(detail);
        self.rejected = Some(Rejected::new(reason, detail, body));
        self
    }

    /// Keeps `error` for the log line unless an earlier one is already kept.
    fn note(&mut self, error: anyhow::Error) {
        self.error.get_or_insert(error);
    }

    /// Gives a refused delivery's log entry the body that was read.
    fn with_body(mut self, body: Vec<u8>) -> Outcome {
        if let Some(rejected) = &mut self.rejected {
            rejected.body = Body::Read(body);
        }
        self
    }
}

/// What one request works with: the runtime (for variables and the log) and its storage
/// session (one connection, opened on first use).
struct Context<'a> {
    runtime: &'a dyn Runtime,
    storage: Session<'a>,
    /// When the request started, on the wall clock (the storage's clock too).
    started: SystemTime,
}

impl<'a> Context<'a> {
    fn new(runtime: &'a dyn Runtime) -> Context<'a> {
        Context {
            runtime,
            storage: Session::new(move || runtime.open_database()),
            started: SystemTime::now(),
        }
    }

    fn variable(&self, name: &str) -> Option<String> {
        // A provider failure reads as "not set": every caller then fails closed.
        self.runtime.variable(name).ok().flatten()
    }
}

/// A request's answer, plus the bookkeeping that can wait until the answer is on its way.
pub struct Handled<'a> {
    pub response: Response,
    pub after: AfterResponse<'a>,
}

/// Counting and logging a request, done after the response is sent. Every Spin request has
/// its own SQLite connection, and closing the last open one checkpoints the WAL with two
/// fsyncs; doing that (and the request's metrics write) after the answer keeps it off the
/// client's latency, and overlapping requests skip the checkpoint altogether.
pub struct AfterResponse<'a> {
    context: Context<'a>,
    outcome: Outcome,
    route: Route,
    latency_ms: f64,
    request_id: String,
    method: Method,
    path: String,
}

/// Handles one request. Never panics on input and never fails: every error becomes a
/// deliberate answer. Anything that must be durable before the answer (a stored message,
/// which also stands for its `created` count) is committed before this returns.
pub fn handle(runtime: &dyn Runtime, request: Request) -> Handled<'_> {
    let started = Instant::now();
    let mut context = Context::new(runtime);
    let request_id = request
        .single_header("x-request-id")
        .and_then(logline::accept_request_id)
        .map_or_else(|| logline::new_request_id(random_bytes()), str::to_owned);
    let route = routes::resolve(&request.method, &request.path);
    let method = request.method.clone();
    let path = request.path.clone();

    let mut outcome = answer(&mut context, route, request);
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;

    let body = std::mem::take(&mut outcome.answer.body).into_bytes();
    let streamed = outcome.export.as_ref().is_some_and(|export| !export.done);
    let headers = answer_headers(&mut outcome, route, &body, streamed, &request_id);
    Handled {
        response: Response {
            status: outcome.answer.status,
            headers,
            body,
            streamed,
        },
        after: AfterResponse {
            context,
            outcome,
            route,
            latency_ms,
            request_id,
            method,
            path,
        },
    }
}

/// The endpoint's answer (or the 404 / 405 when there is none).
fn answer(context: &mut Context, route: Route, request: Request) -> Outcome {
    match route {
        Route::NotFound => Outcome::detail(StatusCode::NOT_FOUND, "not found"),
        Route::WrongMethod(endpoint) => {
            let mut outcome = Outcome::detail(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            outcome.answer.headers.push(("allow", endpoint.allow()));
            outcome
        }
        Route::Found(Endpoint::Live) => Outcome::json(StatusCode::OK, responses::status("ok")),
        Route::Found(Endpoint::Ready) => ready(context),
        Route::Found(Endpoint::Webhook) => webhook(context, request),
        Route::Found(Endpoint::WhatsAppVerify) => whatsapp_handshake(context, &request.query),
        Route::Found(Endpoint::WhatsApp) => whatsapp_delivery(context, request),
        Route::Found(Endpoint::Twilio) => twilio_delivery(context, request),
        Route::Found(Endpoint::Console) => {
            let page = console::page();
            let mut outcome = Outcome::new(StatusCode::OK, console::CONTENT_TYPE, page.body);
            outcome.answer.headers = page.headers;
            outcome
        }
        Route::Found(Endpoint::Metrics) => {
            guarded(context, &request, config::METRICS_TOKENS, scrape)
        }
        Route::Found(
            endpoint @ (Endpoint::Purge | Endpoint::EraseSender | Endpoint::EraseMessage),
        ) => {
            let authorization = request.single_header("authorization");
            admin_refusal(context, authorization)
                .unwrap_or_else(|| admin(context, endpoint, &request))
        }
        // Everything else serves stored data behind the read token.
        Route::Found(Endpoint::Messages) => {
            guarded(context, &request, READ, |c| list(c, &request.query))
        }
        Route::Found(Endpoint::Message) => {
            guarded(context, &request, READ, |c| one_message(c, &request.path))
        }
        Route::Found(Endpoint::Export) => {
            guarded(context, &request, READ, |c| export(c, &request.query))
        }
        Route::Found(Endpoint::Stats) => guarded(context, &request, READ, stats),
        Route::Found(Endpoint::Hourly) => {
            guarded(context, &request, READ, |c| hourly(c, &request.query))
        }
        Route::Found(Endpoint::Rejections) => guarded(context, &request, READ, |c| {
            rejection_log(c, &request.query)
        }),
        Route::Found(Endpoint::Feed) => {
            guarded(context, &request, READ, |c| feed::feed(c, &request.query))
        }
        Route::Found(Endpoint::FeedCommit) => {
            let authorization = request.single_header("authorization");
            match refusal(context, authorization, READ) {
                Some(refused) => refused,
                None => feed::commit(context, request),
            }
        }
        Route::Found(Endpoint::FeedConsumers) => guarded(context, &request, READ, feed::consumers),
        Route::Found(Endpoint::ForgetConsumer) => {
            let authorization = request.single_header("authorization");
            admin_refusal(context, authorization)
                .unwrap_or_else(|| feed::forget(context, &request.path))
        }
    }
}
/// The answer's headers: type and length (unless streamed), the ones every answer carries,
/// the outcome's own, and the request id.
fn answer_headers(
    outcome: &mut Outcome,
    route: Route,
    body: &[u8],
    streamed: bool,
    request_id: &str,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![("content-type", outcome.answer.content_type.to_owned())];
    if !streamed {
        headers.push(("content-length", body.len().to_string()));
    }
    // No answer is to be taken for anything but its declared type.
    headers.push(("x-content-type-options", "nosniff".to_owned()));
    if matches!(route, Route::Found(endpoint) if endpoint.serves_data()) {
        // Phone numbers and message text must not sit in shared or browser caches.
        headers.push(("cache-control", "no-store".to_owned()));
    }
    headers.append(&mut outcome.answer.headers);
    headers.push(("x-request-id", request_id.to_owned()));
    headers
}

impl AfterResponse<'_> {
    /// The next part of a streamed body ([`Response::streamed`]): the export's next page,
    /// read now, so the instance holds one page at a time whatever the export's size.
    pub fn next_chunk(&mut self) -> Chunk {
        let Some(export) = self.outcome.export.as_mut().filter(|e| !e.done) else {
            return Chunk::End;
        };
        match self.context.storage.export_page(&export.query) {
            Ok(page) => {
                export.advance(&page);
                if page.is_empty() {
                    Chunk::End
                } else {
                    Chunk::Data(responses::ndjson(&page))
                }
            }
            Err(err) => {
                export.done = true;
                let rows = export.rows;
                let error = anyhow::Error::new(err).context("storage");
                self.outcome.error =
                    Some(error.context(format!("export stopped after {rows} rows")));
                Chunk::Failed
            }
        }
    }

    /// Leaves storage its upkeep ([`Session::after_answer`]: fold, retention, search index),
    /// records the request's metrics (unless the row that stored its message counts them)
    /// with its rejection log entry if it was refused, and writes its log line; then the
    /// connection closes.
    pub fn complete(self) {
        let AfterResponse {
            mut context,
            mut outcome,
            route,
            latency_ms,
            request_id,
            method,
            path,
        } = self;
        let (runtime, started) = (context.runtime, context.started);
        let mut lifecycle_problem = None;
        let upkeep = context.storage.after_answer(|| {
            retention_batch(runtime, started)
                .map_err(|problem| lifecycle_problem = Some(problem))
                .ok()
        });
        if let Some(problem) = lifecycle_problem {
            outcome.note(anyhow::Error::msg(problem));
        }
        if let Some(purged) = upkeep.purged {
            outcome.removed = Some((Removed::Retention, purged));
        }
        for (step, err) in upkeep.failures {
            outcome.note(anyhow::Error::new(err).context(step));
        }
        // The delivery routes' source: their counters, rejection and log line carry it.
        let source = match route {
            Route::Found(endpoint) | Route::WrongMethod(endpoint) => endpoint.source(),
            Route::NotFound => None,
        };
        let delivery_source = source.unwrap_or(Source::Webhook);
        let mut increments = if outcome.counted {
            // Counted by the row that stored the message.
            Vec::new()
        } else {
            let status = outcome.answer.status.as_u16();
            let webhook = outcome.webhook.map(|result| (delivery_source, result));
            metrics::request_increments(route.label(), status, latency_ms, webhook)
        };
        if let Some(report) = &outcome.delivery {
            increments.extend(report.increments(delivery_source));
        }
        if let Some((cause, count)) = outcome.removed.filter(|(_, n)| *n > 0) {
            increments.push(metrics::removed(cause, count));
        }
        let recorded = if let Some(rejected) = outcome.rejected.take() {
            increments.push(metrics::rejected_from(delivery_source, rejected.reason));
            let keep = rejection_log_size(&context, &mut outcome);
            let at = timestamp::format_utc(context.started);
            let status = outcome.answer.status.as_u16();
            let entry = rejected.entry(at, route.label(), status, &request_id);
            context.storage.record_rejection(&entry, keep, &increments)
        } else {
            context.storage.record(&increments)
        };
        if let Err(err) = recorded {
            outcome.note(anyhow::Error::new(err).context("metrics not recorded"));
        }

        let server_error = outcome.answer.status.is_server_error();
        // A delivery answered 200 with messages that failed validation: the sender gets
        // its 200 (a provider would retry the whole batch), the operator a warning.
        let invalid = outcome.answer.status == StatusCode::OK
            && outcome
                .delivery
                .as_ref()
                .is_some_and(|report| report.counts.invalid > 0);
        let level = match (server_error, &outcome.error) {
            (true, _) if outcome.webhook == Some(WebhookResult::NotConfigured) => Level::Warn,
            (true, _) => Level::Error,
            (false, Some(_)) => Level::Warn,
            (false, None) if invalid => Level::Warn,
            (false, None) => Level::Info,
        };
        let min_level = config::log_level(context.variable(config::LOG_LEVEL).as_deref());
        if level >= min_level {
            // The error with its context chain: "metrics not recorded: database is locked".
            let error = outcome.error.as_ref().map(|e| format!("{e:#}"));
            let report = outcome.delivery.as_ref();
            let ignored = report
                .filter(|report| !report.ignored.is_empty())
                .map(|report| {
                    report
                        .ignored
                        .iter()
                        .map(|(kind, count)| (kind.as_str(), *count))
                        .collect()
                });
            let line = LogLine {
                ts: timestamp::format_utc(SystemTime::now()),
                level,
                request_id: &request_id,
                method: logline::clip(method.as_str(), 32),
                path: logline::clip(&path, 512),
                status: outcome.answer.status.as_u16(),
                latency_ms: (latency_ms * 1000.0).round() / 1000.0,
                source: source.map(Source::as_str),
                message_id: outcome.message_id.as_deref(),
                dup: outcome.webhook.map(|r| r == WebhookResult::Duplicate),
                result: outcome.webhook.map(WebhookResult::as_str),
                reason: outcome.reason,
                messages: report.map(|report| report.counts),
                ignored,
                invalid: report
                    .map(|report| report.invalid.as_slice())
                    .filter(|invalid| !invalid.is_empty()),
                removed: outcome.removed.map(|(_, n)| n),
                error: error.as_deref(),
                busy: context.storage.busy_waits(),
            };
            context.runtime.log(&line.to_line());
        }
    }
}

fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    // Without randomness the id is still unique enough for correlating one log line.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = nanos.to_le_bytes();
    }
    bytes
}

fn storage_unavailable(err: StorageError) -> Outcome {
    Outcome::unavailable(
        "storage unavailable, retry later",
        anyhow::Error::new(err).context("storage"),
    )
}

/// The answer that refuses a request without the bearer token `tokens` configure, or
/// `None` when it may proceed (no token configured, or one of the pair presented). A token
/// the variables provider cannot read is a 503, never an open door.
fn refusal(context: &Context, authorization: Option<&[u8]>, tokens: TokenPair) -> Option<Outcome> {
    let read = |name: &str| {
        context
            .runtime
            .variable(name)
            .map(Option::unwrap_or_default)
            .map_err(|err| anyhow::anyhow!("{name}: {err}"))
    };
    let access = read(tokens.current)
        .and_then(|current| auth::access(authorization, &current, || read(tokens.previous)));
    match access {
        Ok(Access::Open | Access::Granted) => None,
        Ok(Access::Denied) => {
            let mut outcome = Outcome::detail(StatusCode::UNAUTHORIZED, "not authenticated");
            outcome
                .answer
                .headers
                .push(("www-authenticate", "Bearer".to_owned()));
            Some(outcome)
        }
        Err(error) => Some(Outcome::unavailable("configuration unavailable", error)),
    }
}

/// 503 for a configuration value we cannot use: senders retry while the operator fixes it.
/// The caller attaches the body to its rejection log entry if it has read it.
fn invalid_configuration(problem: String) -> Outcome {
    Outcome::unavailable("invalid configuration", anyhow::Error::msg(problem))
        .webhook(WebhookResult::NotConfigured)
        .rejected(Reason::NotConfigured, "invalid_configuration", Body::Unread)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
