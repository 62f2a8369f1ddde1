//! Counts: `/stats` and the hourly counts, read from `tallies` plus the rows of `received`
//! the fold has not counted yet.

use super::fold::UNCOUNTED;
use super::{Database, Rows, SqlValue, StorageError};

/// Messages per hour, for the hours from `first_hour` to `last_hour` (hour keys,
/// `2025-01-15T10`, both included), oldest first; hours without messages are left out.
/// Counted messages are in the hour tallies; the rows the fold has not counted yet are
/// counted here and added, as every other read does.
pub fn hourly(
    db: &dyn Database,
    first_hour: &str,
    last_hour: &str,
) -> Result<Vec<(String, i64)>, StorageError> {
    // Every key of an hour starts with its hour key, then ':', which sorts below ';'.
    let rows = db.execute(
        &format!(
            "SELECT hour, sum(n) FROM ( \
             SELECT key AS hour, n FROM tallies WHERE kind = 'hour' AND key >= ?1 AND key <= ?2 \
             UNION ALL \
             SELECT substr(ts_key, 1, 13), count(*) FROM received \
             WHERE ts_key >= ?1 AND ts_key < ?3 AND {UNCOUNTED} \
             GROUP BY substr(ts_key, 1, 13)) \
         GROUP BY hour HAVING sum(n) > 0 ORDER BY hour"
        ),
        &[
            SqlValue::text(first_hour),
            SqlValue::text(last_hour),
            SqlValue::text(format!("{last_hour};")),
        ],
    )?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let hour = row.first().and_then(SqlValue::as_str)?;
            let count = row.get(1).and_then(SqlValue::as_i64)?;
            Some((hour.to_owned(), count))
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub total_messages: i64,
    pub senders_count: i64,
    /// Top senders: count descending, then `from` ascending.
    pub top_senders: Vec<(String, i64)>,
    pub first_message_ts: Option<String>,
    pub last_message_ts: Option<String>,
}

/// Number of senders `/stats` lists.
pub const TOP_SENDERS: u32 = 10;

/// Reads the counts in `tallies` and the rows of `received` not counted yet, in one statement
/// (no scan of `messages`), and adds them up.
///
/// The statement returns rows of five kinds: the totals (pending messages and senders the
/// stored figures do not know yet included), the stored top ten, the pending senders that
/// can reach it, and the first and last messages. Counts only grow, so a sender whose count
/// stays below the stored tenth is behind all ten: only pending senders at or above it can
/// enter, and few rows cross from the host. First and last are the first and last messages
/// in the order of `GET /messages` (instant, then `message_id`): one index entry each, so
/// the fold need not keep them.
pub fn stats(db: &dyn Database) -> Result<Stats, StorageError> {
    let rows: Rows = db.execute(
        &format!(
            "WITH pending AS MATERIALIZED (SELECT sender FROM received WHERE {UNCOUNTED}) \
         SELECT 0, NULL, \
             (SELECT n FROM tallies WHERE kind = 'inbox' AND key = 'messages') \
                 + (SELECT count(*) FROM pending), \
             (SELECT n FROM tallies WHERE kind = 'inbox' AND key = 'senders') \
                 + (SELECT count(*) FROM (SELECT DISTINCT sender FROM pending) AS p \
                    WHERE NOT EXISTS (SELECT 1 FROM tallies \
                                      WHERE kind = 'sender' AND key = p.sender)) \
         UNION ALL SELECT * FROM (SELECT 1, key, n, NULL FROM tallies INDEXED BY tallies_top_senders \
                                  WHERE kind = 'sender' ORDER BY n DESC, key LIMIT {TOP_SENDERS}) \
         UNION ALL SELECT 2, sender, n, NULL FROM ( \
             SELECT p.sender, count(*) + coalesce( \
                 (SELECT n FROM tallies WHERE kind = 'sender' AND key = p.sender), 0) AS n \
             FROM pending AS p GROUP BY p.sender) \
         WHERE n >= coalesce((SELECT n FROM tallies INDEXED BY tallies_top_senders \
                              WHERE kind = 'sender' \
                              ORDER BY n DESC, key LIMIT 1 OFFSET {tenth}), 0) \
         UNION ALL SELECT * FROM (SELECT 3, ts, NULL, NULL FROM ( \
             SELECT * FROM (SELECT ts, ts_key, message_id FROM messages INDEXED BY messages_by_ts \
                            ORDER BY ts_key, message_id LIMIT 1) \
             UNION ALL SELECT ts, ts_key, message_id FROM received) \
             ORDER BY ts_key, message_id LIMIT 1) \
         UNION ALL SELECT * FROM (SELECT 4, ts, NULL, NULL FROM ( \
             SELECT * FROM (SELECT ts, ts_key, message_id FROM messages INDEXED BY messages_by_ts \
                            ORDER BY ts_key DESC, message_id DESC LIMIT 1) \
             UNION ALL SELECT ts, ts_key, message_id FROM received) \
             ORDER BY ts_key DESC, message_id DESC LIMIT 1)",
            tenth = TOP_SENDERS - 1
        ),
        &[],
    )?;
    let mut stats = Stats {
        total_messages: 0,
        senders_count: 0,
        top_senders: Vec::new(),
        first_message_ts: None,
        last_message_ts: None,
    };
    let mut stored_top: Vec<(String, i64)> = Vec::new();
    let mut new_senders: Vec<(String, i64)> = Vec::new();
    for row in &rows {
        let text = |i: usize| row.get(i).and_then(SqlValue::as_str);
        let int = |i: usize| row.get(i).and_then(SqlValue::as_i64);
        match (int(0), text(1)) {
            (Some(0), _) => {
                stats.total_messages += int(2).unwrap_or(0);
                stats.senders_count += int(3).unwrap_or(0);
            }
            (Some(1), Some(sender)) => stored_top.push((sender.to_owned(), int(2).unwrap_or(0))),
            (Some(2), Some(sender)) => new_senders.push((sender.to_owned(), int(2).unwrap_or(0))),
            (Some(3), Some(ts)) => stats.first_message_ts = Some(ts.to_owned()),
            (Some(4), Some(ts)) => stats.last_message_ts = Some(ts.to_owned()),
            _ => {}
        }
    }
    stored_top.retain(|(sender, _)| !new_senders.iter().any(|(s, _)| s == sender));
    let mut counts = stored_top;
    counts.append(&mut new_senders);
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.truncate(TOP_SENDERS as usize);
    stats.top_senders = counts;
    Ok(stats)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::storage::fold;
    use crate::storage::testing::{check_reads, fresh, msg, store, stored, LAYOUTS};

    #[test]
    fn hourly_counts_match_a_scan_wherever_the_messages_sit() {
        let mut all = Vec::new();
        for i in 0..50 {
            let ts = format!(
                "2025-01-{:02}T{:02}:{:02}:00Z",
                14 + i % 3,
                (i * 7) % 24,
                i % 60
            );
            all.push(msg(&format!("m{i}"), "+1", "+2", &ts, None));
        }
        all.push(msg("edge", "+1", "+2", "2025-01-15T23:59:59.999999Z", None));
        for layout in LAYOUTS {
            let db = stored(&all, layout);
            for (first, last) in [
                ("2025-01-14T00", "2025-01-16T23"),
                ("2025-01-15T00", "2025-01-15T23"),
                ("2025-01-15T07", "2025-01-15T07"),
                ("2030-01-01T00", "2030-01-02T00"),
            ] {
                let mut want = std::collections::BTreeMap::new();
                for m in &all {
                    let hour = &m.ts_key[..13];
                    if hour >= first && hour <= last {
                        *want.entry(hour.to_owned()).or_insert(0i64) += 1;
                    }
                }
                let want: Vec<_> = want.into_iter().collect();
                assert_eq!(
                    hourly(&db, first, last).unwrap(),
                    want,
                    "{layout:?} {first}"
                );
            }
        }
    }

    #[test]
    fn stats_of_an_empty_inbox() {
        assert_eq!(
            stats(&fresh()).unwrap(),
            Stats {
                total_messages: 0,
                senders_count: 0,
                top_senders: vec![],
                first_message_ts: None,
                last_message_ts: None
            }
        );
    }

    #[test]
    fn stats_top_ten_with_ties_and_instants() {
        let mut messages = Vec::new();
        for sender in 1..=15 {
            for _ in 0..(sender % 4 + 1) {
                let n = messages.len() + 1;
                let ts = format!("2025-01-15T10:{:02}:00.{n}Z", n % 60);
                messages.push(msg(
                    &format!("m{n}"),
                    &format!("+{sender}"),
                    "+2",
                    &ts,
                    None,
                ));
            }
        }
        let n = messages.len() as i64;
        messages.push(msg("early", "+15", "+2", "2025-01-15T09:59:59.999Z", None));
        messages.push(msg("late", "+15", "+2", "2025-01-15T11:00:00.000Z", None));
        // The same instants written differently: first and last follow the list's order.
        messages.push(msg("early2", "+1", "+2", "2025-01-15T09:59:59.9990Z", None));
        messages.push(msg("late2", "+1", "+2", "2025-01-15T11:00:00Z", None));
        for layout in LAYOUTS {
            let s = stats(&stored(&messages, layout)).unwrap();
            assert_eq!(s.total_messages, n + 4, "{layout:?}");
            assert_eq!(s.senders_count, 15, "{layout:?}");
            assert_eq!(
                s.first_message_ts.as_deref(),
                Some("2025-01-15T09:59:59.999Z"),
                "{layout:?}"
            );
            assert_eq!(
                s.last_message_ts.as_deref(),
                Some("2025-01-15T11:00:00Z"),
                "{layout:?}: late2 sorts after late"
            );
            let top: Vec<_> = s
                .top_senders
                .iter()
                .map(|(f, c)| format!("{f}:{c}"))
                .collect();
            assert_eq!(
                top,
                [
                    "+15:6", "+1:4", "+11:4", "+3:4", "+7:4", "+10:3", "+14:3", "+2:3", "+6:3",
                    "+13:2"
                ],
                "{layout:?}"
            );
        }
    }

    /// A pending sender whose count only ties the stored tenth still enters the top ten
    /// when its number sorts first.
    #[test]
    fn a_pending_sender_tying_the_tenth_enters_the_top_ten_by_name() {
        let db = fresh();
        let mut all = Vec::new();
        for sender in 2..=12 {
            for n in 0..2 {
                let m = msg(
                    &format!("s{sender}-{n}"),
                    &format!("+{sender}"),
                    "+99",
                    "2025-01-15T10:00:00Z",
                    None,
                );
                store(&db, &m);
                all.push(m);
            }
        }
        fold::fold(&db).unwrap();
        for n in 0..2 {
            let m = msg(
                &format!("s1-{n}"),
                "+1",
                "+99",
                "2025-01-15T11:00:00Z",
                None,
            );
            store(&db, &m);
            all.push(m);
        }
        check_reads(&db, &all, all.len());
        let top = stats(&db).unwrap().top_senders;
        assert_eq!(top.first(), Some(&("+1".to_owned(), 2)));
    }
}
