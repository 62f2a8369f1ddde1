//! The rejection log's table: the newest entries, bounded, written after the answer.
//!
//! Entries are numbered by the table's rowid, so numbers count up and "newest first" is a
//! walk down the primary key. Each write is one statement on its own (on a libSQL server a
//! transaction would hold the write slot across round trips): the entry, then its request's
//! metric increments, and every [`TRIM_EVERY`] entries the oldest beyond the bound go. Reads
//! serve only the newest `keep`, so the few extra rows between trims are never seen.

use super::{first_value, Database, SqlValue, StorageError};
use crate::rejections::Entry;

/// One stored entry, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRejection {
    /// The entry's number: newer entries have greater ones.
    pub seq: i64,
    pub at: String,
    pub route: String,
    pub status: i64,
    pub reason: String,
    pub detail: String,
    pub locs: Vec<Vec<String>>,
    pub request_id: String,
    pub body_bytes: Option<i64>,
    pub body_sha256: Option<String>,
}

/// A page of the log, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RejectionPage {
    pub entries: Vec<LoggedRejection>,
    /// Older entries remain after this page.
    pub more: bool,
}

/// Entries written between two trims of the log.
pub const TRIM_EVERY: i64 = 32;

/// Adds `entry` unless the log is off; whether the table is due a [`trim`].
pub fn store(db: &dyn Database, entry: &Entry, keep: u32) -> Result<bool, StorageError> {
    if keep == 0 {
        return Ok(true);
    }
    let stored = db.execute(
        "INSERT INTO rejections (at, route, status, reason, detail, locs, request_id, \
             body_bytes, body_sha256) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        &[
            SqlValue::text(entry.at.as_str()),
            SqlValue::text(entry.route),
            SqlValue::Integer(i64::from(entry.status)),
            SqlValue::text(entry.reason.as_str()),
            SqlValue::text(entry.detail),
            if entry.locs.is_empty() {
                SqlValue::Null
            } else {
                SqlValue::Text(serde_json::to_string(&entry.locs).unwrap_or_default())
            },
            SqlValue::text(entry.request_id.as_str()),
            entry
                .body_bytes
                .and_then(|n| i64::try_from(n).ok())
                .map_or(SqlValue::Null, SqlValue::Integer),
            entry
                .body_sha256
                .as_deref()
                .map_or(SqlValue::Null, SqlValue::text),
        ],
    )?;
    Ok(first_value(&stored)
        .and_then(SqlValue::as_i64)
        .is_some_and(|seq| seq % TRIM_EVERY == 0))
}

/// Deletes the entries beyond the newest `keep`: an index range on the rowid, nothing to
/// read when nothing is due.
pub fn trim(db: &dyn Database, keep: u32) -> Result<(), StorageError> {
    db.execute(
        "DELETE FROM rejections WHERE seq <= (SELECT coalesce(max(seq), 0) FROM rejections) - ?1",
        &[SqlValue::Integer(i64::from(keep))],
    )
    .map(drop)
}

/// Up to `limit` entries older than `before` (all when `None`), newest first, among the
/// newest `keep`: a bound lowered since the last write already applies to what is served.
pub fn list(
    db: &dyn Database,
    keep: u32,
    limit: u32,
    before: Option<i64>,
) -> Result<RejectionPage, StorageError> {
    // The limit is written as a number, not bound (see the `storage` module's doc).
    let rows = db.execute(
        &format!(
            "SELECT seq, at, route, status, reason, detail, locs, request_id, body_bytes, \
                 body_sha256 \
             FROM rejections \
             WHERE seq < ?1 AND seq > (SELECT coalesce(max(seq), 0) FROM rejections) - ?2 \
             ORDER BY seq DESC LIMIT {}",
            u64::from(limit) + 1
        ),
        &[
            SqlValue::Integer(before.unwrap_or(i64::MAX)),
            SqlValue::Integer(i64::from(keep)),
        ],
    )?;
    let mut entries: Vec<LoggedRejection> = rows.iter().filter_map(|row| from_row(row)).collect();
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    Ok(RejectionPage { entries, more })
}

fn from_row(row: &[SqlValue]) -> Option<LoggedRejection> {
    let [seq, at, route, status, reason, detail, locs, request_id, body_bytes, body_sha256] = row
    else {
        return None;
    };
    let text = |v: &SqlValue| v.as_str().map(str::to_owned);
    Some(LoggedRejection {
        seq: seq.as_i64()?,
        at: text(at)?,
        route: text(route)?,
        status: status.as_i64()?,
        reason: text(reason)?,
        detail: text(detail)?,
        locs: locs
            .as_str()
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default(),
        request_id: text(request_id)?,
        body_bytes: body_bytes.as_i64(),
        body_sha256: text(body_sha256),
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::counters;
    use crate::metrics::Increment;

    /// A refused delivery's entry and counters, as the session writes them (each statement
    /// retried alone there, so a busy refusal never writes an entry twice).
    fn record(
        db: &dyn Database,
        entry: &Entry,
        keep: u32,
        increments: &[Increment],
    ) -> Result<(), StorageError> {
        let trim_due = store(db, entry, keep)?;
        counters::record(db, increments)?;
        if trim_due {
            trim(db, keep)?;
        }
        Ok(())
    }

    use super::*;
    use crate::metrics::{self, WebhookResult};
    use crate::rejections::{Body, Reason, Rejected};
    use crate::storage::{prepare, read_counters, testing::TestDb};

    fn entry(n: usize) -> Entry {
        Rejected::new(
            Reason::InvalidSignature,
            "signature_mismatch",
            Body::Read(format!("body {n}").into_bytes()),
        )
        .entry(
            format!("2026-01-01T00:00:{:02}.000Z", n % 60),
            "/webhook",
            401,
            &format!("req-{n}"),
        )
    }

    fn ids(page: &RejectionPage) -> Vec<String> {
        page.entries.iter().map(|e| e.request_id.clone()).collect()
    }

    #[test]
    fn keeps_the_newest_entries_up_to_the_bound_and_pages_newest_first() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        // The table holds at most the bound plus the entries since the last trim.
        let every = TRIM_EVERY as usize;
        for n in 1..=2 * every + 7 {
            record(&db, &entry(n), 5, &[]).unwrap();
            let rows: i64 = db
                .conn()
                .query_row("SELECT count(*) FROM rejections", [], |r| r.get(0))
                .unwrap();
            let since_trim = if n < every { n } else { 5 + n % every };
            assert_eq!(rows as usize, since_trim, "after entry {n}");
        }
        for n in 1..=7 {
            record(&db, &entry(n), 5, &[]).unwrap();
        }
        let first = list(&db, 5, 2, None).unwrap();
        assert_eq!(ids(&first), ["req-7", "req-6"]);
        assert!(first.more);
        let second = list(&db, 5, 2, Some(first.entries[1].seq)).unwrap();
        assert_eq!(ids(&second), ["req-5", "req-4"]);
        let last = list(&db, 5, 2, Some(second.entries[1].seq)).unwrap();
        assert_eq!(ids(&last), ["req-3"]);
        assert!(!last.more);

        let stored = &first.entries[0];
        assert_eq!(stored.reason, "invalid_signature");
        assert_eq!(stored.detail, "signature_mismatch");
        assert_eq!(stored.status, 401);
        assert_eq!(stored.body_bytes, Some(6));
        assert_eq!(stored.body_sha256, entry(7).body_sha256);
    }

    #[test]
    fn a_lowered_bound_applies_to_reads_at_once_and_to_the_table_at_the_next_trim() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        for n in 1..=6 {
            record(&db, &entry(n), 10, &[]).unwrap();
        }
        assert_eq!(ids(&list(&db, 2, 10, None).unwrap()), ["req-6", "req-5"]);
        let last = TRIM_EVERY as usize;
        for n in 7..=last {
            record(&db, &entry(n), 2, &[]).unwrap();
        }
        let newest = [format!("req-{last}"), format!("req-{}", last - 1)];
        assert_eq!(ids(&list(&db, 10, 10, None).unwrap()), newest);
        // Off: nothing stored, and nothing kept.
        record(&db, &entry(8), 0, &[]).unwrap();
        assert_eq!(list(&db, 10, 10, None).unwrap(), RejectionPage::default());
    }

    #[test]
    fn an_entry_and_its_request_counters_are_both_written() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        let mut increments =
            metrics::increments("/webhook", 422, 1.0, Some(WebhookResult::ValidationError));
        increments.push(metrics::rejected(Reason::ValidationError));
        let invalid = Rejected::invalid(
            &[crate::problem::FieldError::body(
                Some("to"),
                "missing",
                "Field required",
            )],
            b"{}".to_vec(),
        )
        .entry("2026-01-01T00:00:00.000Z".into(), "/webhook", 422, "r");
        record(&db, &invalid, 10, &increments).unwrap();
        let page = list(&db, 10, 10, None).unwrap();
        assert_eq!(page.entries[0].locs, [["body", "to"]]);
        let counted = read_counters(&db).unwrap().into_iter().any(|c| {
            c.name == metrics::REJECTIONS
                && c.labels == "source=\"webhook\",reason=\"validation_error\""
        });
        assert!(counted);
    }
}
