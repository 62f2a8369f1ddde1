//! One request, start to finish: route, answer, count, log. Free of Spin types: the
//! component's edge supplies a [`Runtime`] and a [`Request`], native tests supply fakes.

use crate::auth::{self, Access};
use crate::config::{self, TokenPair};
use crate::console;
use crate::domain::NewMessage;
use crate::logline::{self, Level, LogLine};
use crate::metrics::{self, Removed, WebhookResult};
use crate::payload;
use crate::problem;
use crate::query::{self, Cursor, MessageQuery};
use crate::rejections::{Body, Reason, Rejected};
use crate::responses;
use crate::routes::{self, Endpoint, Route};
use crate::signature::{self, Presented};
use crate::standard_webhooks;
use crate::storage::{
    Database, Inserted, Removal, Session, StorageError, StoredMessage, EXPORT_PAGE_ROWS,
    SCHEMA_VERSION,
};
use crate::timestamp;
use std::time::{Instant, SystemTime};

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
    pub method: String,
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
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice());
        match (values.next(), values.next()) {
            (Some(value), None) => Some(value),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
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

/// An answer plus what the log line and metrics need to know about it.
struct Outcome {
    status: u16,
    content_type: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
    webhook: Option<WebhookResult>,
    message_id: Option<String>,
    /// Our own failure (storage, configuration) for the log; never request content.
    error: Option<String>,
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
    fn json(status: u16, body: String) -> Outcome {
        Outcome {
            status,
            content_type: JSON,
            body,
            headers: Vec::new(),
            webhook: None,
            message_id: None,
            error: None,
            reason: None,
            counted: false,
            rejected: None,
            removed: None,
            export: None,
        }
    }

    fn detail(status: u16, text: &str) -> Outcome {
        Outcome::json(status, problem::detail(text))
    }

    /// 503 that tells clients when to come back.
    fn unavailable(text: &str, error: String) -> Outcome {
        let mut outcome = Outcome::detail(503, text);
        outcome.headers.push(("retry-after", "1".to_owned()));
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
    method: String,
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

    let mut outcome = match route {
        Route::NotFound => Outcome::detail(404, "not found"),
        Route::WrongMethod(endpoint) => {
            let mut outcome = Outcome::detail(405, "method not allowed");
            outcome.headers.push(("allow", endpoint.allow()));
            outcome
        }
        Route::Found(Endpoint::Live) => Outcome::json(200, responses::status("ok")),
        Route::Found(Endpoint::Ready) => ready(&mut context),
        Route::Found(Endpoint::Webhook) => webhook(&mut context, request),
        Route::Found(Endpoint::Console) => {
            let page = console::page();
            let mut outcome = Outcome::json(200, page.body);
            outcome.content_type = console::CONTENT_TYPE;
            outcome.headers = page.headers;
            outcome
        }
        Route::Found(Endpoint::Metrics) => {
            guarded(&mut context, &request, config::METRICS_TOKENS, scrape)
        }
        Route::Found(
            endpoint @ (Endpoint::Purge | Endpoint::EraseSender | Endpoint::EraseMessage),
        ) => {
            let authorization = request.single_header("authorization");
            admin_refusal(&context, authorization)
                .unwrap_or_else(|| admin(&mut context, endpoint, &request))
        }
        // Everything else serves stored data behind the read token.
        Route::Found(Endpoint::Messages) => {
            guarded(&mut context, &request, READ, |c| list(c, &request.query))
        }
        Route::Found(Endpoint::Message) => guarded(&mut context, &request, READ, |c| {
            one_message(c, &request.path)
        }),
        Route::Found(Endpoint::Export) => {
            guarded(&mut context, &request, READ, |c| export(c, &request.query))
        }
        Route::Found(Endpoint::Stats) => guarded(&mut context, &request, READ, stats),
        Route::Found(Endpoint::Hourly) => {
            guarded(&mut context, &request, READ, |c| hourly(c, &request.query))
        }
        Route::Found(Endpoint::Rejections) => guarded(&mut context, &request, READ, |c| {
            rejection_log(c, &request.query)
        }),
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;

    let body = std::mem::take(&mut outcome.body).into_bytes();
    let streamed = outcome.export.as_ref().is_some_and(|export| !export.done);
    let mut headers = vec![("content-type", outcome.content_type.to_owned())];
    if !streamed {
        headers.push(("content-length", body.len().to_string()));
    }
    // No answer is to be taken for anything but its declared type.
    headers.push(("x-content-type-options", "nosniff".to_owned()));
    if matches!(route, Route::Found(endpoint) if endpoint.serves_data()) {
        // Phone numbers and message text must not sit in shared or browser caches.
        headers.push(("cache-control", "no-store".to_owned()));
    }
    headers.append(&mut outcome.headers);
    headers.push(("x-request-id", request_id.clone()));
    Handled {
        response: Response {
            status: outcome.status,
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
                self.outcome.error = Some(format!(
                    "export stopped after {} rows: storage: {err}",
                    export.rows
                ));
                Chunk::Failed
            }
        }
    }

    /// Folds `incoming` if this request's message filled a batch, records the request's
    /// metrics (unless the row that stored its message counts them) with its rejection log
    /// entry if it was refused, and writes its log line; then the connection closes.
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
        match context.storage.fold_if_due() {
            // The write lock is free again: the moment for a retention batch, if one is due.
            Ok(true) => purge_after_fold(&mut context, &mut outcome),
            Ok(false) => {}
            // The messages are stored either way; the next batch's write folds them.
            Err(err) => {
                outcome
                    .error
                    .get_or_insert_with(|| format!("fold not run: {err}"));
            }
        }
        if let Err(err) = context.storage.index_if_due() {
            // Searches stay exact without it; the next search or fold tries again.
            outcome
                .error
                .get_or_insert_with(|| format!("search index not updated: {err}"));
        }
        let mut increments = if outcome.counted {
            // Counted by the row that stored the message.
            Vec::new()
        } else {
            metrics::increments(route.label(), outcome.status, latency_ms, outcome.webhook)
        };
        if let Some((cause, count)) = outcome.removed.filter(|(_, n)| *n > 0) {
            increments.push(metrics::removed(cause, count));
        }
        let recorded = if let Some(rejected) = outcome.rejected.take() {
            increments.push(metrics::rejected(rejected.reason));
            let keep = rejection_log_size(&context, &mut outcome);
            let at = timestamp::format_utc(context.started);
            let entry = rejected.entry(at, route.label(), outcome.status, &request_id);
            context.storage.record_rejection(&entry, keep, &increments)
        } else {
            context.storage.record(&increments)
        };
        if let Err(err) = recorded {
            outcome
                .error
                .get_or_insert_with(|| format!("metrics not recorded: {err}"));
        }

        let level = match (outcome.status, &outcome.error) {
            (500.., _) if outcome.webhook == Some(WebhookResult::NotConfigured) => Level::Warn,
            (500.., _) => Level::Error,
            (_, Some(_)) => Level::Warn,
            _ => Level::Info,
        };
        let min_level = config::log_level(context.variable(config::LOG_LEVEL).as_deref());
        if level >= min_level {
            let line = LogLine {
                ts: timestamp::format_utc(SystemTime::now()),
                level,
                request_id: &request_id,
                method: logline::clip(&method, 32),
                path: logline::clip(&path, 512),
                status: outcome.status,
                latency_ms: (latency_ms * 1000.0).round() / 1000.0,
                message_id: outcome.message_id.as_deref(),
                dup: outcome.webhook.map(|r| r == WebhookResult::Duplicate),
                result: outcome.webhook.map(WebhookResult::as_str),
                reason: outcome.reason,
                removed: outcome.removed.map(|(_, n)| n),
                error: outcome.error.as_deref(),
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
        format!("storage: {err}"),
    )
}

/// `POST /webhook`: limit, configuration, signature, validation, store; in that order.
fn webhook(context: &mut Context, request: Request) -> Outcome {
    let delivery = match receive(context, request) {
        Ok(delivery) => delivery,
        Err(refused) => return *refused,
    };
    if let Some(refused) = authenticate(context, &delivery) {
        return refused.with_body(delivery.body);
    }
    match payload::parse(&delivery.body) {
        Ok(message) => store(context, message),
        Err(errors) => {
            let mut outcome = Outcome::json(422, problem::validation(&errors))
                .webhook(WebhookResult::ValidationError);
            outcome.rejected = Some(Rejected::invalid(&errors, delivery.body));
            outcome
        }
    }
}

/// A delivery's body and the headers that sign it, copied out of the request (reading the
/// body consumes it).
struct Delivery {
    body: Vec<u8>,
    x_signature: Option<Vec<u8>>,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    standard: [Option<Vec<u8>>; 3],
}

/// The body, within the size limit: refused on its declared length before reading, or as
/// soon as reading passes the limit. (The refusal is boxed: it is the rare, large case.)
fn receive(context: &Context, request: Request) -> Result<Delivery, Box<Outcome>> {
    let limit = config::max_body_bytes(context.variable(config::MAX_BODY_BYTES).as_deref())
        .map_err(|problem| Box::new(invalid_configuration(problem)))?;
    let too_large = |detail, body| {
        Box::new(
            Outcome::detail(413, "payload too large")
                .webhook(WebhookResult::PayloadTooLarge)
                .rejected(Reason::PayloadTooLarge, detail, body),
        )
    };
    let declared_length = request
        .single_header("content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(declared) = declared_length.filter(|n| *n > limit as u64) {
        return Err(too_large(
            "content_length_over_limit",
            Body::Declared(declared),
        ));
    }
    let x_signature = request.single_header("x-signature").map(<[u8]>::to_vec);
    let standard = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .map(|name| request.single_header(name).map(<[u8]>::to_vec));
    match request.body.read_to_limit(limit) {
        Ok(body) => Ok(Delivery {
            body,
            x_signature,
            standard,
        }),
        Err(BodyError::TooLarge) => Err(too_large("body_over_limit", Body::Unread)),
        Err(BodyError::Io(err)) => {
            let mut outcome = Outcome::detail(400, "could not read request body");
            outcome.error = Some(format!("body: {err}"));
            Err(Box::new(outcome))
        }
    }
}

/// The refusal of a delivery the configured secret cannot verify (503 when there is no
/// usable secret, 401 when the signature is wrong); `None` when it verifies.
fn authenticate(context: &Context, delivery: &Delivery) -> Option<Outcome> {
    let secret = context.variable(config::WEBHOOK_SECRET).unwrap_or_default();
    if secret.is_empty() {
        let outcome = Outcome::unavailable(
            "webhook secret not configured",
            "webhook_secret is empty".to_owned(),
        )
        .webhook(WebhookResult::NotConfigured);
        return Some(outcome.rejected(Reason::NotConfigured, "webhook_secret_empty", Body::Unread));
    }
    let key = match signature::secret_key(&secret) {
        Ok(key) => key,
        Err(problem) => return Some(invalid_configuration(format!("webhook_secret: {problem}"))),
    };
    let [id, timestamp, standard_signature] = &delivery.standard;
    let presented = Presented {
        x_signature: delivery.x_signature.as_deref(),
        standard: standard_webhooks::Headers {
            id: id.as_deref(),
            timestamp: timestamp.as_deref(),
            signature: standard_signature.as_deref(),
        },
    };
    check_signature(context, &presented, &delivery.body, &key)
}

/// Stores a valid message once: 200 whether it was new or a duplicate.
fn store(context: &mut Context, message: NewMessage) -> Outcome {
    let stored = context.storage.insert_message(&message, context.started);
    let mut outcome = match stored {
        Ok(stored) => {
            let mut outcome =
                Outcome::json(200, responses::status("ok")).webhook(match stored.inserted {
                    Inserted::Created => WebhookResult::Created,
                    Inserted::Duplicate => WebhookResult::Duplicate,
                });
            outcome.counted = stored.counted_request;
            outcome
        }
        Err(err) => storage_unavailable(err).webhook(WebhookResult::StorageError),
    };
    outcome.message_id = Some(message.message_id);
    outcome
}

/// The 401 (or 503 for an unusable tolerance) that refuses a delivery neither scheme signs
/// with the current key or the previous one; `None` when it verifies.
fn check_signature(
    context: &Context,
    presented: &Presented,
    body: &[u8],
    key: &[u8],
) -> Option<Outcome> {
    // Read only for requests that carry a timestamp: X-Signature deliveries skip the call.
    let tolerance = if presented.standard.present() {
        let value = context.variable(config::SIGNATURE_TOLERANCE_SECONDS);
        match config::signature_tolerance_seconds(value.as_deref()) {
            Ok(tolerance) => tolerance,
            Err(problem) => return Some(invalid_configuration(problem)),
        }
    } else {
        config::DEFAULT_SIGNATURE_TOLERANCE_SECONDS
    };
    // The request's clock: when it started.
    let now = context
        .started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let verify = |key: &[u8]| signature::verify_delivery(presented, body, key, now, tolerance);
    let Err(rejection) = verify(key) else {
        return None;
    };
    // The previous secret is read only when the current one does not match: one host call
    // fewer per webhook outside a rotation.
    let previous = context
        .variable(config::WEBHOOK_SECRET_PREVIOUS)
        .unwrap_or_default();
    // The body is attached by the caller, which owns it (`Outcome::with_body`).
    let mut outcome = Outcome::detail(401, "invalid signature")
        .webhook(WebhookResult::InvalidSignature)
        .rejected(
            Reason::of_signature(rejection),
            rejection.reason(),
            Body::Unread,
        );
    match signature::secret_key(&previous) {
        Ok(previous) if !previous.is_empty() && verify(previous.as_ref()).is_ok() => return None,
        Ok(_) => {}
        // It can match nothing: the sender gets its 401, the operator a warning.
        Err(problem) => outcome.error = Some(format!("webhook_secret_previous: {problem}")),
    }
    Some(outcome)
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
            .map_err(|err| format!("{name}: {err}"))
    };
    let access = read(tokens.current)
        .and_then(|current| auth::access(authorization, &current, || read(tokens.previous)));
    match access {
        Ok(Access::Open | Access::Granted) => None,
        Ok(Access::Denied) => {
            let mut outcome = Outcome::detail(401, "not authenticated");
            outcome
                .headers
                .push(("www-authenticate", "Bearer".to_owned()));
            Some(outcome)
        }
        Err(error) => Some(Outcome::unavailable("configuration unavailable", error)),
    }
}

/// The answer that refuses an admin request, or `None` when it carries the admin token.
/// With no admin token configured the routes are closed (403), never open.
fn admin_refusal(context: &Context, authorization: Option<&[u8]>) -> Option<Outcome> {
    match context.runtime.variable(config::ADMIN_TOKEN) {
        Ok(Some(token)) if !token.is_empty() => {
            refusal(context, authorization, config::ADMIN_TOKENS)
        }
        Ok(_) => Some(Outcome::detail(
            403,
            "admin routes are disabled: set admin_token to use them",
        )),
        Err(error) => Some(Outcome::unavailable(
            "configuration unavailable",
            format!("{}: {error}", config::ADMIN_TOKEN),
        )),
    }
}

/// The admin routes, once the caller is known: a retention batch, or an erasure.
fn admin(context: &mut Context, endpoint: Endpoint, request: &Request) -> Outcome {
    let lifecycle = match config::lifecycle(|name| context.variable(name)) {
        Ok(lifecycle) => lifecycle,
        Err(problem) => return Outcome::unavailable("invalid configuration", problem),
    };
    let removal = removal(context.started, &lifecycle);
    let (cause, result) = match endpoint {
        Endpoint::Purge => {
            let cutoff = retention_cutoff(context.started, lifecycle.retention_days);
            let purged = context.storage.purge(cutoff.as_deref(), &removal);
            let body = purged.map(|p| {
                let body = serde_json::json!({
                    "purged": p.messages,
                    "tombstones_purged": p.tombstones,
                    "more": p.more,
                    "retention_days": lifecycle.retention_days,
                });
                (p.messages, Outcome::json(200, body.to_string()))
            });
            (Removed::Retention, body)
        }
        Endpoint::EraseSender => {
            let sender = match query::parse_erasure(&request.query) {
                Ok(sender) => sender,
                Err(errors) => return Outcome::json(422, problem::validation(&errors)),
            };
            let erased = context.storage.erase_sender(&sender, &removal);
            let body = erased.map(|e| {
                let body = serde_json::json!({"erased": e.erased, "remaining": e.remaining});
                (e.erased, Outcome::json(200, body.to_string()))
            });
            (Removed::Erasure, body)
        }
        _ => {
            // An id that does not decode to UTF-8 was never stored (ids are JSON strings).
            let Some(message_id) = routes::message_id(&request.path) else {
                return Outcome::detail(404, "message not found");
            };
            let erased = context.storage.erase_message(&message_id, &removal);
            let body = erased.map(|found| match found {
                true => (
                    1,
                    Outcome::json(200, serde_json::json!({"erased": 1}).to_string()),
                ),
                false => (0, Outcome::detail(404, "message not found")),
            });
            (Removed::Erasure, body)
        }
    };
    match result {
        Ok((count, mut outcome)) => {
            outcome.removed = Some((cause, count));
            outcome
        }
        Err(err) => storage_unavailable(err),
    }
}

/// After a fold, one retention batch if anything is due (a single read when nothing is).
/// Its problems go to the log line: the request it rides on was answered already.
fn purge_after_fold(context: &mut Context, outcome: &mut Outcome) {
    let lifecycle = match config::lifecycle(|name| context.variable(name)) {
        Ok(lifecycle) => lifecycle,
        Err(problem) => {
            outcome.error.get_or_insert(problem);
            return;
        }
    };
    let cutoff = retention_cutoff(context.started, lifecycle.retention_days);
    let removal = removal(context.started, &lifecycle);
    match context.storage.purge(cutoff.as_deref(), &removal) {
        Ok(purged) => outcome.removed = Some((Removed::Retention, purged.messages)),
        Err(err) => {
            outcome
                .error
                .get_or_insert_with(|| format!("retention batch not run: {err}"));
        }
    }
}

/// The instant key before which messages are due for purging; `None` when kept forever.
fn retention_cutoff(now: SystemTime, retention_days: u32) -> Option<String> {
    if retention_days == 0 {
        return None;
    }
    let kept = std::time::Duration::from_secs(u64::from(retention_days) * 86_400);
    let cutoff = now.checked_sub(kept).unwrap_or(SystemTime::UNIX_EPOCH);
    timestamp::instant_key(&timestamp::format_utc(cutoff)).ok()
}

fn removal(now: SystemTime, lifecycle: &config::Lifecycle) -> Removal {
    let now_unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Removal {
        now_unix,
        tombstone_until: now_unix + i64::from(lifecycle.tombstone_days) * 86_400,
        batch: lifecycle.batch,
    }
}

const READ: TokenPair = config::READ_TOKENS;

/// `serve`'s answer when the request may read what `tokens` guard, else the refusal.
fn guarded(
    context: &mut Context,
    request: &Request,
    tokens: TokenPair,
    serve: impl FnOnce(&mut Context) -> Outcome,
) -> Outcome {
    let authorization = request.single_header("authorization");
    refusal(context, authorization, tokens).unwrap_or_else(|| serve(context))
}

/// `"open"` or `"required"`: whether `tokens` guard their endpoints, for the readiness body.
fn auth_state(context: &Context, tokens: TokenPair) -> &'static str {
    match context.runtime.variable(tokens.current) {
        Ok(Some(token)) if !token.is_empty() => "required",
        Ok(_) => "open",
        // Reads then answer 503 until the provider answers.
        Err(_) => "unavailable",
    }
}

/// 503 for a configuration value we cannot use: senders retry while the operator fixes it.
/// The caller attaches the body to its rejection log entry if it has read it.
fn invalid_configuration(problem: String) -> Outcome {
    Outcome::unavailable("invalid configuration", problem)
        .webhook(WebhookResult::NotConfigured)
        .rejected(Reason::NotConfigured, "invalid_configuration", Body::Unread)
}

/// How many entries the rejection log keeps. A value that cannot be read keeps the default
/// and says so in the request's log line (readiness reports it too): the bound is not worth
/// failing a request over.
fn rejection_log_size(context: &Context, outcome: &mut Outcome) -> u32 {
    let value = context.variable(config::REJECTION_LOG_SIZE);
    config::rejection_log_size(value.as_deref()).unwrap_or_else(|problem| {
        outcome.error.get_or_insert(problem);
        config::DEFAULT_REJECTION_LOG_SIZE
    })
}

/// `GET /rejections`: the newest refused deliveries, a page at a time.
fn rejection_log(context: &mut Context, raw_query: &str) -> Outcome {
    let query = match query::parse_rejections(raw_query) {
        Ok(query) => query,
        Err(errors) => return Outcome::json(422, problem::validation(&errors)),
    };
    let mut outcome = Outcome::json(200, String::new());
    let keep = rejection_log_size(context, &mut outcome);
    match context.storage.rejections(keep, query.limit, query.before) {
        Ok(page) => {
            outcome.body = responses::rejections(&page, query.limit);
            outcome
        }
        Err(err) => storage_unavailable(err),
    }
}

fn list(context: &mut Context, raw_query: &str) -> Outcome {
    let query = match query::parse(raw_query) {
        Ok(query) => query,
        Err(errors) => return Outcome::json(422, problem::validation(&errors)),
    };
    match context.storage.list_messages(&query) {
        Ok(page) => Outcome::json(200, responses::messages(&page, query.limit, query.offset)),
        Err(err) => storage_unavailable(err),
    }
}

/// `GET /messages/{message_id}`: the message, or 404.
fn one_message(context: &mut Context, path: &str) -> Outcome {
    // An id that does not decode to UTF-8 cannot be stored: not found, like any unknown id.
    let Some(message_id) = routes::message_id(path) else {
        return Outcome::detail(404, "not found");
    };
    match context.storage.get_message(&message_id) {
        Ok(Some(message)) => Outcome::json(200, responses::message(&message)),
        Ok(None) => Outcome::detail(404, "not found"),
        Err(err) => storage_unavailable(err),
    }
}

/// `GET /messages/export`: every match as NDJSON, one page per statement. The first page is
/// read here, so a storage failure is still a clean 503; the rest stream from
/// [`AfterResponse::next_chunk`].
fn export(context: &mut Context, raw_query: &str) -> Outcome {
    let mut query = match query::parse_export(raw_query) {
        Ok(query) => query,
        Err(errors) => return Outcome::json(422, problem::validation(&errors)),
    };
    query.limit = EXPORT_PAGE_ROWS;
    match context.storage.export_page(&query) {
        Ok(page) => {
            let mut outcome = Outcome::json(200, String::new());
            outcome.content_type = NDJSON;
            // JSON lines are UTF-8 by construction.
            outcome.body = String::from_utf8(responses::ndjson(&page)).unwrap_or_default();
            let mut export = Export {
                query,
                rows: 0,
                done: false,
            };
            export.advance(&page);
            outcome.export = Some(export);
            outcome
        }
        Err(err) => storage_unavailable(err),
    }
}

/// `GET /stats/hourly`: messages per hour for the last `days` days, up to and including
/// the current hour (UTC, by this host's clock).
fn hourly(context: &mut Context, raw_query: &str) -> Outcome {
    let days = match query::parse_hourly(raw_query) {
        Ok(days) => days,
        Err(errors) => return Outcome::json(422, problem::validation(&errors)),
    };
    let hour_of = |moment: SystemTime| timestamp::format_utc(moment)[..13].to_owned();
    let span = std::time::Duration::from_secs((u64::from(days) * 24 - 1) * 3600);
    let last = hour_of(context.started);
    let first = hour_of(
        context
            .started
            .checked_sub(span)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    );
    match context.storage.hourly(&first, &last) {
        Ok(counts) => Outcome::json(200, responses::hourly(days, &first, &last, &counts)),
        Err(err) => storage_unavailable(err),
    }
}

fn stats(context: &mut Context) -> Outcome {
    match context.storage.stats() {
        Ok(stats) => Outcome::json(200, responses::stats(&stats)),
        Err(err) => storage_unavailable(err),
    }
}

fn scrape(context: &mut Context) -> Outcome {
    match context.storage.read_counters() {
        Ok(rows) => {
            let mut outcome = Outcome::json(200, metrics::render(&rows));
            outcome.content_type = PROMETHEUS_TEXT;
            outcome
        }
        Err(err) => storage_unavailable(err),
    }
}

/// Ready when the database answers with our schema in place and a secret is configured.
/// The body also says whether reads need a token (`read_auth`, `metrics_auth`); open reads
/// are a deployment's choice, not a failure.
fn ready(context: &mut Context) -> Outcome {
    let mut failures = serde_json::Map::new();
    let mut errors = Vec::new();
    let secret = context.variable(config::WEBHOOK_SECRET).unwrap_or_default();
    if secret.is_empty() {
        failures.insert("secret".into(), "webhook secret not configured".into());
    } else if let Err(problem) = signature::secret_key(&secret) {
        failures.insert("secret".into(), format!("webhook_secret: {problem}").into());
    }
    let mut config_problems = Vec::new();
    let previous = context
        .variable(config::WEBHOOK_SECRET_PREVIOUS)
        .unwrap_or_default();
    if let Err(problem) = signature::secret_key(&previous) {
        config_problems.push(format!("webhook_secret_previous: {problem}"));
    }
    if let Err(problem) =
        config::max_body_bytes(context.variable(config::MAX_BODY_BYTES).as_deref())
    {
        config_problems.push(problem);
    }
    let tolerance = context.variable(config::SIGNATURE_TOLERANCE_SECONDS);
    if let Err(problem) = config::signature_tolerance_seconds(tolerance.as_deref()) {
        config_problems.push(problem);
    }
    let log_size = context.variable(config::REJECTION_LOG_SIZE);
    if let Err(problem) = config::rejection_log_size(log_size.as_deref()) {
        config_problems.push(problem);
    }
    if let Err(problem) = config::lifecycle(|name| context.variable(name)) {
        config_problems.push(problem);
    }
    if !config_problems.is_empty() {
        failures.insert("config".into(), config_problems.join("; ").into());
    }
    match context.storage.ensure_schema() {
        Ok(version) if version >= SCHEMA_VERSION => {}
        Ok(_) => {
            failures.insert("schema".into(), "schema not applied".into());
        }
        Err(err) => {
            // The reason goes to the log, not to whoever can reach the probe.
            failures.insert("database".into(), "database unavailable".into());
            errors.push(format!("storage: {err}"));
        }
    }
    let read_auth = auth_state(context, config::READ_TOKENS);
    let metrics_auth = auth_state(context, config::METRICS_TOKENS);
    if failures.is_empty() {
        let body = serde_json::json!({
            "status": "ready",
            "read_auth": read_auth,
            "metrics_auth": metrics_auth,
        });
        return Outcome::json(200, body.to_string());
    }
    let body = serde_json::json!({
        "status": "not ready",
        "checks": failures,
        "read_auth": read_auth,
        "metrics_auth": metrics_auth,
    });
    let mut outcome = Outcome::json(503, body.to_string());
    outcome.error = Some(if errors.is_empty() {
        failures.keys().cloned().collect::<Vec<_>>().join(", ") + " check failed"
    } else {
        errors.join("; ")
    });
    outcome
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
