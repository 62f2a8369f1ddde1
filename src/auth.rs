//! Read tokens: `Authorization: Bearer <token>` on the endpoints that serve stored data.
//!
//! A token is compared in constant time: both sides are first reduced to an HMAC-SHA256
//! digest under a fixed key, and the digests are compared with `hmac`'s `verify_slice`.
//! Comparing digests, not the tokens, also keeps the token's length out of the timing.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest `Authorization` value looked at; anything longer cannot hold a token we issued.
pub const MAX_AUTHORIZATION_LEN: usize = 4096;

/// The token of an `Authorization: Bearer <token>` value: the scheme is case-insensitive
/// (RFC 9110), one or more spaces follow it, and blanks around the token are dropped.
/// `None` for any other scheme, an empty token or an oversized header.
pub fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    if header.len() > MAX_AUTHORIZATION_LEN {
        return None;
    }
    let header = header.trim_ascii();
    let scheme = header.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let rest = &header[6..];
    if !rest.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Whether `presented` equals `expected`, in time that depends on neither. An empty
/// `expected` (a token that is not configured) never matches.
pub fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    digest(presented)
        .verify_slice(&digest(expected).finalize().into_bytes())
        .is_ok()
}

fn digest(token: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(b"webhook-inbox read token")
        .expect("HMAC takes keys of any size");
    mac.update(token);
    mac
}

/// What the request's credentials allow, given the configured tokens (current, then the
/// previous one of a rotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token configured: the endpoint is open.
    Open,
    /// A configured token matched.
    Granted,
    /// A token is configured and the request did not present it.
    Denied,
}

/// Decides a request's access. `current` is the configured token; empty means none is
/// configured and the endpoint is open (`previous` alone never closes it). `previous` is
/// read only when a token was presented and `current` did not match (one variable lookup
/// fewer per request outside a rotation); an error reading it is the caller's to answer.
pub fn access<E>(
    authorization: Option<&[u8]>,
    current: &str,
    previous: impl FnOnce() -> Result<String, E>,
) -> Result<Access, E> {
    if current.is_empty() {
        return Ok(Access::Open);
    }
    let Some(token) = authorization.and_then(bearer_token) else {
        return Ok(Access::Denied);
    };
    if token_matches(token, current.as_bytes()) || token_matches(token, previous()?.as_bytes()) {
        Ok(Access::Granted)
    } else {
        Ok(Access::Denied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(authorization: Option<&str>, current: &str, previous: &str) -> Access {
        access::<()>(authorization.map(str::as_bytes), current, || {
            Ok(previous.to_owned())
        })
        .unwrap()
    }

    #[test]
    fn open_until_a_token_is_set() {
        assert_eq!(decide(None, "", ""), Access::Open);
        assert_eq!(decide(Some("Bearer x"), "", ""), Access::Open);
        assert_eq!(
            decide(None, "", "old"),
            Access::Open,
            "the previous token alone does not close reads"
        );
    }

    #[test]
    fn either_token_of_a_rotation_grants() {
        assert_eq!(decide(Some("Bearer new"), "new", "old"), Access::Granted);
        assert_eq!(decide(Some("Bearer old"), "new", "old"), Access::Granted);
        assert_eq!(decide(Some("Bearer new"), "new", ""), Access::Granted);
        assert_eq!(decide(Some("Bearer other"), "new", "old"), Access::Denied);
        assert_eq!(decide(Some("Bearer "), "new", ""), Access::Denied);
        assert_eq!(decide(Some("Bearer"), "new", ""), Access::Denied);
        assert_eq!(decide(Some("new"), "new", ""), Access::Denied);
        assert_eq!(decide(Some("Basic new"), "new", ""), Access::Denied);
        assert_eq!(decide(None, "new", "old"), Access::Denied);
    }

    #[test]
    fn the_previous_token_is_read_only_when_needed() {
        let unread = || -> Result<String, &str> { Err("must not be read") };
        assert_eq!(
            access(Some(b"Bearer new".as_slice()), "new", unread),
            Ok(Access::Granted)
        );
        assert_eq!(access(None, "new", unread), Ok(Access::Denied));
        assert_eq!(access(None, "", unread), Ok(Access::Open));
        assert_eq!(
            access(Some(b"Bearer old".as_slice()), "new", unread),
            Err("must not be read")
        );
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER   abc  "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer\tabc"), Some(&b"abc"[..]));
        assert_eq!(
            bearer_token(b" Bearer a.b-c_d~e+f/g="),
            Some(&b"a.b-c_d~e+f/g="[..])
        );
        for bad in [
            &b""[..],
            b"Bearer",
            b"Bearer ",
            b"Bearerabc",
            b"Basic YWxhZGRpbjpvcGVuc2VzYW1l",
            b"Token abc",
            b"abc",
        ] {
            assert_eq!(
                bearer_token(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"Bearer ".as_slice(), &[b'a'; MAX_AUTHORIZATION_LEN]].concat();
        assert_eq!(bearer_token(&long), None);
    }

    #[test]
    fn tokens_match_exactly() {
        assert!(token_matches(b"s3cret", b"s3cret"));
        assert!(!token_matches(b"s3cret", b"s3cre"));
        assert!(!token_matches(b"s3cre", b"s3cret"));
        assert!(!token_matches(b"S3CRET", b"s3cret"));
        assert!(!token_matches(b"", b"s3cret"));
        assert!(!token_matches(b"", b""), "an unset token matches nothing");
        assert!(!token_matches(b"x", b""));
    }
}
