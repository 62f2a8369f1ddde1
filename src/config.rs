//! Spin variables read per request, and how their text values are interpreted.

use crate::logline::Level;

pub const WEBHOOK_SECRET: &str = "webhook_secret";
pub const WEBHOOK_SECRET_PREVIOUS: &str = "webhook_secret_previous";
pub const LOG_LEVEL: &str = "log_level";
pub const MAX_BODY_BYTES: &str = "max_body_bytes";
pub const SIGNATURE_TOLERANCE_SECONDS: &str = "signature_tolerance_seconds";
pub const READ_TOKEN: &str = "read_token";
pub const READ_TOKEN_PREVIOUS: &str = "read_token_previous";
pub const METRICS_TOKEN: &str = "metrics_token";
pub const METRICS_TOKEN_PREVIOUS: &str = "metrics_token_previous";
pub const REJECTION_LOG_SIZE: &str = "rejection_log_size";
pub const ADMIN_TOKEN: &str = "admin_token";
pub const ADMIN_TOKEN_PREVIOUS: &str = "admin_token_previous";
pub const RETENTION_DAYS: &str = "retention_days";
pub const PURGE_BATCH_SIZE: &str = "purge_batch_size";
pub const TOMBSTONE_DAYS: &str = "tombstone_days";
pub const WHATSAPP_APP_SECRET: &str = "whatsapp_app_secret";
pub const WHATSAPP_APP_SECRET_PREVIOUS: &str = "whatsapp_app_secret_previous";
pub const WHATSAPP_VERIFY_TOKEN: &str = "whatsapp_verify_token";
pub const WHATSAPP_MAX_BODY_BYTES: &str = "whatsapp_max_body_bytes";
pub const TWILIO_AUTH_TOKEN: &str = "twilio_auth_token";
pub const TWILIO_AUTH_TOKEN_PREVIOUS: &str = "twilio_auth_token_previous";
pub const PUBLIC_BASE_URL: &str = "public_base_url";
pub const FEED_MAX_CONSUMERS: &str = "feed_max_consumers";

/// A bearer token and the one it replaces during a rotation: the variables that hold them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPair {
    pub current: &'static str,
    pub previous: &'static str,
}

/// Guards `/messages` and `/stats`.
pub const READ_TOKENS: TokenPair = TokenPair {
    current: READ_TOKEN,
    previous: READ_TOKEN_PREVIOUS,
};

/// Guards `/metrics`, separately from the read tokens: a scraper's credential never reads
/// phone numbers or texts, and the read token does not open `/metrics`.
pub const METRICS_TOKENS: TokenPair = TokenPair {
    current: METRICS_TOKEN,
    previous: METRICS_TOKEN_PREVIOUS,
};

/// Guards the admin routes (purge, erasure). Unlike the read tokens, an unset admin token
/// closes them: removing data is never open to whoever reaches the port.
pub const ADMIN_TOKENS: TokenPair = TokenPair {
    current: ADMIN_TOKEN,
    previous: ADMIN_TOKEN_PREVIOUS,
};

pub const DEFAULT_MAX_BODY_BYTES: usize = 65_536;
pub const DEFAULT_SIGNATURE_TOLERANCE_SECONDS: u64 = 300;

/// `max_body_bytes`: a positive whole number of bytes; absent means the default.
///
/// A value we cannot read is an error, not a silent default: guessing too small would turn
/// good deliveries into 413s, which senders do not retry.
pub fn max_body_bytes(value: Option<&str>) -> Result<usize, String> {
    positive(value, DEFAULT_MAX_BODY_BYTES, MAX_BODY_BYTES, "bytes")
}

/// `whatsapp_max_body_bytes`: the body limit of `POST /webhook/whatsapp`, read like
/// `max_body_bytes`; absent means [`crate::sources::whatsapp::DEFAULT_MAX_BODY_BYTES`]
/// (Meta's batches can be far larger than a `/webhook` body).
pub fn whatsapp_max_body_bytes(value: Option<&str>) -> Result<usize, String> {
    positive(
        value,
        crate::sources::whatsapp::DEFAULT_MAX_BODY_BYTES,
        WHATSAPP_MAX_BODY_BYTES,
        "bytes",
    )
}

/// `public_base_url`: the scheme, host and any path prefix under which Twilio calls the
/// component, exactly as configured in Twilio's console (`https://inbox.example.com`);
/// blanks around it are dropped, and absent or blank means not configured (`Ok(None)`).
/// Anything that cannot begin the URL Twilio signs is an error, never guessed: `http://`
/// or `https://` (lower case, as Twilio writes it), a host, no query, fragment or blank.
pub fn public_base_url(value: Option<&str>) -> Result<Option<String>, String> {
    let Some(raw) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"));
    let host = rest.map(|rest| rest.split('/').next().unwrap_or_default());
    let usable = host.is_some_and(|host| !host.is_empty() && !host.contains('@'))
        && raw.len() <= 2048
        && raw
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#'));
    if usable {
        Ok(Some(raw.to_owned()))
    } else {
        Err(format!(
            "{PUBLIC_BASE_URL} must be the http:// or https:// URL Twilio calls, without a \
             query or fragment (e.g. https://inbox.example.com)"
        ))
    }
}

/// `signature_tolerance_seconds`: how far `webhook-timestamp` may be from now, either way;
/// a positive whole number of seconds, absent means 300 (the Standard Webhooks default).
/// As with the body limit, a value we cannot read is an error rather than a guess.
pub fn signature_tolerance_seconds(value: Option<&str>) -> Result<u64, String> {
    positive(
        value,
        DEFAULT_SIGNATURE_TOLERANCE_SECONDS,
        SIGNATURE_TOLERANCE_SECONDS,
        "seconds",
    )
}

pub const DEFAULT_REJECTION_LOG_SIZE: u32 = 1000;
/// Far more than an operator reads, and small enough that the table stays a few MB.
pub const MAX_REJECTION_LOG_SIZE: u32 = 100_000;

/// `rejection_log_size`: how many refused deliveries the log keeps, from 0 (off) to
/// [`MAX_REJECTION_LOG_SIZE`]; absent or blank means 1000.
pub fn rejection_log_size(value: Option<&str>) -> Result<u32, String> {
    bounded(
        value,
        DEFAULT_REJECTION_LOG_SIZE,
        0,
        MAX_REJECTION_LOG_SIZE,
        REJECTION_LOG_SIZE,
    )
}

pub const DEFAULT_FEED_MAX_CONSUMERS: u32 = 32;
/// Each consumer is a `/metrics` series and a lag count per scrape: a bounded few.
pub const MAX_FEED_MAX_CONSUMERS: u32 = 1000;

/// `feed_max_consumers`: how many feed consumers may hold an offset, from 1 to
/// [`MAX_FEED_MAX_CONSUMERS`]; absent or blank means 32.
pub fn feed_max_consumers(value: Option<&str>) -> Result<u32, String> {
    bounded(
        value,
        DEFAULT_FEED_MAX_CONSUMERS,
        1,
        MAX_FEED_MAX_CONSUMERS,
        FEED_MAX_CONSUMERS,
    )
}

/// How long messages are kept, and how removals are bounded (see `storage::lifecycle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// `retention_days`: 0 keeps messages forever.
    pub retention_days: u32,
    /// `purge_batch_size`: most messages (and tombstones) one request removes.
    pub batch: u32,
    /// `tombstone_days`: how long a removed message's id is still answered as a duplicate;
    /// 0 keeps no tombstones.
    pub tombstone_days: u32,
}

pub const DEFAULT_PURGE_BATCH_SIZE: u32 = 500;
pub const MAX_PURGE_BATCH_SIZE: u32 = 10_000;
/// Longer than the retry windows of common senders (Stripe 3 days, Meta up to 7).
pub const DEFAULT_TOMBSTONE_DAYS: u32 = 8;
/// A hundred years: beyond that a day count is a typo, and timestamps would overflow.
const MAX_DAYS: u32 = 36_500;

/// The lifecycle variables, each read with `read`; every problem is reported, none guessed.
pub fn lifecycle(read: impl Fn(&str) -> Option<String>) -> Result<Lifecycle, String> {
    let retention = bounded(
        read(RETENTION_DAYS).as_deref(),
        0,
        0,
        MAX_DAYS,
        RETENTION_DAYS,
    );
    let batch = bounded(
        read(PURGE_BATCH_SIZE).as_deref(),
        DEFAULT_PURGE_BATCH_SIZE,
        1,
        MAX_PURGE_BATCH_SIZE,
        PURGE_BATCH_SIZE,
    );
    let tombstone = bounded(
        read(TOMBSTONE_DAYS).as_deref(),
        DEFAULT_TOMBSTONE_DAYS,
        0,
        MAX_DAYS,
        TOMBSTONE_DAYS,
    );
    match (retention, batch, tombstone) {
        (Ok(retention_days), Ok(batch), Ok(tombstone_days)) => Ok(Lifecycle {
            retention_days,
            batch,
            tombstone_days,
        }),
        (a, b, c) => Err([a.err(), b.err(), c.err()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

/// A whole number from `min` to `max`; blank or absent means `default`.
fn bounded(
    value: Option<&str>,
    default: u32,
    min: u32,
    max: u32,
    name: &str,
) -> Result<u32, String> {
    let Some(raw) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    match raw.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{name} must be a whole number from {min} to {max}")),
    }
}

/// A positive whole number of `unit`; blank or absent means `default`.
fn positive<T>(value: Option<&str>, default: T, name: &str, unit: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + Default,
{
    let Some(raw) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    match raw.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err(format!("{name} must be a positive whole number of {unit}")),
    }
}

/// `log_level`: `debug`, `info`, `warn` or `error`; anything else (or nothing) means `info`.
pub fn log_level(value: Option<&str>) -> Level {
    value.and_then(Level::parse).unwrap_or(Level::Info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_limit() {
        assert_eq!(max_body_bytes(None), Ok(65_536));
        assert_eq!(max_body_bytes(Some("")), Ok(65_536));
        assert_eq!(max_body_bytes(Some(" 1024 ")), Ok(1024));
        for bad in ["0", "-1", "64KB", "1e6", "18446744073709551616"] {
            assert!(max_body_bytes(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn whatsapp_body_limit_defaults_to_metas_largest_batch() {
        assert_eq!(whatsapp_max_body_bytes(None), Ok(3 * 1024 * 1024));
        assert_eq!(whatsapp_max_body_bytes(Some(" ")), Ok(3 * 1024 * 1024));
        assert_eq!(whatsapp_max_body_bytes(Some("1048576")), Ok(1_048_576));
        for bad in ["0", "-1", "3MB"] {
            let problem = whatsapp_max_body_bytes(Some(bad)).unwrap_err();
            assert!(problem.starts_with("whatsapp_max_body_bytes "), "{problem}");
        }
    }

    #[test]
    fn public_base_url_is_a_url_prefix_or_nothing() {
        assert_eq!(public_base_url(None), Ok(None));
        assert_eq!(public_base_url(Some("  ")), Ok(None));
        for good in [
            "https://inbox.example.com",
            "https://inbox.example.com/",
            "http://127.0.0.1:3000",
            "https://example.com/inbox",
        ] {
            assert_eq!(public_base_url(Some(good)), Ok(Some(good.to_owned())));
        }
        assert_eq!(
            public_base_url(Some(" https://a.example \n")),
            Ok(Some("https://a.example".to_owned()))
        );
        for bad in [
            "inbox.example.com",
            "ftp://inbox.example.com",
            "HTTPS://inbox.example.com",
            "https://",
            "https:///path",
            "https://user@inbox.example.com",
            "https://inbox.example.com/?x=1",
            "https://inbox.example.com/#top",
            "https://inbox example.com",
        ] {
            assert!(public_base_url(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn signature_tolerance() {
        assert_eq!(signature_tolerance_seconds(None), Ok(300));
        assert_eq!(signature_tolerance_seconds(Some(" ")), Ok(300));
        assert_eq!(signature_tolerance_seconds(Some("60")), Ok(60));
        for bad in ["0", "-5", "5m", "1.5", "18446744073709551616"] {
            assert!(signature_tolerance_seconds(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejection_log_size_is_zero_to_the_cap() {
        assert_eq!(rejection_log_size(None), Ok(1000));
        assert_eq!(rejection_log_size(Some(" ")), Ok(1000));
        assert_eq!(rejection_log_size(Some("0")), Ok(0));
        assert_eq!(rejection_log_size(Some("100000")), Ok(100_000));
        for bad in ["100001", "-1", "1k", "4294967296"] {
            assert!(rejection_log_size(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn lifecycle_defaults_bounds_and_every_problem_at_once() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            lifecycle(vars(&[])),
            Ok(Lifecycle {
                retention_days: 0,
                batch: 500,
                tombstone_days: 8
            })
        );
        assert_eq!(
            lifecycle(vars(&[
                ("retention_days", "30"),
                ("purge_batch_size", "10000"),
                ("tombstone_days", "0")
            ])),
            Ok(Lifecycle {
                retention_days: 30,
                batch: 10_000,
                tombstone_days: 0
            })
        );
        let problems = lifecycle(vars(&[
            ("retention_days", "-1"),
            ("purge_batch_size", "0"),
            ("tombstone_days", "36501"),
        ]))
        .unwrap_err();
        for name in ["retention_days", "purge_batch_size", "tombstone_days"] {
            assert!(problems.contains(name), "{problems}");
        }
    }

    #[test]
    fn feed_max_consumers_is_one_to_the_cap() {
        assert_eq!(feed_max_consumers(None), Ok(32));
        assert_eq!(feed_max_consumers(Some(" ")), Ok(32));
        assert_eq!(feed_max_consumers(Some("1")), Ok(1));
        assert_eq!(feed_max_consumers(Some("1000")), Ok(1000));
        for bad in ["0", "1001", "-1", "ten"] {
            let problem = feed_max_consumers(Some(bad)).unwrap_err();
            assert!(problem.starts_with("feed_max_consumers "), "{problem}");
        }
    }

    #[test]
    fn levels_default_to_info() {
        assert_eq!(log_level(None), Level::Info);
        assert_eq!(log_level(Some("chatty")), Level::Info);
        assert_eq!(log_level(Some("error")), Level::Error);
    }
}
