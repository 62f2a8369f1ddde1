//! A [`NativeDb`] in a scratch directory, plus what tests inspect.

use super::native::NativeDb;
use super::{Database, Rows, SqlValue, StorageError};
use std::path::Path;

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
