//! Query parameters of `GET /messages` (and its export), `GET /rejections` and
//! `GET /stats/hourly`, parsed and validated into a [`MessageQuery`], a [`RejectionQuery`]
//! and a number of days; and the feed's query ([`FeedQuery`]) and commit body
//! ([`FeedCommit`]).
//!
//! Values are form-decoded (`+` is a space, `%XX` a byte) and must be UTF-8. A phone number
//! sent with an unencoded `+` arrives as a leading space and is read back as `+`. Unknown
//! parameters are ignored; a known one given twice is an error rather than a guess.

use crate::domain::{fold_case, is_phone, phone_rule, text_fits, text_rule};
use crate::problem::FieldError;
use crate::timestamp;
use std::borrow::Cow;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 100;

/// A position in the `(ts, message_id)` order: resume listing strictly after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub ts_key: String,
    pub message_id: String,
}

impl Cursor {
    /// Opaque, URL-safe form handed out as `next_cursor`.
    pub fn encode(&self) -> String {
        hex::encode(format!("{}\n{}", self.ts_key, self.message_id))
    }

    pub fn decode(raw: &str) -> Option<Cursor> {
        let bytes = hex::decode(raw).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        // Instant keys never contain a newline, so the first one separates the parts.
        let (ts_key, message_id) = text.split_once('\n')?;
        // A key is a valid timestamp without its `Z`; anything else was not issued by us.
        timestamp::instant_key(&format!("{ts_key}Z")).ok()?;
        Some(Cursor {
            ts_key: ts_key.to_owned(),
            message_id: message_id.to_owned(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageQuery {
    pub limit: u32,
    pub offset: u64,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Instant key of `since`.
    pub since_key: Option<String>,
    /// Case-folded search term; `None` when absent or empty.
    pub q_folded: Option<String>,
    pub cursor: Option<Cursor>,
    /// `order=desc`: newest first (the cursor then leads to older rows).
    pub descending: bool,
}

impl Default for MessageQuery {
    fn default() -> Self {
        MessageQuery {
            limit: DEFAULT_LIMIT,
            offset: 0,
            from: None,
            to: None,
            since_key: None,
            q_folded: None,
            cursor: None,
            descending: false,
        }
    }
}

const KNOWN: [&str; 8] = [
    "limit", "offset", "from", "to", "since", "q", "cursor", "order",
];

/// Parses the raw query string (without `?`) of `GET /messages`.
pub fn parse(raw: &str) -> Result<MessageQuery, Vec<FieldError>> {
    parse_as(raw, false)
}

/// Parses the query string of `GET /messages/export`: the filters and `order` of
/// `/messages`. `limit`, `offset` and `cursor` are refused (422): the export is every
/// matching row, and silently ignoring them would hand a client more than it asked for.
pub fn parse_export(raw: &str) -> Result<MessageQuery, Vec<FieldError>> {
    parse_as(raw, true)
}

fn parse_as(raw: &str, export: bool) -> Result<MessageQuery, Vec<FieldError>> {
    let ([limit, offset, from, to, since, q, cursor, order], mut errors) = collect(raw, KNOWN);
    let (limit, offset, cursor) = if export {
        for (name, value) in [("limit", &limit), ("offset", &offset), ("cursor", &cursor)] {
            if value.is_some() {
                errors.push(FieldError::query(
                    name,
                    "unsupported",
                    format!("{name} does not apply to the export, which returns every match"),
                ));
            }
        }
        (None, None, None)
    } else {
        (limit, offset, cursor)
    };
    let mut query = MessageQuery::default();
    let mut keep = |result: Result<(), FieldError>| {
        if let Err(err) = result {
            errors.push(err);
        }
    };
    if let Some(v) = limit {
        keep(parse_limit(&v).map(|n| query.limit = n));
    }
    if let Some(v) = offset {
        keep(parse_offset(&v).map(|n| query.offset = n));
    }
    if let Some(v) = from {
        keep(parse_phone("from", v).map(|p| query.from = Some(p)));
    }
    if let Some(v) = to {
        keep(parse_phone("to", v).map(|p| query.to = Some(p)));
    }
    if let Some(v) = since {
        keep(parse_since(&v).map(|k| query.since_key = Some(k)));
    }
    if let Some(v) = q {
        keep(parse_q(&v).map(|q| query.q_folded = q));
    }
    if let Some(v) = cursor {
        keep(
            Cursor::decode(&v)
                .map(|c| query.cursor = Some(c))
                .ok_or_else(|| {
                    FieldError::query("cursor", "value_error", "not a cursor this API issued")
                }),
        );
    }
    if let Some(v) = order {
        match v.as_str() {
            "asc" => query.descending = false,
            "desc" => query.descending = true,
            _ => errors.push(FieldError::query(
                "order",
                "enum",
                "order must be asc or desc",
            )),
        }
    }
    if errors.is_empty() {
        Ok(query)
    } else {
        Err(errors)
    }
}

/// `GET /feed`'s page size by default, and at most.
pub const FEED_DEFAULT_LIMIT: u32 = 100;
pub const FEED_MAX_LIMIT: u32 = 1000;

/// `GET /feed?consumer=NAME&limit=N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedQuery {
    pub consumer: String,
    pub limit: u32,
}

/// Whether `name` can name a feed consumer: 1 to 64 of `A-Z a-z 0-9 _ . -`. Such a name
/// needs no escaping in a metric label, a path or JSON.
pub fn is_consumer_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

const CONSUMER_RULE: &str = "consumer must be 1 to 64 characters of A-Z, a-z, 0-9, _, . and -";

/// Parses the query string of `GET /feed`: `consumer` (required) and `limit` (1 to 1000,
/// default 100).
pub fn parse_feed(raw: &str) -> Result<FeedQuery, Vec<FieldError>> {
    let ([consumer, limit], mut errors) = collect(raw, ["consumer", "limit"]);
    let mut query = FeedQuery {
        consumer: String::new(),
        limit: FEED_DEFAULT_LIMIT,
    };
    match consumer {
        Some(name) if is_consumer_name(&name) => query.consumer = name,
        Some(_) => errors.push(FieldError::query(
            "consumer",
            "string_pattern_mismatch",
            CONSUMER_RULE,
        )),
        None if errors.iter().any(|e| e.loc[1] == "consumer") => {}
        None => errors.push(FieldError::query(
            "consumer",
            "missing",
            "consumer is required: the name its offset is kept under",
        )),
    }
    if let Some(v) = limit {
        match parse_bounded_limit(&v, FEED_MAX_LIMIT) {
            Ok(n) => query.limit = n,
            Err(err) => errors.push(err),
        }
    }
    if errors.is_empty() {
        Ok(query)
    } else {
        Err(errors)
    }
}

/// `POST /feed/commit`'s body: `{"consumer": NAME, "offset": N}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedCommit {
    pub consumer: String,
    pub offset: i64,
}

/// Parses `POST /feed/commit`'s body: a JSON object with `consumer` (a consumer name) and
/// `offset` (a whole number from 0); other fields are ignored. Every problem is reported.
pub fn parse_feed_commit(body: &[u8]) -> Result<FeedCommit, Vec<FieldError>> {
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(_) => {
            return Err(vec![FieldError::body(
                None,
                "json_invalid",
                "the body must be a JSON object",
            )])
        }
    };
    let Some(object) = value.as_object() else {
        return Err(vec![FieldError::body(
            None,
            "model_type",
            "the body must be a JSON object",
        )]);
    };
    let mut errors = Vec::new();
    let consumer = match object.get("consumer") {
        None => {
            errors.push(FieldError::body(
                Some("consumer"),
                "missing",
                "Field required",
            ));
            None
        }
        Some(serde_json::Value::String(name)) if is_consumer_name(name) => Some(name.clone()),
        Some(serde_json::Value::String(_)) => {
            errors.push(FieldError::body(
                Some("consumer"),
                "string_pattern_mismatch",
                CONSUMER_RULE,
            ));
            None
        }
        Some(_) => {
            errors.push(FieldError::body(
                Some("consumer"),
                "string_type",
                "consumer must be a string",
            ));
            None
        }
    };
    let offset = match object.get("offset") {
        None => {
            errors.push(FieldError::body(
                Some("offset"),
                "missing",
                "Field required",
            ));
            None
        }
        Some(n) => match n.as_i64() {
            Some(n) if n >= 0 => Some(n),
            _ => {
                errors.push(FieldError::body(
                    Some("offset"),
                    "int_type",
                    "offset must be a whole number from 0 (an offset GET /feed returned)",
                ));
                None
            }
        },
    };
    match (consumer, offset) {
        (Some(consumer), Some(offset)) => Ok(FeedCommit { consumer, offset }),
        _ => Err(errors),
    }
}

/// Days `GET /stats/hourly` covers by default, and at most.
pub const DEFAULT_DAYS: u32 = 7;
pub const MAX_DAYS: u32 = 90;

/// Parses the query string of `GET /stats/hourly`: `days`, 1 to [`MAX_DAYS`].
pub fn parse_hourly(raw: &str) -> Result<u32, Vec<FieldError>> {
    let ([days], mut errors) = collect(raw, ["days"]);
    let mut out = DEFAULT_DAYS;
    if let Some(v) = days {
        let range = || {
            FieldError::query(
                "days",
                "range",
                format!("days must be an integer from 1 to {MAX_DAYS}"),
            )
        };
        if !digits_only(&v) {
            errors.push(FieldError::query(
                "days",
                "int_parsing",
                "days must be an integer",
            ));
        } else {
            match v.parse::<u32>() {
                Ok(n) if (1..=MAX_DAYS).contains(&n) => out = n,
                _ => errors.push(range()),
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// `GET /rejections`: a page of the rejection log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionQuery {
    pub limit: u32,
    /// Entries older than this one (the `seq` a previous page's `next_cursor` encodes).
    pub before: Option<i64>,
}

/// Parses the query string of `GET /rejections`: `limit` as for messages, and `cursor`.
pub fn parse_rejections(raw: &str) -> Result<RejectionQuery, Vec<FieldError>> {
    let ([limit, cursor], mut errors) = collect(raw, ["limit", "cursor"]);
    let mut query = RejectionQuery {
        limit: DEFAULT_LIMIT,
        before: None,
    };
    if let Some(v) = limit {
        match parse_limit(&v) {
            Ok(n) => query.limit = n,
            Err(err) => errors.push(err),
        }
    }
    if let Some(v) = cursor {
        match decode_rejection_cursor(&v) {
            Some(seq) => query.before = Some(seq),
            None => errors.push(FieldError::query(
                "cursor",
                "value_error",
                "not a cursor this API issued",
            )),
        }
    }
    if errors.is_empty() {
        Ok(query)
    } else {
        Err(errors)
    }
}

/// The `next_cursor` of a rejection log page that ends at entry `seq`. Opaque to clients,
/// and distinct in form from a message cursor so neither is taken for the other.
pub fn rejection_cursor(seq: i64) -> String {
    format!("r{seq}")
}

fn decode_rejection_cursor(raw: &str) -> Option<i64> {
    let digits = raw.strip_prefix('r').filter(|d| digits_only(d))?;
    digits.parse::<i64>().ok().filter(|n| *n > 0)
}

/// Each of the `known` parameters' decoded value, by position, and the problems found: a
/// value that is not UTF-8, or a parameter given twice. Unknown names are skipped.
fn collect<const N: usize>(
    raw: &str,
    known: [&'static str; N],
) -> ([Option<String>; N], Vec<FieldError>) {
    let mut seen: [Option<String>; N] = std::array::from_fn(|_| None);
    let mut errors = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(slot) = form_decode(raw_key).and_then(|key| known.iter().position(|k| *k == key))
        else {
            continue; // Unknown (or undecodable) names are not ours to judge.
        };
        let name = known[slot];
        let Some(value) = form_decode(raw_value) else {
            errors.push(FieldError::query(
                name,
                "string_unicode",
                "value is not valid UTF-8",
            ));
            continue;
        };
        if seen[slot].is_some() {
            errors.push(FieldError::query(
                name,
                "duplicate",
                "parameter given more than once",
            ));
            continue;
        }
        seen[slot] = Some(value.into_owned());
    }
    (seen, errors)
}

/// The sender whose messages `DELETE /messages?from=…` erases: `from` is required, and
/// read as for listing. No other parameter narrows an erasure, so none is looked at.
pub fn parse_erasure(raw: &str) -> Result<String, Vec<FieldError>> {
    let ([from], mut errors) = collect(raw, ["from"]);
    match from {
        Some(v) if errors.is_empty() => parse_phone("from", v).map_err(|e| vec![e]),
        Some(_) => Err(errors),
        None => {
            errors.push(FieldError::query(
                "from",
                "missing",
                "from is required: the sender whose messages to erase",
            ));
            Err(errors)
        }
    }
}

/// `application/x-www-form-urlencoded` decoding; `None` when the bytes are not UTF-8.
fn form_decode(raw: &str) -> Option<Cow<'_, str>> {
    let spaced: Cow<'_, str> = if raw.contains('+') {
        Cow::Owned(raw.replace('+', " "))
    } else {
        Cow::Borrowed(raw)
    };
    let decoded = percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()?;
    Some(Cow::Owned(decoded.into_owned()))
}

fn digits_only(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
}

fn parse_limit(value: &str) -> Result<u32, FieldError> {
    parse_bounded_limit(value, MAX_LIMIT)
}

fn parse_bounded_limit(value: &str, max: u32) -> Result<u32, FieldError> {
    let out_of_range = || {
        FieldError::query(
            "limit",
            "range",
            format!("limit must be an integer from 1 to {max}"),
        )
    };
    if !digits_only(value) {
        return Err(FieldError::query(
            "limit",
            "int_parsing",
            "limit must be an integer",
        ));
    }
    match value.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(out_of_range()),
    }
}

fn parse_offset(value: &str) -> Result<u64, FieldError> {
    if !digits_only(value) {
        return Err(FieldError::query(
            "offset",
            "int_parsing",
            "offset must be a non-negative integer",
        ));
    }
    // SQLite's OFFSET is a signed 64-bit integer.
    value
        .parse::<i64>()
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| FieldError::query("offset", "range", "offset is too large"))
}

fn parse_phone(name: &str, value: String) -> Result<String, FieldError> {
    let phone = match value.strip_prefix(' ') {
        Some(rest) => format!("+{rest}"),
        None => value,
    };
    if is_phone(&phone) {
        Ok(phone)
    } else {
        Err(FieldError::query(
            name,
            "string_pattern_mismatch",
            format!("{} (encode + as %2B)", phone_rule(name)),
        ))
    }
}

fn parse_since(value: &str) -> Result<String, FieldError> {
    timestamp::instant_key(value).map_err(|err| {
        FieldError::query("since", "datetime_format", format!("since {}", err.message))
    })
}

fn parse_q(value: &str) -> Result<Option<String>, FieldError> {
    if !text_fits(value) {
        return Err(FieldError::query("q", "string_too_long", text_rule("q")));
    }
    Ok((!value.is_empty()).then(|| fold_case(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(raw: &str) -> Vec<(String, &'static str)> {
        parse(raw)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.loc.join("."), e.kind))
            .collect()
    }

    #[test]
    fn defaults() {
        assert_eq!(parse("").unwrap(), MessageQuery::default());
        assert_eq!(parse("&&unknown=1&x").unwrap(), MessageQuery::default());
    }

    #[test]
    fn limit_and_offset_bounds() {
        assert_eq!(parse("limit=1").unwrap().limit, 1);
        assert_eq!(parse("limit=100").unwrap().limit, 100);
        assert_eq!(parse("limit=007").unwrap().limit, 7);
        assert_eq!(parse("offset=0&limit=5").unwrap().offset, 0);
        assert_eq!(
            parse("offset=9223372036854775807").unwrap().offset,
            i64::MAX as u64
        );
        for bad in ["limit=0", "limit=101", "limit=99999999999999999999"] {
            assert_eq!(errs(bad), [("query.limit".into(), "range")], "{bad}");
        }
        for bad in [
            "limit=",
            "limit=-1",
            "limit=1.5",
            "limit=abc",
            "limit=+5",
            "limit=%205",
        ] {
            assert_eq!(errs(bad), [("query.limit".into(), "int_parsing")], "{bad}");
        }
        assert_eq!(errs("offset=-1"), [("query.offset".into(), "int_parsing")]);
        assert_eq!(
            errs("offset=9223372036854775808"),
            [("query.offset".into(), "range")]
        );
    }

    #[test]
    fn phones_accept_encoded_and_unencoded_plus() {
        assert_eq!(
            parse("from=%2B919876543210").unwrap().from.unwrap(),
            "+919876543210"
        );
        assert_eq!(
            parse("from=+919876543210").unwrap().from.unwrap(),
            "+919876543210"
        );
        assert_eq!(parse("to=%20123").unwrap().to.unwrap(), "+123");
        assert_eq!(
            errs("from=919876543210"),
            [("query.from".into(), "string_pattern_mismatch")]
        );
        assert_eq!(
            errs("to="),
            [("query.to".into(), "string_pattern_mismatch")]
        );
        assert_eq!(
            errs("to=++1"),
            [("query.to".into(), "string_pattern_mismatch")]
        );
    }

    #[test]
    fn since_is_a_timestamp() {
        assert_eq!(
            parse("since=2025-01-15T10:00:00.500Z")
                .unwrap()
                .since_key
                .unwrap(),
            "2025-01-15T10:00:00.5"
        );
        assert_eq!(
            errs("since=yesterday"),
            [("query.since".into(), "datetime_format")]
        );
        assert_eq!(
            errs("since=2025-02-30T00:00:00Z"),
            [("query.since".into(), "datetime_format")]
        );
    }

    #[test]
    fn q_is_folded_and_literal() {
        assert_eq!(parse("q=HeLLo").unwrap().q_folded.unwrap(), "hello");
        assert_eq!(parse("q=50%25_off").unwrap().q_folded.unwrap(), "50%_off");
        assert_eq!(parse("q=a+b").unwrap().q_folded.unwrap(), "a b");
        assert_eq!(parse("q=%C3%89T%C3%89").unwrap().q_folded.unwrap(), "été");
        assert_eq!(parse("q=").unwrap().q_folded, None);
        assert_eq!(errs("q=%FF"), [("query.q".into(), "string_unicode")]);
    }

    #[test]
    fn duplicates_and_several_errors() {
        assert_eq!(
            errs("limit=5&limit=6"),
            [("query.limit".into(), "duplicate")]
        );
        assert_eq!(
            errs("limit=0&offset=x&from=1"),
            [
                ("query.limit".into(), "range"),
                ("query.offset".into(), "int_parsing"),
                ("query.from".into(), "string_pattern_mismatch")
            ]
        );
    }

    #[test]
    fn an_erasure_names_one_valid_sender() {
        assert_eq!(parse_erasure("from=%2B1555").unwrap(), "+1555");
        assert_eq!(parse_erasure("from=+1555&to=x").unwrap(), "+1555");
        for bad in [
            "",
            "to=%2B1",
            "from=",
            "from=abc",
            "from=%2B1&from=%2B2",
            "from=%FF",
        ] {
            let errs = parse_erasure(bad).unwrap_err();
            assert_eq!(errs[0].loc, ["query", "from"], "{bad}");
        }
    }

    #[test]
    fn order_and_the_export_parameters() {
        assert!(!parse("").unwrap().descending);
        assert!(parse("order=desc").unwrap().descending);
        assert!(!parse("order=asc").unwrap().descending);
        assert_eq!(errs("order=DESC"), [("query.order".into(), "enum")]);
        let export = parse_export("from=%2B1&q=Hi&order=desc&x=1").unwrap();
        assert_eq!(export.from.as_deref(), Some("+1"));
        assert_eq!(export.q_folded.as_deref(), Some("hi"));
        assert!(export.descending);
        assert_eq!((export.cursor, export.offset), (None, 0));
        let refused: Vec<_> = parse_export("limit=5&offset=1&cursor=zz&since=x")
            .unwrap_err()
            .into_iter()
            .map(|e| (e.loc.join("."), e.kind))
            .collect();
        assert_eq!(
            refused,
            [
                ("query.limit".to_owned(), "unsupported"),
                ("query.offset".to_owned(), "unsupported"),
                ("query.cursor".to_owned(), "unsupported"),
                ("query.since".to_owned(), "datetime_format"),
            ]
        );
    }

    #[test]
    fn hourly_days() {
        assert_eq!(parse_hourly(""), Ok(DEFAULT_DAYS));
        assert_eq!(parse_hourly("days=1"), Ok(1));
        assert_eq!(parse_hourly("days=90"), Ok(90));
        for (bad, kind) in [
            ("days=0", "range"),
            ("days=91", "range"),
            ("days=99999999999", "range"),
            ("days=-1", "int_parsing"),
            ("days=", "int_parsing"),
            ("days=1&days=2", "duplicate"),
        ] {
            let errors = parse_hourly(bad).unwrap_err();
            assert_eq!(
                (errors[0].loc.join("."), errors[0].kind),
                ("query.days".into(), kind),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejection_log_pages() {
        assert_eq!(
            parse_rejections("").unwrap(),
            RejectionQuery {
                limit: DEFAULT_LIMIT,
                before: None
            }
        );
        let cursor = rejection_cursor(42);
        let parsed = parse_rejections(&format!("limit=3&cursor={cursor}&from=x")).unwrap();
        assert_eq!((parsed.limit, parsed.before), (3, Some(42)));
        for bad in ["r", "r-1", "r0", "42", "rx", "r99999999999999999999", "r+1"] {
            let errs = parse_rejections(&format!("cursor={bad}")).unwrap_err();
            assert_eq!(errs[0].loc, ["query", "cursor"], "{bad}");
        }
        let errs = parse_rejections("limit=0&limit=5").unwrap_err();
        let mut kinds: Vec<_> = errs.iter().map(|e| e.kind).collect();
        kinds.sort_unstable();
        assert_eq!(kinds, ["duplicate", "range"]);
    }

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let cursor = Cursor {
            ts_key: "2025-01-15T10:00:00.25".into(),
            message_id: "m\n1 & ü".into(),
        };
        let parsed = parse(&format!("cursor={}", cursor.encode())).unwrap();
        assert_eq!(parsed.cursor.unwrap(), cursor);
        for bad in [
            "zz",
            "",
            &hex::encode("no-newline"),
            &hex::encode("2025-13-01T00:00:00\nm"),
        ] {
            assert_eq!(
                errs(&format!("cursor={bad}")),
                [("query.cursor".into(), "value_error")]
            );
        }
    }

    #[test]
    fn feed_queries_need_a_consumer_name_and_a_limit_up_to_1000() {
        assert_eq!(
            parse_feed("consumer=crm"),
            Ok(FeedQuery {
                consumer: "crm".into(),
                limit: 100
            })
        );
        assert_eq!(
            parse_feed("consumer=a.B_9-z&limit=1000").unwrap().limit,
            1000
        );
        assert_eq!(parse_feed("limit=1&consumer=x").unwrap().limit, 1);
        let long = "x".repeat(64);
        assert_eq!(
            parse_feed(&format!("consumer={long}")).unwrap().consumer,
            long
        );
        let problems = |raw: &str| -> Vec<(String, &'static str)> {
            parse_feed(raw)
                .unwrap_err()
                .into_iter()
                .map(|e| (e.loc[1].clone(), e.kind))
                .collect()
        };
        assert_eq!(problems(""), [("consumer".into(), "missing")]);
        for bad in ["", "a%20b", "a/b", "%C3%A9", "a+b", "a%22"] {
            assert_eq!(
                problems(&format!("consumer={bad}")),
                [("consumer".into(), "string_pattern_mismatch")],
                "{bad}"
            );
        }
        assert_eq!(
            problems(&format!("consumer={}", "x".repeat(65))),
            [("consumer".into(), "string_pattern_mismatch")]
        );
        assert_eq!(
            problems("consumer=a&limit=1001"),
            [("limit".into(), "range")]
        );
        assert_eq!(problems("consumer=a&limit=0"), [("limit".into(), "range")]);
        assert_eq!(
            problems("consumer=a&limit=-1"),
            [("limit".into(), "int_parsing")]
        );
        assert_eq!(
            problems("consumer=a&consumer=b"),
            [("consumer".into(), "duplicate")]
        );
        assert_eq!(
            problems("limit=x"),
            [
                ("consumer".into(), "missing"),
                ("limit".into(), "int_parsing")
            ]
        );
    }

    #[test]
    fn feed_commits_need_a_name_and_an_offset_from_0() {
        assert_eq!(
            parse_feed_commit(br#"{"consumer":"crm","offset":42,"extra":1}"#),
            Ok(FeedCommit {
                consumer: "crm".into(),
                offset: 42
            })
        );
        assert_eq!(
            parse_feed_commit(br#"{"consumer":"crm","offset":0}"#)
                .unwrap()
                .offset,
            0
        );
        let problems = |body: &str| -> Vec<(Vec<String>, &'static str)> {
            parse_feed_commit(body.as_bytes())
                .unwrap_err()
                .into_iter()
                .map(|e| (e.loc, e.kind))
                .collect()
        };
        let at = |field: &str| vec!["body".to_owned(), field.to_owned()];
        assert_eq!(
            problems("not json"),
            [(vec!["body".into()], "json_invalid")]
        );
        assert_eq!(problems("[1]"), [(vec!["body".into()], "model_type")]);
        assert_eq!(
            problems("{}"),
            [(at("consumer"), "missing"), (at("offset"), "missing")]
        );
        for offset in ["-1", "1.5", "\"3\"", "null", "1e30", "9223372036854775808"] {
            assert_eq!(
                problems(&format!(r#"{{"consumer":"a","offset":{offset}}}"#)),
                [(at("offset"), "int_type")],
                "{offset}"
            );
        }
        assert_eq!(
            problems(r#"{"consumer":"a b","offset":1}"#),
            [(at("consumer"), "string_pattern_mismatch")]
        );
        assert_eq!(
            problems(r#"{"consumer":7,"offset":1}"#),
            [(at("consumer"), "string_type")]
        );
    }
}
