//! Folding: moving the messages in `incoming` into `messages`, a batch at a time, and adding
//! the batch to the aggregates.
//!
//! Why two tables: every index and aggregate row a message touches is a B-tree page that its
//! write transaction copies to the WAL and holds the write lock for. Stored straight into
//! `messages`, one message touched about ten (the row, `message_id`, three filter indexes,
//! five aggregate rows). Stored into `incoming`, it touches two: the row and its
//! `message_id` entry. The fold then adds a few hundred messages to the indexes in one
//! transaction, and to each aggregate table with one grouped statement. Reads add
//! `incoming` to what they find in `messages` (src/storage/messages.rs), so nothing a client
//! sees depends on when the last fold ran.
//!
//! Why not a trigger: every request opens a new connection, and a new connection parses the
//! whole schema before its first statement. Triggers cost more to parse than tables; the
//! aggregate trigger alone made every request measurably slower, fold or not.
//!
//! When: no instance outlives its request, so no background task can fold. The write that
//! fills the batch (its `incoming.seq` is a multiple of [`FOLD_EVERY`], and `seq` restarts
//! at 1 once a fold empties the table) folds after its answer is sent. A fold that never ran
//! (the instance was stopped) is caught by the next multiple, so `incoming` stays small.
//!
//! What it counts: every `messages` row above `fold_state.counted_through`, not only the
//! rows it moved. A row an older version of the component stored straight into `messages`
//! during a rolling upgrade is therefore counted too.

use super::{counters, in_transaction, search, Database, SqlValue, StorageError};

/// Messages per fold. Reads scan `incoming` in full; at this size that is a few dozen pages.
pub const FOLD_EVERY: i64 = 256;

/// Whether the write that got `incoming.seq` should fold.
pub fn due(seq: i64) -> bool {
    seq > 0 && seq % FOLD_EVERY == 0
}

/// The fold, in order. `?1` is `counted_through` before the fold: the rows above it are
/// the ones to count. Each statement runs alone (Spin runs only the first statement of a
/// string), inside one `BEGIN IMMEDIATE` transaction.
const STEPS: [&str; 7] = [
    // New rows get numbers above every counted one, even if the highest rows were deleted
    // (SQLite would hand their numbers out again).
    "INSERT INTO messages \
         (seq, message_id, sender, recipient, ts, ts_key, body_text, text_folded) \
     SELECT max(?1, coalesce((SELECT max(seq) FROM messages), 0)) \
                + row_number() OVER (ORDER BY seq), \
            message_id, sender, recipient, ts, ts_key, body_text, text_folded \
     FROM incoming WHERE true ORDER BY seq \
     ON CONFLICT (message_id) DO NOTHING",
    // Before the sender counts, which tell which senders are new.
    "UPDATE inbox_totals SET \
         messages = messages + (SELECT count(*) FROM messages WHERE seq > ?1), \
         senders = senders + (SELECT count(DISTINCT m.sender) FROM messages AS m NOT INDEXED \
             WHERE m.seq > ?1 \
             AND NOT EXISTS (SELECT 1 FROM sender_counts AS s WHERE s.sender = m.sender)) \
     WHERE id = 1",
    "INSERT INTO sender_counts (sender, messages) \
     SELECT sender, count(*) FROM messages NOT INDEXED WHERE seq > ?1 GROUP BY sender \
     ON CONFLICT (sender) DO UPDATE SET messages = messages + excluded.messages",
    "INSERT INTO recipient_counts (recipient, messages) \
     SELECT recipient, count(*) FROM messages NOT INDEXED WHERE seq > ?1 GROUP BY recipient \
     ON CONFLICT (recipient) DO UPDATE SET messages = messages + excluded.messages",
    "INSERT INTO hour_counts (hour, messages) \
     SELECT substr(ts_key, 1, 13), count(*) FROM messages NOT INDEXED WHERE seq > ?1 \
     GROUP BY substr(ts_key, 1, 13) \
     ON CONFLICT (hour) DO UPDATE SET messages = messages + excluded.messages",
    // `created` counts stored messages; reads add those still in `incoming`.
    "INSERT INTO metric_counters (name, labels, value) \
     SELECT 'webhook_requests_total', 'result=\"created\"', \
            (SELECT count(*) FROM messages WHERE seq > ?1) \
     WHERE EXISTS (SELECT 1 FROM messages WHERE seq > ?1) \
     ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value",
    "UPDATE fold_state SET counted_through = \
         max(?1, coalesce((SELECT max(seq) FROM messages), 0)) WHERE id = 1",
];

/// The fold's SQL, in order (the benchmark keys its cached data set by it).
pub fn statements() -> &'static [&'static str] {
    &STEPS
}

/// Moves every row of `incoming` into `messages` and counts every uncounted row, in one
/// transaction: all of it or, on any failure, none of it.
pub fn fold(db: &dyn Database) -> Result<(), StorageError> {
    in_transaction(db, || fold_within(db))
}

/// [`fold`]'s statements, inside a transaction the caller holds (an erasure folds first, so
/// that every row it removes is one the aggregates count).
pub(super) fn fold_within(db: &dyn Database) -> Result<(), StorageError> {
    let rows = db.execute("SELECT counted_through FROM fold_state WHERE id = 1", &[])?;
    let counted = super::first_value(&rows)
        .and_then(SqlValue::as_i64)
        .ok_or_else(|| StorageError::other("fold_state has no row"))?;
    let counted = [SqlValue::Integer(counted)];
    for step in STEPS {
        db.execute(step, &counted)?;
    }
    counters::fold_stored_requests(db)?;
    // The batch joins the search index here, where FTS5 takes it at once (plus a bounded
    // share of any older rows not in it yet).
    if search::ENABLED {
        search::index_batch(db, FOLD_EVERY + search::BACKFILL_ROWS)?;
    }
    db.execute("DELETE FROM incoming", &[]).map(drop)
}

/// Rows waiting in `incoming`.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub fn pending(db: &dyn Database) -> Result<i64, StorageError> {
    let rows = db.execute("SELECT count(*) FROM incoming", &[])?;
    Ok(super::first_value(&rows)
        .and_then(SqlValue::as_i64)
        .unwrap_or(0))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::storage::{prepare, testing::TestDb};

    /// The fold must read only the new rows of `messages` (a rowid range), whatever the
    /// planner prefers: with `GROUP BY sender` it chose to walk the whole sender index
    /// instead, and at 1M messages each fold took 170 ms, not 17, holding the write lock.
    #[test]
    fn every_step_reads_only_the_new_rows_of_messages() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        for step in STEPS {
            let plan = db.query_plan(step, [0]);
            for line in &plan {
                let on_messages = line.contains("messages") && !line.contains("incoming");
                let whole = line.starts_with("SCAN")
                    || line.contains("USING INDEX messages_by")
                    || line.contains("USING COVERING INDEX messages_by");
                assert!(!(on_messages && whole), "{step}\n{plan:#?}");
            }
        }
    }
}
