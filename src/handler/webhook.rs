//! `POST /webhook`: the size limit, the configured secret, the signature, validation, then
//! the one storing statement; in that order, the first failure answering.

use super::*;

/// `POST /webhook`: limit, configuration, signature, validation, store; in that order.
pub(super) fn webhook(context: &mut Context, request: Request) -> Outcome {
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
            let mut outcome = Outcome::invalid(&errors).webhook(WebhookResult::ValidationError);
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
            let mut outcome =
                Outcome::detail(StatusCode::BAD_REQUEST, "could not read request body");
            outcome.error = Some(anyhow::anyhow!("body: {err}"));
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
            anyhow::anyhow!("webhook_secret is empty"),
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
    let mut outcome = Outcome::detail(StatusCode::UNAUTHORIZED, "invalid signature")
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
        Err(problem) => outcome.error = Some(anyhow::anyhow!("webhook_secret_previous: {problem}")),
    }
    Some(outcome)
}
