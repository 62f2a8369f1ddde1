//! The synthetic data set: deterministic, so seeding, verification and the HTTP scenarios all
//! regenerate the same message `i` without keeping a million of them in memory.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

/// Bump when the generator changes, so a cached seeded database is not reused.
pub const GENERATOR_VERSION: u32 = 1;

/// 2025-01-01T00:00:00Z: every seeded `ts` lies in the 30 days after it.
const EPOCH_SECS: u64 = 1_735_689_600;
const SPAN_MS: u64 = 30 * 86_400 * 1000;

/// The instant `share` (0 to 1) of the way through the seeded span: message `i` of `n` lies
/// within a minute of `i / n` of the way, so about that share of the seeded set is older.
pub fn seeded_instant(share: f64) -> SystemTime {
    let ms = (share.clamp(0.0, 1.0) * SPAN_MS as f64) as u64;
    UNIX_EPOCH + Duration::from_millis(EPOCH_SECS * 1000 + ms)
}

/// The component's sort key (`instant_key`) of an instant, as its retention cutoff has it.
pub fn instant_key_of(t: SystemTime) -> String {
    webhook_inbox::timestamp::instant_key(&webhook_inbox::timestamp::format_utc(t))
        .expect("a formatted instant reads back")
}

/// Ordinary words, most frequent first: the draw is skewed towards the head, so `q` terms
/// range from "in nearly every text" to "in a few percent". A few are non-ASCII or upper
/// case so the stored folded text differs from the text.
#[rustfmt::skip]
const WORDS: &[&str] = &[
    "hello", "order", "the", "please", "your", "thanks", "delivery", "today", "is", "ready",
    "payment", "confirm", "we", "tomorrow", "at", "status", "shipped", "OK", "for", "update",
    "address", "call", "me", "back", "invoice", "refund", "received", "pickup", "time", "store",
    "package", "tracking", "number", "when", "can", "you", "send", "photo", "price", "quote",
    "appointment", "reminder", "cancel", "reschedule", "Monday", "Friday", "morning", "evening",
    "café", "naïve", "Zürich", "größe", "señor", "crème", "ASAP", "PIN", "code", "verify",
    "account", "balance", "transfer", "pending", "approved", "declined", "support", "ticket",
    "agent", "chat", "available", "closed", "open", "hours", "weekend", "holiday", "discount",
    "coupon", "voucher", "gift", "card", "wallet", "receipt", "warranty", "repair", "return",
    "exchange", "size", "colour", "stock", "backorder", "courier", "driver", "route", "gate",
    "floor", "building", "parking", "lobby", "reception", "signature", "document", "upload",
    "download", "link", "expired", "renew", "subscription", "plan", "upgrade", "downgrade",
    "feedback", "survey", "rating", "review", "complaint", "apology", "compensation",
    "zeppelin", "quokka", "xylophone",
];

/// One generated message, with its exact request body.
#[derive(Debug, Clone)]
pub struct Message {
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub ts: String,
    pub text: Option<String>,
}

impl Message {
    /// The webhook body, as a sender would POST it.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "message_id": self.message_id,
            "from": self.from,
            "to": self.to,
            "ts": self.ts,
            "text": self.text,
        }))
        .expect("JSON of strings")
    }
}

/// Shape of the data set. The cache key of a seeded database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub messages: u64,
    pub senders: u64,
    pub recipients: u64,
}

impl Shape {
    pub fn sender(&self, idx: u64) -> String {
        format!("+91{:010}", 7_000_000_000 + idx)
    }

    pub fn recipient(&self, idx: u64) -> String {
        format!("+1415{:07}", idx)
    }

    /// Message `i`. Indices at or past `messages` continue the series (fresh ingest traffic).
    pub fn message(&self, i: u64) -> Message {
        let mut rng = Rng(mix(i ^ 0x5eed_0000_0000_0000));
        // The first `senders` messages visit every sender once, so senders_count is exact;
        // after that a squared uniform draw makes low indices heavy hitters (top sender ~1%).
        let sender = if i < self.senders {
            i
        } else {
            let u = rng.unit();
            ((u * u * self.senders as f64) as u64).min(self.senders - 1)
        };
        let recipient = rng.below(self.recipients);

        // Roughly in arrival order, with up to a minute of jitter either way (`older_than`
        // relies on `ts` lying within 61 s of `base_ms`).
        let base_ms = i.saturating_mul(SPAN_MS) / self.messages.max(1);
        let jitter = rng.below(120_000) as i64 - 60_000;
        let mut ms = base_ms.saturating_add_signed(jitter);
        let fractional = rng.below(3) == 0;
        if !fractional {
            ms -= ms % 1000;
        }
        let mut ts = webhook_inbox::timestamp::format_utc(
            UNIX_EPOCH + Duration::from_millis(EPOCH_SECS * 1000 + ms),
        );
        if !fractional {
            ts = ts.replace(".000Z", "Z");
        }

        let text = (rng.below(10) != 0).then(|| text(&mut rng));
        Message {
            message_id: format!("wamid.{:016x}", mix(i)),
            from: self.sender(sender),
            to: self.recipient(recipient),
            ts,
            text,
        }
    }
}

impl Shape {
    /// How many seeded messages have an instant before `cutoff`, compared as the component
    /// compares them (`instant_key`). Only the messages within two minutes of the cutoff are
    /// generated: every `ts` lies within 61 s of its index's share of the span.
    pub fn older_than(&self, cutoff: SystemTime) -> u64 {
        let key = |ts: &str| webhook_inbox::timestamp::instant_key(ts).expect("generated ts");
        let cutoff_key = instant_key_of(cutoff);
        let cutoff_ms = cutoff
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .saturating_sub(EPOCH_SECS * 1000);
        let n = self.messages.max(1);
        let base_ms = |i: u64| i.saturating_mul(SPAN_MS) / n;
        // Below `sure`, base_ms <= cutoff - 2 min: older whatever the jitter.
        let sure = ((u128::from(cutoff_ms.saturating_sub(120_000)) * u128::from(n))
            / u128::from(SPAN_MS))
        .min(u128::from(self.messages)) as u64;
        let mut older = sure;
        for i in sure..self.messages {
            if base_ms(i) >= cutoff_ms + 120_000 {
                break;
            }
            older += u64::from(key(&self.message(i).ts) < cutoff_key);
        }
        older
    }
}

/// 20 to 200 characters of skewed words; one text in five carries a ticket token
/// (`TK-0000`..`TK-9999`), which makes a very selective search term.
fn text(rng: &mut Rng) -> String {
    let target = 20 + rng.below(181) as usize;
    let mut out = String::with_capacity(target + 16);
    let ticket = (rng.below(5) == 0).then(|| format!("TK-{:04}", rng.below(10_000)));
    while out.chars().count() < target {
        if !out.is_empty() {
            out.push(' ');
        }
        if let (Some(t), true) = (&ticket, rng.below(8) == 0) {
            out.push_str(t);
        } else {
            let u = rng.unit();
            out.push_str(WORDS[(u.powf(2.5) * WORDS.len() as f64) as usize % WORDS.len()]);
        }
    }
    let mut text: String = out.chars().take(target).collect();
    if let Some(first) = text.get(..1) {
        let upper = first.to_ascii_uppercase();
        text.replace_range(..1, &upper);
    }
    text
}

/// SplitMix64's finaliser: a bijection on u64, so distinct indices give distinct ids.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A tiny deterministic generator (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_valid_deterministic_and_unique() {
        let shape = Shape {
            messages: 5000,
            senders: 50,
            recipients: 20,
        };
        let mut ids = std::collections::HashSet::new();
        for i in 0..shape.messages {
            let m = shape.message(i);
            let parsed =
                webhook_inbox::sources::webhook::payload::parse(&m.body()).expect("valid body");
            assert_eq!(parsed.ts, m.ts);
            if let Some(t) = &m.text {
                assert!((20..=200).contains(&t.chars().count()), "{t:?}");
            }
            assert!(ids.insert(m.message_id.clone()));
            assert_eq!(shape.message(i).body(), m.body());
        }
    }

    #[test]
    fn older_than_counts_as_a_full_scan_does() {
        let shape = Shape {
            messages: 3000,
            senders: 50,
            recipients: 20,
        };
        let key = |ts: &str| webhook_inbox::timestamp::instant_key(ts).unwrap();
        for share in [0.0, 0.001, 0.1, 0.5, 0.9999, 1.0] {
            let cutoff = seeded_instant(share);
            let cutoff_key = key(&webhook_inbox::timestamp::format_utc(cutoff));
            let scanned = (0..shape.messages)
                .filter(|&i| key(&shape.message(i).ts) < cutoff_key)
                .count() as u64;
            assert_eq!(shape.older_than(cutoff), scanned, "{share}");
        }
        assert_eq!(
            shape.older_than(seeded_instant(1.0) + Duration::from_secs(3600)),
            shape.messages
        );
    }
}
