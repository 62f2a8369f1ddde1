//! `X-Signature` verification: hex HMAC-SHA256 of the raw request body.
//!
//! Accepts lower or upper case hex and an optional `sha256=` prefix. Any secret in the
//! configured set may match (current and previous, during a rotation). The comparison is
//! constant time (`hmac`'s `verify_slice`), so response timing says nothing about how many
//! leading bytes of a forged signature were right.

use hmac::{Hmac, Mac};
use sha2::Sha256;

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
