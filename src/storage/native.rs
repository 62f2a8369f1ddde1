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

impl NativeDb {
    /// Runs `sql` on a statement compiled for this call alone, and tells whether SQLite
    /// had to compile it again to run it (see `testing::CompiledOnce`).
    #[cfg(test)]
    pub fn execute_fresh(
        &self,
        sql: &str,
        params: &[SqlValue],
    ) -> Result<(Rows, bool), StorageError> {
        let mut stmt = self.conn.prepare(sql).map_err(error)?;
        let rows = run(&mut stmt, params)?;
        let recompiled = stmt.get_status(rusqlite::StatementStatus::RePrepare) > 0;
        Ok((rows, recompiled))
    }
}

fn error(e: rusqlite::Error) -> StorageError {
    StorageError::from_text(e.to_string())
}

/// Binds `params`, runs the statement to its end and returns its rows.
fn run(stmt: &mut rusqlite::Statement, params: &[SqlValue]) -> Result<Rows, StorageError> {
    let columns = stmt.column_count();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter().map(to_rusqlite)))
        .map_err(error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(error)? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(match row.get_ref(i).map_err(error)? {
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

impl Database for NativeDb {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Rows, StorageError> {
        // Cached: seeding and the baselines run the same statements many times.
        let mut stmt = self.conn.prepare_cached(sql).map_err(error)?;
        run(&mut stmt, params)
    }
}
