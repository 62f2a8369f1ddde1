//! Twilio (WhatsApp and SMS) as a source, after Twilio's "webhook security" documentation:
//! the `X-Twilio-Signature` check, the form body, and the mapping of an incoming message.
//!
//! Twilio signs the URL it called followed by every POST parameter, so the signature depends
//! on the public URL (`public_base_url`, as configured in Twilio's console), which a
//! component behind a proxy cannot see for itself: [`signed_url`] rebuilds it.
//!
//! One request is one message. Twilio sends no timestamp with it, so the time of receipt
//! stands for `ts`.

use super::{configured, Ignored, SignatureProblem, SourcedMessage};
use crate::problem::FieldError;
use crate::sources::webhook::payload::validate_fields;
use crate::timestamp::format_utc;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha1::Sha1;
use std::time::SystemTime;

type HmacSha1 = Hmac<Sha1>;

/// The answer to a delivery: empty TwiML, so that Twilio sends no reply message (served
/// as `text/xml`).
pub const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#;

/// How WhatsApp addresses are written in `From` and `To` (`whatsapp:+14155238886`).
pub const WHATSAPP_PREFIX: &str = "whatsapp:";

/// An HMAC-SHA1 in base64: 20 bytes, 28 characters with padding.
const SIGNATURE_B64_LEN: usize = 28;
const SHA1_LEN: usize = 20;

/// The message's fields, in the order their problems are listed, and the parameter each
/// comes from.
const FIELDS: [(&str, &str); 4] = [
    ("MessageSid", "message_id"),
    ("From", "from"),
    ("To", "to"),
    ("Body", "text"),
];

/// The full URL Twilio signed: `public_base_url` (as Twilio calls it, e.g.
/// `https://inbox.example.com`), the request's path and its query exactly as received (still
/// encoded), after `?` only when there is one. One `/` joins base and path, however either
/// is written.
pub fn signed_url(public_base_url: &str, path: &str, query: &str) -> String {
    let mut url = format!(
        "{}/{}",
        public_base_url.trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// The form body's parameters, decoded (`+` is a space), in the order sent.
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// `X-Twilio-Signature` for a request: base64 of the HMAC-SHA1, keyed with the auth token,
/// of `url` followed by every parameter sorted by name (then value, for a repeated name),
/// each as its name then its value.
pub fn expected_signature(url: &str, params: &[(String, String)], auth_token: &str) -> String {
    let mac = signing_mac(url, &sorted(params), auth_token.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks `X-Twilio-Signature` under `auth_token`, then `previous` during a rotation; empty
/// tokens never match. The decoded MAC is compared in constant time (`hmac`'s
/// `verify_slice`), never the base64 text.
pub fn verify_signature(
    header: Option<&[u8]>,
    url: &str,
    params: &[(String, String)],
    auth_token: &str,
    previous: Option<&str>,
) -> Result<(), SignatureProblem> {
    let header = header.ok_or(SignatureProblem::Missing)?;
    let claimed = claimed_mac(header).ok_or(SignatureProblem::Malformed)?;
    let params = sorted(params);
    let matched = configured(auth_token, previous).any(|key| {
        signing_mac(url, &params, key)
            .verify_slice(&claimed)
            .is_ok()
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureProblem::Mismatch)
    }
}

/// Parameters in signing order: by name, then by value. Byte order, which for UTF-8 is
/// code point order: Twilio's "case-sensitive" sort.
fn sorted(params: &[(String, String)]) -> Vec<&(String, String)> {
    let mut sorted: Vec<_> = params.iter().collect();
    sorted.sort();
    sorted
}

fn signing_mac(url: &str, sorted: &[&(String, String)], key: &[u8]) -> HmacSha1 {
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC takes keys of any size");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The 20 bytes a header claims: exactly 28 characters of padded base64, blanks around
/// allowed. `None` for anything else.
fn claimed_mac(header: &[u8]) -> Option<[u8; SHA1_LEN]> {
    let header = header.trim_ascii();
    if header.len() != SIGNATURE_B64_LEN {
        return None;
    }
    // Room for the decoder's estimate (21 bytes) even though 20 come out.
    let mut decoded = [0u8; SHA1_LEN + 4];
    match STANDARD.decode_slice(header, &mut decoded) {
        Ok(SHA1_LEN) => decoded[..SHA1_LEN].try_into().ok(),
        _ => None,
    }
}

/// Whether a request is not a message to store: a status callback for a message the
/// business sent (`MessageStatus` or `SmsStatus` such as `sent`, `delivered`, `read`), in
/// case the route is also given as a status callback URL. An incoming message's status is
/// `received` (or `receiving`).
pub fn ignored(params: &[(String, String)]) -> Option<Ignored> {
    let status = first(params, "MessageStatus").or_else(|| first(params, "SmsStatus"))?;
    (!matches!(status, "received" | "receiving")).then_some(Ignored::Status)
}

/// Maps an incoming message onto a message to store, validated by the `/webhook` rules:
/// `MessageSid` is `message_id`; `From` and `To` lose a `whatsapp:` prefix; `Body` is `text`,
/// and an empty `Body` is none (a media-only message: its media are not stored); `ts` is
/// `received`, formatted as RFC 3339 UTC, since Twilio sends no time of its own. The kind is
/// the channel: `whatsapp` when `From` had the prefix, else `sms` (MMS included). A repeated
/// field is refused before anything else: which value is meant would be a guess.
pub fn message(
    params: &[(String, String)],
    received: SystemTime,
) -> Result<SourcedMessage, Vec<FieldError>> {
    let repeated: Vec<FieldError> = FIELDS
        .iter()
        .filter(|(param, _)| params.iter().filter(|(name, _)| name == param).count() > 1)
        .map(|(param, field)| {
            FieldError::body(
                Some(field),
                "duplicate",
                format!("{param} given more than once"),
            )
        })
        .collect();
    if !repeated.is_empty() {
        return Err(repeated);
    }

    let from = first(params, "From");
    let channel = match from.and_then(|from| from.strip_prefix(WHATSAPP_PREFIX)) {
        Some(_) => "whatsapp",
        None => "sms",
    };
    let address = |value: &str| {
        value
            .strip_prefix(WHATSAPP_PREFIX)
            .unwrap_or(value)
            .to_owned()
    };
    let mut mapped = Map::new();
    let fields = [
        ("message_id", first(params, "MessageSid").map(str::to_owned)),
        ("from", from.map(address)),
        ("to", first(params, "To").map(address)),
        (
            "text",
            first(params, "Body")
                .filter(|body| !body.is_empty())
                .map(str::to_owned),
        ),
    ];
    for (field, value) in fields {
        if let Some(value) = value {
            mapped.insert(field.to_owned(), Value::String(value));
        }
    }
    let message = validate_fields(&mapped, Ok(format_utc(received)))?;
    Ok(SourcedMessage {
        message,
        kind: channel.to_owned(),
    })
}

fn first<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(param, _)| param == name)
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MAX_TEXT_CHARS;
    use std::time::{Duration, UNIX_EPOCH};

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    /// The example of Twilio's "webhook security" page.
    const DOC_TOKEN: &str = "12345";
    const DOC_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const DOC_SIGNATURE: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

    fn doc_params() -> Vec<(String, String)> {
        params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ])
    }

    /// What Twilio signs, computed here with `hmac` directly from the documented recipe.
    fn twilio_signature(token: &str, signed_text: &str) -> String {
        let mut mac = HmacSha1::new_from_slice(token.as_bytes()).unwrap();
        mac.update(signed_text.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn reproduces_twilios_documented_signature() {
        assert_eq!(
            expected_signature(DOC_URL, &doc_params(), DOC_TOKEN),
            DOC_SIGNATURE
        );
        // Sorting is the code's job: any order the form came in signs the same.
        let mut shuffled = doc_params();
        shuffled.reverse();
        assert_eq!(
            expected_signature(DOC_URL, &shuffled, DOC_TOKEN),
            DOC_SIGNATURE
        );
        assert_eq!(
            verify_signature(
                Some(DOC_SIGNATURE.as_bytes()),
                DOC_URL,
                &shuffled,
                DOC_TOKEN,
                None
            ),
            Ok(())
        );
        // The recipe by hand: the URL, then each name and value, sorted by name.
        let by_hand = twilio_signature(
            DOC_TOKEN,
            "https://mycompany.com/myapp.php?foo=1&bar=2\
             CallSidCA1234567890ABCDECaller+12349013030Digits1234\
             From+12349013030To+18005551212",
        );
        assert_eq!(by_hand, DOC_SIGNATURE);
    }

    #[test]
    fn repeated_names_sign_in_value_order_and_case_matters() {
        let form = params(&[
            ("MediaUrl", "b"),
            ("body", "x"),
            ("Body", "y"),
            ("MediaUrl", "a"),
        ]);
        let by_hand = twilio_signature("tok", "https://x.test/hBodyyMediaUrlaMediaUrlbbodyx");
        assert_eq!(
            expected_signature("https://x.test/h", &form, "tok"),
            by_hand
        );
        assert_eq!(
            expected_signature("https://x.test/h", &[], "tok"),
            twilio_signature("tok", "https://x.test/h")
        );
    }

    #[test]
    fn accepts_the_current_or_the_previous_token() {
        let url = "https://inbox.example.com/webhook/twilio";
        let form = doc_params();
        let by_new = expected_signature(url, &form, "new-token");
        let by_old = expected_signature(url, &form, "old-token");
        let verify = |header: &str, previous| {
            verify_signature(Some(header.as_bytes()), url, &form, "new-token", previous)
        };
        assert_eq!(verify(&by_new, None), Ok(()));
        assert_eq!(verify(&format!(" {by_new} "), None), Ok(()));
        assert_eq!(verify(&by_old, None), Err(SignatureProblem::Mismatch));
        assert_eq!(verify(&by_old, Some("old-token")), Ok(()));
        assert_eq!(verify(&by_new, Some("old-token")), Ok(()));
        assert_eq!(verify(&by_old, Some("")), Err(SignatureProblem::Mismatch));
        assert_eq!(
            verify(&expected_signature(url, &form, "other"), Some("old-token")),
            Err(SignatureProblem::Mismatch)
        );
        // Signed for another URL, or over other parameters.
        let elsewhere = expected_signature("https://inbox.example.com/webhook", &form, "new-token");
        assert_eq!(verify(&elsewhere, None), Err(SignatureProblem::Mismatch));
        let mut tampered = form.clone();
        tampered[2].1 = "9999".into();
        assert_eq!(
            verify_signature(Some(by_new.as_bytes()), url, &tampered, "new-token", None),
            Err(SignatureProblem::Mismatch)
        );
        // An unset token verifies nothing, even a signature made with the empty key.
        let by_empty = expected_signature(url, &form, "");
        assert_eq!(
            verify_signature(Some(by_empty.as_bytes()), url, &form, "", Some("")),
            Err(SignatureProblem::Mismatch)
        );
    }

    #[test]
    fn tells_a_missing_header_from_a_malformed_one() {
        let form = doc_params();
        assert_eq!(
            verify_signature(None, DOC_URL, &form, DOC_TOKEN, None),
            Err(SignatureProblem::Missing)
        );
        for bad in [
            "",
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ",
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ==",
            "0_KCTR6DLpKmkAf8muzZqo1nDgQ=",
            "0/KCTR6DLpKmkAf8muzZqo1nDg!=",
            "sha1=0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
            "d3f0a4913a0c2eb2a6902407fc9f26a9a8d6a83810",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert_eq!(
                verify_signature(Some(bad.as_bytes()), DOC_URL, &form, DOC_TOKEN, None),
                Err(SignatureProblem::Malformed),
                "{bad}"
            );
        }
        let huge = "A".repeat(65_536);
        assert_eq!(
            verify_signature(Some(huge.as_bytes()), DOC_URL, &form, DOC_TOKEN, None),
            Err(SignatureProblem::Malformed)
        );
        // Right length and alphabet, wrong bytes.
        assert_eq!(
            verify_signature(
                Some(b"1/KCTR6DLpKmkAf8muzZqo1nDgQ="),
                DOC_URL,
                &form,
                DOC_TOKEN,
                None
            ),
            Err(SignatureProblem::Mismatch)
        );
    }

    #[test]
    fn rebuilds_the_url_twilio_called() {
        for (base, path, query, url) in [
            (
                "https://inbox.example.com",
                "/webhook/twilio",
                "",
                "https://inbox.example.com/webhook/twilio",
            ),
            (
                "https://inbox.example.com/",
                "/webhook/twilio",
                "",
                "https://inbox.example.com/webhook/twilio",
            ),
            (
                "https://inbox.example.com",
                "webhook/twilio",
                "",
                "https://inbox.example.com/webhook/twilio",
            ),
            (
                "https://example.com/inbox/",
                "/webhook/twilio",
                "a=1&b=x%20y",
                "https://example.com/inbox/webhook/twilio?a=1&b=x%20y",
            ),
        ] {
            assert_eq!(signed_url(base, path, query), url);
        }
        assert_eq!(
            signed_url("https://mycompany.com", "/myapp.php", "foo=1&bar=2"),
            DOC_URL
        );
    }

    /// An incoming WhatsApp message as Twilio posts it (the sandbox number, form-encoded).
    const WHATSAPP_FORM: &[u8] = b"SmsMessageSid=SM1f0e8ae6ade43cb3c0ce4525424e404f\
        &NumMedia=0&ProfileName=Jane&MessageType=text\
        &SmsSid=SM1f0e8ae6ade43cb3c0ce4525424e404f&WaId=14155550123&SmsStatus=received\
        &Body=Hello+there%21+%F0%9F%91%8B&To=whatsapp%3A%2B14155238886&NumSegments=1\
        &ReferralNumMedia=0&MessageSid=SM1f0e8ae6ade43cb3c0ce4525424e404f\
        &AccountSid=ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX&From=whatsapp%3A%2B14155550123\
        &ApiVersion=2010-04-01";

    fn at(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    #[test]
    fn decodes_the_form_as_sent() {
        let form = parse_form(WHATSAPP_FORM);
        assert_eq!(form.len(), 15);
        assert_eq!(first(&form, "Body"), Some("Hello there! 👋"));
        assert_eq!(first(&form, "From"), Some("whatsapp:+14155550123"));
        assert_eq!(
            parse_form(b"a=1&a=2&b"),
            params(&[("a", "1"), ("a", "2"), ("b", "")])
        );
        assert!(parse_form(b"").is_empty());
    }

    #[test]
    fn maps_an_incoming_whatsapp_message() {
        let form = parse_form(WHATSAPP_FORM);
        assert_eq!(ignored(&form), None);
        let sourced = message(&form, at(1_736_935_200_250)).unwrap();
        assert_eq!(sourced.kind, "whatsapp");
        let m = &sourced.message;
        assert_eq!(m.message_id, "SM1f0e8ae6ade43cb3c0ce4525424e404f");
        assert_eq!(m.from, "+14155550123");
        assert_eq!(m.to, "+14155238886");
        assert_eq!(m.text.as_deref(), Some("Hello there! 👋"));
        assert_eq!(m.ts, "2025-01-15T10:00:00.250Z", "the time of receipt");
        assert_eq!(m.ts_key, "2025-01-15T10:00:00.25");
    }

    #[test]
    fn maps_an_sms_and_a_media_only_message() {
        let sms = params(&[
            ("MessageSid", "SM11"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
            ("Body", "Hi"),
            ("NumMedia", "0"),
            ("SmsStatus", "received"),
        ]);
        let sourced = message(&sms, at(0)).unwrap();
        assert_eq!(sourced.kind, "sms");
        assert_eq!(sourced.message.from, "+12349013030");
        assert_eq!(sourced.message.ts, "1970-01-01T00:00:00.000Z");

        let media_only = params(&[
            ("MessageSid", "MM22"),
            ("From", "whatsapp:+14155550123"),
            ("To", "whatsapp:+14155238886"),
            ("Body", ""),
            ("NumMedia", "1"),
            (
                "MediaUrl0",
                "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM22/Media/ME1",
            ),
        ]);
        let sourced = message(&media_only, at(0)).unwrap();
        assert_eq!(sourced.message.text, None);
        assert_eq!(sourced.kind, "whatsapp");
        let mut no_body = media_only.clone();
        no_body.retain(|(name, _)| name != "Body");
        assert_eq!(message(&no_body, at(0)).unwrap().message.text, None);
    }

    #[test]
    fn a_message_failing_validation_says_which_fields() {
        let fields = |form: &[(String, String)]| -> Vec<(String, &'static str)> {
            message(form, at(0))
                .unwrap_err()
                .iter()
                .map(|e| (e.loc.join("."), e.kind))
                .collect()
        };
        // A sender without `+`, with or without the WhatsApp prefix.
        for from in [
            "12349013030",
            "whatsapp:12349013030",
            "messenger:+1234",
            "whatsapp:",
        ] {
            let form = params(&[
                ("MessageSid", "SM1"),
                ("From", from),
                ("To", "+18005551212"),
            ]);
            assert_eq!(
                fields(&form),
                [("body.from".into(), "string_pattern_mismatch")],
                "{from}"
            );
        }
        assert_eq!(
            fields(&params(&[("Body", "hi")])),
            [
                ("body.message_id".into(), "missing"),
                ("body.from".into(), "missing"),
                ("body.to".into(), "missing")
            ]
        );
        let long = "é".repeat(MAX_TEXT_CHARS + 1);
        let form = params(&[
            ("MessageSid", ""),
            ("From", "+1"),
            ("To", "+2"),
            ("Body", &long),
        ]);
        assert_eq!(
            fields(&form),
            [
                ("body.message_id".into(), "string_too_short"),
                ("body.text".into(), "string_too_long")
            ]
        );
        let repeated = params(&[
            ("MessageSid", "SM1"),
            ("From", "+1"),
            ("From", "+2"),
            ("To", "+3"),
            ("Body", "a"),
            ("Body", "b"),
        ]);
        assert_eq!(
            fields(&repeated),
            [
                ("body.from".into(), "duplicate"),
                ("body.text".into(), "duplicate")
            ]
        );
    }

    #[test]
    fn status_callbacks_are_ignored() {
        for status in [
            "queued",
            "sent",
            "delivered",
            "read",
            "failed",
            "undelivered",
        ] {
            let callback = params(&[
                ("MessageSid", "SM9"),
                ("MessageStatus", status),
                ("SmsStatus", status),
                ("From", "whatsapp:+14155238886"),
                ("To", "whatsapp:+14155550123"),
            ]);
            assert_eq!(ignored(&callback), Some(Ignored::Status), "{status}");
        }
        assert_eq!(ignored(&params(&[("SmsStatus", "received")])), None);
        assert_eq!(ignored(&params(&[("MessageStatus", "receiving")])), None);
        assert_eq!(ignored(&params(&[("Body", "hi")])), None);
    }

    #[test]
    fn the_answer_is_empty_twiml() {
        assert_eq!(
            EMPTY_TWIML,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>"
        );
    }
}
