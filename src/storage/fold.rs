//! Folding: moving the messages in `incoming` into `messages`, a batch at a time.
//!
//! Why two tables: every index and aggregate row a message touches is a B-tree page that its
//! write transaction copies to the WAL and holds the write lock for. Stored straight into
//! `messages`, one message touched about ten (the row, `message_id`, three filter indexes,
//! five aggregate rows). Stored into `incoming`, it touches two: the row and its
//! `message_id` entry. The fold then runs the indexes and the aggregate trigger for a few
//! hundred messages in one transaction, where each page is read and written once for all
//! of them. Reads add `incoming` to what they find in `messages` (src/storage/messages.rs),
//! so nothing a client sees depends on when the last fold ran.
//!
//! When: no instance outlives its request, so no background task can fold. The write that
//! fills the batch (its `incoming.seq` is a multiple of [`FOLD_EVERY`], and `seq` restarts
//! at 1 once a fold empties the table) folds after its answer is sent. A fold that never ran
//! (the instance was stopped) is caught by the next multiple, so `incoming` stays small.

use super::{Database, StorageError};

/// Messages per fold. Reads scan `incoming` in full; at this size that is a few dozen pages.
pub const FOLD_EVERY: i64 = 256;

/// Whether the write that got `incoming.seq` should fold.
pub fn due(seq: i64) -> bool {
    seq > 0 && seq % FOLD_EVERY == 0
}

/// Moves every row of `incoming` into `messages`: one statement (the `fold_incoming`
/// trigger in `migrations.sql`), so it is atomic and holds the write lock for no round trip.
pub fn fold(db: &dyn Database) -> Result<(), StorageError> {
    db.execute(
        "UPDATE incoming_folds SET folds = folds + 1 WHERE id = 1",
        &[],
    )
    .map(drop)
}

/// Rows waiting in `incoming`.
pub fn pending(db: &dyn Database) -> Result<i64, StorageError> {
    let rows = db.execute("SELECT count(*) FROM incoming", &[])?;
    Ok(super::first_value(&rows)
        .and_then(super::SqlValue::as_i64)
        .unwrap_or(0))
}
