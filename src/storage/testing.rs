//! A [`NativeDb`] in a scratch directory, plus what tests inspect.

use super::native::NativeDb;
use super::{Database, Rows, SqlValue, StorageError};
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

/// Turns a current database into what version 2 left: every message in `messages`, no
/// `incoming` or `fold_state`, and the aggregate trigger version 2 kept (which also counted
/// `created`).
pub fn downgrade_to_version_2(db: &TestDb) {
    super::fold(db).unwrap();
    db.conn()
        .execute_batch(
            "DROP TABLE incoming; DROP TABLE fold_state;
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
pub fn store_as_version_2(db: &TestDb, msg: &crate::payload::NewMessage) {
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
pub fn inserted(session: &mut super::Session, msg: &crate::payload::NewMessage) -> super::Inserted {
    session
        .insert_message(msg, std::time::SystemTime::now())
        .unwrap()
        .inserted
}
