//! The admin routes (retention purges, erasure) and the retention batch that rides on folds.

use super::*;

/// The answer that refuses an admin request, or `None` when it carries the admin token.
/// With no admin token configured the routes are closed (403), never open.
pub(super) fn admin_refusal(context: &Context, authorization: Option<&[u8]>) -> Option<Outcome> {
    match context.runtime.variable(config::ADMIN_TOKEN) {
        Ok(Some(token)) if !token.is_empty() => {
            refusal(context, authorization, config::ADMIN_TOKENS)
        }
        Ok(_) => Some(Outcome::detail(
            StatusCode::FORBIDDEN,
            "admin routes are disabled: set admin_token to use them",
        )),
        Err(error) => Some(Outcome::unavailable(
            "configuration unavailable",
            anyhow::anyhow!("{}: {error}", config::ADMIN_TOKEN),
        )),
    }
}

/// The admin routes, once the caller is known: a retention batch, or an erasure.
pub(super) fn admin(context: &mut Context, endpoint: Endpoint, request: &Request) -> Outcome {
    let lifecycle = match config::lifecycle(|name| context.variable(name)) {
        Ok(lifecycle) => lifecycle,
        Err(problem) => {
            return Outcome::unavailable("invalid configuration", anyhow::Error::msg(problem))
        }
    };
    let removal = removal(context.started, &lifecycle);
    let (cause, result) = match endpoint {
        Endpoint::Purge => {
            let cutoff = retention_cutoff(context.started, lifecycle.retention_days);
            let purged = context.storage.purge(cutoff.as_deref(), &removal);
            let body = purged.map(|p| {
                let body = serde_json::json!({
                    "purged": p.messages,
                    "tombstones_purged": p.tombstones,
                    "more": p.more,
                    "retention_days": lifecycle.retention_days,
                });
                (p.messages, Outcome::json(StatusCode::OK, body.to_string()))
            });
            (Removed::Retention, body)
        }
        Endpoint::EraseSender => {
            let sender = match query::parse_erasure(&request.query) {
                Ok(sender) => sender,
                Err(errors) => return Outcome::invalid(&errors),
            };
            let erased = context.storage.erase_sender(&sender, &removal);
            let body = erased.map(|e| {
                let body = serde_json::json!({"erased": e.erased, "remaining": e.remaining});
                (e.erased, Outcome::json(StatusCode::OK, body.to_string()))
            });
            (Removed::Erasure, body)
        }
        _ => {
            // An id that does not decode to UTF-8 was never stored (ids are JSON strings).
            let Some(message_id) = routes::message_id(&request.path) else {
                return Outcome::detail(StatusCode::NOT_FOUND, "message not found");
            };
            let erased = context.storage.erase_message(&message_id, &removal);
            let body = erased.map(|found| match found {
                true => (
                    1,
                    Outcome::json(StatusCode::OK, serde_json::json!({"erased": 1}).to_string()),
                ),
                false => (
                    0,
                    Outcome::detail(StatusCode::NOT_FOUND, "message not found"),
                ),
            });
            (Removed::Erasure, body)
        }
    };
    match result {
        Ok((count, mut outcome)) => {
            outcome.removed = Some((cause, count));
            outcome
        }
        Err(err) => storage_unavailable(err),
    }
}

/// The retention batch a fold is followed by: its cutoff (`None` keeps messages forever; the
/// batch then removes only expired tombstones) and its removal settings, or the lifecycle
/// configuration's problem, for the log line of the request it rides on.
pub(super) fn retention_batch(
    runtime: &dyn Runtime,
    started: SystemTime,
) -> Result<(Option<String>, Removal), String> {
    // A provider failure reads as "not set", as everywhere (`Context::variable`).
    let lifecycle = config::lifecycle(|name| runtime.variable(name).ok().flatten())?;
    let cutoff = retention_cutoff(started, lifecycle.retention_days);
    Ok((cutoff, removal(started, &lifecycle)))
}

/// The instant key before which messages are due for purging; `None` when kept forever.
fn retention_cutoff(now: SystemTime, retention_days: u32) -> Option<String> {
    if retention_days == 0 {
        return None;
    }
    let kept = std::time::Duration::from_secs(u64::from(retention_days) * 86_400);
    let cutoff = now.checked_sub(kept).unwrap_or(SystemTime::UNIX_EPOCH);
    timestamp::instant_key(&timestamp::format_utc(cutoff)).ok()
}

fn removal(now: SystemTime, lifecycle: &config::Lifecycle) -> Removal {
    let now_unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Removal {
        now_unix,
        tombstone_until: now_unix + i64::from(lifecycle.tombstone_days) * 86_400,
        batch: lifecycle.batch,
    }
}
