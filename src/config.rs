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
    let Some(raw) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_REJECTION_LOG_SIZE);
    };
    match raw.parse::<u32>() {
        Ok(n) if n <= MAX_REJECTION_LOG_SIZE => Ok(n),
        _ => Err(format!(
            "{REJECTION_LOG_SIZE} must be a whole number from 0 to {MAX_REJECTION_LOG_SIZE}"
        )),
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
    fn levels_default_to_info() {
        assert_eq!(log_level(None), Level::Info);
        assert_eq!(log_level(Some("chatty")), Level::Info);
        assert_eq!(log_level(Some("error")), Level::Error);
    }
}
