//! Standard Webhooks signatures (<https://www.standardwebhooks.com>, the scheme of every
//! Svix-powered sender): headers `webhook-id`, `webhook-timestamp` and `webhook-signature`,
//! the last a space-separated list of `v1,<base64 HMAC-SHA256>` entries over
//! `"{id}.{timestamp}.{raw body}"`.
//!
//! Verification is pure: the caller passes the current time, so every edge of the tolerance
//! window is unit-tested. Sizes are checked before any HMAC work, the HMAC runs once per
//! key (however many entries the header lists), and every comparison is constant time
//! (`hmac`'s `verify_slice`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest `webhook-id` accepted (Svix ids are about 30 bytes).
pub const MAX_ID_LEN: usize = 256;
/// Longest `webhook-timestamp`: seconds since the epoch fit in 19 digits.
pub const MAX_TIMESTAMP_LEN: usize = 19;
/// Longest `webhook-signature`: room for dozens of entries (a `v1` entry is 47 bytes, an
/// asymmetric `v1a` one 92).
pub const MAX_SIGNATURE_LEN: usize = 4096;

/// The three headers as sent (each `None` when absent or sent more than once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Headers<'a> {
    pub id: Option<&'a [u8]>,
    pub timestamp: Option<&'a [u8]>,
    pub signature: Option<&'a [u8]>,
}

impl Headers<'_> {
    /// Whether the request uses this scheme at all (any of the three headers is there).
    pub fn present(&self) -> bool {
        self.id.is_some() || self.timestamp.is_some() || self.signature.is_some()
    }
}

/// Why a Standard Webhooks signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// One of the three headers is missing or empty.
    Incomplete,
    /// A header is longer than any honest sender's.
    TooLarge,
    /// `webhook-id` contains a `.`, which would make the signed content ambiguous.
    InvalidId,
    /// `webhook-timestamp` is not a whole number of seconds.
    InvalidTimestamp,
    /// The timestamp is older than the tolerance allows.
    TooOld,
    /// The timestamp is further in the future than the tolerance allows.
    TooNew,
    /// No `v1,` entry holds a well-formed signature (32 bytes of base64).
    NoSignature,
    /// Well-formed `v1` signatures, none of them right.
    Mismatch,
}

impl Failure {
    /// The reason as the log line names it.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Incomplete => "webhook_headers_incomplete",
            Failure::TooLarge => "webhook_header_too_large",
            Failure::InvalidId => "webhook_id_invalid",
            Failure::InvalidTimestamp => "timestamp_invalid",
            Failure::TooOld => "timestamp_too_old",
            Failure::TooNew => "timestamp_too_new",
            Failure::NoSignature => "signature_malformed",
            Failure::Mismatch => "signature_mismatch",
        }
    }
}

/// Verifies `headers` and `body` under each of `keys` (empty keys are skipped), with the
/// timestamp at most `tolerance_secs` away from `now_unix` on either side.
pub fn verify(
    headers: &Headers,
    body: &[u8],
    keys: &[&[u8]],
    now_unix: u64,
    tolerance_secs: u64,
) -> Result<(), Failure> {
    let (Some(id), Some(timestamp), Some(signature)) =
        (headers.id, headers.timestamp, headers.signature)
    else {
        return Err(Failure::Incomplete);
    };
    let (id, timestamp, signature) = (
        id.trim_ascii(),
        timestamp.trim_ascii(),
        signature.trim_ascii(),
    );
    if id.is_empty() || timestamp.is_empty() || signature.is_empty() {
        return Err(Failure::Incomplete);
    }
    if id.len() > MAX_ID_LEN || signature.len() > MAX_SIGNATURE_LEN {
        return Err(Failure::TooLarge);
    }
    if id.contains(&b'.') {
        return Err(Failure::InvalidId);
    }
    let seconds = parse_timestamp(timestamp).ok_or(Failure::InvalidTimestamp)?;
    if now_unix.saturating_sub(seconds) > tolerance_secs {
        return Err(Failure::TooOld);
    }
    if seconds.saturating_sub(now_unix) > tolerance_secs {
        return Err(Failure::TooNew);
    }

    let candidates: Vec<[u8; 32]> = signature
        .split(|b| *b == b' ')
        .filter_map(v1_signature)
        .collect();
    if candidates.is_empty() {
        return Err(Failure::NoSignature);
    }
    let matched = keys.iter().filter(|key| !key.is_empty()).any(|key| {
        let mac = signed_content_mac(key, id, seconds, body);
        candidates
            .iter()
            .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
    });
    if matched {
        Ok(())
    } else {
        Err(Failure::Mismatch)
    }
}

/// `v1,<base64>` to the 32 signature bytes; `None` for other versions (`v1a` is the
/// asymmetric scheme, not supported) and for anything that is not 32 bytes of base64.
fn v1_signature(entry: &[u8]) -> Option<[u8; 32]> {
    let encoded = entry.strip_prefix(b"v1,")?;
    // 32 bytes are 44 base64 characters; anything longer cannot decode to them.
    if encoded.len() != 44 {
        return None;
    }
    let mut decoded = [0u8; 48];
    match STANDARD.decode_slice(encoded, &mut decoded) {
        Ok(32) => decoded[..32].try_into().ok(),
        _ => None,
    }
}

/// Digits only (no sign, no blanks inside), at most 19 of them.
fn parse_timestamp(value: &[u8]) -> Option<u64> {
    if value.len() > MAX_TIMESTAMP_LEN || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The MAC over `"{id}.{timestamp}.{body}"`, the timestamp as its plain decimal (as the
/// reference libraries sign it).
fn signed_content_mac(key: &[u8], id: &[u8], timestamp: u64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any size");
    mac.update(id);
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` entry a sender sends: `v1,<base64>`.
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mac = signed_content_mac(key, id.as_bytes(), timestamp, body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::webhook::signature::secret_key;

    // The published test vectors of github.com/standard-webhooks/standard-webhooks
    // (libraries/*/tests): secret, message id, timestamp, payload and signature.
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: u64 = 1_614_265_330;
    const VECTOR_PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    /// The vectors' "invalid signature": the right one with its last byte changed.
    const VECTOR_WRONG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
    /// The vectors' decoy in the multi-signature case.
    const VECTOR_DECOY: &str = "Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
    const TOLERANCE: u64 = 300;

    fn key() -> Vec<u8> {
        secret_key(VECTOR_SECRET).unwrap().into_owned()
    }

    fn headers<'a>(id: &'a str, timestamp: &'a str, signature: &'a str) -> Headers<'a> {
        Headers {
            id: Some(id.as_bytes()),
            timestamp: Some(timestamp.as_bytes()),
            signature: Some(signature.as_bytes()),
        }
    }

    /// Verifies the vector's payload with `signature`, at the vector's own time.
    fn check(id: &str, timestamp: &str, signature: &str) -> Result<(), Failure> {
        verify(
            &headers(id, timestamp, signature),
            VECTOR_PAYLOAD,
            &[key().as_slice()],
            VECTOR_TIMESTAMP,
            TOLERANCE,
        )
    }

    const TS: &str = "1614265330";

    #[test]
    fn the_published_vector_signs_and_verifies() {
        assert_eq!(
            sign(&key(), VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD),
            VECTOR_SIGNATURE
        );
        assert_eq!(check(VECTOR_ID, TS, VECTOR_SIGNATURE), Ok(()));
    }

    #[test]
    fn the_published_invalid_signatures_fail() {
        assert_eq!(check(VECTOR_ID, TS, VECTOR_WRONG), Err(Failure::Mismatch));
        assert_eq!(
            check(VECTOR_ID, TS, &format!("v1,{VECTOR_DECOY}")),
            Err(Failure::Mismatch)
        );
        // The JavaScript library's malformed and partial signatures.
        assert_eq!(
            check(VECTOR_ID, TS, "v1,dawfeoifkpqwoekfpqoekf"),
            Err(Failure::NoSignature)
        );
        assert_eq!(check(VECTOR_ID, TS, "v1,"), Err(Failure::NoSignature));
    }

    #[test]
    fn the_published_multi_signature_header_verifies() {
        let header = [
            format!("v1,{VECTOR_DECOY}"),
            format!("v2,{VECTOR_DECOY}"),
            VECTOR_SIGNATURE.to_owned(),
            format!("v1,{VECTOR_DECOY}"),
        ]
        .join(" ");
        assert_eq!(check(VECTOR_ID, TS, &header), Ok(()));
        let without_the_right_one = [format!("v1,{VECTOR_DECOY}"), format!("v2,{VECTOR_DECOY}")];
        assert_eq!(
            check(VECTOR_ID, TS, &without_the_right_one.join(" ")),
            Err(Failure::Mismatch)
        );
    }

    #[test]
    fn the_published_secrets_with_and_without_padding_agree() {
        // The vectors' secrets that need no, one and two `=` of padding, given without it
        // (the reference libraries read them leniently: padding optional, stray low bits in
        // the last character ignored), with the key bytes Python's base64 reads from them.
        for (unpadded, padded, key_hex) in [
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "31f290f6bf06298aab4f08d43c3f082cf648a362da2da4b0",
            ),
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS=",
                "31f290f6bf06298aab4f08d43c3f082cf648a362da2da4",
            ),
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr",
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr==",
                "31f290f6bf06298aab4f08d43c3f082cf648a362da2da4b006",
            ),
        ] {
            let a = secret_key(&format!("whsec_{unpadded}"))
                .unwrap()
                .into_owned();
            let b = secret_key(&format!("whsec_{padded}")).unwrap().into_owned();
            assert_eq!(hex::encode(&*a), key_hex, "{unpadded}");
            assert_eq!(a, b, "{padded}");
            // A signature made with that key verifies under the unpadded secret.
            let sig = sign(
                &hex::decode(key_hex).unwrap(),
                VECTOR_ID,
                VECTOR_TIMESTAMP,
                VECTOR_PAYLOAD,
            );
            let got = verify(
                &headers(VECTOR_ID, TS, &sig),
                VECTOR_PAYLOAD,
                &[a.as_ref()],
                VECTOR_TIMESTAMP,
                TOLERANCE,
            );
            assert_eq!(got, Ok(()), "{unpadded}");
        }
    }

    #[test]
    fn missing_or_partial_headers() {
        let full = headers(VECTOR_ID, TS, VECTOR_SIGNATURE);
        let partial = [
            Headers { id: None, ..full },
            Headers {
                timestamp: None,
                ..full
            },
            Headers {
                signature: None,
                ..full
            },
            Headers {
                id: None,
                timestamp: None,
                ..full
            },
            Headers::default(),
            headers("", TS, VECTOR_SIGNATURE),
            headers(VECTOR_ID, "", VECTOR_SIGNATURE),
            headers(VECTOR_ID, TS, ""),
            headers(VECTOR_ID, TS, "   "),
        ];
        for h in partial {
            let got = verify(
                &h,
                VECTOR_PAYLOAD,
                &[key().as_slice()],
                VECTOR_TIMESTAMP,
                TOLERANCE,
            );
            assert_eq!(got, Err(Failure::Incomplete), "{h:?}");
        }
        assert!(!Headers::default().present());
        assert!(Headers {
            signature: Some(b""),
            ..Headers::default()
        }
        .present());
    }

    #[test]
    fn truncated_wrong_version_and_empty_signatures() {
        let sig = &VECTOR_SIGNATURE[3..];
        for (name, header) in [
            ("truncated", format!("v1,{}", &sig[..40])),
            ("truncated to half", format!("v1,{}", &sig[..22])),
            ("one character more", format!("v1,{sig}A")),
            ("without padding", format!("v1,{}", &sig[..43])),
            ("v1 with nothing", "v1,".to_owned()),
            ("v2", format!("v2,{sig}")),
            ("v1a", format!("v1a,{sig}")),
            ("V1", format!("V1,{sig}")),
            ("no version", sig.to_owned()),
            ("no comma", format!("v1{sig}")),
            ("blank after the comma", format!("v1, {sig}")),
            (
                "url-safe alphabet",
                format!("v1,{}", sig.replace('+', "-").replace('/', "_")),
            ),
            ("hex", format!("v1,{}", "ab".repeat(32))),
        ] {
            assert_eq!(
                check(VECTOR_ID, TS, &header),
                Err(Failure::NoSignature),
                "{name}: {header}"
            );
        }
    }

    #[test]
    fn blanks_between_entries_are_tolerated() {
        let header = format!("v2,x  {VECTOR_SIGNATURE}  ");
        assert_eq!(check(VECTOR_ID, TS, &header), Ok(()));
    }

    #[test]
    fn the_tolerance_window_is_inclusive_on_both_sides() {
        let at = |now: u64| {
            verify(
                &headers(VECTOR_ID, TS, VECTOR_SIGNATURE),
                VECTOR_PAYLOAD,
                &[key().as_slice()],
                now,
                TOLERANCE,
            )
        };
        assert_eq!(at(VECTOR_TIMESTAMP), Ok(()));
        assert_eq!(at(VECTOR_TIMESTAMP + TOLERANCE), Ok(()));
        assert_eq!(at(VECTOR_TIMESTAMP - TOLERANCE), Ok(()));
        assert_eq!(at(VECTOR_TIMESTAMP + TOLERANCE + 1), Err(Failure::TooOld));
        assert_eq!(at(VECTOR_TIMESTAMP - TOLERANCE - 1), Err(Failure::TooNew));
        assert_eq!(at(u64::MAX), Err(Failure::TooOld));
        assert_eq!(at(0), Err(Failure::TooNew));
        // The window is checked before the signature: a replay learns nothing more.
        let stale = verify(
            &headers(VECTOR_ID, TS, VECTOR_WRONG),
            VECTOR_PAYLOAD,
            &[key().as_slice()],
            VECTOR_TIMESTAMP + 3600,
            TOLERANCE,
        );
        assert_eq!(stale, Err(Failure::TooOld));
    }

    #[test]
    fn timestamps_must_be_whole_seconds() {
        for bad in [
            "hello",
            "1614265330.5",
            "-1614265330",
            "+1614265330",
            "1_614_265_330",
            "1614265330s",
            "0x6037c3f2",
            "1e9",
            "16142 65330",
            "99999999999999999999",
            "18446744073709551616",
        ] {
            assert_eq!(
                check(VECTOR_ID, bad, VECTOR_SIGNATURE),
                Err(Failure::InvalidTimestamp),
                "{bad}"
            );
        }
        // Leading zeros name the same second, signed as its plain decimal.
        assert_eq!(check(VECTOR_ID, "01614265330", VECTOR_SIGNATURE), Ok(()));
    }

    #[test]
    fn the_id_is_bounded_and_cannot_shift_the_signed_content() {
        assert_eq!(
            check("msg.1614265330", TS, VECTOR_SIGNATURE),
            Err(Failure::InvalidId)
        );
        let long = "m".repeat(MAX_ID_LEN + 1);
        assert_eq!(check(&long, TS, VECTOR_SIGNATURE), Err(Failure::TooLarge));
        assert_eq!(
            check("msg_other", TS, VECTOR_SIGNATURE),
            Err(Failure::Mismatch),
            "the id is signed"
        );
    }

    #[test]
    fn absurd_signature_headers_are_refused_before_any_hmac() {
        let huge = format!("{VECTOR_SIGNATURE} ").repeat(MAX_SIGNATURE_LEN / 40);
        assert!(huge.len() > MAX_SIGNATURE_LEN);
        assert_eq!(check(VECTOR_ID, TS, &huge), Err(Failure::TooLarge));
    }

    #[test]
    fn the_body_is_signed_byte_for_byte() {
        let got = verify(
            &headers(VECTOR_ID, TS, VECTOR_SIGNATURE),
            br#"{"test":2432232314}"#,
            &[key().as_slice()],
            VECTOR_TIMESTAMP,
            TOLERANCE,
        );
        assert_eq!(got, Err(Failure::Mismatch));
    }

    #[test]
    fn any_key_of_a_rotation_verifies_and_empty_keys_never_do() {
        let old = key();
        let new = b"a-new-key".to_vec();
        let by_new = sign(&new, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD);
        for sig in [VECTOR_SIGNATURE, by_new.as_str()] {
            let got = verify(
                &headers(VECTOR_ID, TS, sig),
                VECTOR_PAYLOAD,
                &[new.as_slice(), old.as_slice()],
                VECTOR_TIMESTAMP,
                TOLERANCE,
            );
            assert_eq!(got, Ok(()), "{sig}");
        }
        let by_empty = sign(b"", VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD);
        let got = verify(
            &headers(VECTOR_ID, TS, &by_empty),
            VECTOR_PAYLOAD,
            &[b"", b""],
            VECTOR_TIMESTAMP,
            TOLERANCE,
        );
        assert_eq!(got, Err(Failure::Mismatch));
    }
}
