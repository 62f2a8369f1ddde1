//! The rejection log's entries: why a delivery was refused, and what of it may be kept.
//!
//! Operators ask "what was rejected, and why?". An entry keeps the time, route, status,
//! reason, the 422's field locations, the request id, the body's size and its SHA-256: enough
//! to match a sender's own records, never the text, the signature, a secret or a token.
//! The hash is taken after the answer is sent (see `handler::AfterResponse`), so a refused
//! delivery costs its sender nothing more than before.

use crate::problem::FieldError;
use crate::sources::webhook::signature;
use crate::sources::webhook::standard_webhooks::Failure;
use sha2::{Digest, Sha256};

/// Why a delivery was refused: the `reason` of an entry and of `webhook_rejections_total`.
/// A fixed set, so the metric's series stay bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    InvalidSignature,
    TimestampOutOfTolerance,
    PayloadTooLarge,
    ValidationError,
    NotConfigured,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::InvalidSignature,
        Reason::TimestampOutOfTolerance,
        Reason::PayloadTooLarge,
        Reason::ValidationError,
        Reason::NotConfigured,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidSignature => "invalid_signature",
            Reason::TimestampOutOfTolerance => "timestamp_out_of_tolerance",
            Reason::PayloadTooLarge => "payload_too_large",
            Reason::ValidationError => "validation_error",
            Reason::NotConfigured => "not_configured",
        }
    }

    /// A signature refusal's reason: a well-signed delivery outside the time window is
    /// told apart from a forgery, since the fix (a clock, a retry queue) is a different one.
    pub fn of_signature(rejection: signature::Rejection) -> Reason {
        match rejection {
            signature::Rejection::Standard(Failure::TooOld | Failure::TooNew) => {
                Reason::TimestampOutOfTolerance
            }
            _ => Reason::InvalidSignature,
        }
    }
}

/// What the handler knows of the body it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Read in full: its size and hash are kept.
    Read(Vec<u8>),
    /// Refused on its declared `Content-Length`, unread.
    Declared(u64),
    /// Not read in full (it exceeded the limit part way, or was refused before reading):
    /// no size or hash to give.
    Unread,
}

/// A refused delivery, as the handler hands it on for after the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub reason: Reason,
    /// A fixed word that narrows the reason (the log line's `reason`, e.g.
    /// `signature_mismatch`); never request content.
    pub detail: &'static str,
    /// For a 422: the `loc` of each problem (`["body", "from"]`), never the values.
    pub locs: Vec<Vec<String>>,
    pub body: Body,
}

impl Rejected {
    pub fn new(reason: Reason, detail: &'static str, body: Body) -> Rejected {
        Rejected {
            reason,
            detail,
            locs: Vec::new(),
            body,
        }
    }

    /// A body that failed validation: its problems' locations are kept, not their messages
    /// (which may quote the values).
    pub fn invalid(errors: &[FieldError], body: Vec<u8>) -> Rejected {
        Rejected {
            locs: errors.iter().map(|e| e.loc.clone()).collect(),
            ..Rejected::new(
                Reason::ValidationError,
                "validation_error",
                Body::Read(body),
            )
        }
    }

    /// The entry to store, hashing the body now.
    pub fn entry(&self, at: String, route: &'static str, status: u16, request_id: &str) -> Entry {
        let (body_bytes, body_sha256) = match &self.body {
            Body::Read(body) => (
                Some(body.len() as u64),
                Some(hex::encode(Sha256::digest(body))),
            ),
            Body::Declared(length) => (Some(*length), None),
            Body::Unread => (None, None),
        };
        Entry {
            at,
            route,
            status,
            reason: self.reason,
            detail: self.detail,
            locs: self.locs.clone(),
            request_id: request_id.to_owned(),
            body_bytes,
            body_sha256,
        }
    }
}

/// One entry of the rejection log, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When the request started (RFC 3339, UTC, milliseconds).
    pub at: String,
    pub route: &'static str,
    pub status: u16,
    pub reason: Reason,
    pub detail: &'static str,
    pub locs: Vec<Vec<String>>,
    pub request_id: String,
    pub body_bytes: Option<u64>,
    /// Lower-case hex.
    pub body_sha256: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_or_early_timestamp_is_out_of_tolerance_and_the_rest_invalid() {
        let standard = signature::Rejection::Standard;
        assert_eq!(
            Reason::of_signature(standard(Failure::TooOld)),
            Reason::TimestampOutOfTolerance
        );
        assert_eq!(
            Reason::of_signature(standard(Failure::TooNew)),
            Reason::TimestampOutOfTolerance
        );
        for other in [
            signature::Rejection::Unsigned,
            signature::Rejection::XSignature,
            standard(Failure::InvalidTimestamp),
            standard(Failure::Mismatch),
            standard(Failure::Incomplete),
        ] {
            assert_eq!(Reason::of_signature(other), Reason::InvalidSignature);
        }
    }

    #[test]
    fn an_entry_keeps_the_size_and_hash_of_the_body_never_the_body() {
        let body = br#"{"message_id":"m1","text":"secret words"}"#.to_vec();
        let rejected = Rejected::new(Reason::InvalidSignature, "signature_mismatch", {
            Body::Read(body.clone())
        });
        let entry = rejected.entry("2026-01-01T00:00:00.000Z".into(), "/webhook", 401, "r1");
        assert_eq!(entry.body_bytes, Some(body.len() as u64));
        assert_eq!(
            entry.body_sha256.as_deref(),
            Some(hex::encode(Sha256::digest(&body)).as_str())
        );
        assert!(!format!("{entry:?}").contains("secret words"));

        let declared = Rejected::new(Reason::PayloadTooLarge, "content_length", Body::Declared(9))
            .entry(String::new(), "/webhook", 413, "r2");
        assert_eq!((declared.body_bytes, declared.body_sha256), (Some(9), None));
        let partial = Rejected::new(Reason::PayloadTooLarge, "body_length", Body::Unread).entry(
            String::new(),
            "/webhook",
            413,
            "r3",
        );
        assert_eq!((partial.body_bytes, partial.body_sha256), (None, None));
    }

    #[test]
    fn a_validation_failure_keeps_the_locations_not_the_messages() {
        let errors = [
            FieldError::body(Some("from"), "string_pattern_mismatch", "bad +1 555"),
            FieldError::body(None, "json_invalid", "expected value"),
        ];
        let rejected = Rejected::invalid(&errors, b"{}".to_vec());
        assert_eq!(rejected.reason, Reason::ValidationError);
        assert_eq!(
            rejected.locs,
            [
                vec!["body".to_owned(), "from".to_owned()],
                vec!["body".to_owned()]
            ]
        );
        assert!(!format!("{rejected:?}").contains("+1 555"));
    }
}
