//! The storage code on rusqlite, natively: what the unit tests and the benchmark run. Like
//! Spin's connections: a new connection per open, no pragmas of its own beyond rusqlite's
//! defaults (which, as in Spin, include a 5 s busy timeout), errors as text.

use super::{Database, Rows, SqlValue, StorageError};
use rusqlite::types::{Value, ValueRef};
use std::path::Path;

pub struct NativeDb {
    conn: rusqlite::Connection,
}

impl NativeDb {
    /// A new connection to the database file at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<NativeDb> {
        Ok(NativeDb {
            conn: rusqlite::Connection::open(path)?,
        })
    }

    pub fn conn(&self) -> &rusqlite::Connection {
        &self.conn
    }
}

/// A value as rusqlite binds it.
pub fn to_rusqlite(value: &SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(n) => Value::Integer(*n),
        SqlValue::Real(x) => Value::Real(*x),
        SqlValue::Text(s) => Value::Text(s.clone()),
        SqlValue::Blob(b) => Value::Blob(b.clone()),
    }
}

impl Database for NativeDb {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Rows, StorageError> {
        let err = |e: rusqlite::Error| StorageError::from_text(e.to_string());
        // Cached: seeding and the baselines run the same statements many times.
        let mut stmt = self.conn.prepare_cached(sql).map_err(err)?;
        let columns = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter().map(to_rusqlite)))
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
