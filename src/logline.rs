//! The one JSON log line written for every request, and request ids.
//!
//! Lines never carry the secret, the signature or message text: the struct has no field
//! that could hold them.

use crate::sources::RejectedElement;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    /// Parses the `log_level` variable (case-insensitive); `None` for anything else.
    pub fn parse(value: &str) -> Option<Level> {
        match value.trim().to_ascii_lowercase().as_str() {
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LogLine<'a> {
    pub ts: String,
    pub level: Level,
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    /// Where a delivery came in (`webhook`, `whatsapp`, `twilio`): the delivery routes' lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dup: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'static str>,
    /// Why a delivery was refused (`timestamp_too_old`, `signature_mismatch`, …): a fixed
    /// word, never request content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// A provider's delivery: its messages by outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<MessageCounts>,
    /// A provider's delivery: what it held that is not a message, by kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<BTreeMap<&'static str, u64>>,
    /// A provider's delivery: its messages that failed validation, each with its id and
    /// what was wrong, never a value (at most [`MAX_LOGGED_INVALID`]; `messages` counts all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<&'a [InvalidMessage]>,
    /// Messages the request removed (an erasure, or a retention batch after its answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<u64>,
    /// Why a request failed on our side (storage, configuration); never request content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// A libSQL server's busy refusals the request waited out, before its answer and in the
    /// storage work after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy: Option<crate::storage::BusyWaits>,
}

impl LogLine<'_> {
    /// The line with its trailing newline, ready for a single write.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        line.push('\n');
        line
    }
}

/// What became of a provider delivery's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MessageCounts {
    pub created: u64,
    pub duplicate: u64,
    pub invalid: u64,
}

/// Most invalid messages one line lists: a batch of a thousand bad ones stays a line a log
/// pipeline takes (the count in `messages` is exact).
pub const MAX_LOGGED_INVALID: usize = 50;

/// Longest message id a line repeats.
const MAX_LOGGED_ID_CHARS: usize = 128;

/// A message that failed validation, as its delivery's line lists it: its id (clipped) and,
/// per problem, the field and the kind of problem (`from:string_pattern_mismatch`). Never a
/// value, so never the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidMessage {
    pub message_id: Option<String>,
    pub errors: Vec<String>,
}

impl InvalidMessage {
    pub fn of(rejected: &RejectedElement) -> InvalidMessage {
        InvalidMessage {
            message_id: rejected
                .message_id
                .as_deref()
                .map(|id| clip(id, MAX_LOGGED_ID_CHARS).to_owned()),
            errors: rejected
                .errors
                .iter()
                .map(|error| {
                    let field = error.loc.get(1..).unwrap_or_default().join(".");
                    let field = if field.is_empty() { "body" } else { &field };
                    format!("{field}:{}", error.kind)
                })
                .collect(),
        }
    }
}

/// Longest client-supplied `X-Request-ID` we echo.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The incoming `X-Request-ID` when it is a short printable token (visible ASCII, no
/// spaces); otherwise `None` and the caller generates one.
pub fn accept_request_id(header: &[u8]) -> Option<&str> {
    let ok = !header.is_empty()
        && header.len() <= MAX_REQUEST_ID_LEN
        && header.iter().all(|b| b.is_ascii_graphic());
    ok.then(|| std::str::from_utf8(header).expect("ASCII is UTF-8"))
}

/// A fresh request id: 16 random bytes as 32 hex digits.
pub fn new_request_id(random: [u8; 16]) -> String {
    hex::encode(random)
}

/// Keeps a caller-controlled string (path, method) to a sane size in a log line.
pub fn clip(value: &str, max_chars: usize) -> &str {
    match value.char_indices().nth(max_chars) {
        Some((end, _)) => &value[..end],
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(Level::parse("INFO"), Some(Level::Info));
        assert_eq!(Level::parse(" warn "), Some(Level::Warn));
        assert_eq!(Level::parse("verbose"), None);
        assert!(Level::Debug < Level::Info && Level::Warn < Level::Error);
    }

    #[test]
    fn request_ids() {
        assert_eq!(accept_request_id(b"abc-123_X.Y:z"), Some("abc-123_X.Y:z"));
        assert_eq!(accept_request_id(b""), None);
        assert_eq!(accept_request_id(b"has space"), None);
        assert_eq!(accept_request_id(b"new\nline"), None);
        assert_eq!(accept_request_id("ünï".as_bytes()), None);
        assert_eq!(accept_request_id(&[b'a'; 129]), None);
        assert!(accept_request_id(&[b'a'; 128]).is_some());
        assert_eq!(new_request_id([0xab; 16]), "ab".repeat(16));
    }

    #[test]
    fn line_shape() {
        let line = LogLine {
            ts: "2025-01-15T10:00:00.000Z".into(),
            level: Level::Info,
            request_id: "r1",
            method: "POST",
            path: "/webhook",
            status: 200,
            latency_ms: 1.25,
            source: Some("webhook"),
            message_id: Some("m\"1"),
            dup: Some(false),
            result: Some("created"),
            reason: None,
            messages: None,
            ignored: None,
            invalid: None,
            removed: None,
            error: None,
            busy: Some(crate::storage::BusyWaits {
                retries: 2,
                waited_ms: 5.5,
            }),
        }
        .to_line();
        assert!(line.ends_with("}\n") && !line[..line.len() - 1].contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "info");
        assert_eq!(v["message_id"], "m\"1");
        assert_eq!(v["dup"], false);
        assert_eq!(v["source"], "webhook");
        assert!(v.get("error").is_none());
        assert!(v.get("reason").is_none());
        assert!(v.get("messages").is_none() && v.get("invalid").is_none());
        assert_eq!(
            v["busy"],
            serde_json::json!({"retries": 2, "waited_ms": 5.5})
        );
    }

    #[test]
    fn an_invalid_message_is_its_id_and_problems_never_a_value() {
        use crate::problem::FieldError;
        let rejected = RejectedElement {
            message_id: Some(format!("wamid.{}", "x".repeat(200))),
            errors: vec![
                FieldError::body(Some("from"), "string_pattern_mismatch", "+1 555 bad"),
                FieldError::body(Some("text"), "string_too_long", "secret words"),
                FieldError::body(None, "model_attributes_type", "not an object"),
            ],
        };
        let logged = InvalidMessage::of(&rejected);
        assert_eq!(logged.message_id.as_ref().unwrap().chars().count(), 128);
        assert_eq!(
            logged.errors,
            [
                "from:string_pattern_mismatch",
                "text:string_too_long",
                "body:model_attributes_type"
            ]
        );
        let text = serde_json::to_string(&logged).unwrap();
        assert!(!text.contains("secret words") && !text.contains("555"));
        let counts = MessageCounts {
            created: 2,
            duplicate: 1,
            invalid: 1,
        };
        assert_eq!(
            serde_json::to_value(counts).unwrap(),
            serde_json::json!({"created": 2, "duplicate": 1, "invalid": 1})
        );
    }

    #[test]
    fn clipping_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "hé");
        assert_eq!(clip("hi", 10), "hi");
    }
}
