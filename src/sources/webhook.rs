//! The inbox's own source, `POST /webhook`: a JSON body of one message ([`payload`]), signed
//! with `X-Signature` or the Standard Webhooks headers ([`signature`],
//! [`standard_webhooks`]). The native providers map their payloads onto the same
//! [`crate::domain::NewMessage`] through [`payload::validate_fields`], so every source obeys
//! the same rules.

pub mod payload;
pub mod signature;
pub mod standard_webhooks;
