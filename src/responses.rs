//! JSON bodies of successful answers.

use crate::query;
use crate::storage::{MessagePage, RejectionPage, Stats};
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

/// `{"data":[...],"total":N,"limit":L,"offset":O,"next_cursor":...}`.
pub fn messages(page: &MessagePage, limit: u32, offset: u64) -> String {
    let data: Vec<MessageBody> = page
        .messages
        .iter()
        .map(|m| MessageBody {
            message_id: &m.message_id,
            from: &m.from,
            to: &m.to,
            ts: &m.ts,
            text: m.text.as_deref(),
        })
        .collect();
    json!({
        "data": data,
        "total": page.total,
        "limit": limit,
        "offset": offset,
        "next_cursor": page.next_cursor(limit).map(|c| c.encode()),
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
