//! `X-Signature` verification: hex HMAC-SHA256 of the raw request body; the key a
//! configured secret stands for; and which of the two signature schemes a delivery passes.
//!
//! Accepts lower or upper case hex and an optional `sha256=` prefix. Any secret in the
//! configured set may match (current and previous, during a rotation). The comparison is
//! constant time (`hmac`'s `verify_slice`), so response timing says nothing about how many
//! leading bytes of a forged signature were right.

use crate::sources::webhook::standard_webhooks;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::borrow::Cow;

type HmacSha256 = Hmac<Sha256>;

/// Length of a SHA-256 digest in hex.
const HEX_LEN: usize = 64;

/// Checks `header` (the `X-Signature` value, raw bytes) against `body` under each of
/// `secrets` (empty secrets are skipped: they mean "not configured").
pub fn verify(header: &[u8], body: &[u8], secrets: &[&[u8]]) -> bool {
    let Some(expected) = parse_header(header) else {
        return false;
    };
    secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .any(|secret| {
            let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any size");
            mac.update(body);
            mac.verify_slice(&expected).is_ok()
        })
}

/// The 32 digest bytes a header claims, or `None` when it is not exactly 64 hex digits
/// (after an optional `sha256=` prefix and surrounding blanks).
fn parse_header(header: &[u8]) -> Option<[u8; 32]> {
    // Bound the work an attacker can cause before anything else: a long header is wrong.
    if header.len() > HEX_LEN + 16 {
        return None;
    }
    let trimmed = header.trim_ascii();
    let digits = strip_prefix_ignore_case(trimmed, b"sha256=").unwrap_or(trimmed);
    if digits.len() != HEX_LEN {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(digits, &mut out).ok()?;
    Some(out)
}

fn strip_prefix_ignore_case<'a>(value: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// The prefix of a Standard Webhooks secret: `whsec_` then the key in base64.
pub const WHSEC_PREFIX: &str = "whsec_";

/// Base64 as the reference libraries read secrets: `=` padding optional, and unused low
/// bits of the last character ignored.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The HMAC key a configured secret stands for, for both schemes: a `whsec_<base64>`
/// secret is the key's bytes in base64 (as every Standard Webhooks sender shows it), any
/// other secret is its own UTF-8 bytes. A `whsec_` secret that does not decode to at least
/// one byte is a configuration error, not a key: guessing would silently refuse every
/// delivery.
pub fn secret_key(secret: &str) -> Result<Cow<'_, [u8]>, String> {
    let Some(encoded) = secret.strip_prefix(WHSEC_PREFIX) else {
        return Ok(Cow::Borrowed(secret.as_bytes()));
    };
    match SECRET_BASE64.decode(encoded) {
        Ok(key) if !key.is_empty() => Ok(Cow::Owned(key)),
        _ => Err(format!(
            "a {WHSEC_PREFIX} secret must be followed by base64"
        )),
    }
}

/// What a delivery carries to prove its sender: either scheme, or both.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    pub x_signature: Option<&'a [u8]>,
    pub standard: standard_webhooks::Headers<'a>,
}

/// Why a delivery's signature was refused, as the log line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Neither scheme's headers.
    Unsigned,
    /// `X-Signature` only, and it is not right.
    XSignature,
    /// Standard Webhooks headers that do not verify (whatever `X-Signature` said).
    Standard(standard_webhooks::Failure),
}

impl Rejection {
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Unsigned => "signature_missing",
            Rejection::XSignature => "signature_mismatch",
            Rejection::Standard(failure) => failure.reason(),
        }
    }
}

/// Accepts a delivery when either scheme verifies under `key`. When both fail, the
/// Standard Webhooks reason is the one reported (it is the more specific: a stale
/// timestamp, say). `now_unix` and `tolerance_secs` bound `webhook-timestamp`.
pub fn verify_delivery(
    presented: &Presented,
    body: &[u8],
    key: &[u8],
    now_unix: u64,
    tolerance_secs: u64,
) -> Result<(), Rejection> {
    let mut rejection = Rejection::Unsigned;
    if presented.standard.present() {
        match standard_webhooks::verify(&presented.standard, body, &[key], now_unix, tolerance_secs)
        {
            Ok(()) => return Ok(()),
            Err(failure) => rejection = Rejection::Standard(failure),
        }
    }
    if let Some(header) = presented.x_signature {
        if verify(header, body, &[key]) {
            return Ok(());
        }
        if rejection == Rejection::Unsigned {
            rejection = Rejection::XSignature;
        }
    }
    Err(rejection)
}

/// Hex HMAC-SHA256 of `body` under `secret`: what a sender puts in `X-Signature`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"message_id":"m1"}"#;
    const SECRET: &[u8] = b"testsecret";

    #[test]
    fn known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn accepts_lower_upper_and_prefixed() {
        let sig = sign(SECRET, BODY);
        assert!(verify(sig.as_bytes(), BODY, &[SECRET]));
        assert!(verify(sig.to_uppercase().as_bytes(), BODY, &[SECRET]));
        assert!(verify(format!("sha256={sig}").as_bytes(), BODY, &[SECRET]));
        assert!(verify(format!("SHA256={sig}").as_bytes(), BODY, &[SECRET]));
        assert!(verify(format!(" {sig} ").as_bytes(), BODY, &[SECRET]));
    }

    #[test]
    fn rejects_malformed_and_wrong() {
        let sig = sign(SECRET, BODY);
        let wrong_body = sign(SECRET, b"{}");
        let wrong_secret = sign(b"other", BODY);
        let non_hex = format!("{}zz", &sig[..62]);
        for bad in [
            "",
            "sha256=",
            &sig[..63],
            &sig[..32],
            &format!("{sig}0"),
            &format!("{sig}00"),
            &non_hex,
            &wrong_body,
            &wrong_secret,
            &format!("sha1={sig}"),
            &format!("sha256=sha256={sig}"),
            &"a".repeat(65_536),
        ] {
            assert!(!verify(bad.as_bytes(), BODY, &[SECRET]), "{bad:.80}");
        }
        assert!(!verify(&[0xff; 64], BODY, &[SECRET]));
    }

    #[test]
    fn secrets_and_keys() {
        assert_eq!(secret_key("plain").unwrap(), &b"plain"[..]);
        assert_eq!(secret_key("").unwrap(), &b""[..]);
        assert_eq!(
            secret_key("WHSEC_AAAA").unwrap(),
            &b"WHSEC_AAAA"[..],
            "prefix is exact"
        );
        assert_eq!(secret_key("whsec_AAEC").unwrap(), &[0u8, 1, 2][..]);
        assert_eq!(secret_key("whsec_AAE=").unwrap(), &[0u8, 1][..]);
        assert_eq!(secret_key("whsec_AAE").unwrap(), &[0u8, 1][..]);
        for bad in [
            "whsec_",
            "whsec_!!!!",
            "whsec_AAEC ",
            "whsec_AA-_",
            "whsec_A",
        ] {
            assert!(secret_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_whsec_secret_keys_x_signature_with_its_decoded_bytes() {
        let key = secret_key("whsec_c2VjcmV0").unwrap(); // "secret"
        assert_eq!(key, &b"secret"[..]);
        let sig = sign(b"secret", BODY);
        assert!(verify(sig.as_bytes(), BODY, &[key.as_ref()]));
    }

    fn standard<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> standard_webhooks::Headers<'a> {
        standard_webhooks::Headers {
            id: Some(id.as_bytes()),
            timestamp: Some(ts.as_bytes()),
            signature: Some(sig.as_bytes()),
        }
    }

    #[test]
    fn a_delivery_passes_when_either_scheme_verifies() {
        use standard_webhooks::Failure;
        const NOW: u64 = 1_700_000_000;
        let good_x = sign(SECRET, BODY);
        let good_sw = standard_webhooks::sign(SECRET, "msg_1", NOW, BODY);
        let now = NOW.to_string();
        let stale = (NOW - 301).to_string();
        let check = |x: Option<&str>, sw: standard_webhooks::Headers| {
            let presented = Presented {
                x_signature: x.map(str::as_bytes),
                standard: sw,
            };
            verify_delivery(&presented, BODY, SECRET, NOW, 300)
        };
        let none = standard_webhooks::Headers::default();
        assert_eq!(check(None, none), Err(Rejection::Unsigned));
        assert_eq!(check(Some(&good_x), none), Ok(()));
        assert_eq!(check(Some("00"), none), Err(Rejection::XSignature));
        assert_eq!(check(None, standard("msg_1", &now, &good_sw)), Ok(()));
        // Both schemes: either one verifying is enough.
        assert_eq!(check(Some("00"), standard("msg_1", &now, &good_sw)), Ok(()));
        assert_eq!(
            check(Some(&good_x), standard("msg_1", &stale, &good_sw)),
            Ok(()),
            "X-Signature carries no time: it verifies on its own"
        );
        // Both fail: the Standard Webhooks reason is reported.
        assert_eq!(
            check(Some("00"), standard("msg_1", &stale, &good_sw)),
            Err(Rejection::Standard(Failure::TooOld))
        );
        let partial = standard_webhooks::Headers {
            id: Some(b"msg_1"),
            ..Default::default()
        };
        assert_eq!(
            check(None, partial),
            Err(Rejection::Standard(Failure::Incomplete))
        );
        assert_eq!(
            Rejection::Standard(Failure::TooNew).reason(),
            "timestamp_too_new"
        );
        assert_eq!(Rejection::Unsigned.reason(), "signature_missing");
    }

    #[test]
    fn either_secret_of_a_rotation_matches_and_empty_never_does() {
        let old = sign(b"old", BODY);
        let new = sign(b"new", BODY);
        assert!(verify(old.as_bytes(), BODY, &[b"new", b"old"]));
        assert!(verify(new.as_bytes(), BODY, &[b"new", b"old"]));
        assert!(!verify(old.as_bytes(), BODY, &[b"new", b""]));
        let empty_key_sig = sign(b"", BODY);
        assert!(!verify(empty_key_sig.as_bytes(), BODY, &[b"", b""]));
    }
}
