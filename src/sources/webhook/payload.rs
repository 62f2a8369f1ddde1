//! Validation of a `POST /webhook` body into a [`NewMessage`], by the rules of
//! [`crate::domain`].
//!
//! Every problem is reported at once (one entry per field), never just the first. Strings
//! are kept exactly as sent; only derived columns (instant key, folded text) are computed.

use crate::domain::{is_phone, phone_rule, text_fits, text_rule, NewMessage};
use crate::problem::FieldError;
use crate::timestamp::{self, TimestampErrorKind};
use serde_json::{Map, Value};

/// Parses and validates a raw body. Errors come back in field order.
pub fn parse(body: &[u8]) -> Result<NewMessage, Vec<FieldError>> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        vec![FieldError::body(
            None,
            "json_invalid",
            format!("body is not valid JSON: {}", json_error_summary(&err)),
        )]
    })?;
    let Value::Object(object) = value else {
        return Err(vec![FieldError::body(
            None,
            "model_attributes_type",
            "body must be a JSON object",
        )]);
    };
    validate(&object)
}

fn json_error_summary(err: &serde_json::Error) -> String {
    // serde_json's message names the line/column; enough to find the problem, and it never
    // quotes the input back.
    err.to_string()
}

fn validate(object: &Map<String, Value>) -> Result<NewMessage, Vec<FieldError>> {
    validate_fields(object, required_string(object, "ts"))
}

/// Validates a message a source has mapped into the shape of a `/webhook` body
/// (`message_id`, `from`, `to`, `text`; other keys are ignored), by the same rules and with
/// the same error shapes. `ts` comes apart, as the text found or the problem with it: a
/// source that converts its own timestamp (Meta's unix seconds) reports its own problem,
/// still listed in field order.
pub fn validate_fields(
    object: &Map<String, Value>,
    ts: Result<String, FieldError>,
) -> Result<NewMessage, Vec<FieldError>> {
    let mut errors = Vec::new();
    let message_id = keep(
        &mut errors,
        required_string(object, "message_id").and_then(non_empty_id),
    );
    let from = keep(
        &mut errors,
        required_string(object, "from").and_then(|v| phone("from", v)),
    );
    let to = keep(
        &mut errors,
        required_string(object, "to").and_then(|v| phone("to", v)),
    );
    let ts = keep(&mut errors, ts.and_then(timestamp_with_key));
    let text = keep(&mut errors, optional_text(object));

    match (message_id, from, to, ts, text) {
        (Some(message_id), Some(from), Some(to), Some((ts, ts_key)), Some(text)) => {
            Ok(NewMessage {
                message_id,
                from,
                to,
                ts,
                ts_key,
                text,
            })
        }
        _ => Err(errors),
    }
}

/// Records a field's error and carries on, so one answer lists every problem.
fn keep<T>(errors: &mut Vec<FieldError>, result: Result<T, FieldError>) -> Option<T> {
    result.map_err(|err| errors.push(err)).ok()
}

fn non_empty_id(id: String) -> Result<String, FieldError> {
    if id.is_empty() {
        Err(FieldError::body(
            Some("message_id"),
            "string_too_short",
            "message_id must not be empty",
        ))
    } else {
        Ok(id)
    }
}

fn timestamp_with_key(ts: String) -> Result<(String, String), FieldError> {
    match timestamp::instant_key(&ts) {
        Ok(key) => Ok((ts, key)),
        Err(err) => {
            let kind = match err.kind {
                TimestampErrorKind::Format => "datetime_format",
                TimestampErrorKind::Value => "datetime_value",
            };
            Err(FieldError::body(
                Some("ts"),
                kind,
                format!("ts {}", err.message),
            ))
        }
    }
}

fn required_string(object: &Map<String, Value>, field: &str) -> Result<String, FieldError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(FieldError::body(
            Some(field),
            "missing",
            format!("{field} is required"),
        )),
        Some(Value::String(value)) => Ok(value.clone()),
        Some(_) => Err(FieldError::body(
            Some(field),
            "string_type",
            format!("{field} must be a string"),
        )),
    }
}

fn phone(field: &str, value: String) -> Result<String, FieldError> {
    if is_phone(&value) {
        Ok(value)
    } else {
        Err(FieldError::body(
            Some(field),
            "string_pattern_mismatch",
            phone_rule(field),
        ))
    }
}

fn optional_text(object: &Map<String, Value>) -> Result<Option<String>, FieldError> {
    match object.get("text") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text_fits(text) => Ok(Some(text.clone())),
        Some(Value::String(_)) => Err(FieldError::body(
            Some("text"),
            "string_too_long",
            text_rule("text"),
        )),
        Some(_) => Err(FieldError::body(
            Some("text"),
            "string_type",
            "text must be a string or null",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MAX_TEXT_CHARS;
    use serde_json::json;

    fn body(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    fn valid() -> Value {
        json!({"message_id":"m1","from":"+919876543210","to":"+14155550100",
               "ts":"2025-01-15T10:00:00Z","text":"Hello"})
    }

    fn fields(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(|e| e.loc.join(".")).collect()
    }

    #[test]
    fn accepts_the_spec_example_and_keeps_values_as_sent() {
        let msg = parse(&body(valid())).unwrap();
        assert_eq!(msg.message_id, "m1");
        assert_eq!(msg.from, "+919876543210");
        assert_eq!(msg.ts, "2025-01-15T10:00:00Z");
        assert_eq!(msg.ts_key, "2025-01-15T10:00:00");
        assert_eq!(msg.text.as_deref(), Some("Hello"));
        assert_eq!(msg.folded_text().as_deref(), Some("hello"));
    }

    #[test]
    fn text_may_be_absent_or_null_and_unknown_fields_are_ignored() {
        let mut v = valid();
        v.as_object_mut().unwrap().remove("text");
        v["extra"] = json!({"nested": [1, 2]});
        assert_eq!(parse(&body(v.clone())).unwrap().text, None);
        v["text"] = Value::Null;
        assert_eq!(parse(&body(v)).unwrap().text, None);
    }

    #[test]
    fn text_length_counts_characters_not_bytes() {
        let mut v = valid();
        v["text"] = json!("é".repeat(MAX_TEXT_CHARS));
        assert!(parse(&body(v.clone())).is_ok());
        v["text"] = json!("😀".repeat(MAX_TEXT_CHARS + 1));
        let errs = parse(&body(v)).unwrap_err();
        assert_eq!(fields(&errs), ["body.text"]);
        assert_eq!(errs[0].kind, "string_too_long");
    }

    #[test]
    fn reports_every_problem_at_once() {
        let errs = parse(&body(json!({"message_id": "", "from": 12, "to": "123",
                                     "ts": "2025-02-30T00:00:00Z", "text": 5})))
        .unwrap_err();
        assert_eq!(
            fields(&errs),
            [
                "body.message_id",
                "body.from",
                "body.to",
                "body.ts",
                "body.text"
            ]
        );
        let kinds: Vec<_> = errs.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                "string_too_short",
                "string_type",
                "string_pattern_mismatch",
                "datetime_value",
                "string_type"
            ]
        );
        let missing = parse(b"{}").unwrap_err();
        assert_eq!(
            fields(&missing),
            ["body.message_id", "body.from", "body.to", "body.ts"]
        );
        assert!(missing.iter().all(|e| e.kind == "missing"));
    }

    #[test]
    fn rejects_bodies_that_are_not_objects() {
        for raw in [
            &b"[]"[..],
            b"1",
            b"null",
            b"\"x\"",
            b"",
            b"{",
            b"\xff\xfe",
            b"{\"a\":1}x",
        ] {
            let errs = parse(raw).unwrap_err();
            assert_eq!(fields(&errs), ["body"], "{raw:?}");
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(fields(&parse(deep.as_bytes()).unwrap_err()), ["body"]);
    }

    #[test]
    fn timestamp_problems_are_reported_on_ts() {
        for ts in [
            "2025-01-15T10:00:00",
            "2025-01-15T10:00:00+05:30",
            "2025-01-15T24:00:00Z",
        ] {
            let mut v = valid();
            v["ts"] = json!(ts);
            assert_eq!(fields(&parse(&body(v)).unwrap_err()), ["body.ts"], "{ts}");
        }
    }
}
