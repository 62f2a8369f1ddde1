//! The pull feed: `GET /feed`, `POST /feed/commit`, `GET /feed/consumers` (read token) and
//! `DELETE /feed/consumers/{name}` (admin token). Each is one storage statement; a refused
//! commit adds one read that says why (src/storage/feed.rs). See docs/feed.md.

use super::*;
use crate::storage::Commit;

/// Largest `POST /feed/commit` body: a name of 64 characters and an offset fit many times.
const COMMIT_MAX_BODY_BYTES: usize = 4096;

/// The consumer bound, or the 503 for a value that cannot be used (readiness reports it
/// too): guessing a bound could refuse a consumer the operator allowed.
fn max_consumers(context: &Context) -> Result<u32, String> {
    let value = context.variable(config::FEED_MAX_CONSUMERS);
    config::feed_max_consumers(value.as_deref())
}

fn unusable_bound(problem: String) -> Outcome {
    Outcome::unavailable("invalid configuration", anyhow::Error::msg(problem))
}

fn bound_reached(bound: u32) -> Outcome {
    Outcome::detail(
        StatusCode::CONFLICT,
        &format!(
            "feed_max_consumers ({bound}) consumers exist: forget one \
             (DELETE /feed/consumers/{{name}}) before adding another"
        ),
    )
}

/// `GET /feed?consumer=NAME&limit=N`: the messages after the consumer's committed offset,
/// in offset order. Never commits.
pub(super) fn feed(context: &mut Context, raw_query: &str) -> Outcome {
    let query = match query::parse_feed(raw_query) {
        Ok(query) => query,
        Err(errors) => return Outcome::invalid(&errors),
    };
    let bound = match max_consumers(context) {
        Ok(bound) => bound,
        Err(problem) => return unusable_bound(problem),
    };
    match context.storage.feed_page(&query.consumer, query.limit) {
        // A new consumer that could never commit is told now, not after its first page.
        Ok(page) if !page.known && page.consumers >= i64::from(bound) => bound_reached(bound),
        Ok(page) => Outcome::json(StatusCode::OK, responses::feed(&query.consumer, &page)),
        Err(err) => storage_unavailable(err),
    }
}

/// `POST /feed/commit` with `{"consumer":NAME,"offset":N}`: moves the offset forward.
pub(super) fn commit(context: &mut Context, request: Request) -> Outcome {
    let body = match request.body.read_to_limit(COMMIT_MAX_BODY_BYTES) {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return Outcome::detail(StatusCode::PAYLOAD_TOO_LARGE, "body too large")
        }
        Err(BodyError::Io(err)) => {
            return Outcome::detail(StatusCode::BAD_REQUEST, &format!("body not read: {err}"))
        }
    };
    let commit = match query::parse_feed_commit(&body) {
        Ok(commit) => commit,
        Err(errors) => return Outcome::invalid(&errors),
    };
    let bound = match max_consumers(context) {
        Ok(bound) => bound,
        Err(problem) => return unusable_bound(problem),
    };
    let consumer = commit.consumer.as_str();
    match context.storage.feed_commit(consumer, commit.offset, bound) {
        Ok(Commit::Committed(n)) => {
            Outcome::json(StatusCode::OK, responses::committed(consumer, n))
        }
        Ok(Commit::Behind(committed)) => Outcome::detail(
            StatusCode::CONFLICT,
            &format!(
                "offset {} is below {consumer}'s committed offset {committed}: \
                 offsets only move forward",
                commit.offset
            ),
        ),
        Ok(Commit::Beyond(highest)) => Outcome::invalid(&[problem::FieldError::body(
            Some("offset"),
            "less_than_equal",
            format!("offset must be at most {highest}, the highest offset handed out"),
        )]),
        Ok(Commit::Full) => bound_reached(bound),
        Err(err) => storage_unavailable(err),
    }
}

/// `GET /feed/consumers`: every consumer, by name, with its committed offset and lag.
pub(super) fn consumers(context: &mut Context) -> Outcome {
    match context.storage.feed_consumers() {
        Ok(list) => Outcome::json(StatusCode::OK, responses::feed_consumers(&list)),
        Err(err) => storage_unavailable(err),
    }
}

/// `DELETE /feed/consumers/{name}`: forgets the consumer; 200 with the offset it had
/// committed, 404 when there is no such consumer.
pub(super) fn forget(context: &mut Context, path: &str) -> Outcome {
    let not_found = || Outcome::detail(StatusCode::NOT_FOUND, "consumer not found");
    let Some(name) = routes::consumer_name(path).filter(|n| query::is_consumer_name(n)) else {
        return not_found();
    };
    match context.storage.feed_forget(&name) {
        Ok(Some(committed)) => {
            Outcome::json(StatusCode::OK, responses::committed(&name, committed))
        }
        Ok(None) => not_found(),
        Err(err) => storage_unavailable(err),
    }
}
