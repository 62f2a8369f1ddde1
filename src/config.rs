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
    fn levels_default_to_info() {
        assert_eq!(log_level(None), Level::Info);
        assert_eq!(log_level(Some("chatty")), Level::Info);
        assert_eq!(log_level(Some("error")), Level::Error);
    }
}
