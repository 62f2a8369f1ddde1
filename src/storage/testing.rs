//! A [`NativeDb`] in a scratch directory, plus what tests inspect.

use super::native::NativeDb;
use super::{Database, Rows, SqlValue, StorageError};
use crate::domain::NewMessage;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub struct TestDb {
    db: NativeDb,
    // Keeps an in-memory-like scratch database alive for the test's duration.
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A new database in a fresh temporary directory (a real file, so WAL applies).
    pub fn new() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = NativeDb::open(&dir.path().join("test.db")).expect("open");
        TestDb {
            db,
            _dir: Some(dir),
        }
    }

    /// Another connection to the database file at `path`.
    pub fn open(path: &Path) -> TestDb {
        TestDb {
            db: NativeDb::open(path).expect("open"),
            _dir: None,
        }
    }

    pub fn conn(&self) -> &rusqlite::Connection {
        self.db.conn()
    }

    /// `EXPLAIN QUERY PLAN` of `sql`, one detail line per step, for tests that pin a plan.
    pub fn query_plan(&self, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        self.conn()
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(params, |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// The database file, for opening more connections to it.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(self.conn().path().expect("a file database"))
    }

    /// The schema as SQLite stores it, comments and spacing normalised, for comparisons.
    pub fn schema(&self) -> Vec<(String, String)> {
        let mut stmt = self
            .conn()
            .prepare("SELECT name, coalesce(sql, '') FROM sqlite_schema ORDER BY name")
            .unwrap();
        let normalise = |sql: String| {
            sql.lines()
                .map(|line| line.split("--").next().unwrap_or(""))
                .flat_map(str::split_whitespace)
                .collect::<Vec<_>>()
                .join(" ")
        };
        stmt.query_map([], |r| Ok((r.get(0)?, normalise(r.get(1)?))))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    pub fn journal_mode(&self) -> String {
        self.conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap()
    }
}

impl Database for TestDb {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Rows, StorageError> {
        self.db.execute(sql, params)
    }
}

/// A database that records every statement sent to it; clones share the record.
#[derive(Clone)]
pub struct Recorder {
    db: Rc<dyn Database>,
    sent: Rc<RefCell<Vec<String>>>,
}

impl Recorder {
    pub fn new(db: impl Database + 'static) -> Recorder {
        Recorder {
            db: Rc::new(db),
            sent: Rc::default(),
        }
    }

    /// The statements sent so far, in order.
    pub fn statements(&self) -> Vec<String> {
        self.sent.borrow().clone()
    }
}

impl Database for Recorder {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Rows, StorageError> {
        self.sent.borrow_mut().push(sql.to_owned());
        self.db.execute(sql, params)
    }
}

/// A libSQL server as the component sees it through Spin: the client refuses the pragmas
/// that only mean something for a local file (so the session takes it for a server), and
/// every statement is one network round trip. It records each round trip, and every one
/// after which a transaction was still open: on a server that transaction would hold the
/// only write slot while the component and the network took their time. Clones share the
/// record; each has its own connection, as each request does.
#[derive(Clone)]
pub struct ServerLike {
    db: Rc<TestDb>,
    trips: Rc<RefCell<Vec<String>>>,
    spanning: Rc<RefCell<Vec<String>>>,
}

impl ServerLike {
    pub fn open(path: &Path) -> ServerLike {
        ServerLike {
            db: Rc::new(TestDb::open(path)),
            trips: Rc::default(),
            spanning: Rc::default(),
        }
    }

    /// The same record, on a new connection (the next request's).
    pub fn reconnect(&self) -> ServerLike {
        ServerLike {
            db: Rc::new(TestDb::open(&self.db.path())),
            ..self.clone()
        }
    }

    /// Every statement sent so far: one round trip each.
    pub fn round_trips(&self) -> Vec<String> {
        self.trips.borrow().clone()
    }

    /// The statements after which a transaction was left open for the next round trip.
    pub fn transactions_spanning_round_trips(&self) -> Vec<String> {
        self.spanning.borrow().clone()
    }
}

impl Database for ServerLike {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Rows, StorageError> {
        let local_only = ["busy_timeout", "journal_mode", "synchronous"]
            .iter()
            .any(|p| sql.starts_with(&format!("PRAGMA {p} =")));
        if local_only {
            // libsql 0.5's client refuses these itself, without a round trip.
            return Err(StorageError::from_text("unsupported statement"));
        }
        self.trips.borrow_mut().push(sql.to_owned());
        let result = self.db.execute(sql, params);
        if !self.db.conn().is_autocommit() {
            self.spanning.borrow_mut().push(sql.to_owned());
        }
        result
    }
}

/// A database that compiles every statement afresh, as Spin does on each request's new
/// connection, and records the statements SQLite compiled a second time to run them. It does
/// that when a bound value can shape the plan (`LIMIT ?` is one): binding expires the first
/// compile. So such a statement costs two compiles on every request. Clones share the record.
#[derive(Clone)]
pub struct CompiledOnce {
    db: Rc<TestDb>,
    recompiled: Rc<RefCell<Vec<String>>>,
}

impl CompiledOnce {
    pub fn open(path: &Path) -> CompiledOnce {
        CompiledOnce {
            db: Rc::new(TestDb::open(path)),
            recompiled: Rc::default(),
        }
    }

    /// The statements compiled twice so far.
    pub fn recompiled(&self) -> Vec<String> {
        self.recompiled.borrow().clone()
    }
}

impl Database for CompiledOnce {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Rows, StorageError> {
        let (rows, recompiled) = self.db.db.execute_fresh(sql, params)?;
        if recompiled {
            self.recompiled.borrow_mut().push(sql.to_owned());
        }
        Ok(rows)
    }
}

/// Turns a current database into what version 2 left: every message in `messages`, the
/// counts in a table each, no `received`, `tallies` or search index, and the aggregate
/// trigger version 2 kept (which also counted `created`).
pub fn downgrade_to_version_2(db: &TestDb) {
    super::fold(db).unwrap();
    db.conn()
        .execute_batch(
            "CREATE TABLE sender_counts (sender TEXT PRIMARY KEY, messages INTEGER NOT NULL)
                 WITHOUT ROWID;
             CREATE INDEX sender_counts_top ON sender_counts (messages DESC, sender);
             CREATE TABLE recipient_counts (recipient TEXT PRIMARY KEY,
                 messages INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE hour_counts (hour TEXT PRIMARY KEY, messages INTEGER NOT NULL)
                 WITHOUT ROWID;
             CREATE TABLE inbox_totals (id INTEGER PRIMARY KEY CHECK (id = 1),
                 messages INTEGER NOT NULL, senders INTEGER NOT NULL,
                 first_key TEXT, first_ts TEXT, last_key TEXT, last_ts TEXT);
             CREATE TABLE metric_counters (name TEXT NOT NULL, labels TEXT NOT NULL,
                 value NOT NULL, PRIMARY KEY (name, labels)) WITHOUT ROWID;
             INSERT INTO sender_counts SELECT key, n FROM tallies WHERE kind = 'sender';
             INSERT INTO recipient_counts SELECT key, n FROM tallies WHERE kind = 'recipient';
             INSERT INTO hour_counts SELECT key, n FROM tallies WHERE kind = 'hour';
             INSERT INTO inbox_totals (id, messages, senders) VALUES (1,
                 (SELECT n FROM tallies WHERE kind = 'inbox' AND key = 'messages'),
                 (SELECT n FROM tallies WHERE kind = 'inbox' AND key = 'senders'));
             INSERT INTO metric_counters
                 SELECT substr(key, 1, instr(key, ' ') - 1), substr(key, instr(key, ' ') + 1), n
                 FROM tallies WHERE kind = 'metric';
             DROP TABLE received; DROP TABLE tallies; DROP TABLE messages_search;
             CREATE TRIGGER messages_aggregate AFTER INSERT ON messages
             BEGIN
                 INSERT INTO sender_counts (sender, messages) VALUES (NEW.sender, 1)
                     ON CONFLICT (sender) DO UPDATE SET messages = messages + 1;
                 INSERT INTO recipient_counts (recipient, messages) VALUES (NEW.recipient, 1)
                     ON CONFLICT (recipient) DO UPDATE SET messages = messages + 1;
                 INSERT INTO hour_counts (hour, messages) VALUES (substr(NEW.ts_key, 1, 13), 1)
                     ON CONFLICT (hour) DO UPDATE SET messages = messages + 1;
                 INSERT INTO metric_counters (name, labels, value)
                     VALUES ('webhook_requests_total', 'result=\"created\"', 1)
                     ON CONFLICT (name, labels) DO UPDATE SET value = value + 1;
                 UPDATE inbox_totals SET
                     messages  = messages + 1,
                     senders   = senders + (SELECT messages = 1 FROM sender_counts
                                            WHERE sender = NEW.sender),
                     first_ts  = CASE WHEN first_key IS NULL OR NEW.ts_key < first_key
                                      THEN NEW.ts ELSE first_ts END,
                     first_key = CASE WHEN first_key IS NULL OR NEW.ts_key < first_key
                                      THEN NEW.ts_key ELSE first_key END,
                     last_ts   = CASE WHEN last_key IS NULL OR NEW.ts_key > last_key
                                      THEN NEW.ts ELSE last_ts END,
                     last_key  = CASE WHEN last_key IS NULL OR NEW.ts_key > last_key
                                      THEN NEW.ts_key ELSE last_key END
                 WHERE id = 1;
             END;
             PRAGMA user_version = 2;",
        )
        .unwrap();
}

/// Stores `msg` the way version 2 of the component did: straight into `messages`.
pub fn store_as_version_2(db: &TestDb, msg: &NewMessage) {
    db.conn()
        .execute(
            "INSERT INTO messages (message_id, sender, recipient, ts, ts_key, body_text, text_folded) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            rusqlite::params![
                msg.message_id,
                msg.from,
                msg.to,
                msg.ts,
                msg.ts_key,
                msg.text,
                msg.folded_text()
            ],
        )
        .unwrap();
}

/// What a session's insert of `msg` did, now (tests that do not look at the clock).
pub fn inserted(session: &mut super::Session, msg: &NewMessage) -> super::Inserted {
    session
        .insert_message(msg, std::time::SystemTime::now())
        .unwrap()
}

/// A validated message.
pub fn msg(id: &str, from: &str, to: &str, ts: &str, text: Option<&str>) -> NewMessage {
    let body =
        serde_json::json!({"message_id": id, "from": from, "to": to, "ts": ts, "text": text});
    crate::sources::webhook::payload::parse(body.to_string().as_bytes()).unwrap()
}

/// Stores `m` the way a request does, and says whether it was new.
pub fn store(db: &TestDb, m: &NewMessage) -> super::Inserted {
    super::insert_message(db, m).unwrap()
}

/// A new database with the current schema.
pub fn fresh() -> TestDb {
    let db = TestDb::new();
    super::prepare(&db).unwrap();
    db
}

/// Where stored messages sit when a read runs: still in `received`, folded into
/// `messages`, or some of each. Every read must give the same answer in all three.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layout {
    Pending,
    Folded,
    Split,
}
pub const LAYOUTS: [Layout; 3] = [Layout::Pending, Layout::Folded, Layout::Split];

/// A fresh database holding `messages`, laid out as `layout` says.
pub fn stored(messages: &[NewMessage], layout: Layout) -> TestDb {
    let db = fresh();
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(store(&db, m), super::Inserted::Created, "{}", m.message_id);
        if layout == Layout::Split && i == messages.len() / 2 {
            super::fold(&db).unwrap();
        }
    }
    if layout == Layout::Folded {
        super::fold(&db).unwrap();
        assert_eq!(super::fold::pending(&db).unwrap(), 0);
    }
    db
}

/// The ids of a `/messages` page for `raw_query`, and its total.
pub fn ids(db: &TestDb, raw_query: &str) -> (Vec<String>, i64) {
    let query = crate::query::parse(raw_query).unwrap();
    let page = super::list_messages(db, &query).unwrap();
    (
        page.messages.into_iter().map(|m| m.message_id).collect(),
        page.total,
    )
}

/// Every list, total and stat of `db` must equal what a plain scan of `all` (the messages
/// it should hold) gives, and `created` must count the `created` messages ever stored.
pub fn check_reads(db: &TestDb, all: &[NewMessage], created: usize) {
    let mut sorted: Vec<&NewMessage> = all.iter().collect();
    sorted.sort_by(|a, b| (&a.ts_key, &a.message_id).cmp(&(&b.ts_key, &b.message_id)));
    let since = "2025-01-16T10:30:00Z";
    let since_key = crate::timestamp::instant_key(since).unwrap();
    type Keep<'a> = &'a dyn Fn(&NewMessage) -> bool;
    let queries: [(&str, Keep); 6] = [
        ("", &|_| true),
        ("from=%2B1", &|m| m.from == "+1"),
        ("to=%2B102", &|m| m.to == "+102"),
        ("since=2025-01-16T10:30:00Z", &|m| m.ts_key >= since_key),
        ("q=hello", &|m| {
            m.folded_text().is_some_and(|t| t.contains("hello"))
        }),
        ("from=%2B1&since=2025-01-16T10:30:00Z", &|m| {
            m.from == "+1" && m.ts_key >= since_key
        }),
    ];
    for (raw, keep) in queries {
        let want: Vec<String> = sorted
            .iter()
            .filter(|m| keep(m))
            .map(|m| m.message_id.clone())
            .collect();
        let (page, total) = ids(db, &format!("{raw}&limit=100"));
        assert_eq!(
            (page.as_slice(), total),
            (want.get(..want.len().min(100)).unwrap(), want.len() as i64),
            "{raw} {since}"
        );
        let (middle, _) = ids(db, &format!("{raw}&limit=7&offset=5"));
        assert_eq!(
            middle,
            want.iter().skip(5).take(7).cloned().collect::<Vec<_>>(),
            "{raw} offset"
        );
    }
    // A deep page starts at its hour (`listing::SKIP_HOURS_FROM_OFFSET`): here at any offset,
    // in either order, one past the end included.
    for descending in [false, true] {
        let mut want: Vec<String> = sorted.iter().map(|m| m.message_id.clone()).collect();
        if descending {
            want.reverse();
        }
        for offset in 0..=all.len() + 1 {
            let order = if descending { "&order=desc" } else { "" };
            let query = crate::query::parse(&format!("limit=7&offset={offset}{order}")).unwrap();
            let page = super::listing::list_skipping_hours_from(db, &query, 0).unwrap();
            let got: Vec<String> = page.messages.into_iter().map(|m| m.message_id).collect();
            let expected: Vec<String> = want.iter().skip(offset).take(7).cloned().collect();
            assert_eq!((got, page.total), (expected, all.len() as i64), "{query:?}");
        }
    }
    let s = super::stats(db).unwrap();
    assert_eq!(s.total_messages, all.len() as i64);
    let mut per_sender = std::collections::BTreeMap::new();
    for m in all {
        *per_sender.entry(m.from.clone()).or_insert(0i64) += 1;
    }
    assert_eq!(s.senders_count, per_sender.len() as i64);
    let mut top: Vec<(String, i64)> = per_sender.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(super::stats::TOP_SENDERS as usize);
    assert_eq!(s.top_senders, top);
    let first = sorted.first().map(|m| m.ts_key.clone());
    let first_ts = s
        .first_message_ts
        .as_deref()
        .map(|t| crate::timestamp::instant_key(t).unwrap());
    assert_eq!(first_ts, first);
    let last = sorted.iter().map(|m| m.ts_key.clone()).max();
    let last_ts = s
        .last_message_ts
        .as_deref()
        .map(|t| crate::timestamp::instant_key(t).unwrap());
    assert_eq!(last_ts, last);
    let created_count: f64 = super::read_counters(db)
        .unwrap()
        .iter()
        .filter(|r| {
            r.name == crate::metrics::WEBHOOK_REQUESTS
                && r.labels
                    == crate::metrics::WebhookResult::Created
                        .labels(crate::sources::Source::Webhook)
        })
        .map(|r| r.value)
        .sum();
    assert_eq!(created_count, created as f64);
    let mut per_hour = std::collections::BTreeMap::new();
    for m in all {
        *per_hour.entry(m.ts_key[..13].to_owned()).or_insert(0i64) += 1;
    }
    let hourly = super::hourly(db, "0000-01-01T00", "9999-12-31T23").unwrap();
    assert_eq!(hourly, per_hour.into_iter().collect::<Vec<_>>(), "hourly");
    let to_total = ids(db, "to=%2B102&limit=1").1;
    assert_eq!(
        to_total,
        all.iter().filter(|m| m.to == "+102").count() as i64
    );
}
