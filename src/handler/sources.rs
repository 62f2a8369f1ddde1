//! The native sources' routes: `GET /webhook/whatsapp` (Meta's verification handshake),
//! `POST /webhook/whatsapp` (Meta's WhatsApp Cloud API) and `POST /webhook/twilio`
//! (Twilio's WhatsApp and SMS webhooks).
//!
//! A delivery goes through `/webhook`'s machinery (`webhook.rs`): the body within its
//! route's limit, then the same refusals, in the same order (413, 503, 401, 422), each kept
//! in the rejection log; its counters and log line follow the answer, labelled with the
//! route's source. What differs is the provider's: its signature scheme and its payload
//! ([`crate::sources`]), and that one delivery may hold several messages, stored in one
//! statement ([`Session::insert_batch`]), or none.

use super::webhook::{invalid_body, invalid_signature, not_configured, receive, Delivery};
use super::*;
use crate::sources::{twilio, whatsapp, Element, SignatureProblem, SourcedMessage};

/// `GET /webhook/whatsapp`: Meta's verification request. 200 with the challenge as plain
/// text when the mode is `subscribe` and the token is `whatsapp_verify_token`; 403 for
/// anything else, an unset token included (the log line says which refusal it was).
pub(super) fn whatsapp_handshake(context: &Context, raw_query: &str) -> Outcome {
    let token = context.variable(config::WHATSAPP_VERIFY_TOKEN);
    match whatsapp::handshake(raw_query, token.as_deref()) {
        Ok(challenge) => Outcome::new(StatusCode::OK, TEXT_PLAIN, challenge),
        Err(refusal) => {
            let mut outcome = Outcome::detail(StatusCode::FORBIDDEN, "verification refused");
            outcome.reason = Some(refusal.reason());
            outcome
        }
    }
}

/// `POST /webhook/whatsapp`: limit (`whatsapp_max_body_bytes`), app secret, signature
/// (`X-Hub-Signature-256`), a body whose shape can be read, then every message stored at
/// once; 200 only after that commit. Statuses and other fields answer 200 and are counted;
/// a message that fails validation is counted and logged, and the rest of its batch stored.
pub(super) fn whatsapp_delivery(context: &mut Context, request: Request) -> Outcome {
    let limit = context.variable(config::WHATSAPP_MAX_BODY_BYTES);
    let delivery = match receive(request, config::whatsapp_max_body_bytes(limit.as_deref())) {
        Ok(delivery) => delivery,
        Err(refused) => return *refused,
    };
    let secret = context
        .variable(config::WHATSAPP_APP_SECRET)
        .unwrap_or_default();
    if secret.is_empty() {
        let refused = not_configured(
            config::WHATSAPP_APP_SECRET,
            "whatsapp app secret",
            "whatsapp_app_secret_empty",
        );
        return refused.with_body(delivery.body);
    }
    let header = delivery.header("x-hub-signature-256");
    let verified = verified_with_either(
        context,
        &secret,
        config::WHATSAPP_APP_SECRET_PREVIOUS,
        |secret| whatsapp::verify_signature(header, &delivery.body, secret, None),
    );
    if let Err(problem) = verified {
        return invalid_signature(Reason::InvalidSignature, problem.reason())
            .with_body(delivery.body);
    }
    match whatsapp::parse(&delivery.body) {
        Ok(batch) => store_delivery(
            context,
            Source::WhatsApp,
            batch.elements,
            &batch.ignored,
            Outcome::json(StatusCode::OK, responses::status("ok")),
        ),
        Err(errors) => invalid_body(&errors, delivery.body),
    }
}

/// `POST /webhook/twilio`: limit (`max_body_bytes`), auth token and `public_base_url`,
/// signature (`X-Twilio-Signature` over the public URL and the form), then the message
/// stored once; 200 with empty TwiML, so Twilio sends no reply. A status callback answers
/// the same and is counted; a message that fails validation is a 422.
pub(super) fn twilio_delivery(context: &mut Context, request: Request) -> Outcome {
    let limit = context.variable(config::MAX_BODY_BYTES);
    let delivery = match receive(request, config::max_body_bytes(limit.as_deref())) {
        Ok(delivery) => delivery,
        Err(refused) => return *refused,
    };
    let (token, url) = match twilio_configuration(context, &delivery) {
        Ok(configured) => configured,
        Err(refused) => return refused.with_body(delivery.body),
    };
    let params = twilio::parse_form(&delivery.body);
    let header = delivery.header("x-twilio-signature");
    let verified = verified_with_either(
        context,
        &token,
        config::TWILIO_AUTH_TOKEN_PREVIOUS,
        |secret| twilio::verify_signature(header, &url, &params, secret, None),
    );
    if let Err(problem) = verified {
        return invalid_signature(Reason::InvalidSignature, problem.reason())
            .with_body(delivery.body);
    }
    let twiml = || Outcome::new(StatusCode::OK, TEXT_XML, twilio::EMPTY_TWIML.to_owned());
    if let Some(kind) = twilio::ignored(&params) {
        return store_delivery(context, Source::Twilio, Vec::new(), &[kind], twiml());
    }
    match twilio::message(&params, context.started) {
        Ok(message) => store_delivery(context, Source::Twilio, vec![Ok(message)], &[], twiml()),
        Err(errors) => {
            let message_id = params
                .iter()
                .find(|(name, value)| name == "MessageSid" && !value.is_empty())
                .map(|(_, value)| value.clone());
            let rejected = RejectedElement { message_id, errors };
            let mut outcome = invalid_body(&rejected.errors, delivery.body);
            outcome.delivery = Some(DeliveryReport::new(0, 0, &[rejected], &[]));
            outcome
        }
    }
}

/// The auth token and the URL Twilio signed for this request, or the 503 that refuses it
/// (boxed, the rare case): a token or `public_base_url` unset, or a `public_base_url` that
/// cannot be a URL's start.
fn twilio_configuration(
    context: &Context,
    delivery: &Delivery,
) -> Result<(String, String), Box<Outcome>> {
    let token = context
        .variable(config::TWILIO_AUTH_TOKEN)
        .unwrap_or_default();
    if token.is_empty() {
        return Err(Box::new(not_configured(
            config::TWILIO_AUTH_TOKEN,
            "twilio auth token",
            "twilio_auth_token_empty",
        )));
    }
    let base = context.variable(config::PUBLIC_BASE_URL);
    match config::public_base_url(base.as_deref()) {
        Ok(Some(base)) => Ok((
            token,
            twilio::signed_url(&base, &delivery.path, &delivery.query),
        )),
        Ok(None) => Err(Box::new(not_configured(
            config::PUBLIC_BASE_URL,
            "public_base_url",
            "public_base_url_empty",
        ))),
        Err(problem) => Err(Box::new(invalid_configuration(problem))),
    }
}

/// `verify(current)` checks a signature; on a mismatch alone, the secret `previous_variable`
/// names is read (one host call fewer per delivery outside a rotation) and tried too. The
/// first problem is the one reported.
fn verified_with_either(
    context: &Context,
    current: &str,
    previous_variable: &str,
    verify: impl Fn(&str) -> Result<(), SignatureProblem>,
) -> Result<(), SignatureProblem> {
    match verify(current) {
        Err(SignatureProblem::Mismatch) => {
            let previous = context.variable(previous_variable).unwrap_or_default();
            if previous.is_empty() {
                return Err(SignatureProblem::Mismatch);
            }
            verify(&previous).map_err(|_| SignatureProblem::Mismatch)
        }
        checked => checked,
    }
}

/// Stores a verified delivery's valid messages in one statement (each once: a message
/// already stored, or repeated in the delivery, is a duplicate) and answers `answered`
/// once they are committed; a storage failure is a 503 instead, and nothing of the delivery
/// is counted but the request (the provider sends it all again). `ignored` is what the
/// delivery held that is not a message.
fn store_delivery(
    context: &mut Context,
    source: Source,
    elements: Vec<Element>,
    ignored: &[Ignored],
    answered: Outcome,
) -> Outcome {
    let (messages, rejected): (Vec<SourcedMessage>, Vec<RejectedElement>) = {
        let mut messages = Vec::with_capacity(elements.len());
        let mut rejected = Vec::new();
        for element in elements {
            match element {
                Ok(message) => messages.push(message),
                Err(refused) => rejected.push(refused),
            }
        }
        (messages, rejected)
    };
    let inserted = if messages.is_empty() {
        Vec::new()
    } else {
        match context
            .storage
            .insert_batch(source, &messages, context.started)
        {
            Ok(inserted) => inserted,
            Err(err) => {
                let mut outcome = storage_unavailable(err).webhook(WebhookResult::StorageError);
                outcome.message_id = only_id(&messages);
                return outcome;
            }
        }
    };
    let created = inserted.iter().filter(|i| **i == Inserted::Created).count() as u64;
    let duplicate = inserted.len() as u64 - created;
    let result = if created > 0 {
        WebhookResult::Created
    } else if duplicate > 0 {
        WebhookResult::Duplicate
    } else {
        WebhookResult::Ignored
    };
    let mut outcome = answered.webhook(result);
    outcome.message_id = only_id(&messages);
    outcome.delivery = Some(DeliveryReport::new(created, duplicate, &rejected, ignored));
    outcome
}

/// The message id for the log line when a delivery held exactly one message.
fn only_id(messages: &[SourcedMessage]) -> Option<String> {
    match messages {
        [only] => Some(only.message.message_id.clone()),
        _ => None,
    }
}
