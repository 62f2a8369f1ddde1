//! The pull feed (`GET /feed`, `POST /feed/commit`, `/feed/consumers`): every SQL statement
//! that reads or moves a consumer's offset.
//!
//! A message's offset is its `seq`: the storing statement numbers it above every number
//! handed out before, under the write lock, and it never changes (the fold copies it, a
//! removal leaves a gap). So a message becomes visible only with a number above every
//! number visible before it, and a consumer that reads past offset `n` never finds a new
//! message at or below `n` later (docs/design.md, "The feed").
//!
//! Consumers are rows of `tallies` of kind `consumer`: key the name, `n` the committed
//! offset (no schema change). A name that never committed reads from 0.
//!
//! Each call is ONE statement (on a libSQL server, one round trip holding no transaction);
//! a refused commit adds one read that says why.

use super::fold::UNCOPIED;
use super::messages::{stored_messages, StoredMessage};
use super::{Database, Rows, SqlValue, StorageError};

/// The highest number ever handed out: removed rows were counted first (a removal folds
/// before it deletes), so the watermark covers them.
const HIGHEST: &str = "max(coalesce((SELECT max(seq) FROM received), 0), \
     coalesce((SELECT max(seq) FROM messages), 0), \
     coalesce((SELECT n FROM tallies WHERE kind = 'inbox' AND key = 'counted_through'), 0))";

/// Stored messages numbered above the committed offset `{after}` (an SQL expression).
fn lag_sql(after: &str) -> String {
    format!(
        "(SELECT count(*) FROM messages WHERE seq > {after}) + \
         (SELECT count(*) FROM received WHERE seq > {after} AND {UNCOPIED})"
    )
}

/// Rows `(series key, lag)` for `/metrics`, one per consumer, for the counters' statement
/// (see [`super::counters::read_counters`]): nothing when there is no consumer.
pub(super) fn lag_series_sql() -> String {
    format!(
        "SELECT '{name} consumer=\"' || who.key || '\"', {lag} \
         FROM tallies AS who WHERE who.kind = 'consumer'",
        name = crate::metrics::FEED_LAG,
        lag = lag_sql("who.n"),
    )
}

/// A message of the feed, with its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedMessage {
    pub offset: i64,
    pub message: StoredMessage,
}

/// One page of the feed and where its consumer stands, from one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    /// The consumer has committed (it is one of the consumers the bound counts).
    pub known: bool,
    pub committed: i64,
    /// Consumers that have committed, this one included if known.
    pub consumers: i64,
    pub messages: Vec<FeedMessage>,
    /// Stored messages after `committed`.
    pub lag: i64,
}

impl FeedPage {
    /// The offset of the last message of the page, or the committed offset when none.
    pub fn next_offset(&self) -> i64 {
        self.messages.last().map_or(self.committed, |m| m.offset)
    }
}

/// Up to `limit` messages after `consumer`'s committed offset, in offset order, with the
/// committed offset and the lag: ONE statement. Both tables are read in it, so a fold
/// between two pages (or between its own steps) neither hides nor repeats a row.
pub fn page(db: &dyn Database, consumer: &str, limit: u32) -> Result<FeedPage, StorageError> {
    let rows = db.execute(
        &format!(
            "WITH standing AS MATERIALIZED ( \
                 SELECT coalesce((SELECT n FROM tallies \
                                  WHERE kind = 'consumer' AND key = ?1), 0) AS n, \
                        EXISTS (SELECT 1 FROM tallies \
                                WHERE kind = 'consumer' AND key = ?1) AS known, \
                        (SELECT count(*) FROM tallies WHERE kind = 'consumer') AS consumers), \
             page AS ( \
                 SELECT * FROM (SELECT seq, message_id, sender, recipient, ts, body_text, ts_key \
                                FROM messages WHERE seq > (SELECT n FROM standing) \
                                ORDER BY seq LIMIT {limit}) \
                 UNION ALL \
                 SELECT * FROM (SELECT seq, message_id, sender, recipient, ts, body_text, ts_key \
                                FROM received WHERE seq > (SELECT n FROM standing) AND {UNCOPIED} \
                                ORDER BY seq LIMIT {limit}) \
                 ORDER BY seq LIMIT {limit}) \
             SELECT NULL, n, known, consumers, {lag}, NULL, NULL FROM standing \
             UNION ALL \
             SELECT seq, message_id, sender, recipient, ts, body_text, ts_key FROM page",
            lag = lag_sql("standing.n"),
        ),
        &[SqlValue::text(consumer)],
    )?;
    let mut page = FeedPage {
        known: false,
        committed: 0,
        consumers: 0,
        messages: Vec::new(),
        lag: 0,
    };
    for row in &rows {
        match row.first() {
            Some(SqlValue::Null) => {
                let int = |i: usize| row.get(i).and_then(SqlValue::as_i64).unwrap_or(0);
                page.committed = int(1);
                page.known = int(2) != 0;
                page.consumers = int(3);
                page.lag = int(4);
            }
            Some(SqlValue::Integer(offset)) => {
                // `stored_messages` reads column 0 as anything and the message from 1 on,
                // with `ts_key` in column 6.
                let one: Rows = vec![row.clone()];
                if let Some(message) = stored_messages(&one).into_iter().next() {
                    page.messages.push(FeedMessage {
                        offset: *offset,
                        message,
                    });
                }
            }
            _ => {}
        }
    }
    page.messages.sort_by_key(|m| m.offset);
    Ok(page)
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The committed offset is now this one (the same offset again is this too).
    Committed(i64),
    /// Below the committed offset (given): nothing changed.
    Behind(i64),
    /// Above every offset handed out (given): no consumer can have read it.
    Beyond(i64),
    /// A new consumer, and the bound is reached.
    Full,
}

/// Commits `offset` for `consumer`: ONE upsert that moves the offset only forward, only up
/// to the highest number handed out, and adds a new consumer only while fewer than
/// `max_consumers` exist; when it changes nothing, one read says why. `max_consumers` is the
/// component's validated integer, written into the text.
pub fn commit(
    db: &dyn Database,
    consumer: &str,
    offset: i64,
    max_consumers: u32,
) -> Result<Commit, StorageError> {
    let params = [SqlValue::text(consumer), SqlValue::Integer(offset)];
    let upsert = format!(
        "INSERT INTO tallies (kind, key, n) \
         SELECT 'consumer', ?1, ?2 \
         WHERE ?2 <= {HIGHEST} \
         AND (EXISTS (SELECT 1 FROM tallies WHERE kind = 'consumer' AND key = ?1) \
              OR (SELECT count(*) FROM tallies WHERE kind = 'consumer') < {max_consumers}) \
         ON CONFLICT (kind, key) DO UPDATE SET n = excluded.n \
             WHERE excluded.n >= tallies.n \
         RETURNING n"
    );
    let explain = format!(
        "SELECT (SELECT n FROM tallies WHERE kind = 'consumer' AND key = ?1), {HIGHEST}, \
                (SELECT count(*) FROM tallies WHERE kind = 'consumer')"
    );
    let mut last = Commit::Full;
    // Another client may change the consumers between the two statements (forget one, add
    // one); the upsert then runs again, a bounded number of times.
    for _ in 0..3 {
        let returned = db.execute(&upsert, &params)?;
        if let Some(n) = super::first_value(&returned).and_then(SqlValue::as_i64) {
            return Ok(Commit::Committed(n));
        }
        let why = db.execute(&explain, &params[..1])?;
        let row = why.first().cloned().unwrap_or_default();
        let int = |i: usize| row.get(i).and_then(SqlValue::as_i64);
        let (committed, highest, count) = (int(0), int(1).unwrap_or(0), int(2).unwrap_or(0));
        match committed {
            _ if offset > highest => return Ok(Commit::Beyond(highest)),
            Some(committed) if offset < committed => return Ok(Commit::Behind(committed)),
            None if count >= i64::from(max_consumers) => return Ok(Commit::Full),
            Some(committed) => last = Commit::Behind(committed),
            None => last = Commit::Full,
        }
    }
    Ok(last)
}

/// One consumer's standing, for `GET /feed/consumers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub name: String,
    pub committed: i64,
    pub lag: i64,
}

/// Every consumer (at most the bound), by name, with its lag: ONE statement.
pub fn consumers(db: &dyn Database) -> Result<Vec<Consumer>, StorageError> {
    let rows = db.execute(
        &format!(
            "SELECT who.key, who.n, {lag} FROM tallies AS who \
             WHERE who.kind = 'consumer' ORDER BY who.key",
            lag = lag_sql("who.n"),
        ),
        &[],
    )?;
    Ok(rows
        .iter()
        .filter_map(|row| match row.as_slice() {
            [name, committed, lag] => Some(Consumer {
                name: name.as_str()?.to_owned(),
                committed: committed.as_i64()?,
                lag: lag.as_i64()?,
            }),
            _ => None,
        })
        .collect())
}

/// Forgets `consumer`: its committed offset, or `None` when it was not known. ONE statement.
pub fn forget(db: &dyn Database, consumer: &str) -> Result<Option<i64>, StorageError> {
    let rows = db.execute(
        "DELETE FROM tallies WHERE kind = 'consumer' AND key = ?1 RETURNING n",
        &[SqlValue::text(consumer)],
    )?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_i64))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::domain::NewMessage;
    use crate::storage::lifecycle::{self, Removal};
    use crate::storage::testing::{fresh, msg, store, stored, TestDb, LAYOUTS};
    use crate::storage::{fold, read_counters, statements_of_fold};

    /// Messages whose `ts` runs backwards, so storage order is not time order.
    fn messages(n: usize) -> Vec<NewMessage> {
        (0..n)
            .map(|i| {
                let ts = format!("2025-01-15T10:{:02}:00Z", 59 - i % 60);
                msg(&format!("m{i:03}"), "+1", "+2", &ts, Some("hi"))
            })
            .collect()
    }

    /// Pulls and commits `consumer` to the end, `limit` at a time, checking each page's
    /// lag against what is left; the ids read, with their offsets.
    fn drain(db: &TestDb, consumer: &str, limit: u32) -> Vec<(i64, String)> {
        let mut seen: Vec<(i64, String)> = Vec::new();
        let start = page(db, consumer, 1).unwrap().committed;
        loop {
            let p = page(db, consumer, limit).unwrap();
            assert!(p.messages.len() <= limit as usize);
            let after = seen.last().map_or(start, |(o, _)| *o);
            assert_eq!(p.committed, after);
            for m in &p.messages {
                assert!(
                    m.offset > seen.last().map_or(start, |(o, _)| *o),
                    "increasing"
                );
                seen.push((m.offset, m.message.message_id.clone()));
            }
            if p.messages.is_empty() {
                assert_eq!(p.lag, 0);
                assert_eq!(p.next_offset(), p.committed);
                return seen;
            }
            assert!(p.lag >= p.messages.len() as i64);
            assert_eq!(commit(db, consumer, p.next_offset(), 32).unwrap(), {
                Commit::Committed(p.next_offset())
            });
        }
    }

    fn ids(read: &[(i64, String)]) -> Vec<String> {
        read.iter().map(|(_, id)| id.clone()).collect()
    }

    #[test]
    fn a_consumer_reads_every_message_once_in_storage_order_wherever_rows_sit() {
        let all = messages(23);
        let want: Vec<String> = all.iter().map(|m| m.message_id.clone()).collect();
        for layout in LAYOUTS {
            let db = stored(&all, layout);
            let first = page(&db, "crm", 5).unwrap();
            assert_eq!((first.known, first.committed, first.lag), (false, 0, 23));
            assert_eq!(first.next_offset(), first.messages[4].offset);
            // Reading commits nothing.
            assert_eq!(page(&db, "crm", 5).unwrap(), first);
            for limit in [1, 5, 23, 1000] {
                let read = drain(&db, &format!("c{limit}"), limit);
                assert_eq!(ids(&read), want, "{layout:?} {limit}");
                let offsets: Vec<i64> = read.iter().map(|(o, _)| *o).collect();
                assert_eq!(offsets, (1..=23).collect::<Vec<_>>(), "{layout:?}");
            }
        }
    }

    /// Each step of a fold run on its own, with a message stored between steps: a
    /// consumer that pulls and commits in between sees every message once, in order.
    #[test]
    fn a_fold_stopped_between_steps_hides_and_repeats_nothing() {
        let db = fresh();
        let mut want = Vec::new();
        let mut read = Vec::new();
        let mut n = 0;
        let mut add = |db: &TestDb, want: &mut Vec<String>| {
            for _ in 0..3 {
                let m = msg(
                    &format!("f{n:03}"),
                    "+1",
                    "+2",
                    "2025-01-15T10:00:00Z",
                    None,
                );
                store(db, &m);
                want.push(m.message_id);
                n += 1;
            }
        };
        add(&db, &mut want);
        for step in statements_of_fold() {
            db.execute(&step, &[]).unwrap();
            read.extend(drain(&db, "walker", 2));
            assert_eq!(ids(&read), want);
            add(&db, &mut want);
            // A new consumer reads everything from any state.
            assert_eq!(ids(&drain(&db, &format!("new{}", want.len()), 4)), want);
        }
        fold::fold(&db).unwrap();
        read.extend(drain(&db, "walker", 2));
        assert_eq!(ids(&read), want);
    }

    #[test]
    fn commits_move_forward_only_up_to_the_highest_offset() {
        let db = stored(&messages(5), LAYOUTS[2]);
        assert_eq!(commit(&db, "a", 0, 32).unwrap(), Commit::Committed(0));
        assert_eq!(commit(&db, "a", 3, 32).unwrap(), Commit::Committed(3));
        assert_eq!(
            commit(&db, "a", 3, 32).unwrap(),
            Commit::Committed(3),
            "again"
        );
        assert_eq!(commit(&db, "a", 2, 32).unwrap(), Commit::Behind(3));
        assert_eq!(commit(&db, "a", 6, 32).unwrap(), Commit::Beyond(5));
        assert_eq!(commit(&db, "b", 6, 32).unwrap(), Commit::Beyond(5));
        assert_eq!(page(&db, "a", 10).unwrap().committed, 3, "nothing changed");
        assert!(
            !page(&db, "b", 10).unwrap().known,
            "no consumer from a refusal"
        );
        assert_eq!(commit(&db, "a", 5, 32).unwrap(), Commit::Committed(5));
        let p = page(&db, "a", 10).unwrap();
        assert_eq!((p.committed, p.lag, p.messages.len()), (5, 0, 0));
        assert!(db.conn().is_autocommit(), "no transaction left open");
    }

    #[test]
    fn the_bound_refuses_new_consumers_only() {
        let db = stored(&messages(3), LAYOUTS[0]);
        assert_eq!(commit(&db, "a", 1, 2).unwrap(), Commit::Committed(1));
        assert_eq!(commit(&db, "b", 0, 2).unwrap(), Commit::Committed(0));
        assert_eq!(commit(&db, "c", 1, 2).unwrap(), Commit::Full);
        assert_eq!(commit(&db, "a", 2, 2).unwrap(), Commit::Committed(2));
        // Behind and beyond say so even at the bound.
        assert_eq!(commit(&db, "a", 1, 2).unwrap(), Commit::Behind(2));
        assert_eq!(commit(&db, "c", 9, 2).unwrap(), Commit::Beyond(3));
        let p = page(&db, "c", 10).unwrap();
        assert_eq!((p.known, p.consumers), (false, 2));
        let listed: Vec<(String, i64, i64)> = consumers(&db)
            .unwrap()
            .into_iter()
            .map(|c| (c.name, c.committed, c.lag))
            .collect();
        assert_eq!(listed, [("a".into(), 2, 1), ("b".into(), 0, 3)]);
        assert_eq!(forget(&db, "a").unwrap(), Some(2));
        assert_eq!(forget(&db, "a").unwrap(), None);
        assert_eq!(forget(&db, "zz").unwrap(), None);
        assert_eq!(commit(&db, "c", 1, 2).unwrap(), Commit::Committed(1));
        // A forgotten consumer starts again from 0.
        assert_eq!(page(&db, "a", 10).unwrap().messages.len(), 3);
    }

    #[test]
    fn removals_leave_gaps_and_numbers_are_never_handed_out_twice() {
        let db = stored(&messages(6), LAYOUTS[0]);
        let removal = Removal {
            now_unix: 0,
            tombstone_until: 0,
            batch: 100,
        };
        assert_eq!(commit(&db, "a", 2, 32).unwrap(), Commit::Committed(2));
        assert!(lifecycle::erase_message(&db, "m003", &removal).unwrap());
        // The last one too: its number is not handed out again.
        assert!(lifecycle::erase_message(&db, "m005", &removal).unwrap());
        let p = page(&db, "a", 10).unwrap();
        let offsets: Vec<i64> = p.messages.iter().map(|m| m.offset).collect();
        assert_eq!(offsets, [3, 5], "m002 and m004 at their numbers");
        assert_eq!(p.lag, 2);
        // A commit at a removed number is fine: it was handed out.
        assert_eq!(commit(&db, "a", 6, 32).unwrap(), Commit::Committed(6));
        store(&db, &msg("late", "+1", "+2", "2020-01-01T00:00:00Z", None));
        let p = page(&db, "a", 10).unwrap();
        assert_eq!(p.messages.len(), 1);
        assert_eq!((p.messages[0].offset, p.lag), (7, 1));
        assert_eq!(p.messages[0].message.message_id, "late");
    }

    /// A page reads `messages` from the committed offset on, by its primary key: never the
    /// whole table (the lag counts the rows after the offset, by the same key).
    #[test]
    fn a_page_reads_messages_by_offset_never_in_full() {
        let db = stored(&messages(3), LAYOUTS[1]);
        let sql = {
            let recorder = crate::storage::testing::Recorder::new(TestDb::open(&db.path()));
            page(&recorder, "crm", 10).unwrap();
            commit(&recorder, "crm", 1, 32).unwrap();
            recorder.statements()
        };
        assert_eq!(sql.len(), 2);
        for (i, statement) in sql.iter().enumerate() {
            let plan = match i {
                0 => db.query_plan(statement, rusqlite::params!["crm"]),
                _ => db.query_plan(statement, rusqlite::params!["crm", 1]),
            };
            let whole = plan.iter().any(|line| {
                line.starts_with("SCAN messages") || line.contains("INDEX messages_by")
            });
            assert!(!whole, "{statement}\n{plan:#?}");
        }
    }

    #[test]
    fn metrics_carry_each_consumers_exact_lag_from_the_same_statement() {
        let db = stored(&messages(4), LAYOUTS[2]);
        let lags = |db: &TestDb| -> Vec<(String, f64)> {
            read_counters(db)
                .unwrap()
                .into_iter()
                .filter(|r| r.name == crate::metrics::FEED_LAG)
                .map(|r| (r.labels, r.value))
                .collect()
        };
        assert!(lags(&db).is_empty(), "no consumer, no series");
        commit(&db, "b", 1, 32).unwrap();
        commit(&db, "a", 4, 32).unwrap();
        store(&db, &msg("x", "+1", "+2", "2025-01-15T10:00:00Z", None));
        let mut got = lags(&db);
        got.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            got,
            [
                ("consumer=\"a\"".to_owned(), 1.0),
                ("consumer=\"b\"".to_owned(), 4.0)
            ]
        );
        let text = crate::metrics::render(&read_counters(&db).unwrap());
        assert!(text.contains("# TYPE webhook_feed_lag gauge\n"), "{text}");
        assert!(
            text.contains("webhook_feed_lag{consumer=\"b\"} 4\n"),
            "{text}"
        );
    }
}
