//! One request's database session: the connection, which backend it reaches, the local-file
//! settings, and the schema, each set up at most once and only when the request needs it.
//!
//! Spin gives every request a fresh instance and every `open` a new connection with no
//! pragmas, so this work is per request and must be cheap:
//! - Reads run straight away. Only if a table is missing (a fresh database) is the schema
//!   applied and the read run again.
//! - Before the first write, [`apply_local_settings`] sets what a local file needs on each
//!   connection (`synchronous = NORMAL`). A libSQL server has no use for it and its client
//!   refuses it locally, without a network round trip; that refusal is how a session learns
//!   it talks to a server, and from then on it sends none.
//! - WAL mode is stored in the file, so it is set where the file is set up (the schema, the
//!   readiness probe) and before each fold, not on every write.
//! - A write that fills a batch of `received` folds it after the answer
//!   ([`Session::after_answer`], see [`super::fold`]).
//! - A server answers "database is locked" soon when another writer holds its write slot,
//!   and refuses requests for now when it has too many, where a local file waits itself
//!   (Spin's busy timeout); so on a server the session retries a statement refused that way,
//!   with backoff, for up to [`SERVER_RETRY_MS`]. Each retried operation is safe to run
//!   again; one whose statements are not (the rejection log's entry) is retried a
//!   statement at a time.

use super::counters;
use super::error::{ErrorKind, StorageError};
use super::feed::{self, Commit, Consumer, FeedPage};
use super::fold;
use super::lifecycle::{self, Erased, Purged, Removal};
use super::listing::{self, MessagePage};
use super::messages::{self, Inserted, RequestTiming, StoredMessage};
use super::rejections::{self, RejectionPage};
use super::search;
use super::stats::{self, Stats};
use super::{schema, Database};
use crate::domain::NewMessage;
use crate::metrics::{CounterRow, Increment};
use crate::query::MessageQuery;
use crate::rejections::Entry;
use crate::sources::{Source, SourcedMessage};
use std::time::{Duration, Instant, SystemTime};

/// What [`Session::after_answer`] did.
#[derive(Debug, Default)]
pub struct Upkeep {
    /// Messages the retention batch removed, when one ran.
    pub purged: Option<u64>,
    /// The steps that failed, each with what it was, for the log.
    pub failures: Vec<(&'static str, StorageError)>,
}

fn unix_ms(moment: SystemTime) -> f64 {
    moment
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

fn unix_seconds(moment: SystemTime) -> i64 {
    moment
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What the connection reaches, as far as a session has found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Nothing was written yet, so nothing was asked.
    Unknown,
    /// A SQLite file on this machine (Spin's `type = "spin"`).
    LocalFile,
    /// A server that refuses local-file settings: libSQL / Turso (`type = "libsql"`).
    Server,
}

/// How long a statement a libSQL server refused as busy is retried before the request
/// gives up (a webhook then answers 503 and the sender retries): longer than the 5 s after
/// which sqld rolls back a writer that holds its write slot, so one stalled writer does not
/// turn into 503s for everyone queued behind it.
///
/// On a local file the wait is SQLite's busy timeout, which Spin sets to 5 s on every
/// connection it opens (rusqlite's default). No write sends its own `busy_timeout`: a write
/// touches two pages, and one more statement per write cost more than the longer wait
/// bought (bench/README.md).
pub const SERVER_RETRY_MS: u32 = 10_000;

/// How long a request that finds the schema missing or old waits for the write lock while
/// one of many concurrent first requests creates it (see `check_schema`).
const FIRST_USE_LOCK_WAIT_MS: u32 = 10_000;

/// Sets what a write on a local SQLite file needs, and tells which backend this is.
///
/// The one setting doubles as the probe: the libSQL client refuses every local-file pragma
/// before sending it ("unsupported statement"), so on a server this costs no round trip, and
/// the refusal means the setting does not apply here; the request goes on without it.
///
/// WAL + NORMAL: a commit survives a crash of the process; only power loss can take the last
/// few commits. FULL would fsync every commit, for several times fewer writes per second.
pub fn apply_local_settings(db: &dyn Database) -> Result<Backend, StorageError> {
    match db.execute("PRAGMA synchronous = NORMAL", &[]) {
        Ok(_) => Ok(Backend::LocalFile),
        Err(err) if err.kind == ErrorKind::Unsupported => Ok(Backend::Server),
        // Any other failure is the connection's (a file that cannot be opened, a server
        // that cannot be reached): the request's own statement would fail the same way.
        Err(err) => Err(err),
    }
}

/// Puts a local file in WAL mode: readers never block the writer and vice versa. Stored in
/// the file and a no-op once set. A database created by `spin up --sqlite @migrations.sql`
/// (which cannot carry it, see migrations.sql) gets it from the first readiness probe or
/// fold; until then it works in SQLite's default rollback mode.
fn apply_wal(db: &dyn Database) -> Result<(), StorageError> {
    db.execute("PRAGMA journal_mode = WAL", &[]).map(drop)
}

/// Readies a connection for writing: local-file settings and WAL, then the schema (one
/// cheap read when it is current). For tools and tests that hold a connection of their own.
pub fn prepare(db: &dyn Database) -> Result<Backend, StorageError> {
    let backend = apply_local_settings(db)?;
    if backend == Backend::LocalFile {
        apply_wal(db)?;
    }
    schema::ensure(db)?;
    Ok(backend)
}

type Opener<'a> = Box<dyn FnOnce() -> Result<Box<dyn Database>, StorageError> + 'a>;

/// The request's database session. Every storage call the handler makes goes through it.
pub struct Session<'a> {
    open: Option<Opener<'a>>,
    db: Option<Result<Box<dyn Database>, StorageError>>,
    backend: Backend,
    /// The schema version was checked this session (and the schema applied if needed).
    schema_checked: bool,
    /// The fold's steps this session's writes left for after the answer (see
    /// [`fold::steps_due`]), in order.
    fold_due: Vec<fold::Step>,
    /// This session's search found rows outside the search index (see [`super::search`]).
    index_due: bool,
    /// Statements a server refused as busy and this session ran again, and the time spent
    /// waiting between tries (see [`Session::busy_waits`]).
    busy: BusyWaits,
}

/// How often, and how long, a request waited for a busy server's write slot: for its log
/// line, where a slow answer on a shared libSQL server otherwise has no explanation.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct BusyWaits {
    /// Tries refused as busy and run again.
    pub retries: u32,
    /// Time slept between those tries, in milliseconds.
    pub waited_ms: f64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

impl<'a> Session<'a> {
    /// A session that opens its connection with `open`, on first use.
    pub fn new(open: impl FnOnce() -> Result<Box<dyn Database>, StorageError> + 'a) -> Session<'a> {
        Session {
            open: Some(Box::new(open)),
            db: None,
            backend: Backend::Unknown,
            schema_checked: false,
            fold_due: Vec::new(),
            index_due: false,
            busy: BusyWaits::default(),
        }
    }

    /// The busy server's refusals this session waited out so far; `None` when there were
    /// none (a local file waits inside SQLite instead, and is never counted).
    pub fn busy_waits(&self) -> Option<BusyWaits> {
        (self.busy.retries > 0).then_some(self.busy)
    }

    /// What the connection reaches; [`Backend::Unknown`] until the first write.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Stores a message once (see [`messages::insert_message`]): one statement, one round
    /// trip. A new message's row also counts the storing request, which started at
    /// `request_started` (see [`super::counters`]): for [`Inserted::Created`], record no
    /// metrics of the request.
    pub fn insert_message(
        &mut self,
        msg: &NewMessage,
        request_started: SystemTime,
    ) -> Result<Inserted, StorageError> {
        self.ready_for(Access::Write)?;
        let timing = RequestTiming {
            started_unix_ms: unix_ms(request_started),
            elapsed_ms: unix_ms(SystemTime::now()) - unix_ms(request_started),
        };
        let now = unix_seconds(request_started);
        let (inserted, seq) = self.run(Access::Write, |db| {
            messages::store(db, msg, Some(timing), now)
        })?;
        if let Some(seq) = seq {
            self.fold_due = fold::steps_due(seq, self.spreads_folds()).to_vec();
        }
        Ok(inserted)
    }

    /// Stores a provider's delivery once per message, all of it in one statement (see
    /// [`messages::store_batch`]): for each message in order, whether it was new. Its rows
    /// count as `created` messages of `source`; the request records its own counters.
    pub fn insert_batch(
        &mut self,
        source: Source,
        batch: &[SourcedMessage],
        request_started: SystemTime,
    ) -> Result<Vec<Inserted>, StorageError> {
        self.ready_for(Access::Write)?;
        let now = unix_seconds(request_started);
        let received_at = Some(unix_ms(request_started));
        let (inserted, seqs) = self.run(Access::Write, |db| {
            messages::store_batch(db, source, batch, now, received_at)
        })?;
        let spread = self.spreads_folds();
        for seq in seqs {
            self.fold_due.extend(fold::steps_due(seq, spread));
        }
        self.fold_due.sort_unstable();
        self.fold_due.dedup();
        Ok(inserted)
    }

    /// The storage work a request leaves until after its answer, in this order:
    /// 1. the fold's steps this session's new messages left: on a local file the whole fold
    ///    after the write that fills a batch, on a server one step each for it and the four
    ///    writes after it ([`fold::steps_due`]);
    /// 2. after a fold (the write lock is free again), one retention batch, when
    ///    `retention` (asked only then) gives its cutoff and removal. On a local file only:
    ///    a removal is one transaction of several statements, which on a libSQL server
    ///    would hold its one write slot across as many round trips, on the ingest path. On
    ///    a server, retention runs only through the scheduled `POST /admin/purge`;
    /// 3. a batch of search indexing, when a search of this session found rows outside the
    ///    index ([`super::search`]).
    ///
    /// A failed step loses nothing: stored messages stay stored and every read stays exact,
    /// and the next batch's write or search runs the step again. Failures come back for the
    /// log, each with what it was.
    pub fn after_answer(
        &mut self,
        retention: impl FnOnce() -> Option<(Option<String>, Removal)>,
    ) -> Upkeep {
        let mut upkeep = Upkeep::default();
        match self.fold_if_due() {
            Ok(true) if self.backend == Backend::LocalFile => {
                if let Some((cutoff, removal)) = retention() {
                    match self.purge(cutoff.as_deref(), &removal) {
                        Ok(purged) => upkeep.purged = Some(purged.messages),
                        Err(err) => upkeep.failures.push(("retention batch not run", err)),
                    }
                }
            }
            Ok(_) => {}
            Err(err) => upkeep.failures.push(("fold not run", err)),
        }
        if let Err(err) = self.index_if_due() {
            upkeep.failures.push(("search index not updated", err));
        }
        upkeep
    }

    /// Whether the fold's steps are spread over several writes (see [`fold::steps_due`]):
    /// on a server, where each waits its turn behind every instance's writers.
    fn spreads_folds(&self) -> bool {
        self.backend == Backend::Server
    }

    /// Runs the fold's steps this session's writes left (see [`fold::steps_due`]). Whether
    /// it ran any.
    fn fold_if_due(&mut self) -> Result<bool, StorageError> {
        let steps = std::mem::take(&mut self.fold_due);
        if steps.is_empty() {
            return Ok(false);
        }
        let local = self.backend == Backend::LocalFile;
        self.run(Access::Write, |db| {
            if local {
                apply_wal(db)?;
            }
            fold::run(db, &steps)
        })?;
        Ok(true)
    }

    pub fn list_messages(&mut self, query: &MessageQuery) -> Result<MessagePage, StorageError> {
        let page = self.run(Access::Read, |db| listing::list_messages(db, query))?;
        self.index_due = page.unindexed > 0;
        Ok(page)
    }

    /// Adds a batch of rows to the search index if this session's search had to scan rows
    /// outside it; for after the answer. Whether it did.
    fn index_if_due(&mut self) -> Result<bool, StorageError> {
        if !std::mem::take(&mut self.index_due) {
            return Ok(false);
        }
        self.run(Access::Write, |db| {
            search::index_batch(db, search::BACKFILL_ROWS)
        })?;
        Ok(true)
    }

    /// One message by id (see [`messages::get_message`]).
    pub fn get_message(&mut self, message_id: &str) -> Result<Option<StoredMessage>, StorageError> {
        self.run(Access::Read, |db| messages::get_message(db, message_id))
    }

    /// One page of an export (see [`listing::export_page`]).
    pub fn export_page(
        &mut self,
        query: &MessageQuery,
    ) -> Result<Vec<StoredMessage>, StorageError> {
        self.run(Access::Read, |db| listing::export_page(db, query))
    }

    /// Messages per hour (see [`stats::hourly`]).
    pub fn hourly(
        &mut self,
        first_hour: &str,
        last_hour: &str,
    ) -> Result<Vec<(String, i64)>, StorageError> {
        self.run(Access::Read, |db| stats::hourly(db, first_hour, last_hour))
    }

    pub fn stats(&mut self) -> Result<Stats, StorageError> {
        self.run(Access::Read, stats::stats)
    }

    pub fn read_counters(&mut self) -> Result<Vec<CounterRow>, StorageError> {
        self.run(Access::Read, counters::read_counters)
    }

    /// A page of the feed after `consumer`'s committed offset (see [`feed::page`]).
    pub fn feed_page(&mut self, consumer: &str, limit: u32) -> Result<FeedPage, StorageError> {
        self.run(Access::Read, |db| feed::page(db, consumer, limit))
    }

    /// Moves `consumer`'s committed offset forward to `offset` (see [`feed::commit`]).
    pub fn feed_commit(
        &mut self,
        consumer: &str,
        offset: i64,
        max_consumers: u32,
    ) -> Result<Commit, StorageError> {
        self.run(Access::Write, |db| {
            feed::commit(db, consumer, offset, max_consumers)
        })
    }

    /// Every feed consumer with its committed offset and lag (see [`feed::consumers`]).
    pub fn feed_consumers(&mut self) -> Result<Vec<Consumer>, StorageError> {
        self.run(Access::Read, feed::consumers)
    }

    /// Forgets a feed consumer: its last committed offset, or `None` if it was not known.
    pub fn feed_forget(&mut self, consumer: &str) -> Result<Option<i64>, StorageError> {
        self.run(Access::Write, |db| feed::forget(db, consumer))
    }

    /// Adds a finished request's metric increments.
    pub fn record(&mut self, increments: &[Increment]) -> Result<(), StorageError> {
        self.run(Access::Write, |db| counters::record(db, increments))
    }

    /// Adds a refused delivery to the rejection log, keeping the newest `keep`, together with
    /// its request's metric increments (see [`super::rejections`]).
    pub fn record_rejection(
        &mut self,
        entry: &Entry,
        keep: u32,
        increments: &[Increment],
    ) -> Result<(), StorageError> {
        // Each statement retried on its own: the entry is not idempotent.
        let trim_due = self.run(Access::Write, |db| rejections::store(db, entry, keep))?;
        self.run(Access::Write, |db| counters::record(db, increments))?;
        if trim_due {
            self.run(Access::Write, |db| rejections::trim(db, keep))?;
        }
        Ok(())
    }

    /// A page of the rejection log, newest first (see [`rejections::list`]).
    pub fn rejections(
        &mut self,
        keep: u32,
        limit: u32,
        before: Option<i64>,
    ) -> Result<RejectionPage, StorageError> {
        self.run(Access::Read, |db| rejections::list(db, keep, limit, before))
    }

    /// One retention batch (see [`lifecycle::purge`]); a no-op read when nothing is due.
    pub fn purge(
        &mut self,
        cutoff_key: Option<&str>,
        removal: &Removal,
    ) -> Result<Purged, StorageError> {
        self.remove(|db| lifecycle::purge(db, cutoff_key, removal))
    }

    /// Erases one message (see [`lifecycle::erase_message`]); whether it was stored.
    pub fn erase_message(
        &mut self,
        message_id: &str,
        removal: &Removal,
    ) -> Result<bool, StorageError> {
        self.remove(|db| lifecycle::erase_message(db, message_id, removal))
    }

    /// Erases a batch of one sender's messages (see [`lifecycle::erase_sender`]).
    pub fn erase_sender(
        &mut self,
        sender: &str,
        removal: &Removal,
    ) -> Result<Erased, StorageError> {
        self.remove(|db| lifecycle::erase_sender(db, sender, removal))
    }

    /// Runs a removal. On a local file, removed rows are overwritten with zeros rather than
    /// only unlinked (`secure_delete`, a setting of this connection alone), so erased text
    /// does not stay in the file's free space. A server keeps its own storage; the setting
    /// is not sent.
    fn remove<T>(
        &mut self,
        op: impl Fn(&dyn Database) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.ready_for(Access::Write)?;
        if self.backend == Backend::LocalFile {
            self.connection()?
                .execute("PRAGMA secure_delete = ON", &[])?;
        }
        self.run(Access::Write, op)
    }

    /// The schema version after making sure the schema is in place (for readiness).
    pub fn ensure_schema(&mut self) -> Result<i64, StorageError> {
        self.ready_for(Access::Write)?;
        self.check_schema()?;
        schema::user_version(self.connection()?)
    }

    fn connection(&mut self) -> Result<&dyn Database, StorageError> {
        if self.db.is_none() {
            let open = self.open.take().expect("opened at most once");
            self.db = Some(open());
        }
        match self.db.as_ref().expect("just set") {
            Ok(db) => Ok(&**db),
            Err(err) => Err(err.clone()),
        }
    }

    /// The connection, with local-file settings applied before its first write.
    fn ready_for(&mut self, access: Access) -> Result<&dyn Database, StorageError> {
        if access == Access::Write && self.backend == Backend::Unknown {
            self.backend = apply_local_settings(self.connection()?)?;
        }
        self.connection()
    }

    fn check_schema(&mut self) -> Result<(), StorageError> {
        if !self.schema_checked {
            self.ready_for(Access::Write)?;
            let local = self.backend == Backend::LocalFile;
            let db = self.connection()?;
            if local {
                // The first requests to a fresh file all queue behind the one that creates
                // the schema; give them longer than Spin's 5 s on a loaded machine. Only
                // here: a rare path, so no other write pays for the statement.
                db.execute(
                    &format!("PRAGMA busy_timeout = {FIRST_USE_LOCK_WAIT_MS}"),
                    &[],
                )?;
                apply_wal(db)?;
            }
            schema::ensure(db)?;
            self.schema_checked = true;
        }
        Ok(())
    }

    /// Runs `op`, retrying while a server reports its write lock busy. Every operation is
    /// safe to run again: a statement refused as busy changed nothing, and the insert is
    /// idempotent on `message_id`.
    fn run<T>(
        &mut self,
        access: Access,
        op: impl Fn(&dyn Database) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut backoff = Backoff::new();
        loop {
            match self.run_once(access, &op) {
                Err(err) if err.kind == ErrorKind::Busy && self.backend == Backend::Server => {
                    let asleep = Instant::now();
                    if !backoff.wait() {
                        return Err(err);
                    }
                    self.busy.retries += 1;
                    self.busy.waited_ms += asleep.elapsed().as_secs_f64() * 1000.0;
                }
                result => return result,
            }
        }
    }

    /// Runs `op` without checking the schema first: a check is a round trip (an HTTP request
    /// on libSQL) and the schema is almost always in place. If `op` finds a table missing,
    /// the schema is applied and `op` runs once more.
    fn run_once<T>(
        &mut self,
        access: Access,
        op: &impl Fn(&dyn Database) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match op(self.ready_for(access)?) {
            Err(err) if err.kind == ErrorKind::MissingSchema && !self.schema_checked => {
                self.check_schema()?;
                op(self.connection()?)
            }
            result => result,
        }
    }
}

/// Waits between retries of a busy statement: doubling from 2 ms to 64 ms, each wait drawn
/// at random from its upper half so that writers refused together do not retry together,
/// until [`SERVER_RETRY_MS`] have passed.
struct Backoff {
    started: Instant,
    step: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(2);
    const MAX: Duration = Duration::from_millis(64);

    fn new() -> Backoff {
        Backoff {
            started: Instant::now(),
            step: Backoff::FIRST,
        }
    }

    /// Sleeps before the next try; false when the time is up.
    fn wait(&mut self) -> bool {
        if self.started.elapsed() >= Duration::from_millis(u64::from(SERVER_RETRY_MS)) {
            return false;
        }
        let mut random = [0u8; 2];
        let fraction = match getrandom::fill(&mut random) {
            Ok(()) => f64::from(u16::from_le_bytes(random)) / f64::from(u16::MAX),
            Err(_) => 0.5,
        };
        std::thread::sleep(self.step.mul_f64(0.5 + fraction / 2.0));
        self.step = (self.step * 2).min(Backoff::MAX);
        true
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::storage::testing::{inserted, Recorder, TestDb};
    use crate::storage::SqlValue;

    fn message(id: &str) -> NewMessage {
        crate::sources::webhook::payload::parse(
            format!(r#"{{"message_id":"{id}","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z"}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn a_fresh_local_file_gets_its_settings_and_schema_on_first_write() {
        let db = TestDb::new();
        let path = db.path();
        let recorder = Recorder::new(TestDb::open(&path));
        let mut session = Session::new(|| Ok(Box::new(recorder.clone()) as Box<dyn Database>));
        assert_eq!(inserted(&mut session, &message("m1")), Inserted::Created);
        assert_eq!(session.backend(), Backend::LocalFile);
        let sent = recorder.statements();
        assert_eq!(
            sent[0], "PRAGMA synchronous = NORMAL",
            "one setting per write"
        );
        assert!(sent[1].starts_with("INSERT INTO received"), "{sent:?}");
        // WAL comes with the schema, which the fresh file lacked.
        assert!(sent.contains(&"PRAGMA journal_mode = WAL".to_owned()));
        assert_eq!(db.journal_mode(), "wal");
        // The next write in the same session sends no setting again.
        let before = recorder.statements().len();
        inserted(&mut session, &message("m2"));
        assert!(recorder.statements()[before..]
            .iter()
            .all(|s| !s.starts_with("PRAGMA")));
    }

    /// A session on its own connection to `path`, as each Spin request has.
    fn session_on(path: &std::path::Path) -> Session<'static> {
        let path = path.to_owned();
        Session::new(move || Ok(Box::new(TestDb::open(&path)) as Box<dyn Database>))
    }

    #[test]
    fn the_write_that_fills_a_batch_folds_it_after_and_no_other_does() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        for i in 1..fold::FOLD_EVERY {
            messages::insert_message(&db, &message(&format!("m{i}"))).unwrap();
        }
        let mut early = session_on(&db.path());
        assert_eq!(inserted(&mut early, &message("m1")), Inserted::Duplicate);
        assert!(!early.fold_if_due().unwrap(), "a duplicate fills nothing");

        let mut filling = session_on(&db.path());
        assert_eq!(inserted(&mut filling, &message("last")), Inserted::Created);
        assert_eq!(fold::pending(&db).unwrap(), fold::FOLD_EVERY);
        assert!(filling.fold_if_due().unwrap());
        assert!(!filling.fold_if_due().unwrap(), "once");
        assert_eq!(fold::pending(&db).unwrap(), 0);
        assert_eq!(stats::stats(&db).unwrap().total_messages, fold::FOLD_EVERY);

        // `received` counts from 1 again: the next write folds nothing.
        let mut next = session_on(&db.path());
        inserted(&mut next, &message("after"));
        assert!(!next.fold_if_due().unwrap());
        assert_eq!(fold::pending(&db).unwrap(), 1);
    }

    #[test]
    fn a_file_made_by_spin_up_sqlite_works_at_once_and_becomes_wal_at_the_first_fold() {
        let db = TestDb::new();
        for statement in schema::statements() {
            db.conn().execute_batch(&statement).unwrap();
        }
        assert_eq!(db.journal_mode(), "delete");
        for i in 1..fold::FOLD_EVERY {
            let mut session = session_on(&db.path());
            session
                .insert_message(&message(&format!("m{i}")), std::time::SystemTime::now())
                .unwrap();
            assert!(!session.fold_if_due().unwrap());
        }
        assert_eq!(db.journal_mode(), "delete", "no per-write journal pragma");
        let mut filling = session_on(&db.path());
        inserted(&mut filling, &message("last"));
        assert!(filling.fold_if_due().unwrap());
        assert_eq!(TestDb::open(&db.path()).journal_mode(), "wal");
    }

    #[test]
    fn reads_send_no_settings_and_a_current_schema_costs_no_check() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        let recorder = Recorder::new(TestDb::open(&db.path()));
        let mut session = Session::new(|| Ok(Box::new(recorder.clone()) as Box<dyn Database>));
        session.stats().unwrap();
        session.list_messages(&MessageQuery::default()).unwrap();
        assert_eq!(
            recorder.statements().len(),
            2,
            "{:?}",
            recorder.statements()
        );
        assert_eq!(session.backend(), Backend::Unknown);
    }

    #[test]
    fn a_read_on_a_fresh_database_creates_the_schema_and_answers() {
        let db = TestDb::new();
        let mut session =
            Session::new(|| Ok(Box::new(TestDb::open(&db.path())) as Box<dyn Database>));
        assert_eq!(session.stats().unwrap().total_messages, 0);
        assert_eq!(schema::user_version(&db).unwrap(), schema::SCHEMA_VERSION);
    }

    /// The upkeep after an answer folds only after the write that filled a batch, asks for
    /// the retention batch only then, runs it, and reports what it removed.
    #[test]
    fn the_upkeep_after_a_filling_write_folds_then_runs_one_retention_batch() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        let now = SystemTime::now();
        for i in 1..fold::FOLD_EVERY {
            let mut session = session_on(&db.path());
            session
                .insert_message(&message(&format!("m{i}")), now)
                .unwrap();
            let upkeep = session.after_answer(|| panic!("no fold, so no retention batch"));
            assert_eq!((upkeep.purged, upkeep.failures.len()), (None, 0));
        }
        let mut filling = session_on(&db.path());
        filling.insert_message(&message("last"), now).unwrap();
        let removal = Removal {
            now_unix: unix_seconds(now),
            tombstone_until: unix_seconds(now) + 86_400,
            batch: 100,
        };
        let cutoff = crate::timestamp::instant_key("2025-01-16T00:00:00Z").unwrap();
        let upkeep = filling.after_answer(|| Some((Some(cutoff), removal)));
        assert!(upkeep.failures.is_empty(), "{:?}", upkeep.failures);
        assert_eq!(
            upkeep.purged,
            Some(100),
            "one batch of the messages before the cutoff"
        );
        assert_eq!(fold::pending(&db).unwrap(), 0, "folded");
        assert_eq!(
            stats::stats(&db).unwrap().total_messages,
            fold::FOLD_EVERY - 100
        );
    }

    /// Version 7's sender index lacked the recipient: a `from=` list on such a database finds
    /// the new index missing, upgrades the schema, and answers.
    #[test]
    fn a_sender_list_on_a_version_7_database_upgrades_it_and_answers() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        for i in 0..5 {
            messages::insert_message(&db, &message(&format!("m{i}"))).unwrap();
        }
        fold::fold(&db).unwrap();
        db.conn()
            .execute_batch(
                "DROP INDEX messages_by_sender_with_recipient; \
                 CREATE INDEX messages_by_sender ON messages (sender, ts_key, message_id); \
                 PRAGMA user_version = 7;",
            )
            .unwrap();
        let mut session = session_on(&db.path());
        let query = crate::query::parse("from=%2B1&to=%2B2").unwrap();
        assert_eq!(session.list_messages(&query).unwrap().total, 5);
        assert_eq!(schema::user_version(&db).unwrap(), schema::SCHEMA_VERSION);
        let indexes: Vec<String> = db
            .schema()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| name.starts_with("messages_by_sender"))
            .collect();
        assert_eq!(indexes, ["messages_by_sender_with_recipient"]);
    }

    #[test]
    fn a_search_that_scans_rows_outside_the_index_indexes_a_batch_after_its_answer() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        for i in 0..10 {
            messages::insert_message(&db, &message(&format!("m{i}"))).unwrap();
        }
        fold::fold(&db).unwrap();
        // As an upgraded database: nothing indexed yet.
        db.conn()
            .execute_batch(
                "DELETE FROM messages_search;
                 UPDATE tallies SET n = 0 WHERE kind = 'search';",
            )
            .unwrap();
        let query = crate::query::parse("q=xyz").unwrap();
        let mut session = session_on(&db.path());
        assert_eq!(session.list_messages(&query).unwrap().unindexed, 10);
        assert!(session.index_if_due().unwrap());
        assert!(!session.index_if_due().unwrap(), "once");
        let mut next = session_on(&db.path());
        assert_eq!(next.list_messages(&query).unwrap().unindexed, 0);
        assert!(!next.index_if_due().unwrap(), "nothing left to index");
        // A listing that is not a search never asks.
        let mut plain = session_on(&db.path());
        plain.list_messages(&MessageQuery::default()).unwrap();
        assert!(!plain.index_if_due().unwrap());
    }

    #[test]
    fn a_version_3_database_gets_the_rejection_log_at_its_first_rejection() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        db.conn()
            .execute_batch("DROP TABLE rejections; PRAGMA user_version = 3;")
            .unwrap();
        let mut session = session_on(&db.path());
        assert_eq!(session.rejections(10, 10, None).unwrap().entries.len(), 0);
        let entry = crate::rejections::Rejected::new(
            crate::rejections::Reason::PayloadTooLarge,
            "body_over_limit",
            crate::rejections::Body::Unread,
        )
        .entry("2026-01-01T00:00:00.000Z".into(), "/webhook", 413, "r1");
        session_on(&db.path())
            .record_rejection(&entry, 10, &[])
            .unwrap();
        assert_eq!(schema::user_version(&db).unwrap(), schema::SCHEMA_VERSION);
        let page = session_on(&db.path()).rejections(10, 10, None).unwrap();
        assert_eq!(page.entries[0].request_id, "r1");
    }

    /// A server reached through a client that refuses local-file pragmas with a value, as
    /// libsql 0.5's does (it still sends `PRAGMA user_version = n`).
    struct RefusesLocalSettings(TestDb);
    impl Database for RefusesLocalSettings {
        fn execute(
            &self,
            sql: &str,
            params: &[SqlValue],
        ) -> Result<super::super::Rows, StorageError> {
            let refused = ["busy_timeout", "journal_mode", "synchronous"]
                .iter()
                .any(|p| sql.starts_with(&format!("PRAGMA {p} =")));
            if refused {
                return Err(StorageError::from_text("unsupported statement"));
            }
            self.0.execute(sql, params)
        }
    }

    #[test]
    fn a_server_that_refuses_local_settings_still_stores_and_is_asked_once() {
        let db = TestDb::new();
        let recorder = Recorder::new(RefusesLocalSettings(TestDb::open(&db.path())));
        let mut session = Session::new(|| Ok(Box::new(recorder.clone()) as Box<dyn Database>));
        assert_eq!(inserted(&mut session, &message("m1")), Inserted::Created);
        assert_eq!(inserted(&mut session, &message("m1")), Inserted::Duplicate);
        session.record(&[]).unwrap();
        assert_eq!(session.backend(), Backend::Server);
        let pragmas: Vec<_> = recorder
            .statements()
            .into_iter()
            .filter(|s| s.starts_with("PRAGMA synchronous"))
            .collect();
        assert_eq!(pragmas.len(), 1, "the probe is sent once per session");
        assert_eq!(session.stats().unwrap().total_messages, 1);
    }

    /// On a local file and on a server alike, the stored row stands for its request's
    /// counters, its latency measured from the request's start when the statement ran (and
    /// never less than the component measured before sending it): no second write.
    #[test]
    fn a_new_message_carries_its_requests_counters_on_both_backends() {
        use crate::metrics::{LATENCY_BUCKET, LATENCY_SUM};
        let db = TestDb::new();
        prepare(&db).unwrap();
        let started = SystemTime::now() - Duration::from_millis(30);
        let mut local = session_on(&db.path());
        let stored = local.insert_message(&message("m1"), started).unwrap();
        assert_eq!(stored, Inserted::Created);
        let again = local.insert_message(&message("m1"), started).unwrap();
        assert_eq!(again, Inserted::Duplicate);

        let server = Recorder::new(RefusesLocalSettings(TestDb::open(&db.path())));
        let mut remote = Session::new(|| Ok(Box::new(server.clone()) as Box<dyn Database>));
        let stored = remote.insert_message(&message("m2"), started).unwrap();
        assert_eq!(stored, Inserted::Created);
        assert_eq!(remote.backend(), Backend::Server);

        for folded in [false, true] {
            let rows = counters::read_counters(&db).unwrap();
            let value = |name: &str, labels: &str| -> f64 {
                rows.iter()
                    .filter(|r| r.name == name && r.labels == labels)
                    .map(|r| r.value)
                    .sum()
            };
            let requests = r#"path="/webhook",status="200""#;
            assert_eq!(
                value(crate::metrics::HTTP_REQUESTS, requests),
                2.0,
                "{folded}"
            );
            assert_eq!(value(LATENCY_BUCKET, r#"le="50""#), 2.0, "{folded}");
            let latency = value(LATENCY_SUM, "");
            assert!((58.0..2000.0).contains(&latency), "{latency} ms, {folded}");
            let created =
                crate::metrics::WebhookResult::Created.labels(crate::sources::Source::Webhook);
            assert_eq!(value(crate::metrics::WEBHOOK_REQUESTS, &created), 2.0);
            fold::fold(&db).unwrap();
        }
    }

    /// A database whose write lock is taken for its first `busy` inserts.
    struct BusyOnInsert<D> {
        db: D,
        busy: std::cell::Cell<u32>,
    }
    impl<D: Database> Database for BusyOnInsert<D> {
        fn execute(
            &self,
            sql: &str,
            params: &[SqlValue],
        ) -> Result<super::super::Rows, StorageError> {
            if sql.starts_with("INSERT") && self.busy.get() > 0 {
                self.busy.set(self.busy.get() - 1);
                // sqld's wording, through the libSQL client.
                return Err(StorageError::from_text(
                    "Hrana: `cursor error: `error at step 0: (error code: SQLITE_BUSY) \
                     `SQLite error: database is locked```",
                ));
            }
            self.db.execute(sql, params)
        }
    }

    #[test]
    fn a_busy_server_is_waited_out_and_the_message_stored_once() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        let server = BusyOnInsert {
            db: RefusesLocalSettings(TestDb::open(&db.path())),
            busy: std::cell::Cell::new(3),
        };
        let mut session = Session::new(|| Ok(Box::new(server) as Box<dyn Database>));
        assert_eq!(session.busy_waits(), None);
        assert_eq!(inserted(&mut session, &message("m1")), Inserted::Created);
        let waits = session.busy_waits().expect("three refusals waited out");
        assert_eq!(waits.retries, 3);
        // Backoff: 1-2 ms, 2-4 ms, 4-8 ms.
        assert!(waits.waited_ms >= 7.0, "{waits:?}");
        assert_eq!(session.stats().unwrap().total_messages, 1);
    }

    /// A server that refuses the counters as busy, once, after taking a refused delivery's
    /// log entry: the counters are retried alone, and the entry is not written twice.
    #[test]
    fn a_busy_refusal_after_a_log_entry_retries_only_what_was_refused() {
        struct BusyOnCounters {
            db: RefusesLocalSettings,
            busy: std::cell::Cell<bool>,
        }
        impl Database for BusyOnCounters {
            fn execute(
                &self,
                sql: &str,
                params: &[SqlValue],
            ) -> Result<super::super::Rows, StorageError> {
                if sql.starts_with("INSERT INTO tallies") && self.busy.replace(false) {
                    return Err(StorageError::from_text("database is locked"));
                }
                self.db.execute(sql, params)
            }
        }
        let db = TestDb::new();
        prepare(&db).unwrap();
        let server = BusyOnCounters {
            db: RefusesLocalSettings(TestDb::open(&db.path())),
            busy: std::cell::Cell::new(true),
        };
        let mut session = Session::new(|| Ok(Box::new(server) as Box<dyn Database>));
        let entry = crate::rejections::Rejected::new(
            crate::rejections::Reason::InvalidSignature,
            "signature_mismatch",
            crate::rejections::Body::Unread,
        )
        .entry("2026-01-01T00:00:00.000Z".into(), "/webhook", 401, "r1");
        let increments = [crate::metrics::rejected(
            crate::rejections::Reason::InvalidSignature,
        )];
        session.record_rejection(&entry, 10, &increments).unwrap();
        let page = session_on(&db.path()).rejections(10, 10, None).unwrap();
        assert_eq!(page.entries.len(), 1);
        let counted = counters::read_counters(&db)
            .unwrap()
            .into_iter()
            .filter(|c| c.name == crate::metrics::REJECTIONS)
            .map(|c| c.value)
            .sum::<f64>();
        assert_eq!(counted, 1.0);
    }

    #[test]
    fn a_busy_local_file_is_not_retried_on_top_of_its_own_timeout() {
        let db = TestDb::new();
        prepare(&db).unwrap();
        // A local file takes the settings, so its busy error (after its own timeout) is final.
        let local = BusyOnInsert {
            db: TestDb::open(&db.path()),
            busy: std::cell::Cell::new(1),
        };
        let mut session = Session::new(|| Ok(Box::new(local) as Box<dyn Database>));
        let err = session
            .insert_message(&message("m1"), std::time::SystemTime::now())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Busy);
        assert_eq!(session.backend(), Backend::LocalFile);
    }

    #[test]
    fn an_open_failure_is_reported_by_every_call_and_opened_once() {
        let opened = std::cell::Cell::new(0);
        let mut session = Session::new(|| {
            opened.set(opened.get() + 1);
            Err(StorageError::from_text("unable to open database file"))
        });
        assert!(session.stats().is_err());
        assert!(session
            .insert_message(&message("m1"), std::time::SystemTime::now())
            .is_err());
        assert_eq!(opened.get(), 1);
    }

    /// Spin compiles every statement of a request on that request's new connection. SQLite
    /// compiles a statement again once its values are bound when a bound value can shape
    /// the plan (`LIMIT ?` does), so such a statement costs every request two compiles.
    /// Every kind of request is driven here, over rows both folded and pending.
    #[test]
    fn every_statement_a_request_sends_is_compiled_once() {
        use crate::storage::testing::{msg, CompiledOnce};
        let db = TestDb::new();
        let check = CompiledOnce::open(&db.path());
        let session = || Session::new(|| Ok(Box::new(check.clone()) as Box<dyn Database>));
        let now = SystemTime::now();
        for i in 0..fold::FOLD_EVERY + 40 {
            let text = if i % 3 == 0 { "hello world" } else { "other" };
            let ts = format!("2025-01-15T{:02}:{:02}:00Z", 10 + i % 7, i % 60);
            let m = msg(
                &format!("m{i}"),
                &format!("+{}", i % 13),
                "+2",
                &ts,
                Some(text),
            );
            let mut s = session();
            assert_eq!(inserted(&mut s, &m), Inserted::Created);
            s.fold_if_due().unwrap();
        }
        let mut s = session();
        assert_eq!(
            inserted(&mut s, &msg("m1", "+1", "+2", "2025-01-15T10:01:00Z", None)),
            Inserted::Duplicate
        );
        for raw in [
            "",
            "limit=5&offset=3",
            "order=desc&limit=2",
            "from=%2B1&to=%2B2&since=2025-01-15T12:00:00Z",
            "q=hello",
            "q=hello&from=%2B1&order=desc",
            "q=lo",
        ] {
            let query = crate::query::parse(raw).unwrap();
            let page = session().list_messages(&query).unwrap();
            assert!(page.total > 0, "{raw}");
            if let Some(cursor) = page.next_cursor(query.limit) {
                let next = MessageQuery {
                    cursor: Some(cursor),
                    ..query.clone()
                };
                session().list_messages(&next).unwrap();
                session().export_page(&next).unwrap();
            }
            session().export_page(&query).unwrap();
            session().index_if_due().unwrap();
        }
        assert!(session().get_message("m7").unwrap().is_some());
        session().hourly("2025-01-15T00", "2025-01-16T00").unwrap();
        assert!(session().stats().unwrap().total_messages > 0);
        assert!(!session().feed_page("crm", 5).unwrap().messages.is_empty());
        session().feed_commit("crm", 3, 32).unwrap();
        session().feed_commit("crm", 1, 32).unwrap();
        session().feed_consumers().unwrap();
        session().read_counters().unwrap();
        session().feed_forget("crm").unwrap();
        let increments = crate::metrics::increments("/stats", 200, 1.5, None);
        session().record(&increments).unwrap();
        let rejected = crate::rejections::Rejected::new(
            crate::rejections::Reason::InvalidSignature,
            "signature_mismatch",
            crate::rejections::Body::Read(b"{}".to_vec()),
        )
        .entry(
            "2026-01-01T00:00:00.000Z".to_owned(),
            "/webhook",
            401,
            "req-1",
        );
        session()
            .record_rejection(&rejected, 10, &increments)
            .unwrap();
        assert_eq!(session().rejections(10, 5, None).unwrap().entries.len(), 1);
        let removal = Removal {
            now_unix: unix_seconds(now),
            tombstone_until: unix_seconds(now) + 3600,
            batch: 5,
        };
        let cutoff = crate::timestamp::instant_key("2025-01-15T11:00:00Z").ok();
        assert!(
            session()
                .purge(cutoff.as_deref(), &removal)
                .unwrap()
                .messages
                > 0
        );
        assert!(session().erase_message("m8", &removal).unwrap());
        assert!(session().erase_sender("+3", &removal).unwrap().erased > 0);
        assert_eq!(check.recompiled(), Vec::<String>::new());
    }
}
