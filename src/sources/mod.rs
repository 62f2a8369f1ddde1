//! Native sources: providers whose own webhooks the inbox takes without glue in front of it.
//!
//! Each provider has one file holding its pure parsing and verification (signatures,
//! handshakes, the mapping of its payload onto a message), tested natively; routes, storage,
//! logs and metrics live elsewhere and call into it.
//!
//! What a source yields, per provider message: a [`SourcedMessage`] (a [`NewMessage`] that
//! passed the same rules as a `/webhook` body, through [`crate::sources::webhook::payload::validate_fields`],
//! plus the provider's message type), or a [`RejectedElement`] (its id and what was wrong,
//! never its text), which is counted and logged without failing the rest of a batch. What a
//! provider sends that is not a message to store is [`Ignored`], by kind.

pub mod twilio;
pub mod webhook;
pub mod whatsapp;

use crate::domain::NewMessage;
use crate::problem::FieldError;

/// Where a delivery came in: its route, and the `source` of its log line, metrics and
/// stored messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// `POST /webhook`: the inbox's own signed format.
    Webhook,
    /// `POST /webhook/whatsapp`: Meta's WhatsApp Cloud API.
    WhatsApp,
    /// `POST /webhook/twilio`: Twilio's WhatsApp and SMS webhooks.
    Twilio,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Webhook, Source::WhatsApp, Source::Twilio];

    /// The source as labels, log lines and stored rows name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::WhatsApp => "whatsapp",
            Source::Twilio => "twilio",
        }
    }
}

/// A provider message mapped onto a message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedMessage {
    pub message: NewMessage,
    /// The provider's message type (`text`, `image`, `sms`, ...), shown with the message.
    pub kind: String,
}

/// A provider message that failed validation: enough to log and count it. The text is
/// never kept, so a rejection cannot leak what a sender wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedElement {
    /// The provider's id when the element had a non-empty one.
    pub message_id: Option<String>,
    pub errors: Vec<FieldError>,
}

/// One element of a delivery, mapped or rejected.
pub type Element = Result<SourcedMessage, RejectedElement>;

/// What a provider sent that is not a message to store, counted by kind (a bounded set, so
/// each is a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ignored {
    /// A status update on a message the business sent (sent, delivered, read, failed).
    Status,
    /// A change of another subscribed field (template status, account update, ...).
    OtherField,
    /// A delivery, or a change, with nothing to store and nothing else to count.
    NoMessages,
    /// A notification for another kind of Meta object (a Page, say) sharing the callback URL.
    OtherObject,
}

impl Ignored {
    /// Every kind, for metrics that list all of them.
    pub const ALL: [Ignored; 4] = [
        Ignored::Status,
        Ignored::OtherField,
        Ignored::NoMessages,
        Ignored::OtherObject,
    ];

    /// The kind as metrics and log lines name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::Status => "status",
            Ignored::OtherField => "other_field",
            Ignored::NoMessages => "no_messages",
            Ignored::OtherObject => "other_object",
        }
    }
}

/// Why a provider's signature was refused, for the rejection log's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureProblem {
    /// No signature header.
    Missing,
    /// A header that cannot hold a signature of the provider's scheme.
    Malformed,
    /// A well-formed signature that no configured secret produces.
    Mismatch,
}

impl SignatureProblem {
    /// The reason as the log line names it (the words [`crate::sources::webhook::signature`] uses).
    pub fn reason(self) -> &'static str {
        match self {
            SignatureProblem::Missing => "signature_missing",
            SignatureProblem::Malformed => "signature_malformed",
            SignatureProblem::Mismatch => "signature_mismatch",
        }
    }
}

/// The configured secrets to try, current first: unset or empty ones never verify anything.
fn configured<'a>(current: &'a str, previous: Option<&'a str>) -> impl Iterator<Item = &'a [u8]> {
    [Some(current), previous]
        .into_iter()
        .flatten()
        .filter(|secret| !secret.is_empty())
        .map(str::as_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_reasons_have_stable_names() {
        let names: Vec<_> = Ignored::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(
            names,
            ["status", "other_field", "no_messages", "other_object"]
        );
        assert_eq!(SignatureProblem::Missing.reason(), "signature_missing");
        assert_eq!(SignatureProblem::Malformed.reason(), "signature_malformed");
        assert_eq!(SignatureProblem::Mismatch.reason(), "signature_mismatch");
    }

    #[test]
    fn only_set_secrets_are_tried_current_first() {
        let tried: Vec<_> = configured("new", Some("old")).collect();
        assert_eq!(tried, [&b"new"[..], &b"old"[..]]);
        assert_eq!(configured("", Some("old")).count(), 1);
        assert_eq!(configured("new", Some("")).count(), 1);
        assert_eq!(configured("", None).count(), 0);
    }
}
