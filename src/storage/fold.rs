//! Folding: copying the messages in `received` into `messages`, a batch at a time, and
//! counting the batch in `tallies`.
//!
//! Why two tables: every index and count a message touches is a B-tree page that its write
//! transaction copies to the WAL and holds the write lock for. Stored straight into
//! `messages`, one message touched about ten (the row, `message_id`, three filter indexes,
//! five counts). Stored into `received`, it touches two: the row and its `message_id`
//! entry. The fold then adds a few hundred messages to the indexes and the counts at once.
//!
//! Why no transaction: on a libSQL server every statement is a network round trip, and a
//! transaction holds the server's only write slot from `BEGIN` to `COMMIT`: every other
//! writer of every instance waits for all of the fold's round trips. So each step is one
//! statement, atomic on its own, and safe to run again or out of turn (two instances may
//! fold at once; an instance may stop between two steps):
//! 1. **copy** the rows of `received` that `messages` lacks (by `seq`, which a message keeps
//!    from the moment it is stored);
//! 2. **count** every row of `received` above the watermark `('inbox', 'counted_through')`
//!    in `tallies` (senders, recipients, hours, totals, and the `created` and request
//!    counters the rows stand for), and move the watermark, in ONE statement, so a count is
//!    never taken twice or lost;
//! 3. **clear** the rows of `received` that are both counted and copied;
//! 4. **index** the copied rows for search (see [`super::search`]).
//!
//! Reads need no fold to be exact: lists read `messages` plus the rows of `received` not
//! copied yet; counts read `tallies` plus the rows of `received` above the watermark, which
//! step 3 never clears ([`UNCOPIED`], [`UNCOUNTED`]).
//!
//! Why not a trigger: every request opens a new connection, and a new connection parses the
//! whole schema before its first statement. A trigger holding these steps cost every
//! connection more than all the tables together.
//!
//! When: no instance outlives its request, so no background task can fold. The steps run
//! after the answers of the writes that fill a batch ([`steps_due`]):
//! - On a local file, the write that fills the batch (its `seq` is a multiple of
//!   [`FOLD_EVERY`]) runs the whole fold. Each step takes milliseconds there.
//! - On a libSQL server, each step is a write that waits its turn in the server's one queue
//!   of writers, behind every instance's. Spin serves a connection's next request only once
//!   the handler has returned, so the sender's next delivery on that connection waits for
//!   every one of those turns. At 64 concurrent senders, a whole fold on one connection
//!   meant seconds. So the write that fills the batch and the four writes after it run one
//!   step each, and no connection waits for more than one turn.
//!
//! A step that never ran (the instance was stopped) is caught by the next batch's, so
//! `received` stays small. A provider's delivery that takes several numbers runs the steps
//! of each.

use super::{search, Database, StorageError};
use crate::metrics;

/// Messages per fold. Reads scan `received` in full; at this size that is a few dozen pages.
pub const FOLD_EVERY: i64 = 256;

/// One step of the fold (see the module's doc), in the order a whole fold runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Copy,
    CopySources,
    Count,
    Clear,
    Index,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::Copy,
        Step::CopySources,
        Step::Count,
        Step::Clear,
        Step::Index,
    ];
}

/// The steps the write that got `seq` runs after its answer: the whole fold for the write
/// that fills a batch, or with `spread` (a libSQL server) one step each for it and the four
/// writes after it.
pub fn steps_due(seq: i64, spread: bool) -> &'static [Step] {
    // Before the first batch is full there is nothing to fold.
    if seq < FOLD_EVERY {
        return &[];
    }
    let place = seq % FOLD_EVERY;
    if !spread {
        return if place == 0 { &Step::ALL } else { &[] };
    }
    usize::try_from(place)
        .ok()
        .and_then(|place| Step::ALL.get(place..=place))
        .unwrap_or(&[])
}

/// Runs `steps`, in the order given.
pub fn run(db: &dyn Database, steps: &[Step]) -> Result<(), StorageError> {
    for step in steps {
        match step {
            Step::Copy => db.execute(COPY, &[]).map(drop)?,
            Step::CopySources => db.execute(COPY_SOURCES, &[]).map(drop)?,
            Step::Count => db.execute(&count_sql(), &[]).map(drop)?,
            Step::Clear => db.execute(CLEAR, &[]).map(drop)?,
            // The batch joins the search index here, where FTS5 takes it at once (plus a
            // bounded share of any older rows not in it yet). It reads `messages` only, so
            // it may come after the clear.
            Step::Index => search::index_batch(db, FOLD_EVERY + search::BACKFILL_ROWS).map(drop)?,
        }
    }
    Ok(())
}

/// Length of the hour prefix of an instant key, "2025-01-15T10"; hour tallies are keyed by it.
pub(super) const HOUR_KEY_LEN: usize = 13;

/// A row of `received` the counts in `tallies` do not include yet.
pub(super) const UNCOUNTED: &str =
    "seq > (SELECT n FROM tallies WHERE kind = 'inbox' AND key = 'counted_through')";
/// A row of `received` that `messages` does not hold yet. A row the
/// copy has not reached is numbered above every row of `messages` (it was stored after the
/// last copy, and numbers only grow), so the comparison settles nearly every row; only a
/// row copied but not yet cleared, during a fold, is looked up.
pub(super) const UNCOPIED: &str = "(seq > (SELECT coalesce(max(seq), 0) FROM messages) \
                        OR NOT EXISTS (SELECT 1 FROM messages AS c WHERE c.seq = received.seq))";

/// Step 1: the rows `messages` lacks, with the numbers they were stored under.
const COPY: &str = "INSERT INTO messages \
         (seq, message_id, sender, recipient, ts, ts_key, body_text, text_folded) \
     SELECT seq, message_id, sender, recipient, ts, ts_key, body_text, text_folded \
     FROM received AS i WHERE NOT EXISTS (SELECT 1 FROM messages AS m WHERE m.seq = i.seq) \
     ORDER BY seq \
     ON CONFLICT DO NOTHING";

/// Step 1, for a provider's messages: where each came from, and its type.
const COPY_SOURCES: &str = "INSERT INTO message_sources (seq, source, kind) \
     SELECT seq, source, coalesce(kind, '') FROM received AS i \
     WHERE source IS NOT NULL \
     AND NOT EXISTS (SELECT 1 FROM message_sources AS m WHERE m.seq = i.seq) \
     ORDER BY seq \
     ON CONFLICT DO NOTHING";

/// Step 3: rows counted and copied, their source too (a fold running beside this one may
/// have copied and counted a row after this one copied the sources).
const CLEAR: &str = "DELETE FROM received \
     WHERE seq <= (SELECT n FROM tallies WHERE kind = 'inbox' AND key = 'counted_through') \
     AND EXISTS (SELECT 1 FROM messages AS m WHERE m.seq = received.seq) \
     AND (source IS NULL \
          OR EXISTS (SELECT 1 FROM message_sources AS s WHERE s.seq = received.seq))";

/// Step 2, one statement: every count of the rows above the watermark, and the watermark.
/// Each stored row also stands for its request's counters (see [`super::counters`]).
fn count_sql() -> String {
    let mut bucket = String::from("CASE");
    for (bound, labels) in metrics::latency_buckets() {
        match bound {
            Some(bound) => {
                bucket.push_str(&format!(" WHEN latency_ms <= {bound:?} THEN '{labels}'"))
            }
            None => bucket.push_str(&format!(" ELSE '{labels}' END")),
        }
    }
    let metric = |name: &str, labels: &str| format!("'{}'", metrics::series_key(name, labels));
    format!(
        "WITH batch AS MATERIALIZED ( \
             SELECT seq, sender, recipient, ts_key, latency_ms, received_at, source \
             FROM received \
             WHERE seq > (SELECT n FROM tallies WHERE kind = 'inbox' AND key = 'counted_through')) \
         INSERT INTO tallies (kind, key, n) \
         SELECT kind, key, n FROM ( \
             SELECT 'sender' AS kind, sender AS key, count(*) AS n FROM batch GROUP BY sender \
             UNION ALL SELECT 'recipient', recipient, count(*) FROM batch GROUP BY recipient \
             UNION ALL SELECT 'hour', substr(ts_key, 1, 13), count(*) FROM batch \
                 GROUP BY substr(ts_key, 1, 13) \
             UNION ALL SELECT 'inbox', 'messages', count(*) FROM batch \
             UNION ALL SELECT 'inbox', 'senders', count(*) FROM (SELECT DISTINCT sender FROM batch) AS b \
                 WHERE NOT EXISTS (SELECT 1 FROM tallies AS t \
                                   WHERE t.kind = 'sender' AND t.key = b.sender) \
             UNION ALL SELECT 'metric', {created}, count(*) FROM batch GROUP BY 2 \
             UNION ALL SELECT 'metric', {requests}, count(*) FROM batch \
                 WHERE latency_ms IS NOT NULL \
             UNION ALL SELECT 'metric', '{bucket_prefix} ' || {bucket}, count(*) FROM batch \
                 WHERE latency_ms IS NOT NULL GROUP BY 2 \
             UNION ALL SELECT 'metric', {sum}, total(latency_ms) FROM batch \
                 WHERE latency_ms IS NOT NULL \
             UNION ALL SELECT 'inbox', 'last_received_ms', max(received_at) FROM batch \
             UNION ALL SELECT 'inbox', 'counted_through', max(seq) FROM batch) \
         WHERE n > 0 \
         ON CONFLICT (kind, key) DO UPDATE SET n = CASE \
             WHEN kind = 'inbox' AND key IN ('counted_through', 'last_received_ms') \
                 THEN max(n, excluded.n) \
             ELSE n + excluded.n END",
        created = super::counters::stored_row_series_sql("source"),
        requests = metric(metrics::HTTP_REQUESTS, &stored_request_labels()),
        bucket_prefix = metrics::LATENCY_BUCKET,
        sum = metric(metrics::LATENCY_SUM, ""),
    )
}

/// The `http_requests_total` labels of a request that stored a message.
fn stored_request_labels() -> String {
    let route = crate::routes::Endpoint::Webhook.path();
    format!("path=\"{route}\",status=\"200\"")
}

/// The fold's SQL, in order (the benchmark keys its cached data set by it).
pub fn statements() -> Vec<String> {
    vec![
        COPY.to_owned(),
        COPY_SOURCES.to_owned(),
        count_sql(),
        CLEAR.to_owned(),
    ]
}

/// Copies, counts, clears and indexes everything waiting in `received`, one statement at a
/// time (see the module's doc).
pub fn fold(db: &dyn Database) -> Result<(), StorageError> {
    run(db, &Step::ALL)
}

/// [`fold`] without the search index, inside a removal's transaction: every row it may
/// remove is then copied and counted. Indexing is left to the next fold: a removal takes
/// its rows out of the index whether or not they were in it, and every statement here holds
/// the write lock (on a libSQL server, a round trip each).
pub(super) fn fold_for_removal(db: &dyn Database) -> Result<(), StorageError> {
    run(db, &Step::ALL[..4])
}

/// Rows waiting in `received`.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub fn pending(db: &dyn Database) -> Result<i64, StorageError> {
    let rows = db.execute("SELECT count(*) FROM received", &[])?;
    Ok(super::first_value(&rows)
        .and_then(super::SqlValue::as_i64)
        .unwrap_or(0))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::sources::{Source, SourcedMessage};
    use crate::storage::testing::{check_reads, fresh, msg, store, TestDb};
    use crate::storage::{insert_message, prepare, Rows, Session, SqlValue};

    /// No step may read a whole table of stored messages: at a million messages that would
    /// hold the write lock for a tenth of a second each fold.
    #[test]
    fn no_step_reads_messages_in_full() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        for step in statements() {
            let plan = db.query_plan(&step, []);
            for line in &plan {
                let whole = line.starts_with("SCAN m")
                    || line.starts_with("SCAN messages")
                    || line.contains("USING INDEX messages_by")
                    || line.contains("USING COVERING INDEX messages_by");
                assert!(!whole, "{step}\n{plan:#?}");
            }
        }
    }

    /// A fold may stop after any step (the instance is stopped, the server goes away) and
    /// two may run at once: every read stays exact after each step, and running any step
    /// again, or the whole fold, counts nothing twice.
    #[test]
    fn every_read_is_exact_after_each_step_and_steps_run_again_harmlessly() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        let mut all = Vec::new();
        let add = |db: &TestDb, all: &mut Vec<_>, i: usize| {
            let m = msg(
                &format!("m{i:03}"),
                &format!("+{}", i % 4 + 1),
                &format!("+{}", i % 3 + 50),
                &format!("2025-01-15T{:02}:{:02}:00Z", 8 + i % 5, i % 60),
                Some("hello there"),
            );
            insert_message(db, &m).unwrap();
            all.push(m);
        };
        for i in 0..20 {
            add(&db, &mut all, i);
        }
        let count = count_sql();
        let steps: [&str; 3] = [COPY, &count, CLEAR];
        for (n, step) in steps.iter().enumerate() {
            db.execute(step, &[]).unwrap();
            check_reads(&db, &all, all.len());
            // A message stored between two steps.
            add(&db, &mut all, 100 + n);
            check_reads(&db, &all, all.len());
            // Every step so far, again.
            for again in &steps[..=n] {
                db.execute(again, &[]).unwrap();
                check_reads(&db, &all, all.len());
            }
        }
        fold(&db).unwrap();
        fold(&db).unwrap();
        check_reads(&db, &all, all.len());
        assert_eq!(pending(&db).unwrap(), 0);
    }

    /// A database that fails its `n`th statement, as a server that goes away mid-fold.
    struct FailsAt {
        db: TestDb,
        left: std::cell::Cell<usize>,
    }
    impl Database for FailsAt {
        fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Rows, StorageError> {
            let left = self.left.get();
            self.left.set(left.wrapping_sub(1));
            if left == 0 {
                return Err(StorageError::from_text("connection reset"));
            }
            self.db.execute(sql, params)
        }
    }

    #[test]
    fn a_fold_stopped_at_any_statement_leaves_every_read_exact_and_the_next_completes_it() {
        let mut all = Vec::new();
        let db = fresh();
        for step in 0.. {
            for i in 0..5 {
                let m = msg(
                    &format!("s{step}m{i}"),
                    &format!("+{}", i % 3 + 1),
                    "+102",
                    &format!("2025-01-1{}T1{i}:00:00Z", 5 + step % 3),
                    Some("hello"),
                );
                store(&db, &m);
                all.push(m);
            }
            // And one provider message, whose source and type must survive every step.
            let provider = msg(
                &format!("s{step}wa"),
                "+7",
                "+102",
                "2025-01-16T10:00:00Z",
                None,
            );
            let delivery = [SourcedMessage {
                message: provider.clone(),
                kind: "image".to_owned(),
            }];
            let mut session = Session::new(|| Ok(Box::new(TestDb::open(&db.path())) as _));
            session
                .insert_batch(Source::WhatsApp, &delivery, std::time::SystemTime::now())
                .unwrap();
            all.push(provider);
            let failing = FailsAt {
                db: TestDb::open(&db.path()),
                left: std::cell::Cell::new(step),
            };
            let folded = fold(&failing).is_ok();
            check_reads(&db, &all, all.len() - (step + 1));
            check_sources(&db, step);
            if folded {
                break;
            }
        }
        fold(&db).unwrap();
        let steps = all.len() / 6;
        check_reads(&db, &all, all.len() - steps);
        check_sources(&db, steps - 1);
        assert_eq!(pending(&db).unwrap(), 0);
    }

    /// On a server the fold's steps ride on the write that fills a batch and the four after
    /// it, one each; every read stays exact after each, and the last leaves `received` with
    /// only the rows stored since and the batch in the search index.
    #[test]
    fn on_a_server_the_writes_after_a_full_batch_fold_it_a_step_each() {
        assert_eq!(steps_due(FOLD_EVERY, false), Step::ALL);
        assert_eq!(steps_due(FOLD_EVERY + 1, false), []);
        assert_eq!(steps_due(3, true), [], "no batch yet");
        for (place, step) in Step::ALL.into_iter().enumerate() {
            assert_eq!(steps_due(2 * FOLD_EVERY + place as i64, true), [step]);
        }
        assert_eq!(steps_due(FOLD_EVERY + 5, true), []);

        let db = fresh();
        let server = crate::storage::testing::ServerLike::open(&db.path());
        let mut all = Vec::new();
        let mut trips = Vec::new();
        for i in 0..FOLD_EVERY + 4 {
            let m = msg(
                &format!("m{i:04}"),
                &format!("+{}", i % 7 + 1),
                "+99",
                &format!("2025-01-15T{:02}:{:02}:00Z", i % 24, i % 60),
                Some("hello there"),
            );
            let conn = server.reconnect();
            let before = conn.round_trips().len();
            let mut session = Session::new(|| Ok(Box::new(conn.clone()) as _));
            session
                .insert_message(&m, std::time::SystemTime::now())
                .unwrap();
            let upkeep = session.after_answer(|| None);
            assert!(upkeep.failures.is_empty(), "{:?}", upkeep.failures);
            trips.push(conn.round_trips().len() - before);
            all.push(m);
            if i >= FOLD_EVERY - 1 {
                check_reads(&db, &all, all.len());
            }
        }
        let last = trips.len() - 1;
        assert_eq!(trips[last - 4..], [2, 2, 2, 2, 4], "{trips:?}");
        assert_eq!(pending(&db).unwrap(), 4, "the four stored after the batch");
        let indexed: i64 = db
            .conn()
            .query_row("SELECT count(*) FROM messages_search", [], |r| r.get(0))
            .unwrap();
        assert_eq!(indexed, FOLD_EVERY);
    }

    /// Every provider message stored so far (`s0wa` to `s{last}wa`) shows its source.
    fn check_sources(db: &TestDb, last: usize) {
        for step in 0..=last {
            let found = crate::storage::get_message(db, &format!("s{step}wa"))
                .unwrap()
                .unwrap();
            assert_eq!(
                (found.source.as_deref(), found.kind.as_deref()),
                (Some("whatsapp"), Some("image")),
                "s{step}wa"
            );
        }
    }

    /// Two folds interleaved: one copies the sources, a provider message arrives, the other
    /// copies and counts it, then the first clears. The clear must leave the row until its
    /// source is copied too, or the message would lose where it came from.
    #[test]
    fn a_clear_keeps_a_row_whose_source_another_fold_has_not_copied() {
        let db = fresh();
        let [copy, copy_sources, count, clear] = statements().try_into().unwrap();
        db.execute(&copy_sources, &[]).unwrap();
        let delivery = [SourcedMessage {
            message: msg("late", "+7", "+8", "2025-01-16T10:00:00Z", None),
            kind: "text".to_owned(),
        }];
        let mut session = Session::new(|| Ok(Box::new(TestDb::open(&db.path())) as _));
        session
            .insert_batch(Source::WhatsApp, &delivery, std::time::SystemTime::now())
            .unwrap();
        db.execute(&copy, &[]).unwrap();
        db.execute(&count, &[]).unwrap();
        db.execute(&clear, &[]).unwrap();
        assert_eq!(pending(&db).unwrap(), 1, "kept for its source");
        fold(&db).unwrap();
        assert_eq!(pending(&db).unwrap(), 0);
        let found = crate::storage::get_message(&db, "late").unwrap().unwrap();
        assert_eq!(found.source.as_deref(), Some("whatsapp"));
    }
}
