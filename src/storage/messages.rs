//! One message: the idempotent insert into `received`, and the lookup by `message_id`
//! wherever the message sits. Lists live in [`super::listing`], counts in [`super::stats`].

use super::{first_value, lifecycle, Database, Rows, SqlValue, StorageError};
use crate::domain::NewMessage;
use crate::sources::{Source, SourcedMessage};
use std::collections::HashSet;

/// Whether an insert stored a new row or found the `message_id` already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Created,
    Duplicate,
}

/// Stores `msg` unless its `message_id` exists (first write wins), and tells whether it
/// was new. See [`store`].
pub fn insert_message(db: &dyn Database, msg: &NewMessage) -> Result<Inserted, StorageError> {
    store(db, msg, None, unix_now()).map(|(inserted, _)| inserted)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Stores `msg` unless its `message_id` exists (first write wins): one autocommit statement
/// that adds a row to `received` (see `migrations.sql`), so the write lock is held only while
/// SQLite runs it, never across a round trip between the component and its host. Returns
/// the new row's `seq`, which tells when to fold ([`super::fold`]).
///
/// With `timing` the row also counts the storing request's metrics (see
/// [`super::counters`]).
///
/// No row back means the `message_id` is already stored, in `received` or in `messages`, or
/// was removed and its tombstone has not expired by `now_unix` ([`super::lifecycle`]): a
/// duplicate, with no second statement to confirm it. The tables themselves are the schema
/// check: a database older than version 7 has no `tallies`, so there the insert fails with
/// [`super::ErrorKind::MissingSchema`], which the session answers by applying the schema and
/// inserting again. A 200 is never given for a message that was not stored.
pub(super) fn store(
    db: &dyn Database,
    msg: &NewMessage,
    timing: Option<RequestTiming>,
    now_unix: i64,
) -> Result<(Inserted, Option<i64>), StorageError> {
    Ok(match insert_if_new(db, msg, timing, now_unix)? {
        Some(seq) => (Inserted::Created, Some(seq)),
        None => (Inserted::Duplicate, None),
    })
}

/// When the storing request started, and how long it had taken by the time its storing
/// statement was sent, both in milliseconds by the component's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestTiming {
    pub started_unix_ms: f64,
    pub elapsed_ms: f64,
}

/// The new row's `seq`, or `None` when the `message_id` is already stored (or tombstoned).
/// The write takes SQLite's write lock before it reads, so the checks against `messages`
/// and `tombstones`, the new number and the insert see the same state: no fold, erasure or
/// other writer can slip between.
fn insert_if_new(
    db: &dyn Database,
    msg: &NewMessage,
    timing: Option<RequestTiming>,
    now_unix: i64,
) -> Result<Option<i64>, StorageError> {
    // The number: above every stored row and the count's watermark, so a message keeps it
    // for good and numbers only grow. The latency: 'now' is read when the statement runs,
    // after any wait for the write lock, on the database's clock (a server's may differ from
    // ours: never less than what the component measured before sending it).
    let returned = db.execute(
        "INSERT INTO received \
         (seq, message_id, sender, recipient, ts, ts_key, body_text, text_folded, latency_ms, \
          received_at) \
         SELECT 1 + max(coalesce((SELECT max(seq) FROM received), 0), \
                        coalesce((SELECT max(seq) FROM messages), 0), \
                        coalesce((SELECT n FROM tallies \
                                  WHERE kind = 'inbox' AND key = 'counted_through'), 0)), \
                ?1, ?2, ?3, ?4, ?5, ?6, ?7, \
                max(?11, (julianday('now') - 2440587.5) * 86400000.0 - ?8), ?8 \
         WHERE NOT EXISTS (SELECT 1 FROM messages WHERE message_id = ?1) \
         AND NOT EXISTS (SELECT 1 FROM tombstones WHERE id_hash = ?9 AND expires_at > ?10) \
         ON CONFLICT (message_id) DO NOTHING RETURNING seq",
        &[
            SqlValue::text(msg.message_id.as_str()),
            SqlValue::text(msg.from.as_str()),
            SqlValue::text(msg.to.as_str()),
            SqlValue::text(msg.ts.as_str()),
            SqlValue::text(msg.ts_key.as_str()),
            msg.text.clone().map_or(SqlValue::Null, SqlValue::Text),
            msg.folded_text().map_or(SqlValue::Null, SqlValue::Text),
            timing.map_or(SqlValue::Null, |t| SqlValue::Real(t.started_unix_ms)),
            SqlValue::Text(lifecycle::tombstone_key(&msg.message_id)),
            SqlValue::Integer(now_unix),
            timing.map_or(SqlValue::Null, |t| SqlValue::Real(t.elapsed_ms.max(0.0))),
        ],
    )?;
    Ok(first_value(&returned).and_then(SqlValue::as_i64))
}

/// Stores a provider's delivery: each of `messages` not stored yet (nor repeated earlier in
/// the delivery, nor tombstoned), in ONE statement, so the delivery is stored all at once
/// and, on a libSQL server, in one round trip that holds the write slot only while it runs.
/// New messages are numbered in the order given. Returns, for each message in order,
/// whether it was new, and the numbers handed out (which tell when to fold).
///
/// The rows carry no latency: a provider's request records its own counters; each row
/// counts as one `created` message of its source ([`crate::metrics::stored_row_series`]).
/// `received_at_ms`: when the request started (Unix ms), for the freshness gauge.
pub(super) fn store_batch(
    db: &dyn Database,
    source: Source,
    messages: &[SourcedMessage],
    now_unix: i64,
    received_at_ms: Option<f64>,
) -> Result<(Vec<Inserted>, Vec<i64>), StorageError> {
    if messages.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let rows: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let msg = &m.message;
            serde_json::json!([
                msg.message_id,
                msg.from,
                msg.to,
                msg.ts,
                msg.ts_key,
                msg.text,
                msg.folded_text(),
                m.kind,
                lifecycle::tombstone_key(&msg.message_id),
            ])
        })
        .collect();
    let returned = db.execute(
        "WITH batch AS MATERIALIZED ( \
             SELECT key AS i, json_extract(value, '$[0]') AS message_id, \
                    json_extract(value, '$[1]') AS sender, \
                    json_extract(value, '$[2]') AS recipient, \
                    json_extract(value, '$[3]') AS ts, json_extract(value, '$[4]') AS ts_key, \
                    json_extract(value, '$[5]') AS body_text, \
                    json_extract(value, '$[6]') AS text_folded, \
                    json_extract(value, '$[7]') AS kind, json_extract(value, '$[8]') AS id_hash \
             FROM json_each(?1)), \
         fresh AS ( \
             SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY message_id ORDER BY i) \
                                      AS nth \
                            FROM batch) AS b \
             WHERE nth = 1 \
             AND NOT EXISTS (SELECT 1 FROM messages WHERE message_id = b.message_id) \
             AND NOT EXISTS (SELECT 1 FROM received WHERE message_id = b.message_id) \
             AND NOT EXISTS (SELECT 1 FROM tombstones \
                             WHERE id_hash = b.id_hash AND expires_at > ?3)) \
         INSERT INTO received (seq, message_id, sender, recipient, ts, ts_key, body_text, \
                               text_folded, latency_ms, received_at, source, kind) \
         SELECT (SELECT max(coalesce((SELECT max(seq) FROM received), 0), \
                            coalesce((SELECT max(seq) FROM messages), 0), \
                            coalesce((SELECT n FROM tallies \
                                      WHERE kind = 'inbox' AND key = 'counted_through'), 0))) \
                    + row_number() OVER (ORDER BY i), \
                message_id, sender, recipient, ts, ts_key, body_text, text_folded, NULL, ?4, ?2, \
                kind \
         FROM fresh WHERE true \
         ON CONFLICT (message_id) DO NOTHING RETURNING seq, message_id",
        &[
            SqlValue::Text(serde_json::Value::Array(rows).to_string()),
            SqlValue::text(source.as_str()),
            SqlValue::Integer(now_unix),
            received_at_ms.map_or(SqlValue::Null, SqlValue::Real),
        ],
    )?;
    let mut seqs = Vec::with_capacity(returned.len());
    let mut created: HashSet<&str> = HashSet::with_capacity(returned.len());
    for row in &returned {
        if let [seq, id] = row.as_slice() {
            seqs.extend(seq.as_i64());
            created.extend(id.as_str());
        }
    }
    // The first occurrence of each new id is the one stored (taken out of the set as it is
    // met); a repeat is a duplicate. A Meta batch may hold a thousand messages: no pairwise
    // comparison.
    let inserted = messages
        .iter()
        .map(|m| {
            if created.remove(m.message.message_id.as_str()) {
                Inserted::Created
            } else {
                Inserted::Duplicate
            }
        })
        .collect();
    Ok((inserted, seqs))
}

/// A message as stored and returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub ts: String,
    pub text: Option<String>,
    /// Where this row sits in the order; becomes the next page's cursor.
    pub ts_key: String,
    /// The provider a native source's message came from, and its type (`None` for
    /// `POST /webhook` messages, and in lists, which do not read them).
    pub source: Option<String>,
    pub kind: Option<String>,
}

/// Rows of a list or lookup statement: anything in column 0 (a list's total), then the
/// message's columns.
pub(super) fn stored_messages(rows: &Rows) -> Vec<StoredMessage> {
    rows.iter()
        .filter_map(|row| {
            let text = |i: usize| row.get(i).and_then(SqlValue::as_str).map(str::to_owned);
            Some(StoredMessage {
                message_id: text(1)?,
                from: text(2)?,
                to: text(3)?,
                ts: text(4)?,
                text: text(5),
                ts_key: text(6)?,
                source: text(7),
                kind: text(8),
            })
        })
        .collect()
}

/// The message stored under `message_id`, wherever it sits (`messages` or `received`, read
/// in one statement so a fold cannot hide it between two reads), with its source and type
/// (read from `received` too while the fold has copied the row but not yet its source).
pub fn get_message(
    db: &dyn Database,
    message_id: &str,
) -> Result<Option<StoredMessage>, StorageError> {
    let rows = db.execute(
        "SELECT NULL, m.message_id, m.sender, m.recipient, m.ts, m.body_text, m.ts_key, \
                coalesce(s.source, r.source), coalesce(s.kind, r.kind) \
         FROM messages AS m \
         LEFT JOIN message_sources AS s ON s.seq = m.seq \
         LEFT JOIN received AS r ON r.seq = m.seq \
         WHERE m.message_id = ?1 \
         UNION ALL \
         SELECT NULL, message_id, sender, recipient, ts, body_text, ts_key, source, kind \
         FROM received WHERE message_id = ?1 \
         LIMIT 1",
        &[SqlValue::text(message_id)],
    )?;
    Ok(stored_messages(&rows).into_iter().next())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::query::MessageQuery;
    use crate::storage::testing::check_reads;
    use crate::storage::testing::{
        downgrade_to_version_2, fresh, inserted, msg, store, store_as_version_2, stored, Layout,
        TestDb, LAYOUTS,
    };
    use crate::storage::{fold, list_messages, read_counters, stats};

    #[test]
    fn first_write_wins_and_aggregates_count_once() {
        let db = fresh();
        let first = msg("m1", "+1", "+2", "2025-01-15T10:00:00Z", Some("Hello"));
        let second = msg("m1", "+9", "+9", "2030-01-01T00:00:00Z", Some("changed"));
        assert_eq!(store(&db, &first), Inserted::Created);
        assert_eq!(store(&db, &second), Inserted::Duplicate);
        let page = list_messages(&db, &MessageQuery::default()).unwrap();
        assert_eq!(page.total, 1);
        assert_eq!(page.messages[0].from, "+1");
        assert_eq!(page.messages[0].text.as_deref(), Some("Hello"));
        let s = stats(&db).unwrap();
        assert_eq!((s.total_messages, s.senders_count), (1, 1));
        assert_eq!(s.top_senders, [("+1".to_owned(), 1)]);
    }

    #[test]
    fn the_storing_statement_counts_created_once_per_row() {
        let db = fresh();
        let m = msg("m1", "+1", "+2", "2025-01-15T10:00:00Z", None);
        assert_eq!(insert_message(&db, &m).unwrap(), Inserted::Created);
        assert_eq!(insert_message(&db, &m).unwrap(), Inserted::Duplicate);
        let created =
            crate::metrics::WebhookResult::Created.labels(crate::sources::Source::Webhook);
        let counted: Vec<f64> = read_counters(&db)
            .unwrap()
            .into_iter()
            .filter(|r| r.name == crate::metrics::WEBHOOK_REQUESTS && r.labels == created)
            .map(|r| r.value)
            .collect();
        assert_eq!(counted, [1.0], "the trigger's labels must match metrics.rs");
        assert!(db.conn().is_autocommit(), "no transaction left open");
    }

    #[test]
    fn a_version_2_database_is_upgraded_by_an_insert_and_counts_every_message_once() {
        let db = fresh();
        store(&db, &msg("m1", "+1", "+2", "2025-01-15T10:00:00Z", None));
        downgrade_to_version_2(&db);
        store_as_version_2(&db, &msg("m2", "+3", "+2", "2025-01-15T11:00:00Z", None));

        let m3 = msg("m3", "+3", "+4", "2025-01-15T09:00:00Z", None);
        let path = db.path();
        let mut session = crate::storage::Session::new(move || {
            Ok(Box::new(TestDb::open(&path)) as Box<dyn Database>)
        });
        assert_eq!(inserted(&mut session, &m3), Inserted::Created);
        assert_eq!(inserted(&mut session, &m3), Inserted::Duplicate);
        assert_eq!(
            crate::storage::schema_version(&db).unwrap(),
            crate::storage::SCHEMA_VERSION
        );
        for _ in 0..2 {
            check_reads(
                &db,
                &[
                    msg("m1", "+1", "+2", "2025-01-15T10:00:00Z", None),
                    msg("m2", "+3", "+2", "2025-01-15T11:00:00Z", None),
                    m3.clone(),
                ],
                3,
            );
            fold::fold(&db).unwrap();
        }
    }

    /// A message keeps the number it was stored under, and no number is handed out twice,
    /// even once the highest stored row is gone.
    #[test]
    fn numbers_only_grow_and_a_message_keeps_its_own() {
        let db = fresh();
        let seq_of = |id: &str| -> i64 {
            db.conn()
                .query_row(
                    "SELECT seq FROM received WHERE message_id = ?1 \
                     UNION ALL SELECT seq FROM messages WHERE message_id = ?1 LIMIT 1",
                    [id],
                    |r| r.get(0),
                )
                .unwrap()
        };
        store(&db, &msg("m1", "+1", "+2", "2025-01-15T10:00:00Z", None));
        store(&db, &msg("m2", "+1", "+2", "2025-01-15T10:00:00Z", None));
        let (one, two) = (seq_of("m1"), seq_of("m2"));
        assert!(two > one);
        fold::fold(&db).unwrap();
        assert_eq!(
            (seq_of("m1"), seq_of("m2")),
            (one, two),
            "the fold keeps numbers"
        );
        db.conn()
            .execute_batch("DELETE FROM messages WHERE seq = (SELECT max(seq) FROM messages)")
            .unwrap();
        store(&db, &msg("m3", "+1", "+2", "2025-01-17T10:00:00Z", None));
        assert!(seq_of("m3") > two);
    }

    #[test]
    fn one_message_is_found_wherever_it_sits() {
        let odd = ["export", "a/b", "x' OR '1'='1", "%41", "\u{0}nul", "é \n"];
        let all: Vec<_> = odd
            .iter()
            .enumerate()
            .map(|(i, id)| {
                msg(
                    id,
                    "+1",
                    "+2",
                    "2025-01-15T10:00:00Z",
                    Some(&format!("t{i}")),
                )
            })
            .collect();
        for layout in LAYOUTS {
            let db = stored(&all, layout);
            for (i, id) in odd.iter().enumerate() {
                let found = get_message(&db, id).unwrap().expect(id);
                assert_eq!(found.message_id, *id);
                assert_eq!(found.text.as_deref(), Some(format!("t{i}").as_str()));
                assert_eq!(found.ts, "2025-01-15T10:00:00Z");
            }
            assert_eq!(get_message(&db, "A").unwrap(), None);
            assert_eq!(get_message(&db, "").unwrap(), None);
        }
    }

    fn sourced(id: &str, kind: &str) -> SourcedMessage {
        SourcedMessage {
            message: msg(
                id,
                "+15550001",
                "+15550002",
                "2025-01-15T10:00:00Z",
                Some("hi"),
            ),
            kind: kind.to_owned(),
        }
    }

    fn created_messages(db: &TestDb, source: &str) -> f64 {
        read_counters(db)
            .unwrap()
            .iter()
            .filter(|r| {
                r.name == crate::metrics::WEBHOOK_MESSAGES
                    && r.labels == format!("source=\"{source}\",result=\"created\"")
            })
            .map(|r| r.value)
            .sum()
    }

    /// A delivery is one statement; each message is stored once: a repeat within the
    /// delivery, an id stored before (by any route) and a tombstoned id are duplicates; new
    /// messages are numbered in the delivery's order.
    #[test]
    fn a_delivery_stores_each_new_message_once_in_one_statement() {
        let db = fresh();
        store(&db, &msg("old", "+1", "+2", "2025-01-15T10:00:00Z", None));
        let batch = [
            sourced("w1", "text"),
            sourced("old", "text"),
            sourced("w1", "text"),
            sourced("w2", "image"),
        ];
        let recorder = crate::storage::testing::Recorder::new(TestDb::open(&db.path()));
        let (inserted, seqs) = store_batch(&recorder, Source::WhatsApp, &batch, 0, None).unwrap();
        assert_eq!(recorder.statements().len(), 1, "one statement");
        use Inserted::{Created, Duplicate};
        assert_eq!(inserted, [Created, Duplicate, Duplicate, Created]);
        assert_eq!(seqs.len(), 2);
        let seq_of = |id: &str| {
            db.conn()
                .query_row(
                    "SELECT seq FROM received WHERE message_id = ?1",
                    [id],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap()
        };
        assert!(seq_of("old") < seq_of("w1") && seq_of("w1") < seq_of("w2"));
        // Delivered again, with one more: only the new one is stored.
        let again = [
            sourced("w2", "image"),
            sourced("w3", "text"),
            sourced("w1", "text"),
        ];
        let (inserted, _) = store_batch(&db, Source::WhatsApp, &again, 0, None).unwrap();
        assert_eq!(inserted, [Duplicate, Created, Duplicate]);
        assert_eq!(stats(&db).unwrap().total_messages, 4);
        assert_eq!(created_messages(&db, "whatsapp"), 3.0);
        fold::fold(&db).unwrap();
        assert_eq!(
            created_messages(&db, "whatsapp"),
            3.0,
            "counted once by the fold"
        );
        // An erased id stays a duplicate while its tombstone lasts.
        let removal = crate::storage::Removal {
            now_unix: 100,
            tombstone_until: 1_000,
            batch: 10,
        };
        assert!(crate::storage::lifecycle::erase_message(&db, "w3", &removal).unwrap());
        let (inserted, _) =
            store_batch(&db, Source::Twilio, &[sourced("w3", "sms")], 500, None).unwrap();
        assert_eq!(inserted, [Duplicate]);
        let (inserted, _) =
            store_batch(&db, Source::Twilio, &[sourced("w3", "sms")], 1_000, None).unwrap();
        assert_eq!(inserted, [Created], "the tombstone expired");
        assert_eq!(
            store_batch(&db, Source::Twilio, &[], 0, None).unwrap(),
            (vec![], vec![])
        );
    }

    /// A provider's message shows where it came from and its type wherever it sits, and an
    /// erasure leaves nothing of it behind.
    #[test]
    fn a_provider_message_keeps_its_source_and_type_wherever_it_sits() {
        for layout in LAYOUTS {
            let db = stored(
                &[msg("plain", "+1", "+2", "2025-01-15T10:00:00Z", None)],
                layout,
            );
            store_batch(&db, Source::WhatsApp, &[sourced("wa", "image")], 0, None).unwrap();
            if layout != Layout::Pending {
                fold::fold(&db).unwrap();
            }
            let found = get_message(&db, "wa").unwrap().unwrap();
            assert_eq!(
                (found.source.as_deref(), found.kind.as_deref()),
                (Some("whatsapp"), Some("image")),
                "{layout:?}"
            );
            let plain = get_message(&db, "plain").unwrap().unwrap();
            assert_eq!((plain.source, plain.kind), (None, None));
            let removal = crate::storage::Removal {
                now_unix: 0,
                tombstone_until: 0,
                batch: 10,
            };
            assert!(crate::storage::lifecycle::erase_message(&db, "wa", &removal).unwrap());
            let left: i64 = db
                .conn()
                .query_row("SELECT count(*) FROM message_sources", [], |r| r.get(0))
                .unwrap();
            assert_eq!(left, 0, "{layout:?}");
        }
    }
}
