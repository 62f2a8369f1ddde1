//! `POST /webhook`: the size limit, the configured secret, the signature, validation, then
//! the one storing statement; in that order, the first failure answering.
//!
//! What every delivery route shares lives here too, so that `/webhook` and the providers'
//! routes (`sources.rs`) read, limit and refuse deliveries the same way: [`receive`] (the
//! body within its limit, 413 before anything else), and the refusals each route's checks
//! answer ([`not_configured`], [`invalid_signature`], [`invalid_body`]), each marked for the
//! rejection log; the counters and log line follow in `AfterResponse::complete`, by the
//! route's source.

use super::*;

/// `POST /webhook`: limit, configuration, signature, validation, store; in that order.
pub(super) fn webhook(context: &mut Context, request: Request) -> Outcome {
    let limit = config::max_body_bytes(context.variable(config::MAX_BODY_BYTES).as_deref());
    let delivery = match receive(request, limit) {
        Ok(delivery) => delivery,
        Err(refused) => return *refused,
    };
    if let Some(refused) = authenticate(context, &delivery) {
        return refused.with_body(delivery.body);
    }
    match payload::parse(&delivery.body) {
        Ok(message) => store(context, message),
        Err(errors) => invalid_body(&errors, delivery.body),
    }
}

/// A delivery: its body, read within the route's limit, and the rest of the request it came
/// with (reading the body consumes the request).
pub(super) struct Delivery {
    pub(super) body: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    /// Path without the query string, as received.
    pub(super) path: String,
    /// Query string without `?`, as received.
    pub(super) query: String,
}

impl Delivery {
    /// The header's value when it was sent exactly once.
    pub(super) fn header(&self, name: &str) -> Option<&[u8]> {
        single_header(&self.headers, name)
    }
}

/// The body, within `limit` (the route's variable, read by the caller): refused on its
/// declared length before reading, or as soon as reading passes the limit; an unusable limit
/// is a 503 before anything else. (The refusal is boxed: it is the rare, large case.)
pub(super) fn receive(
    request: Request,
    limit: Result<usize, String>,
) -> Result<Delivery, Box<Outcome>> {
    let limit = limit.map_err(|problem| Box::new(invalid_configuration(problem)))?;
    let too_large = |detail, body| {
        Box::new(
            Outcome::detail(StatusCode::PAYLOAD_TOO_LARGE, "payload too large")
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
    let Request {
        headers,
        path,
        query,
        body,
        ..
    } = request;
    match body.read_to_limit(limit) {
        Ok(body) => Ok(Delivery {
            body,
            headers,
            path,
            query,
        }),
        Err(BodyError::TooLarge) => Err(too_large("body_over_limit", Body::Unread)),
        Err(BodyError::Io(err)) => {
            let mut outcome =
                Outcome::detail(StatusCode::BAD_REQUEST, "could not read request body");
            outcome.error = Some(anyhow::anyhow!("body: {err}"));
            Err(Box::new(outcome))
        }
    }
}

/// 503 for a delivery route whose `variable` is empty: `"<what> not configured"`, with
/// `Retry-After` (senders retry while the operator sets it), marked for the rejection log
/// as `detail`. The caller attaches the body it read.
pub(super) fn not_configured(variable: &str, what: &str, detail: &'static str) -> Outcome {
    Outcome::unavailable(
        &format!("{what} not configured"),
        anyhow::anyhow!("{variable} is empty"),
    )
    .webhook(WebhookResult::NotConfigured)
    .rejected(Reason::NotConfigured, detail, Body::Unread)
}

/// 401 for a delivery whose signature does not verify; `detail` (a fixed word) says why,
/// for the log line and the rejection log. The caller attaches the body it read.
pub(super) fn invalid_signature(reason: Reason, detail: &'static str) -> Outcome {
    Outcome::detail(StatusCode::UNAUTHORIZED, "invalid signature")
        .webhook(WebhookResult::InvalidSignature)
        .rejected(reason, detail, Body::Unread)
}

/// 422 for a verified delivery whose body (or whose one message) breaks a rule, every
/// problem listed; the rejection log keeps their locations and the body's size and hash.
pub(super) fn invalid_body(errors: &[problem::FieldError], body: Vec<u8>) -> Outcome {
    let mut outcome = Outcome::invalid(errors).webhook(WebhookResult::ValidationError);
    outcome.rejected = Some(Rejected::invalid(errors, body));
    outcome
}

/// The refusal of a delivery the configured secret cannot verify (503 when there is no
/// usable secret, 401 when the signature is wrong); `None` when it verifies.
fn authenticate(context: &Context, delivery: &Delivery) -> Option<Outcome> {
    let secret = context.variable(config::WEBHOOK_SECRET).unwrap_or_default();
    if secret.is_empty() {
        return Some(not_configured(
            config::WEBHOOK_SECRET,
            "webhook secret",
            "webhook_secret_empty",
        ));
    }
    let key = match signature::secret_key(&secret) {
        Ok(key) => key,
        Err(problem) => return Some(invalid_configuration(format!("webhook_secret: {problem}"))),
    };
    let presented = Presented {
        x_signature: delivery.header("x-signature"),
        standard: standard_webhooks::Headers {
            id: delivery.header("webhook-id"),
            timestamp: delivery.header("webhook-timestamp"),
            signature: delivery.header("webhook-signature"),
        },
    };
    check_signature(context, &presented, &delivery.body, &key)
}

/// Stores a valid message once: 200 whether it was new or a duplicate.
fn store(context: &mut Context, message: NewMessage) -> Outcome {
    let stored = context.storage.insert_message(&message, context.started);
    let mut outcome = match stored {
        Ok(inserted) => {
            let mut outcome =
                Outcome::json(StatusCode::OK, responses::status("ok")).webhook(match inserted {
                    Inserted::Created => WebhookResult::Created,
                    Inserted::Duplicate => WebhookResult::Duplicate,
                });
            // A new message's row counts this request's metrics (`Session::insert_message`).
            outcome.counted = inserted == Inserted::Created;
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
    let mut outcome = invalid_signature(Reason::of_signature(rejection), rejection.reason());
    match signature::secret_key(&previous) {
        Ok(previous) if !previous.is_empty() && verify(previous.as_ref()).is_ok() => return None,
        Ok(_) => {}
        // It can match nothing: the sender gets its 401, the operator a warning.
        Err(problem) => outcome.error = Some(anyhow::anyhow!("webhook_secret_previous: {problem}")),
    }
    Some(outcome)
}
