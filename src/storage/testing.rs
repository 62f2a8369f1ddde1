//! A rusqlite-backed [`Database`] for native tests, with Spin's semantics: a new connection
//! per open, no pragmas of its own beyond rusqlite's (as in Spin), errors as text.

use super::{Database, Rows, SqlValue, StorageError};
use rusqlite::types::{Value, ValueRef};
use std::path::Path;

pub struct TestDb {
    conn: rusqlite::Connection,
    // Keeps an in-memory-like scratch database alive for the test's duration.
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A new database in a fresh temporary directory (a real file, so WAL applies).
    pub fn new() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = rusqlite::Connection::open(dir.path().join("test.db")).expect("open");
        TestDb {
            conn,
            _dir: Some(dir),
        }
    }

    /// Another connection to the database file at `path`.
    pub fn open(path: &Path) -> TestDb {
        TestDb {
            conn: rusqlite::Connection::open(path).expect("open"),
            _dir: None,
        }
    }

    pub fn conn(&self) -> &rusqlite::Connection {
        &self.conn
    }

    /// The schema as SQLite stores it, comments and spacing normalised, for comparisons.
    pub fn schema(&self) -> Vec<(String, String)> {
        let mut stmt = self
            .conn
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
        self.conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap()
    }
}

impl Database for TestDb {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Rows, StorageError> {
        let err = |e: rusqlite::Error| StorageError(e.to_string());
        let mut stmt = self.conn.prepare(sql).map_err(err)?;
        let columns = stmt.column_count();
        let values = params.iter().map(|p| match p {
            SqlValue::Null => Value::Null,
            SqlValue::Integer(n) => Value::Integer(*n),
            SqlValue::Real(x) => Value::Real(*x),
            SqlValue::Text(s) => Value::Text(s.clone()),
            SqlValue::Blob(b) => Value::Blob(b.clone()),
        });
        let mut rows = stmt
            .query(rusqlite::params_from_iter(values))
            .map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i).map_err(err)? {
                    ValueRef::Null => SqlValue::Null,
                    ValueRef::Integer(n) => SqlValue::Integer(n),
                    ValueRef::Real(x) => SqlValue::Real(x),
                    ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                });
            }
            out.push(values);
        }
        Ok(out)
    }
}
