//! JSON bodies of successful answers.

use crate::query;
use crate::storage::{MessagePage, RejectionPage, Stats, StoredMessage};
use serde::Serialize;
use serde_json::json;

#[derive(Serialize)]
struct MessageBody<'a> {
    message_id: &'a str,
    from: &'a str,
    to: &'a str,
    ts: &'a str,
    text: Option<&'a str>,
}

impl<'a> MessageBody<'a> {
    fn of(m: &'a StoredMessage) -> MessageBody<'a> {
        MessageBody {
            message_id: &m.message_id,
            from: &m.from,
            to: &m.to,
            ts: &m.ts,
            text: m.text.as_deref(),
        }
    }
}

/// `{"data":[...],"total":N,"limit":L,"offset":O,"next_cursor":...}`.
pub fn messages(page: &MessagePage, limit: u32, offset: u64) -> String {
    let data: Vec<MessageBody> = page.messages.iter().map(MessageBody::of).collect();
    json!({
        "data": data,
        "total": page.total,
        "limit": limit,
        "offset": offset,
        "next_cursor": page.next_cursor(limit).map(|c| c.encode()),
    })
    .to_string()
}

/// One message, in the shape of an item of `/messages`' `data`.
pub fn message(m: &StoredMessage) -> String {
    serde_json::to_string(&MessageBody::of(m)).unwrap_or_default()
}

/// NDJSON: each message as one line of [`message`], each line ending in `\n`. JSON
/// escapes every control character, so a text's own line breaks never split a line.
pub fn ndjson(messages: &[StoredMessage]) -> Vec<u8> {
    let mut out = Vec::with_capacity(messages.len() * 160);
    for m in messages {
        // Writing into a Vec cannot fail, and these structs always serialize.
        let _ = serde_json::to_writer(&mut out, &MessageBody::of(m));
        out.push(b'\n');
    }
    out
}

/// `{"days":N,"from":"...","to":"...","data":[{"hour":"...","count":N}]}`: hours as the
/// instant they start, oldest first, hours without messages left out.
pub fn hourly(days: u32, first_hour: &str, last_hour: &str, counts: &[(String, i64)]) -> String {
    let data: Vec<_> = counts
        .iter()
        .map(|(hour, count)| json!({ "hour": format!("{hour}:00:00Z"), "count": count }))
        .collect();
    json!({
        "days": days,
        "from": format!("{first_hour}:00:00Z"),
        "to": format!("{last_hour}:00:00Z"),
        "data": data,
    })
    .to_string()
}

pub fn stats(stats: &Stats) -> String {
    let per_sender: Vec<_> = stats
        .top_senders
        .iter()
        .map(|(from, count)| json!({ "from": from, "count": count }))
        .collect();
    json!({
        "total_messages": stats.total_messages,
        "senders_count": stats.senders_count,
        "messages_per_sender": per_sender,
        "first_message_ts": stats.first_message_ts,
        "last_message_ts": stats.last_message_ts,
    })
    .to_string()
}

/// `{"data":[...],"limit":L,"next_cursor":...}`, newest entry first.
pub fn rejections(page: &RejectionPage, limit: u32) -> String {
    let data: Vec<_> = page
        .entries
        .iter()
        .map(|e| {
            json!({
                "at": e.at,
                "route": e.route,
                "status": e.status,
                "reason": e.reason,
                "detail": e.detail,
                "locs": e.locs,
                "request_id": e.request_id,
                "body_bytes": e.body_bytes,
                "body_sha256": e.body_sha256,
            })
        })
        .collect();
    let next_cursor = page
        .entries
        .last()
        .filter(|_| page.more)
        .map(|last| query::rejection_cursor(last.seq));
    json!({ "data": data, "limit": limit, "next_cursor": next_cursor }).to_string()
}

pub fn status(value: &str) -> String {
    json!({ "status": value }).to_string()
}
