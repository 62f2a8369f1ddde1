//! The one JSON log line written for every request, and request ids.
//!
//! Lines never carry the secret, the signature or message text: the struct has no field
//! that could hold them.

use serde::Serialize;

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
    /// Messages the request removed (an erasure, or a retention batch after its answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<u64>,
    /// Why a request failed on our side (storage, configuration); never request content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

impl LogLine<'_> {
    /// The line with its trailing newline, ready for a single write.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        line.push('\n');
        line
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
            message_id: Some("m\"1"),
            dup: Some(false),
            result: Some("created"),
            reason: None,
            removed: None,
            error: None,
        }
        .to_line();
        assert!(line.ends_with("}\n") && !line[..line.len() - 1].contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "info");
        assert_eq!(v["message_id"], "m\"1");
        assert_eq!(v["dup"], false);
        assert!(v.get("error").is_none());
        assert!(v.get("reason").is_none());
    }

    #[test]
    fn clipping_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "hé");
        assert_eq!(clip("hi", 10), "hi");
    }
}
