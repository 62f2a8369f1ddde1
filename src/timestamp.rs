//! RFC 3339 timestamps in UTC (`2025-01-15T10:00:00Z`, `…:00.250Z`).
//!
//! Senders' timestamps are stored exactly as sent, plus an *instant key*: a canonical text
//! form that sorts lexicographically in the same order as the instants it stands for, at any
//! precision (`…10:00:00` < `…10:00:00.05` < `…10:00:00.5` < `…10:00:01`). Text rather than an
//! integer keeps every digit a sender gave and every year RFC 3339 allows (0000-9999).

use std::time::{SystemTime, UNIX_EPOCH};

/// Why a timestamp was refused; `message` is what the API tells the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampError {
    pub kind: TimestampErrorKind,
    pub message: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampErrorKind {
    /// Not of the shape `YYYY-MM-DDTHH:MM:SS[.f+]Z`.
    Format,
    /// The right shape, but no such calendar date or time of day.
    Value,
}

const FORMAT_HINT: &str =
    "must be an RFC 3339 UTC timestamp like 2025-01-15T10:00:00Z (optional fraction, Z suffix)";

fn format_error() -> TimestampError {
    TimestampError {
        kind: TimestampErrorKind::Format,
        message: FORMAT_HINT,
    }
}

fn value_error(message: &'static str) -> TimestampError {
    TimestampError {
        kind: TimestampErrorKind::Value,
        message,
    }
}

/// Parses a UTC timestamp and returns its instant key.
///
/// Strict by design: upper-case `T` and `Z` only, no offsets (even `+00:00`), no leap second
/// (`:60`), a real calendar date. Fractions may have any number of digits.
pub fn instant_key(input: &str) -> Result<String, TimestampError> {
    let bytes = input.as_bytes();
    // Fixed part: YYYY-MM-DDTHH:MM:SS (19 bytes), then optional .digits, then Z.
    if bytes.len() < 20 || !bytes.is_ascii() {
        return Err(format_error());
    }
    let digit_at = |i: usize| bytes[i].is_ascii_digit();
    let shape_ok = (0..19).all(|i| match i {
        4 | 7 => bytes[i] == b'-',
        10 => bytes[i] == b'T',
        13 | 16 => bytes[i] == b':',
        _ => digit_at(i),
    });
    if !shape_ok || bytes[bytes.len() - 1] != b'Z' {
        return Err(format_error());
    }
    let fraction = &input[19..input.len() - 1];
    let fraction_digits = match fraction.strip_prefix('.') {
        None if fraction.is_empty() => "",
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits,
        _ => return Err(format_error()),
    };

    let number = |range: std::ops::Range<usize>| -> u32 {
        input[range]
            .bytes()
            .fold(0, |n, b| n * 10 + u32::from(b - b'0'))
    };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let (hour, minute, second) = (number(11..13), number(14..16), number(17..19));
    if !(1..=12).contains(&month) {
        return Err(value_error("month must be 01 to 12"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(value_error("day does not exist in that month"));
    }
    if hour > 23 {
        return Err(value_error("hour must be 00 to 23"));
    }
    if minute > 59 {
        return Err(value_error("minute must be 00 to 59"));
    }
    if second > 59 {
        return Err(value_error(
            "second must be 00 to 59 (leap seconds are not accepted)",
        ));
    }

    let significant = fraction_digits.trim_end_matches('0');
    let mut key = String::with_capacity(20 + significant.len());
    key.push_str(&input[..19]);
    if !significant.is_empty() {
        key.push('.');
        key.push_str(significant);
    }
    Ok(key)
}

/// The Unix time, in seconds, of an instant key ([`instant_key`]'s output); `None` for text
/// that is not one.
pub fn unix_seconds_of_key(key: &str) -> Option<f64> {
    let bytes = key.as_bytes();
    if bytes.len() < 19 || !key.is_ascii() {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = key.get(range)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let fraction = match key.get(19..) {
        Some("") => 0.0,
        Some(rest) => format!("0{rest}").parse::<f64>().ok()?,
        None => return None,
    };
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3600 + minute * 60 + second) as f64 + fraction)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm, the
/// inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap_year(year: u32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Formats a moment as RFC 3339 UTC with millisecond precision, e.g. for log lines.
pub fn format_utc(moment: SystemTime) -> String {
    let since_epoch = moment.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn accepts_whole_and_fractional_seconds() {
        assert_eq!(
            instant_key("2025-01-15T10:00:00Z").unwrap(),
            "2025-01-15T10:00:00"
        );
        assert_eq!(
            instant_key("2025-01-15T10:00:00.250Z").unwrap(),
            "2025-01-15T10:00:00.25"
        );
        assert_eq!(
            instant_key("2025-01-15T10:00:00.000Z").unwrap(),
            "2025-01-15T10:00:00"
        );
        assert_eq!(
            instant_key("2025-01-15T10:00:00.123456789012Z").unwrap(),
            "2025-01-15T10:00:00.123456789012"
        );
    }

    #[test]
    fn keys_sort_as_instants() {
        let ordered = [
            "2024-12-31T23:59:59.999Z",
            "2025-01-15T10:00:00Z",
            "2025-01-15T10:00:00.05Z",
            "2025-01-15T10:00:00.5Z",
            "2025-01-15T10:00:00.50001Z",
            "2025-01-15T10:00:01Z",
        ];
        let keys: Vec<String> = ordered.iter().map(|t| instant_key(t).unwrap()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(
            instant_key("2025-01-15T10:00:00.5Z"),
            instant_key("2025-01-15T10:00:00.500Z"),
            "equal instants get equal keys"
        );
    }

    #[test]
    fn rejects_wrong_shapes() {
        for bad in [
            "",
            "2025-01-15",
            "2025-01-15T10:00:00",
            "2025-01-15T10:00:00z",
            "2025-01-15t10:00:00Z",
            "2025-01-15 10:00:00Z",
            "2025-01-15T10:00:00+00:00",
            "2025-01-15T10:00:00+05:30",
            "2025-01-15T10:00:00.Z",
            "2025-01-15T10:00:00.5.5Z",
            "2025-01-15T10:00Z",
            "2025-1-15T10:00:00Z",
            "+2025-01-15T10:00:00Z",
            "2025-01-15T10:00:00ZZ",
            "2025-01-15T10:00:00.١Z",
            " 2025-01-15T10:00:00Z",
        ] {
            let err = instant_key(bad).unwrap_err();
            assert_eq!(err.kind, TimestampErrorKind::Format, "{bad:?}");
        }
    }

    #[test]
    fn rejects_impossible_dates_and_times() {
        for bad in [
            "2025-02-29T00:00:00Z",
            "2025-02-30T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2025-04-31T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-00-10T00:00:00Z",
            "2025-01-00T00:00:00Z",
            "2025-01-15T24:00:00Z",
            "2025-01-15T23:60:00Z",
            "2025-12-31T23:59:60Z",
        ] {
            let err = instant_key(bad).unwrap_err();
            assert_eq!(err.kind, TimestampErrorKind::Value, "{bad:?}");
        }
        assert!(instant_key("2024-02-29T00:00:00Z").is_ok());
        assert!(instant_key("2000-02-29T23:59:59Z").is_ok());
        assert!(instant_key("0000-01-01T00:00:00Z").is_ok());
        assert!(instant_key("9999-12-31T23:59:59.999999999Z").is_ok());
    }

    #[test]
    fn formats_utc_moments() {
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let moment = UNIX_EPOCH + Duration::from_millis(1_736_935_200_250);
        assert_eq!(format_utc(moment), "2025-01-15T10:00:00.250Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_utc(leap_day), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn an_instant_key_reads_back_as_unix_seconds() {
        let seconds = |ts: &str| unix_seconds_of_key(&instant_key(ts).unwrap());
        assert_eq!(seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(seconds("2025-01-15T10:00:00Z"), Some(1_736_935_200.0));
        assert_eq!(seconds("2025-01-15T10:00:00.500Z"), Some(1_736_935_200.5));
        assert_eq!(seconds("2000-02-29T23:59:59Z"), Some(951_868_799.0));
        assert_eq!(seconds("0001-01-01T00:00:00Z"), Some(-62_135_596_800.0));
        for moment in [0, 951_782_400, 1_736_935_200, 253_402_300_799] {
            let ts = format_utc(UNIX_EPOCH + Duration::from_secs(moment));
            assert_eq!(seconds(&ts), Some(moment as f64), "{ts}");
        }
        for bad in [
            "",
            "2025-01-15",
            "2025-01-15T10:00:0x",
            "２０２５-01-15T10:00:00",
        ] {
            assert_eq!(unix_seconds_of_key(bad), None, "{bad:?}");
        }
    }
}
