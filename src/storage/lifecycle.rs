//! Removing messages: retention purges, erasure by id or by sender, and the tombstones that
//! keep a removed message from being stored again.
//!
//! Every removal keeps the counts exact. It folds `received` first, in the same
//! transaction, so that every row is in `messages` and counted in `tallies`; then it
//! subtracts them from the sender, recipient and hour counts and the totals, drops count
//! rows that reach zero (a sender with no messages left is no longer a sender), leaves a
//! tombstone per `message_id`, and deletes the rows: all in one transaction. Removals are
//! the one place that holds a transaction across statements (on a libSQL server, across
//! round trips): they are rare, and bounded by their batch. First and last `ts` need nothing: `/stats` reads them off the ends
//! of the `(ts_key, message_id)` index. The `created` counter is not touched: a Prometheus
//! counter only grows.
//!
//! Batches are bounded (the caller's `batch`), so no request holds the write lock for long.
//! A batch is a list of row numbers passed as one JSON parameter (`json_each`), so every
//! step finds its rows by primary key.

use super::{fold, in_transaction, search, Database, SqlValue, StorageError};
use sha2::{Digest, Sha256};

/// How a removal is bounded, and what it leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    /// Now, in Unix seconds: tombstones that expired by then may go.
    pub now_unix: i64,
    /// Until when (Unix seconds) a removed message's tombstone keeps it from being stored
    /// again; at or before `now_unix`, no tombstone is written.
    pub tombstone_until: i64,
    /// Most rows (messages, and tombstones) one call removes.
    pub batch: u32,
}

/// What one retention batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    pub messages: u64,
    pub tombstones: u64,
    /// Something else is already due: another batch would remove more.
    pub more: bool,
}

/// What one erasure call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    pub erased: u64,
    /// Messages of the same selection still stored (another call erases more).
    pub remaining: i64,
}

/// A tombstone's key: the first 16 bytes of SHA-256 of the `message_id`, in hex. Slim, and
/// the id itself (which may carry a customer reference) is not kept.
pub fn tombstone_key(message_id: &str) -> String {
    hex::encode(&Sha256::digest(message_id.as_bytes())[..16])
}

/// Whether anything is due, in one read that takes no lock: the oldest message (one index
/// entry, and the few rows waiting in `received`) and the soonest tombstone expiry (one
/// index entry).
const DUE: &str = "SELECT \
     EXISTS (SELECT 1 FROM messages INDEXED BY messages_by_ts WHERE ts_key < ?1) \
         OR EXISTS (SELECT 1 FROM received WHERE ts_key < ?1), \
     EXISTS (SELECT 1 FROM tombstones WHERE expires_at <= ?2)";

/// One retention batch: up to `removal.batch` messages whose instant is before
/// `cutoff_key` (oldest first; none when `None`, retention off) and as many expired
/// tombstones. Takes the write lock only when something is due; then folds `received`
/// first, so a due message is purged wherever it waits.
pub fn purge(
    db: &dyn Database,
    cutoff_key: Option<&str>,
    removal: &Removal,
) -> Result<Purged, StorageError> {
    // With retention off no key sorts below "": only tombstones can be due.
    let cutoff = SqlValue::text(cutoff_key.unwrap_or(""));
    let due_params = [cutoff.clone(), SqlValue::Integer(removal.now_unix)];
    if due(db, &due_params)? == (false, false) {
        return Ok(Purged::default());
    }
    in_transaction(db, || {
        fold::fold_for_removal(db)?;
        let rows = db.execute(
            &format!(
                "SELECT seq, message_id FROM messages INDEXED BY messages_by_ts \
                 WHERE ts_key < ?1 ORDER BY ts_key, message_id LIMIT {}",
                batch(removal)
            ),
            std::slice::from_ref(&cutoff),
        )?;
        let messages = remove(db, &rows, removal)?;
        let tombstones = db
            .execute(
                &format!(
                    "DELETE FROM tombstones WHERE id_hash IN ( \
                         SELECT id_hash FROM tombstones WHERE expires_at <= ?1 \
                         ORDER BY expires_at LIMIT {}) \
                     RETURNING 1",
                    batch(removal)
                ),
                &[SqlValue::Integer(removal.now_unix)],
            )?
            .len() as u64;
        let (messages_due, tombstones_due) = due(db, &due_params)?;
        Ok(Purged {
            messages,
            tombstones,
            more: messages_due || tombstones_due,
        })
    })
}

/// Erases one message, wherever it sits; whether it was there.
pub fn erase_message(
    db: &dyn Database,
    message_id: &str,
    removal: &Removal,
) -> Result<bool, StorageError> {
    in_transaction(db, || {
        fold::fold_for_removal(db)?;
        let rows = db.execute(
            "SELECT seq, message_id FROM messages WHERE message_id = ?1",
            &[SqlValue::text(message_id)],
        )?;
        Ok(remove(db, &rows, removal)? > 0)
    })
}

/// Erases up to `removal.batch` messages of one sender (oldest first), and says how many
/// of theirs are left.
pub fn erase_sender(
    db: &dyn Database,
    sender: &str,
    removal: &Removal,
) -> Result<Erased, StorageError> {
    let sender = SqlValue::text(sender);
    in_transaction(db, || {
        fold::fold_for_removal(db)?;
        let rows = db.execute(
            &format!(
                "SELECT seq, message_id FROM messages INDEXED BY messages_by_sender_with_recipient \
                 WHERE sender = ?1 ORDER BY ts_key, message_id LIMIT {}",
                batch(removal)
            ),
            std::slice::from_ref(&sender),
        )?;
        let erased = remove(db, &rows, removal)?;
        // `received` is empty until this transaction ends: the count is complete.
        let left = db.execute(
            "SELECT coalesce((SELECT n FROM tallies WHERE kind = 'sender' AND key = ?1), 0)",
            std::slice::from_ref(&sender),
        )?;
        let remaining = super::first_value(&left)
            .and_then(SqlValue::as_i64)
            .unwrap_or(0);
        Ok(Erased { erased, remaining })
    })
}

/// Most rows one removal statement takes: at least one, so a batch always moves forward.
fn batch(removal: &Removal) -> u32 {
    removal.batch.max(1)
}

fn due(db: &dyn Database, params: &[SqlValue]) -> Result<(bool, bool), StorageError> {
    let rows = db.execute(DUE, params)?;
    let flag = |i: usize| {
        rows.first()
            .and_then(|row| row.get(i))
            .and_then(SqlValue::as_i64)
            == Some(1)
    };
    Ok((flag(0), flag(1)))
}

/// Removes counted rows of `messages` (`seq`, `message_id` pairs, as selected), in the
/// caller's transaction; how many went. `?1` is the JSON array of their `seq`s.
const REMOVE_STEPS: [&str; 6] = [
    // Each count the rows are in goes down by the rows it holds.
    "UPDATE tallies SET n = tallies.n - d.n FROM ( \
         SELECT 'sender' AS kind, sender AS key, count(*) AS n FROM messages \
         WHERE seq IN (SELECT value FROM json_each(?1)) GROUP BY sender \
         UNION ALL SELECT 'recipient', recipient, count(*) FROM messages \
         WHERE seq IN (SELECT value FROM json_each(?1)) GROUP BY recipient \
         UNION ALL SELECT 'hour', substr(ts_key, 1, 13), count(*) FROM messages \
         WHERE seq IN (SELECT value FROM json_each(?1)) GROUP BY substr(ts_key, 1, 13) \
         UNION ALL SELECT 'inbox', 'messages', count(*) FROM messages \
         WHERE seq IN (SELECT value FROM json_each(?1))) AS d \
     WHERE tallies.kind = d.kind AND tallies.key = d.key",
    // After the sender counts, which tell whose last message this was.
    "UPDATE tallies SET n = n - (SELECT count(*) FROM tallies AS s \
         WHERE s.kind = 'sender' AND s.n <= 0 \
         AND s.key IN (SELECT sender FROM messages WHERE seq IN (SELECT value FROM json_each(?1)))) \
     WHERE kind = 'inbox' AND key = 'senders'",
    "DELETE FROM tallies WHERE kind IN ('sender', 'recipient', 'hour') AND n <= 0 \
     AND (kind, key) IN ( \
         SELECT 'sender', sender FROM messages WHERE seq IN (SELECT value FROM json_each(?1)) \
         UNION ALL SELECT 'recipient', recipient FROM messages \
         WHERE seq IN (SELECT value FROM json_each(?1)) \
         UNION ALL SELECT 'hour', substr(ts_key, 1, 13) FROM messages \
         WHERE seq IN (SELECT value FROM json_each(?1)))",
    // The search index needs the text it indexed to forget it: before the rows go.
    search::UNINDEX,
    "DELETE FROM message_sources WHERE seq IN (SELECT value FROM json_each(?1))",
    "DELETE FROM messages WHERE seq IN (SELECT value FROM json_each(?1))",
];

fn remove(
    db: &dyn Database,
    rows: &[Vec<SqlValue>],
    removal: &Removal,
) -> Result<u64, StorageError> {
    let mut seqs = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        if let [seq, message_id] = row.as_slice() {
            seqs.extend(seq.as_i64());
            keys.extend(message_id.as_str().map(tombstone_key));
        }
    }
    if seqs.is_empty() {
        return Ok(0);
    }
    if removal.tombstone_until > removal.now_unix {
        db.execute(
            "INSERT INTO tombstones (id_hash, expires_at) \
             SELECT value, ?2 FROM json_each(?1) WHERE true \
             ON CONFLICT (id_hash) DO UPDATE SET \
                 expires_at = max(expires_at, excluded.expires_at)",
            &[
                SqlValue::Text(serde_json::to_string(&keys).unwrap_or_default()),
                SqlValue::Integer(removal.tombstone_until),
            ],
        )?;
    }
    let seqs = [SqlValue::Text(
        serde_json::to_string(&seqs).unwrap_or_default(),
    )];
    for step in REMOVE_STEPS {
        db.execute(step, &seqs)?;
    }
    Ok(rows.len() as u64)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::domain::NewMessage;
    use crate::storage::testing::{check_reads, ids, msg, TestDb};
    use crate::storage::{fold::fold, insert_message, prepare, stats, Inserted};

    const NOW: i64 = 1_800_000_000;

    fn removal(batch: u32) -> Removal {
        Removal {
            now_unix: NOW,
            tombstone_until: NOW + 8 * 86_400,
            batch,
        }
    }

    /// Messages over three days and six senders, some folded and the rest pending.
    fn inbox() -> (TestDb, Vec<NewMessage>) {
        let db = TestDb::new();
        prepare(&db).unwrap();
        let mut all = Vec::new();
        for i in 0..60 {
            let m = msg(
                &format!("m{i:02}"),
                &format!("+{}", i % 6 + 1),
                &format!("+{}", i % 4 + 100),
                &format!("2025-01-{:02}T{:02}:{:02}:00Z", 15 + i % 3, i % 24, i % 60),
                Some("hello"),
            );
            assert_eq!(insert_message(&db, &m).unwrap(), Inserted::Created);
            all.push(m);
            if i == 44 {
                fold(&db).unwrap();
            }
        }
        (db, all)
    }

    fn key(ts: &str) -> String {
        crate::timestamp::instant_key(ts).unwrap()
    }

    #[test]
    fn retention_purges_the_oldest_rows_wherever_they_wait_in_bounded_batches_and_reads_stay_exact()
    {
        let (db, mut all) = inbox();
        let created = all.len();
        let cutoff = key("2025-01-16T12:00:00Z");
        let mut batches = 0;
        loop {
            let purged = purge(&db, Some(&cutoff), &removal(7)).unwrap();
            assert!(purged.messages <= 7, "{purged:?}");
            if purged.messages == 0 {
                assert!(!purged.more);
                break;
            }
            batches += 1;
            all.retain(|m| {
                let gone = m.ts_key < cutoff;
                // Only what the batch took is gone so far; the rest must still read.
                !gone || ids(&db, "limit=100").0.contains(&m.message_id)
            });
            check_reads(&db, &all, created);
            assert_eq!(purged.more, all.iter().any(|m| m.ts_key < cutoff));
        }
        assert!(batches >= 3, "{batches}");
        // Pending rows were purged too, and only the due ones went.
        all.retain(|m| m.ts_key >= cutoff);
        check_reads(&db, &all, created);
        assert_eq!(ids(&db, "limit=100").0.len(), all.len());
        let first = stats(&db).unwrap().first_message_ts.unwrap();
        assert!(key(&first) >= cutoff, "{first}");
        // A purged message sent again within the window stores nothing.
        let again = msg("m00", "+1", "+100", "2025-01-15T00:00:00Z", None);
        let mut session_now = super::super::messages::store(&db, &again, None, NOW).unwrap();
        assert_eq!(session_now.0, Inserted::Duplicate);
        // After the window it is a new message (and due again).
        session_now = super::super::messages::store(&db, &again, None, NOW + 9 * 86_400).unwrap();
        assert_eq!(session_now.0, Inserted::Created);
    }

    #[test]
    fn nothing_due_costs_one_read_and_no_lock() {
        let (db, _) = inbox();
        let recorder = crate::storage::testing::Recorder::new(TestDb::open(&db.path()));
        let purged = purge(&recorder, Some(&key("2025-01-01T00:00:00Z")), &removal(10)).unwrap();
        assert_eq!(purged, Purged::default());
        assert_eq!(
            recorder.statements().len(),
            1,
            "{:?}",
            recorder.statements()
        );
        let off = purge(&recorder, None, &removal(10)).unwrap();
        assert_eq!(off, Purged::default());
    }

    #[test]
    fn expired_tombstones_go_in_batches() {
        let (db, _) = inbox();
        let short = Removal {
            tombstone_until: NOW + 10,
            ..removal(100)
        };
        let erased = erase_sender(&db, "+1", &short).unwrap();
        assert_eq!((erased.erased, erased.remaining), (10, 0));
        let later = Removal {
            now_unix: NOW + 11,
            ..removal(4)
        };
        let mut left = 10;
        while left > 0 {
            let purged = purge(&db, None, &later).unwrap();
            assert!(purged.tombstones <= 4 && purged.tombstones > 0);
            left -= purged.tombstones;
            assert_eq!(purged.more, left > 0);
        }
        let count: i64 = db
            .conn()
            .query_row("SELECT count(*) FROM tombstones", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 0);
    }

    #[test]
    fn erasing_a_sender_goes_batch_by_batch_and_keeps_every_read_exact() {
        let (db, mut all) = inbox();
        let created = all.len();
        let mut remaining = all.iter().filter(|m| m.from == "+2").count() as i64;
        while remaining > 0 {
            let erased = erase_sender(&db, "+2", &removal(3)).unwrap();
            assert!(erased.erased <= 3 && erased.erased > 0);
            remaining -= erased.erased as i64;
            assert_eq!(erased.remaining, remaining);
        }
        all.retain(|m| m.from != "+2");
        check_reads(&db, &all, created);
        assert_eq!(stats(&db).unwrap().senders_count, 5);
        let again = erase_sender(&db, "+2", &removal(3)).unwrap();
        assert_eq!((again.erased, again.remaining), (0, 0));
    }

    #[test]
    fn erasing_one_message_finds_it_pending_or_folded_and_keeps_it_out() {
        let (db, mut all) = inbox();
        let created = all.len();
        // m03 was folded; m50 still waits in `received`; m99 never came.
        for id in ["m03", "m50"] {
            assert!(erase_message(&db, id, &removal(1)).unwrap(), "{id}");
            assert!(!erase_message(&db, id, &removal(1)).unwrap(), "{id} twice");
            all.retain(|m| m.message_id != id);
            check_reads(&db, &all, created);
            let again = msg(id, "+1", "+100", "2025-01-15T00:00:00Z", None);
            assert_eq!(insert_message(&db, &again).unwrap(), Inserted::Duplicate);
        }
        assert!(!erase_message(&db, "m99", &removal(1)).unwrap());
        // No tombstone window: the id may come back at once.
        let no_window = Removal {
            tombstone_until: NOW,
            ..removal(1)
        };
        assert!(erase_message(&db, "m04", &no_window).unwrap());
        let back = msg("m04", "+1", "+100", "2025-01-15T00:00:00Z", None);
        assert_eq!(insert_message(&db, &back).unwrap(), Inserted::Created);
    }

    /// A batch is found by primary key and index ranges: at a million messages a scan would
    /// hold the write lock for a second.
    #[test]
    fn no_step_scans_a_table_or_an_index_in_full() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        let mut statements: Vec<String> = REMOVE_STEPS.iter().map(|s| s.to_string()).collect();
        statements.push(DUE.replace("?2", "?1"));
        for statement in statements {
            let plan = db.query_plan(&statement, ["[1, 2]"]);
            for line in &plan {
                let tables = ["messages", "tallies", "tombstones"];
                let scan = tables.iter().any(|t| {
                    *line == format!("SCAN {t}") || line.starts_with(&format!("SCAN {t} "))
                });
                assert!(!scan, "{statement}\n{plan:#?}");
            }
        }
    }

    #[test]
    fn a_tombstone_keeps_only_the_hash_of_the_id() {
        assert_eq!(tombstone_key("m1").len(), 32);
        assert_ne!(tombstone_key("m1"), tombstone_key("m2"));
        let (db, _) = inbox();
        erase_message(&db, "m07", &removal(1)).unwrap();
        let stored: String = db
            .conn()
            .query_row("SELECT id_hash FROM tombstones", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, tombstone_key("m07"));
    }
}
