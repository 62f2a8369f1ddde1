//! Meta's WhatsApp Cloud API as a source, after Meta's "messages webhook reference": the
//! verification handshake (`GET` with `hub.*` parameters), the `X-Hub-Signature-256`
//! signature, and the mapping of a delivery onto messages.
//!
//! A delivery is a batch: `entry[].changes[]`, each change one subscribed `field` and its
//! `value`. For the `messages` field, each `value.messages[]` element is one message;
//! `value.statuses[]` (sent, delivered, read, failed), other fields and changes with nothing
//! in them are counted, not stored. Meta retries anything but a 200 and disables webhooks
//! that keep failing, so only a body whose shape cannot be read is refused as a whole: a
//! message that fails validation is rejected alone and the rest of its batch still maps.

use super::{configured, Element, Ignored, RejectedElement, SignatureProblem, SourcedMessage};
use crate::auth::token_matches;
use crate::problem::FieldError;
use crate::sources::webhook::payload::validate_fields;
use crate::timestamp::format_utc;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use std::time::{Duration, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

/// Default body limit for the route. Meta's WhatsApp webhooks documentation says payloads
/// can be up to 3 MB (a batch holds up to 1000 updates); 3 MiB takes any of them. The
/// generic `/webhook` default (64 KiB) would answer a large batch 413, which Meta retries
/// and, if it keeps failing, disables the webhook for.
pub const DEFAULT_MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The `object` of WhatsApp Business Account notifications, the only one mapped.
pub const BUSINESS_ACCOUNT_OBJECT: &str = "whatsapp_business_account";

/// Longest `hub.challenge` echoed back. Meta sends an integer; a longer or stranger
/// challenge is not Meta's, and echoing it would let anyone make this origin serve text.
pub const MAX_CHALLENGE_LEN: usize = 128;

/// Longest message type kept (Meta's are words such as `text`, `interactive`, `unsupported`).
pub const MAX_KIND_LEN: usize = 32;

/// The last second RFC 3339's four-digit years can write: 9999-12-31T23:59:59Z.
const MAX_UNIX_SECONDS: u64 = 253_402_300_799;

/// `sha256=` then the HMAC's 64 hex digits.
const SIGNATURE_PREFIX: &[u8] = b"sha256=";
const HEX_LEN: usize = 64;

/// The handshake's parameters, in the order [`handshake`] reads them.
const HUB_PARAMS: [&str; 3] = ["hub.mode", "hub.verify_token", "hub.challenge"];

/// Why a verification request was refused (the route answers 403 to each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeRefusal {
    /// No verify token is configured, so no subscription can be confirmed.
    Unconfigured,
    /// A `hub.*` parameter is given more than once: which one would be meant is a guess.
    Repeated,
    /// `hub.mode` is missing or not `subscribe`.
    Mode,
    /// `hub.verify_token` is missing or not the configured token.
    Token,
    /// `hub.challenge` is missing, or not 1 to [`MAX_CHALLENGE_LEN`] ASCII letters and digits.
    Challenge,
}

impl HandshakeRefusal {
    /// The reason as the log line names it.
    pub fn reason(self) -> &'static str {
        match self {
            HandshakeRefusal::Unconfigured => "verify_token_unset",
            HandshakeRefusal::Repeated => "parameter_repeated",
            HandshakeRefusal::Mode => "mode_invalid",
            HandshakeRefusal::Token => "verify_token_mismatch",
            HandshakeRefusal::Challenge => "challenge_invalid",
        }
    }
}

/// Answers Meta's verification request: the `hub.challenge` to echo when `hub.mode` is
/// `subscribe` and `hub.verify_token` is the configured token (compared in constant time).
/// `raw_query` is the query string as received, form-decoded here (`+` is a space);
/// parameters other than the three are ignored. `verify_token` `None` or empty refuses all.
pub fn handshake(raw_query: &str, verify_token: Option<&str>) -> Result<String, HandshakeRefusal> {
    let expected = verify_token
        .filter(|token| !token.is_empty())
        .ok_or(HandshakeRefusal::Unconfigured)?;
    let mut hub: [Option<String>; 3] = Default::default();
    for (name, value) in form_urlencoded::parse(raw_query.as_bytes()) {
        let Some(slot) = HUB_PARAMS.iter().position(|param| *param == name) else {
            continue;
        };
        if hub[slot].replace(value.into_owned()).is_some() {
            return Err(HandshakeRefusal::Repeated);
        }
    }
    let [mode, token, challenge] = hub;
    if mode.as_deref() != Some("subscribe") {
        return Err(HandshakeRefusal::Mode);
    }
    if !token.is_some_and(|token| token_matches(token.as_bytes(), expected.as_bytes())) {
        return Err(HandshakeRefusal::Token);
    }
    challenge
        .filter(|challenge| is_challenge(challenge))
        .ok_or(HandshakeRefusal::Challenge)
}

fn is_challenge(value: &str) -> bool {
    (1..=MAX_CHALLENGE_LEN).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Checks `X-Hub-Signature-256` (`sha256=<hex HMAC-SHA256 of the raw body>`, keyed with the
/// app secret) under `secret`, then `previous` during a rotation; empty secrets never match.
/// The comparison is constant time (`hmac`'s `verify_slice`).
pub fn verify_signature(
    header: Option<&[u8]>,
    body: &[u8],
    secret: &str,
    previous: Option<&str>,
) -> Result<(), SignatureProblem> {
    let header = header.ok_or(SignatureProblem::Missing)?;
    let claimed = claimed_digest(header).ok_or(SignatureProblem::Malformed)?;
    let matched = configured(secret, previous).any(|key| {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any size");
        mac.update(body);
        mac.verify_slice(&claimed).is_ok()
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureProblem::Mismatch)
    }
}

/// The 32 bytes a header claims: `sha256=` (any case) and exactly 64 hex digits, blanks
/// around allowed. `None` for anything else.
fn claimed_digest(header: &[u8]) -> Option<[u8; 32]> {
    // Bound the work before anything else: a long header is wrong.
    if header.len() > SIGNATURE_PREFIX.len() + HEX_LEN + 16 {
        return None;
    }
    let header = header.trim_ascii();
    let prefix = header.get(..SIGNATURE_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(SIGNATURE_PREFIX) {
        return None;
    }
    let digits = &header[SIGNATURE_PREFIX.len()..];
    if digits.len() != HEX_LEN {
        return None;
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(digits, &mut digest).ok()?;
    Some(digest)
}

/// A delivery, mapped: one element per message in payload order, and what was not one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub elements: Vec<Element>,
    pub ignored: Vec<Ignored>,
}

/// Maps a delivery's raw body. An `Err` is a body whose shape cannot be read (not JSON, not
/// an object, `entry` not a list, a change without a `field`, ...), reported at its first
/// problem with its path in `loc`. A delivery for another `object` is ignored whole.
pub fn parse(body: &[u8]) -> Result<Batch, Vec<FieldError>> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        vec![FieldError::body(
            None,
            "json_invalid",
            format!("body is not valid JSON: {err}"),
        )]
    })?;
    let envelope = object(&value, &[])?;
    let mut batch = Batch::default();
    match envelope.get("object") {
        None | Some(Value::Null) => {}
        Some(Value::String(object)) if object == BUSINESS_ACCOUNT_OBJECT => {}
        Some(Value::String(_)) => {
            batch.ignored.push(Ignored::OtherObject);
            return Ok(batch);
        }
        Some(_) => {
            return Err(problem(
                &path(&[], "object"),
                "string_type",
                "must be a string",
            ))
        }
    }
    let entries = list(envelope, "entry", &[])?
        .ok_or_else(|| problem(&path(&[], "entry"), "missing", "is required"))?;
    for (i, entry) in entries.iter().enumerate() {
        let entry_loc = path(&[], format!("entry.{i}"));
        let entry = object(entry, &entry_loc)?;
        let Some(changes) = list(entry, "changes", &entry_loc)? else {
            continue;
        };
        for (j, change) in changes.iter().enumerate() {
            let change_loc = path(&entry_loc, format!("changes.{j}"));
            map_change(object(change, &change_loc)?, &change_loc, &mut batch)?;
        }
    }
    if batch.elements.is_empty() && batch.ignored.is_empty() {
        batch.ignored.push(Ignored::NoMessages);
    }
    Ok(batch)
}

fn map_change(
    change: &Map<String, Value>,
    loc: &[String],
    batch: &mut Batch,
) -> Result<(), Vec<FieldError>> {
    let field = match change.get("field") {
        Some(Value::String(field)) => field,
        None | Some(Value::Null) => {
            return Err(problem(&path(loc, "field"), "missing", "is required"))
        }
        Some(_) => {
            return Err(problem(
                &path(loc, "field"),
                "string_type",
                "must be a string",
            ))
        }
    };
    if field != "messages" {
        // Another subscribed field: its value is not ours to judge.
        batch.ignored.push(Ignored::OtherField);
        return Ok(());
    }
    let value_loc = path(loc, "value");
    let value = object(change.get("value").unwrap_or(&Value::Null), &value_loc)?;
    let messages = list(value, "messages", &value_loc)?;
    let statuses = list(value, "statuses", &value_loc)?;
    let to = recipient(value);
    let before = batch.elements.len() + batch.ignored.len();
    for message in messages.into_iter().flatten() {
        batch.elements.push(element(message, to.as_ref()));
    }
    batch
        .ignored
        .extend(statuses.into_iter().flatten().map(|_| Ignored::Status));
    if batch.elements.len() + batch.ignored.len() == before {
        // `errors[]` only, or an empty value: counted, so every 200 says what it was.
        batch.ignored.push(Ignored::NoMessages);
    }
    Ok(())
}

/// `to` for a change's messages: `+` and the digits of `metadata.display_phone_number`
/// (Meta may format it). A value that is not a string goes on for validation to name.
fn recipient(value: &Map<String, Value>) -> Option<Value> {
    match value.get("metadata")?.get("display_phone_number")? {
        Value::String(number) => {
            let digits: String = number.chars().filter(char::is_ascii_digit).collect();
            Some(Value::String(format!("+{digits}")))
        }
        other => Some(other.clone()),
    }
}

/// One `messages[]` element, mapped onto the `/webhook` body's fields and validated by its
/// rules; the type is checked last.
fn element(message: &Value, to: Option<&Value>) -> Element {
    let Some(message) = message.as_object() else {
        return Err(RejectedElement {
            message_id: None,
            errors: vec![FieldError::body(
                None,
                "model_attributes_type",
                "a message must be a JSON object",
            )],
        });
    };
    let mut mapped = Map::new();
    let fields = [
        ("message_id", message.get("id").cloned()),
        ("from", message.get("from").map(with_plus)),
        ("to", to.cloned()),
        ("text", text(message)),
    ];
    for (field, value) in fields {
        if let Some(value) = value {
            mapped.insert(field.to_owned(), value);
        }
    }
    let validated = validate_fields(&mapped, unix_timestamp(message.get("timestamp")));
    match (validated, message_type(message.get("type"))) {
        (Ok(message), Ok(kind)) => Ok(SourcedMessage { message, kind }),
        (validated, kind) => {
            let mut errors = validated.err().unwrap_or_default();
            errors.extend(kind.err());
            let message_id = message
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .map(str::to_owned);
            Err(RejectedElement { message_id, errors })
        }
    }
}

/// Meta's `from` is the sender's number without `+`; anything but a string goes on as it is
/// for validation to name.
fn with_plus(from: &Value) -> Value {
    match from {
        Value::String(digits) => Value::String(format!("+{digits}")),
        other => other.clone(),
    }
}

/// The text kept: `text.body` of a text message, the caption of an image, video or document
/// (none without one). Other types (audio, sticker, location, reaction, ...) carry no text.
fn text(message: &Map<String, Value>) -> Option<Value> {
    let kind = message.get("type")?.as_str()?;
    let found = match kind {
        "text" => message.get("text")?.get("body"),
        "image" | "video" | "document" => message.get(kind)?.get("caption"),
        _ => None,
    };
    found.cloned()
}

const TIMESTAMP_RULE: &str = "ts must be a unix timestamp: whole seconds since 1970 (timestamp)";

/// Meta's `timestamp` (unix seconds, sent as a string of digits; a JSON integer is taken
/// too) as RFC 3339 UTC, or the problem with it, reported on `ts`.
fn unix_timestamp(value: Option<&Value>) -> Result<String, FieldError> {
    let seconds = match value {
        None | Some(Value::Null) => {
            return Err(FieldError::body(
                Some("ts"),
                "missing",
                "ts is required (timestamp)",
            ))
        }
        Some(Value::String(digits)) => {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FieldError::body(Some("ts"), "int_parsing", TIMESTAMP_RULE));
            }
            // All digits: only too many of them fails to parse.
            digits.parse().unwrap_or(u64::MAX)
        }
        Some(Value::Number(number)) => number
            .as_u64()
            .ok_or_else(|| FieldError::body(Some("ts"), "int_type", TIMESTAMP_RULE))?,
        Some(_) => return Err(FieldError::body(Some("ts"), "int_type", TIMESTAMP_RULE)),
    };
    if seconds > MAX_UNIX_SECONDS {
        return Err(FieldError::body(
            Some("ts"),
            "datetime_value",
            "ts must be at most 9999-12-31T23:59:59Z",
        ));
    }
    Ok(format_utc(UNIX_EPOCH + Duration::from_secs(seconds)))
}

/// The message's `type`, kept with it: a short word, so what is shown and counted stays
/// bounded.
fn message_type(value: Option<&Value>) -> Result<String, FieldError> {
    match value {
        None | Some(Value::Null) => Err(FieldError::body(
            Some("type"),
            "missing",
            "type is required",
        )),
        Some(Value::String(kind)) if is_kind(kind) => Ok(kind.clone()),
        Some(Value::String(_)) => Err(FieldError::body(
            Some("type"),
            "string_pattern_mismatch",
            format!("type must be 1 to {MAX_KIND_LEN} lower-case letters, digits or _"),
        )),
        Some(_) => Err(FieldError::body(
            Some("type"),
            "string_type",
            "type must be a string",
        )),
    }
}

fn is_kind(kind: &str) -> bool {
    (1..=MAX_KIND_LEN).contains(&kind.len())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `loc` extended by `key` (dotted keys such as `entry.0` become several parts).
fn path(loc: &[String], key: impl AsRef<str>) -> Vec<String> {
    let mut extended = loc.to_vec();
    extended.extend(key.as_ref().split('.').map(str::to_owned));
    extended
}

/// A problem with the body's shape at `loc`, its message naming the place.
fn problem(loc: &[String], kind: &'static str, rule: &str) -> Vec<FieldError> {
    let place = if loc.is_empty() {
        "body".to_owned()
    } else {
        loc.join(".")
    };
    let mut full = vec!["body".to_owned()];
    full.extend_from_slice(loc);
    vec![FieldError {
        loc: full,
        msg: format!("{place} {rule}"),
        kind,
    }]
}

fn object<'a>(value: &'a Value, loc: &[String]) -> Result<&'a Map<String, Value>, Vec<FieldError>> {
    value
        .as_object()
        .ok_or_else(|| problem(loc, "model_attributes_type", "must be a JSON object"))
}

/// `parent[key]` when it is a list; `None` when absent or null.
fn list<'a>(
    parent: &'a Map<String, Value>,
    key: &str,
    loc: &[String],
) -> Result<Option<&'a Vec<Value>>, Vec<FieldError>> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(_) => Err(problem(&path(loc, key), "list_type", "must be a list")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MAX_TEXT_CHARS;
    use serde_json::json;

    // ---- Meta's documented payloads ------------------------------------------------

    /// The text message of Meta's "messages webhook reference".
    fn meta_text_example() -> Value {
        json!({
          "object": "whatsapp_business_account",
          "entry": [{
            "id": "102290129340398",
            "changes": [{
              "value": {
                "messaging_product": "whatsapp",
                "metadata": {
                  "display_phone_number": "15550783881",
                  "phone_number_id": "106540352242922"
                },
                "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
                "messages": [{
                  "from": "16505551234",
                  "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                  "timestamp": "1749416383",
                  "type": "text",
                  "text": {"body": "Does it come in another color?"}
                }]
              },
              "field": "messages"
            }]
          }]
        })
    }

    /// An image with a caption, as in Meta's webhook payload examples.
    fn meta_image_example() -> Value {
        json!({
          "object": "whatsapp_business_account",
          "entry": [{
            "id": "8856996819413533",
            "changes": [{
              "value": {
                "messaging_product": "whatsapp",
                "metadata": {
                  "display_phone_number": "16505553333",
                  "phone_number_id": "27681414235104944"
                },
                "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": "16315551234"}],
                "messages": [{
                  "from": "16315551234",
                  "id": "wamid.ABGGFlCGg0cvAgo-sJQh43L5Pe4W",
                  "timestamp": "1603059201",
                  "type": "image",
                  "image": {
                    "caption": "This is a caption",
                    "mime_type": "image/jpeg",
                    "sha256": "81d3bd8a8db4868c9520ed47186e8b7c5789e61ff79f7f834be6950b808a90d3",
                    "id": "2754859441498128"
                  }
                }]
              },
              "field": "messages"
            }]
          }]
        })
    }

    /// A status update only (Meta's "status messages webhook reference" shape).
    fn meta_status_example() -> Value {
        json!({
          "object": "whatsapp_business_account",
          "entry": [{
            "id": "102290129340398",
            "changes": [{
              "value": {
                "messaging_product": "whatsapp",
                "metadata": {
                  "display_phone_number": "15550783881",
                  "phone_number_id": "106540352242922"
                },
                "statuses": [{
                  "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA",
                  "status": "delivered",
                  "timestamp": "1750263773",
                  "recipient_id": "16505551234",
                  "conversation": {
                    "id": "6ceb9d929c1a4e1e2ab5b4e4b3d4c1b0",
                    "origin": {"type": "service"}
                  },
                  "pricing": {"billable": true, "pricing_model": "PMP", "category": "service"}
                }, {
                  "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA",
                  "status": "read",
                  "timestamp": "1750263780",
                  "recipient_id": "16505551234"
                }]
              },
              "field": "messages"
            }]
          }]
        })
    }

    /// Another field on the same subscription: a template's status.
    fn meta_template_status_example() -> Value {
        json!({
          "object": "whatsapp_business_account",
          "entry": [{
            "id": "102290129340398",
            "time": 1674864290,
            "changes": [{
              "value": {
                "event": "APPROVED",
                "message_template_id": 594_425_479_261_596_u64,
                "message_template_name": "order_confirmation",
                "message_template_language": "en_US",
                "reason": "NONE"
              },
              "field": "message_template_status_update"
            }]
          }]
        })
    }

    fn body(value: &Value) -> Vec<u8> {
        serde_json::to_vec(value).unwrap()
    }

    fn mapped(batch: &Batch) -> Vec<&SourcedMessage> {
        batch
            .elements
            .iter()
            .map(|element| element.as_ref().expect("mapped"))
            .collect()
    }

    fn locs(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(|e| e.loc.join(".")).collect()
    }

    /// A one-message delivery with `message` as its element.
    fn with_message(message: Value) -> Vec<u8> {
        let mut payload = meta_text_example();
        payload["entry"][0]["changes"][0]["value"]["messages"] = json!([message]);
        body(&payload)
    }

    fn text_message(id: &str, text: &str) -> Value {
        json!({"from": "16505551234", "id": id, "timestamp": "1749416383",
               "type": "text", "text": {"body": text}})
    }

    #[test]
    fn maps_metas_text_example() {
        let batch = parse(&body(&meta_text_example())).unwrap();
        assert!(batch.ignored.is_empty());
        let [sourced] = mapped(&batch)[..] else {
            panic!("one message: {batch:?}")
        };
        let message = &sourced.message;
        assert_eq!(
            message.message_id,
            "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
        );
        assert_eq!(message.from, "+16505551234");
        assert_eq!(message.to, "+15550783881");
        assert_eq!(message.ts, "2025-06-08T20:59:43.000Z");
        assert_eq!(message.ts_key, "2025-06-08T20:59:43");
        assert_eq!(
            message.text.as_deref(),
            Some("Does it come in another color?")
        );
        assert_eq!(sourced.kind, "text");
    }

    #[test]
    fn an_image_keeps_its_caption_and_media_without_one_has_no_text() {
        let batch = parse(&body(&meta_image_example())).unwrap();
        let [sourced] = mapped(&batch)[..] else {
            panic!("one message: {batch:?}")
        };
        assert_eq!(sourced.kind, "image");
        assert_eq!(sourced.message.text.as_deref(), Some("This is a caption"));
        assert_eq!(sourced.message.from, "+16315551234");
        assert_eq!(sourced.message.to, "+16505553333");
        assert_eq!(sourced.message.ts, "2020-10-18T22:13:21.000Z");

        for (kind, media, text) in [
            ("image", json!({"id": "1", "mime_type": "image/jpeg"}), None),
            ("video", json!({"id": "2", "caption": "clip"}), Some("clip")),
            (
                "document",
                json!({"id": "3", "caption": "invoice", "filename": "a.pdf"}),
                Some("invoice"),
            ),
            (
                "audio",
                json!({"id": "4", "mime_type": "audio/ogg", "voice": true}),
                None,
            ),
            ("sticker", json!({"id": "5", "animated": false}), None),
        ] {
            let mut message = text_message("wamid.media", "");
            message["type"] = json!(kind);
            message.as_object_mut().unwrap().remove("text");
            message[kind] = media;
            let batch = parse(&with_message(message)).unwrap();
            let [sourced] = mapped(&batch)[..] else {
                panic!("{kind}: {batch:?}")
            };
            assert_eq!(sourced.kind, kind);
            assert_eq!(sourced.message.text.as_deref(), text, "{kind}");
        }
        let location = json!({"from": "16505551234", "id": "wamid.loc", "timestamp": "1749416383",
                              "type": "location",
                              "location": {"latitude": 37.48, "longitude": -122.15, "name": "Office"}});
        let batch = parse(&with_message(location)).unwrap();
        assert_eq!(mapped(&batch)[0].message.text, None);
        assert_eq!(mapped(&batch)[0].kind, "location");
    }

    #[test]
    fn statuses_only_are_counted_not_stored() {
        let batch = parse(&body(&meta_status_example())).unwrap();
        assert!(batch.elements.is_empty());
        assert_eq!(batch.ignored, [Ignored::Status, Ignored::Status]);
    }

    #[test]
    fn other_fields_and_objects_are_ignored_whatever_their_value() {
        let batch = parse(&body(&meta_template_status_example())).unwrap();
        assert!(batch.elements.is_empty());
        assert_eq!(batch.ignored, [Ignored::OtherField]);

        let mut odd = meta_template_status_example();
        odd["entry"][0]["changes"][0]["value"] = json!([1, 2]);
        assert_eq!(parse(&body(&odd)).unwrap().ignored, [Ignored::OtherField]);

        // A Page notification sharing the callback URL, with a `messages`-looking change.
        let page = json!({"object": "page", "entry": [{"id": "1", "changes": [
            {"field": "messages", "value": {"messages": [{"id": "x"}]}}]}]});
        let batch = parse(&body(&page)).unwrap();
        assert!(batch.elements.is_empty());
        assert_eq!(batch.ignored, [Ignored::OtherObject]);
    }

    #[test]
    fn deliveries_with_nothing_in_them_are_counted_as_such() {
        for payload in [
            json!({"object": "whatsapp_business_account", "entry": []}),
            json!({"entry": [{"id": "1"}]}),
            json!({"entry": [{"id": "1", "changes": []}]}),
            json!({"entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "errors": [{"code": 131000, "title": "Something went wrong"}]}}]}]}),
            json!({"entry": [{"id": "1", "changes": [{"field": "messages",
                "value": {"messages": [], "statuses": null}}]}]}),
        ] {
            let batch = parse(&body(&payload)).unwrap();
            assert!(batch.elements.is_empty(), "{payload}");
            assert_eq!(batch.ignored, [Ignored::NoMessages], "{payload}");
        }
    }

    #[test]
    fn a_batch_of_several_entries_and_changes_maps_in_order() {
        let payload = json!({
          "object": "whatsapp_business_account",
          "entry": [
            {"id": "1", "changes": [
              {"field": "messages", "value": {
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "1"},
                "messages": [text_message("m1", "one"), text_message("m2", "two")],
                "statuses": [{"id": "s1", "status": "sent", "timestamp": "1749416380",
                              "recipient_id": "16505551234"}]}},
              {"field": "message_template_status_update", "value": {"event": "APPROVED"}}
            ]},
            {"id": "2", "changes": [
              {"field": "messages", "value": {
                "metadata": {"display_phone_number": "+1 555-010-0200", "phone_number_id": "2"},
                "messages": [text_message("m3", "three")]}}
            ]}
          ]
        });
        let batch = parse(&body(&payload)).unwrap();
        let got: Vec<_> = mapped(&batch)
            .iter()
            .map(|s| (s.message.message_id.as_str(), s.message.to.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("m1", "+15550783881"),
                ("m2", "+15550783881"),
                ("m3", "+15550100200")
            ]
        );
        assert_eq!(batch.ignored, [Ignored::Status, Ignored::OtherField]);
    }

    #[test]
    fn a_huge_batch_maps_every_element_in_order() {
        let messages: Vec<Value> = (0..1000)
            .map(|i| text_message(&format!("wamid.{i:04}"), &format!("message {i}")))
            .collect();
        let mut payload = meta_text_example();
        payload["entry"][0]["changes"][0]["value"]["messages"] = Value::Array(messages);
        let raw = body(&payload);
        assert!(raw.len() < DEFAULT_MAX_BODY_BYTES);
        let batch = parse(&raw).unwrap();
        assert_eq!(batch.elements.len(), 1000);
        for (i, sourced) in mapped(&batch).iter().enumerate() {
            assert_eq!(sourced.message.message_id, format!("wamid.{i:04}"));
            assert_eq!(sourced.message.text, Some(format!("message {i}")));
        }
    }

    #[test]
    fn a_failing_message_is_rejected_alone_and_never_keeps_its_text() {
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        let payload = {
            let mut p = meta_text_example();
            p["entry"][0]["changes"][0]["value"]["messages"] = json!([
                text_message("m1", "fine"),
                text_message("m2", &long),
                text_message("m3", "also fine"),
            ]);
            p
        };
        let batch = parse(&body(&payload)).unwrap();
        assert_eq!(batch.elements.len(), 3);
        assert_eq!(batch.elements[0].as_ref().unwrap().message.message_id, "m1");
        assert_eq!(batch.elements[2].as_ref().unwrap().message.message_id, "m3");
        let rejected = batch.elements[1].as_ref().unwrap_err();
        assert_eq!(rejected.message_id.as_deref(), Some("m2"));
        assert_eq!(locs(&rejected.errors), ["body.text"]);
        assert_eq!(rejected.errors[0].kind, "string_too_long");
        assert!(!format!("{rejected:?}").contains("xxxx"), "no text kept");
    }

    #[test]
    fn element_errors_have_the_webhook_shapes() {
        let check = |message: Value| parse(&with_message(message)).unwrap().elements.remove(0);

        // A timestamp that is not a number.
        let mut message = text_message("m1", "hi");
        message["timestamp"] = json!("yesterday");
        let rejected = check(message).unwrap_err();
        assert_eq!(rejected.message_id.as_deref(), Some("m1"));
        assert_eq!(locs(&rejected.errors), ["body.ts"]);
        assert_eq!(rejected.errors[0].kind, "int_parsing");

        for (timestamp, kind) in [
            (json!(""), "int_parsing"),
            (json!("+1749416383"), "int_parsing"),
            (json!("1749416383.5"), "int_parsing"),
            (json!(-1), "int_type"),
            (json!(1.5), "int_type"),
            (json!(true), "int_type"),
            (json!("253402300800"), "datetime_value"),
            (json!("99999999999999999999999"), "datetime_value"),
            (Value::Null, "missing"),
        ] {
            let mut message = text_message("m1", "hi");
            message["timestamp"] = timestamp.clone();
            let errors = check(message).unwrap_err().errors;
            assert_eq!(locs(&errors), ["body.ts"], "{timestamp}");
            assert_eq!(errors[0].kind, kind, "{timestamp}");
        }

        // A JSON integer timestamp is taken, up to the last second RFC 3339 can write.
        let mut message = text_message("m1", "hi");
        message["timestamp"] = json!(1_749_416_383);
        assert_eq!(
            check(message).unwrap().message.ts,
            "2025-06-08T20:59:43.000Z"
        );
        let mut message = text_message("m1", "hi");
        message["timestamp"] = json!("253402300799");
        assert_eq!(
            check(message).unwrap().message.ts,
            "9999-12-31T23:59:59.000Z"
        );

        // A sender that is not digits, or already has its `+`.
        for from in [json!("1650555abcd"), json!("+16505551234"), json!("")] {
            let mut message = text_message("m1", "hi");
            message["from"] = from.clone();
            let errors = check(message).unwrap_err().errors;
            assert_eq!(locs(&errors), ["body.from"], "{from}");
            assert_eq!(errors[0].kind, "string_pattern_mismatch");
            assert_eq!(errors[0].msg, "from must be + followed by 1 to 15 digits");
        }
        let mut message = text_message("m1", "hi");
        message["from"] = json!(16505551234u64);
        assert_eq!(check(message).unwrap_err().errors[0].kind, "string_type");

        // Everything wrong at once, in field order; no id to report.
        let rejected = check(json!({"id": "", "timestamp": "x", "type": "text",
                                     "text": {"body": 5}}))
        .unwrap_err();
        assert_eq!(rejected.message_id, None);
        assert_eq!(
            locs(&rejected.errors),
            ["body.message_id", "body.from", "body.ts", "body.text"]
        );

        // The type is checked last, after the message's own fields.
        for (kind, problem) in [
            (json!("Text"), "string_pattern_mismatch"),
            (json!("text message"), "string_pattern_mismatch"),
            (json!(""), "string_pattern_mismatch"),
            (
                json!("t".repeat(MAX_KIND_LEN + 1)),
                "string_pattern_mismatch",
            ),
            (json!(7), "string_type"),
            (Value::Null, "missing"),
        ] {
            let rejected = check(json!({"id": "m9", "from": "x", "timestamp": "1",
                                         "type": kind.clone()}))
            .unwrap_err();
            assert_eq!(rejected.message_id.as_deref(), Some("m9"));
            assert_eq!(locs(&rejected.errors), ["body.from", "body.type"], "{kind}");
            assert_eq!(rejected.errors[1].kind, problem, "{kind}");
        }
        let mut message = text_message("m1", "hi");
        message["type"] = json!("request_welcome");
        assert_eq!(check(message).unwrap().kind, "request_welcome");

        // An element that is not an object.
        let rejected = check(json!("wamid.x")).unwrap_err();
        assert_eq!(rejected.message_id, None);
        assert_eq!(locs(&rejected.errors), ["body"]);
    }

    #[test]
    fn a_change_without_a_usable_recipient_rejects_its_messages() {
        let mut payload = meta_text_example();
        let value = &mut payload["entry"][0]["changes"][0]["value"];
        value.as_object_mut().unwrap().remove("metadata");
        let batch = parse(&body(&payload)).unwrap();
        let rejected = batch.elements[0].as_ref().unwrap_err();
        assert_eq!(locs(&rejected.errors), ["body.to"]);
        assert_eq!(rejected.errors[0].kind, "missing");

        payload["entry"][0]["changes"][0]["value"]["metadata"] =
            json!({"display_phone_number": "business"});
        let batch = parse(&body(&payload)).unwrap();
        let rejected = batch.elements[0].as_ref().unwrap_err();
        assert_eq!(rejected.errors[0].kind, "string_pattern_mismatch");
    }

    #[test]
    fn a_body_whose_shape_cannot_be_read_is_refused_whole() {
        let check = |raw: &[u8]| -> (String, &'static str) {
            let errors = parse(raw).unwrap_err();
            assert_eq!(errors.len(), 1);
            (errors[0].loc.join("."), errors[0].kind)
        };
        assert_eq!(check(b"not json"), ("body".into(), "json_invalid"));
        assert_eq!(check(b""), ("body".into(), "json_invalid"));
        assert_eq!(check(b"[]"), ("body".into(), "model_attributes_type"));
        for (payload, loc, kind) in [
            (
                json!({"object": 5, "entry": []}),
                "body.object",
                "string_type",
            ),
            (
                json!({"object": "whatsapp_business_account"}),
                "body.entry",
                "missing",
            ),
            (json!({"entry": {"id": "1"}}), "body.entry", "list_type"),
            (
                json!({"entry": ["x"]}),
                "body.entry.0",
                "model_attributes_type",
            ),
            (
                json!({"entry": [{"changes": {}}]}),
                "body.entry.0.changes",
                "list_type",
            ),
            (
                json!({"entry": [{"changes": []}, {"changes": [7]}]}),
                "body.entry.1.changes.0",
                "model_attributes_type",
            ),
            (
                json!({"entry": [{"changes": [{"value": {}}]}]}),
                "body.entry.0.changes.0.field",
                "missing",
            ),
            (
                json!({"entry": [{"changes": [{"field": 1}]}]}),
                "body.entry.0.changes.0.field",
                "string_type",
            ),
            (
                json!({"entry": [{"changes": [{"field": "messages"}]}]}),
                "body.entry.0.changes.0.value",
                "model_attributes_type",
            ),
            (
                json!({"entry": [{"changes": [{"field": "messages",
                                               "value": {"messages": {"id": "m"}}}]}]}),
                "body.entry.0.changes.0.value.messages",
                "list_type",
            ),
            (
                json!({"entry": [{"changes": [{"field": "messages",
                                               "value": {"statuses": "read"}}]}]}),
                "body.entry.0.changes.0.value.statuses",
                "list_type",
            ),
        ] {
            assert_eq!(check(&body(&payload)), (loc.into(), kind), "{payload}");
        }
        let errors = parse(&body(&json!({"entry": 1}))).unwrap_err();
        assert_eq!(errors[0].msg, "entry must be a list");
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(check(deep.as_bytes()).0, "body");
    }

    // ---- The signature -------------------------------------------------------------

    /// What Meta sends, computed here with `hmac` directly.
    fn meta_signature(secret: &str, body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn verifies_a_known_hmac_sha256() {
        // RFC 4231 test case 2, as Meta would put it in the header.
        let header = b"sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let body = b"what do ya want for nothing?";
        assert_eq!(verify_signature(Some(header), body, "Jefe", None), Ok(()));
        assert_eq!(
            verify_signature(
                Some(header),
                b"what do ya want for something?",
                "Jefe",
                None
            ),
            Err(SignatureProblem::Mismatch)
        );
    }

    #[test]
    fn accepts_the_current_or_the_previous_secret() {
        let raw = body(&meta_text_example());
        let by_new = meta_signature("new-secret", &raw);
        let by_old = meta_signature("old-secret", &raw);
        let verify = |header: &str, previous| {
            verify_signature(Some(header.as_bytes()), &raw, "new-secret", previous)
        };
        assert_eq!(verify(&by_new, None), Ok(()));
        assert_eq!(verify(&by_new.to_uppercase(), None), Ok(()));
        assert_eq!(verify(&format!(" {by_new} "), None), Ok(()));
        assert_eq!(verify(&by_old, None), Err(SignatureProblem::Mismatch));
        assert_eq!(verify(&by_old, Some("old-secret")), Ok(()));
        assert_eq!(verify(&by_new, Some("old-secret")), Ok(()));
        assert_eq!(verify(&by_old, Some("")), Err(SignatureProblem::Mismatch));
        // Made with another secret altogether, or over another body.
        assert_eq!(
            verify(&meta_signature("other", &raw), Some("old-secret")),
            Err(SignatureProblem::Mismatch)
        );
        assert_eq!(
            verify(&meta_signature("new-secret", b"{}"), None),
            Err(SignatureProblem::Mismatch)
        );
    }

    #[test]
    fn an_unset_secret_verifies_nothing() {
        let raw = b"{}";
        let by_empty = meta_signature("", raw);
        assert_eq!(
            verify_signature(Some(by_empty.as_bytes()), raw, "", None),
            Err(SignatureProblem::Mismatch)
        );
        assert_eq!(
            verify_signature(Some(by_empty.as_bytes()), raw, "", Some("")),
            Err(SignatureProblem::Mismatch)
        );
    }

    #[test]
    fn tells_a_missing_header_from_a_malformed_one() {
        let raw = body(&meta_text_example());
        assert_eq!(
            verify_signature(None, &raw, "secret", None),
            Err(SignatureProblem::Missing)
        );
        let good = meta_signature("secret", &raw);
        let hex = &good["sha256=".len()..];
        for bad in [
            String::new(),
            "sha256=".to_owned(),
            hex.to_owned(),
            format!("sha1={hex}"),
            format!("sha256={}", &hex[..63]),
            format!("sha256={hex}0"),
            format!("sha256={}zz", &hex[..62]),
            format!("sha256=sha256={hex}"),
            format!("sha256= {hex}"),
            "a".repeat(65_536),
        ] {
            assert_eq!(
                verify_signature(Some(bad.as_bytes()), &raw, "secret", None),
                Err(SignatureProblem::Malformed),
                "{bad:.80}"
            );
        }
    }

    // ---- The handshake -------------------------------------------------------------

    #[test]
    fn echoes_metas_challenge() {
        // Meta's sample verification request.
        let query = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock";
        assert_eq!(
            handshake(query, Some("meatyhamhock")),
            Ok("1158201444".to_owned())
        );
        // Any order, other parameters ignored, names and values form-decoded.
        let query = "x=1&hub.verify_token=meaty+ham%2Fhock&hub%2Echallenge=Ab9&hub.mode=subscribe";
        assert_eq!(
            handshake(query, Some("meaty ham/hock")),
            Ok("Ab9".to_owned())
        );
        let longest = "z".repeat(MAX_CHALLENGE_LEN);
        let query = format!("hub.mode=subscribe&hub.verify_token=t&hub.challenge={longest}");
        assert_eq!(handshake(&query, Some("t")), Ok(longest));
    }

    #[test]
    fn refuses_every_other_verification_request() {
        use HandshakeRefusal::*;
        let ok = "hub.mode=subscribe&hub.verify_token=tok&hub.challenge=42";
        assert_eq!(handshake(ok, None), Err(Unconfigured));
        assert_eq!(handshake(ok, Some("")), Err(Unconfigured));
        for (query, refusal) in [
            (
                "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=42",
                Token,
            ),
            (
                "hub.mode=subscribe&hub.verify_token=to&hub.challenge=42",
                Token,
            ),
            (
                "hub.mode=subscribe&hub.verify_token=tokk&hub.challenge=42",
                Token,
            ),
            (
                "hub.mode=subscribe&hub.verify_token=TOK&hub.challenge=42",
                Token,
            ),
            (
                "hub.mode=subscribe&hub.verify_token=&hub.challenge=42",
                Token,
            ),
            ("hub.mode=subscribe&hub.challenge=42", Token),
            (
                "hub.mode=unsubscribe&hub.verify_token=tok&hub.challenge=42",
                Mode,
            ),
            (
                "hub.mode=Subscribe&hub.verify_token=tok&hub.challenge=42",
                Mode,
            ),
            ("hub.verify_token=tok&hub.challenge=42", Mode),
            ("", Mode),
            ("hub.mode=subscribe&hub.verify_token=tok", Challenge),
            (
                "hub.mode=subscribe&hub.verify_token=tok&hub.challenge=",
                Challenge,
            ),
            (
                "hub.mode=subscribe&hub.verify_token=tok&hub.challenge=4-2",
                Challenge,
            ),
            (
                "hub.mode=subscribe&hub.verify_token=tok&hub.challenge=4+2",
                Challenge,
            ),
            (
                "hub.mode=subscribe&hub.verify_token=tok&hub.challenge=%3Cb%3E",
                Challenge,
            ),
            (
                "hub.mode=subscribe&hub.verify_token=tok&hub.challenge=%C3%A9",
                Challenge,
            ),
            (
                "hub.mode=subscribe&hub.verify_token=tok&hub.challenge=42&hub.challenge=43",
                Repeated,
            ),
            (
                "hub.mode=subscribe&hub.verify_token=wrong&hub.verify_token=tok&hub.challenge=42",
                Repeated,
            ),
            (
                "hub.mode=subscribe&hub.mode=subscribe&hub.verify_token=tok",
                Repeated,
            ),
        ] {
            assert_eq!(handshake(query, Some("tok")), Err(refusal), "{query}");
        }
        let long = format!(
            "hub.mode=subscribe&hub.verify_token=tok&hub.challenge={}",
            "1".repeat(MAX_CHALLENGE_LEN + 1)
        );
        assert_eq!(handshake(&long, Some("tok")), Err(Challenge));
        assert_eq!(Unconfigured.reason(), "verify_token_unset");
        assert_eq!(Token.reason(), "verify_token_mismatch");
    }
}
