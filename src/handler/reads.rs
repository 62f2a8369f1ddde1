//! The read endpoints: messages, one message, the export, stats, hourly counts, metrics and
//! the rejection log, each behind its token when one is configured.

use super::*;

pub(super) const READ: TokenPair = config::READ_TOKENS;

/// `serve`'s answer when the request may read what `tokens` guard, else the refusal.
pub(super) fn guarded(
    context: &mut Context,
    request: &Request,
    tokens: TokenPair,
    serve: impl FnOnce(&mut Context) -> Outcome,
) -> Outcome {
    let authorization = request.single_header("authorization");
    refusal(context, authorization, tokens).unwrap_or_else(|| serve(context))
}

/// How many entries the rejection log keeps. A value that cannot be read keeps the default
/// and says so in the request's log line (readiness reports it too): the bound is not worth
/// failing a request over.
pub(super) fn rejection_log_size(context: &Context, outcome: &mut Outcome) -> u32 {
    let value = context.variable(config::REJECTION_LOG_SIZE);
    config::rejection_log_size(value.as_deref()).unwrap_or_else(|problem| {
        outcome.note(anyhow::Error::msg(problem));
        config::DEFAULT_REJECTION_LOG_SIZE
    })
}

/// `GET /rejections`: the newest refused deliveries, a page at a time.
pub(super) fn rejection_log(context: &mut Context, raw_query: &str) -> Outcome {
    let query = match query::parse_rejections(raw_query) {
        Ok(query) => query,
        Err(errors) => return Outcome::invalid(&errors),
    };
    let mut outcome = Outcome::json(StatusCode::OK, String::new());
    let keep = rejection_log_size(context, &mut outcome);
    match context.storage.rejections(keep, query.limit, query.before) {
        Ok(page) => {
            outcome.answer.body = responses::rejections(&page, query.limit);
            outcome
        }
        Err(err) => storage_unavailable(err),
    }
}

pub(super) fn list(context: &mut Context, raw_query: &str) -> Outcome {
    let query = match query::parse(raw_query) {
        Ok(query) => query,
        Err(errors) => return Outcome::invalid(&errors),
    };
    match context.storage.list_messages(&query) {
        Ok(page) => Outcome::json(
            StatusCode::OK,
            responses::messages(&page, query.limit, query.offset),
        ),
        Err(err) => storage_unavailable(err),
    }
}

/// `GET /messages/{message_id}`: the message, or 404.
pub(super) fn one_message(context: &mut Context, path: &str) -> Outcome {
    // An id that does not decode to UTF-8 cannot be stored: not found, like any unknown id.
    let Some(message_id) = routes::message_id(path) else {
        return Outcome::detail(StatusCode::NOT_FOUND, "not found");
    };
    match context.storage.get_message(&message_id) {
        Ok(Some(message)) => Outcome::json(StatusCode::OK, responses::message(&message)),
        Ok(None) => Outcome::detail(StatusCode::NOT_FOUND, "not found"),
        Err(err) => storage_unavailable(err),
    }
}

/// `GET /messages/export`: every match as NDJSON, one page per statement. The first page is
/// read here, so a storage failure is still a clean 503; the rest stream from
/// [`AfterResponse::next_chunk`].
pub(super) fn export(context: &mut Context, raw_query: &str) -> Outcome {
    let mut query = match query::parse_export(raw_query) {
        Ok(query) => query,
        Err(errors) => return Outcome::invalid(&errors),
    };
    query.limit = EXPORT_PAGE_ROWS;
    match context.storage.export_page(&query) {
        Ok(page) => {
            // JSON lines are UTF-8 by construction.
            let lines = String::from_utf8(responses::ndjson(&page)).unwrap_or_default();
            let mut outcome = Outcome::new(StatusCode::OK, NDJSON, lines);
            let mut export = Export {
                query,
                rows: 0,
                done: false,
            };
            export.advance(&page);
            outcome.export = Some(export);
            outcome
        }
        Err(err) => storage_unavailable(err),
    }
}

/// `GET /stats/hourly`: messages per hour for the last `days` days, up to and including
/// the current hour (UTC, by this host's clock).
pub(super) fn hourly(context: &mut Context, raw_query: &str) -> Outcome {
    let days = match query::parse_hourly(raw_query) {
        Ok(days) => days,
        Err(errors) => return Outcome::invalid(&errors),
    };
    let hour_of = |moment: SystemTime| timestamp::format_utc(moment)[..13].to_owned();
    let span = std::time::Duration::from_secs((u64::from(days) * 24 - 1) * 3600);
    let last = hour_of(context.started);
    let first = hour_of(
        context
            .started
            .checked_sub(span)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    );
    match context.storage.hourly(&first, &last) {
        Ok(counts) => Outcome::json(
            StatusCode::OK,
            responses::hourly(days, &first, &last, &counts),
        ),
        Err(err) => storage_unavailable(err),
    }
}

pub(super) fn stats(context: &mut Context) -> Outcome {
    match context.storage.stats() {
        Ok(stats) => Outcome::json(StatusCode::OK, responses::stats(&stats)),
        Err(err) => storage_unavailable(err),
    }
}

pub(super) fn scrape(context: &mut Context) -> Outcome {
    match context.storage.read_counters() {
        Ok(rows) => Outcome::new(StatusCode::OK, PROMETHEUS_TEXT, metrics::render(&rows)),
        Err(err) => storage_unavailable(err),
    }
}
