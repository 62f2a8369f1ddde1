//! Proof that the bulk-seeded database holds what `POST /webhook` would have stored: figures
//! computed from the generator are compared with the component's own HTTP answers.

use std::collections::HashMap;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use webhook_inbox::domain::fold_case;
use webhook_inbox::timestamp::instant_key;

use crate::data::Shape;
use crate::load::{LoadGen, Req};

/// Search terms whose match counts are checked (and used by the `q` scenarios).
pub const COMMON_TERM: &str = "hello";
pub const RARE_TERM: &str = "tk-0042";
/// Upper case and non-ASCII: only matches if the stored folded text is right.
const FOLDED_TERM: &str = "ZÜRICH";

/// What the data set must look like, from the generator alone.
pub struct Expected {
    pub total: u64,
    pub senders: u64,
    pub first_ts: String,
    pub last_ts: String,
    pub top_senders: Vec<(String, u64)>,
    /// (term, rows whose text contains it, case-insensitively)
    pub term_counts: Vec<(String, u64)>,
    /// (since, rows at or after it)
    pub since: (String, u64),
    /// (recipient, rows sent to it)
    pub recipient: (String, u64),
    /// Messages spot-checked field by field.
    pub samples: Vec<u64>,
}

pub fn expected(shape: Shape) -> Expected {
    let terms = [COMMON_TERM, RARE_TERM, FOLDED_TERM].map(fold_case);
    let mut term_counts = [0u64; 3];
    let mut per_sender: HashMap<String, u64> = HashMap::new();
    let mut first: Option<(String, String)> = None;
    let mut last: Option<(String, String)> = None;
    let since = shape.message(shape.messages * 2 / 3).ts;
    let since_key = instant_key(&since).expect("generated ts");
    let recipient = shape.recipient(7);
    let (mut since_count, mut recipient_count) = (0, 0);
    for i in 0..shape.messages {
        let m = shape.message(i);
        let key = instant_key(&m.ts).expect("generated ts");
        if first.as_ref().is_none_or(|(k, _)| key < *k) {
            first = Some((key.clone(), m.ts.clone()));
        }
        if last.as_ref().is_none_or(|(k, _)| key > *k) {
            last = Some((key.clone(), m.ts.clone()));
        }
        since_count += u64::from(key >= since_key);
        recipient_count += u64::from(m.to == recipient);
        if let Some(text) = &m.text {
            let folded = fold_case(text);
            for (t, n) in terms.iter().zip(term_counts.iter_mut()) {
                *n += u64::from(folded.contains(t.as_str()));
            }
        }
        *per_sender.entry(m.from).or_default() += 1;
    }
    let senders = per_sender.len() as u64;
    let mut top: Vec<_> = per_sender.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(10);
    let n = shape.messages;
    Expected {
        total: n,
        senders,
        first_ts: first.map(|f| f.1).unwrap_or_default(),
        last_ts: last.map(|l| l.1).unwrap_or_default(),
        top_senders: top,
        term_counts: [COMMON_TERM, RARE_TERM, FOLDED_TERM]
            .iter()
            .map(|t| t.to_string())
            .zip(term_counts)
            .collect(),
        since: (since, since_count),
        recipient: (recipient, recipient_count),
        samples: vec![0, 1, n / 3, n / 2, n - 2, n - 1],
    }
}

/// Percent-encodes a query value (`+` must become `%2B`, or it reads as a space).
pub fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn get_json(load: &LoadGen, target: &str) -> Result<Value> {
    let (status, body) = load.fetch(Req::get(target))?;
    ensure!(
        status == 200,
        "GET {target} -> {status}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).with_context(|| format!("GET {target}: not JSON"))
}

fn total(load: &LoadGen, query: &str) -> Result<u64> {
    let v = get_json(load, &format!("/messages?{query}&limit=1"))?;
    v["total"].as_u64().context("no total")
}

/// `/stats` `total_messages`.
pub fn stats_total(load: &LoadGen) -> Result<u64> {
    get_json(load, "/stats")?["total_messages"]
        .as_u64()
        .context("/stats: no total_messages")
}

/// Seeded messages due for purging while a purge loop ran: older than the cutoff before its
/// first request, and older than the cutoff after its last (the cutoff moves with the clock).
pub struct Due {
    pub at_start: u64,
    pub at_end: u64,
    /// `instant_key` of the cutoff before the first request.
    pub start_key: String,
}

/// After purge batches that answered `purged` in total: `/stats` counts exactly that many
/// fewer than `before`. When the loop ran until nothing was due (`due`), `purged` also lies
/// between the due counts at start and end, and the oldest message left is not older than the
/// cutoff at the start. Returns what was checked.
pub fn after_purge(load: &LoadGen, before: u64, purged: u64, due: Option<&Due>) -> Result<String> {
    let stats = get_json(load, "/stats")?;
    let after = stats["total_messages"]
        .as_u64()
        .context("/stats: no total_messages")?;
    ensure!(
        after + purged == before,
        "/stats total_messages {after} after purging {purged} of {before}"
    );
    let mut done =
        format!("/stats total_messages {before} -> {after}: exactly the {purged} purged");
    if let Some(due) = due {
        ensure!(
            (due.at_start..=due.at_end).contains(&purged),
            "purged {purged}, but {} were due at the start and {} at the end",
            due.at_start,
            due.at_end
        );
        // None left at all is fine too.
        let first = stats["first_message_ts"].as_str().unwrap_or("none");
        if after > 0 {
            let key = instant_key(first)
                .ok()
                .with_context(|| format!("first_message_ts {first:?}"))?;
            ensure!(
                key >= due.start_key,
                "oldest message left {first} is older than the cutoff"
            );
        }
        done.push_str(&format!(
            "; {} due by the generator at the start, {} at the end; oldest left {first}",
            due.at_start, due.at_end
        ));
    }
    Ok(done)
}

/// Checks `/stats`, filter totals and sample rows through HTTP; returns what was checked.
pub fn check(load: &LoadGen, shape: Shape, want: &Expected) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let stats = get_json(load, "/stats")?;
    ensure!(
        stats["total_messages"] == want.total,
        "total_messages {} != {}",
        stats["total_messages"],
        want.total
    );
    ensure!(
        stats["senders_count"] == want.senders,
        "senders_count {}",
        stats["senders_count"]
    );
    ensure!(
        stats["first_message_ts"] == want.first_ts.as_str()
            && stats["last_message_ts"] == want.last_ts.as_str(),
        "first/last {} {} != {} {}",
        stats["first_message_ts"],
        stats["last_message_ts"],
        want.first_ts,
        want.last_ts
    );
    let top: Vec<(String, u64)> = stats["messages_per_sender"]
        .as_array()
        .context("messages_per_sender")?
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap_or("").to_owned(),
                e["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    ensure!(top == want.top_senders, "top senders {top:?}");
    done.push(format!(
        "/stats: total {} senders {} first {} last {} top-10 match",
        want.total, want.senders, want.first_ts, want.last_ts
    ));

    for (term, count) in &want.term_counts {
        let got = total(load, &format!("q={}", encode(term)))?;
        ensure!(got == *count, "q={term}: total {got} != {count}");
        done.push(format!("q={term}: total {got}"));
    }
    let (since, count) = &want.since;
    let got = total(load, &format!("since={}", encode(since)))?;
    ensure!(got == *count, "since={since}: total {got} != {count}");
    done.push(format!("since={since}: total {got}"));
    let (to, count) = &want.recipient;
    let got = total(load, &format!("to={}", encode(to)))?;
    ensure!(got == *count, "to={to}: total {got} != {count}");
    done.push(format!("to={to}: total {got}"));

    for &i in &want.samples {
        let m = shape.message(i);
        let page = get_json(
            load,
            &format!(
                "/messages?from={}&since={}&limit=100",
                encode(&m.from),
                encode(&m.ts)
            ),
        )?;
        let row = page["data"]
            .as_array()
            .and_then(|rows| {
                rows.iter()
                    .find(|r| r["message_id"] == m.message_id.as_str())
            })
            .with_context(|| format!("message {i} ({}) not listed", m.message_id))?;
        let text = m.text.as_deref().map_or(Value::Null, Value::from);
        ensure!(
            row["from"] == m.from.as_str()
                && row["to"] == m.to.as_str()
                && row["ts"] == m.ts.as_str()
                && row["text"] == text,
            "message {i} stored differently: {row}"
        );
    }
    done.push(format!("rows {:?}: every field as sent", want.samples));
    Ok(done)
}
