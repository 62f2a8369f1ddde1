//! JSON bodies of successful answers.

use crate::query;
use crate::routes;
use crate::storage::{Consumer, FeedPage, MessagePage, RejectionPage, Stats, StoredMessage};
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

/// One message as the lookup shows it: an item of `/messages`' `data`, plus, for a
/// provider's message, where it came from and its type.
#[derive(Serialize)]
struct OneMessage<'a> {
    #[serde(flatten)]
    message: MessageBody<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
}

/// One message, in the shape of an item of `/messages`' `data`; a provider's message adds
/// `source` (`whatsapp`, `twilio`) and `type` (`text`, `image`, `sms`, ...).
pub fn message(m: &StoredMessage) -> String {
    let one = OneMessage {
        message: MessageBody::of(m),
        source: m.source.as_deref(),
        kind: m.kind.as_deref(),
    };
    serde_json::to_string(&one).unwrap_or_default()
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
                "source": routes::source_of_route(&e.route).map(|s| s.as_str()),
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

/// An item of the feed: an item of `/messages`' `data`, plus its `offset`.
#[derive(Serialize)]
struct FeedItem<'a> {
    offset: i64,
    #[serde(flatten)]
    message: MessageBody<'a>,
}

/// `{"consumer":NAME,"messages":[...],"next_offset":N,"lag":L}`.
pub fn feed(consumer: &str, page: &FeedPage) -> String {
    let messages: Vec<FeedItem> = page
        .messages
        .iter()
        .map(|m| FeedItem {
            offset: m.offset,
            message: MessageBody::of(&m.message),
        })
        .collect();
    json!({
        "consumer": consumer,
        "messages": messages,
        "next_offset": page.next_offset(),
        "lag": page.lag,
    })
    .to_string()
}

/// `{"consumer":NAME,"committed":N}`.
pub fn committed(consumer: &str, committed: i64) -> String {
    json!({ "consumer": consumer, "committed": committed }).to_string()
}

/// `{"data":[{"consumer","committed","lag"}...]}`, by name.
pub fn feed_consumers(consumers: &[Consumer]) -> String {
    let data: Vec<_> = consumers
        .iter()
        .map(|c| json!({ "consumer": c.name, "committed": c.committed, "lag": c.lag }))
        .collect();
    json!({ "data": data }).to_string()
}

pub fn status(value: &str) -> String {
    json!({ "status": value }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LoggedRejection;
    use serde_json::Value;

    fn stored(source: Option<&str>, kind: Option<&str>) -> StoredMessage {
        StoredMessage {
            message_id: "m1".into(),
            from: "+1".into(),
            to: "+2".into(),
            ts: "2025-01-15T10:00:00Z".into(),
            text: None,
            ts_key: "2025-01-15T10:00:00".into(),
            source: source.map(str::to_owned),
            kind: kind.map(str::to_owned),
        }
    }

    #[test]
    fn a_providers_message_shows_its_source_and_type() {
        let one: Value = serde_json::from_str(&message(&stored(None, None))).unwrap();
        assert_eq!(
            one,
            json!({"message_id": "m1", "from": "+1", "to": "+2",
                   "ts": "2025-01-15T10:00:00Z", "text": null})
        );
        let one: Value =
            serde_json::from_str(&message(&stored(Some("whatsapp"), Some("image")))).unwrap();
        assert_eq!(one["source"], "whatsapp");
        assert_eq!(one["type"], "image");
        assert_eq!(one["text"], Value::Null);
        // Lists keep their shape.
        let line = String::from_utf8(ndjson(&[stored(Some("twilio"), Some("sms"))])).unwrap();
        let item: Value = serde_json::from_str(line.trim_end()).unwrap();
        assert!(item.get("source").is_none() && item.get("type").is_none());
    }

    #[test]
    fn a_rejection_names_its_source_by_its_route() {
        let entry = |route: &str| LoggedRejection {
            seq: 1,
            at: "2026-01-01T00:00:00.000Z".into(),
            route: route.into(),
            status: 401,
            reason: "invalid_signature".into(),
            detail: "signature_mismatch".into(),
            locs: Vec::new(),
            request_id: "r1".into(),
            body_bytes: None,
            body_sha256: None,
        };
        let page = RejectionPage {
            entries: vec![
                entry("/webhook/twilio"),
                entry("/webhook/whatsapp"),
                entry("/webhook"),
            ],
            more: false,
        };
        let body: Value = serde_json::from_str(&rejections(&page, 10)).unwrap();
        let sources: Vec<&Value> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["source"])
            .collect();
        assert_eq!(
            sources,
            [&json!("twilio"), &json!("whatsapp"), &json!("webhook")]
        );
    }
}
