//! A rusqlite-backed `webhook_inbox::storage::Database`, so seeding and query plans run the
//! component's own storage code natively (the crate's own test double is test-only).

use std::cell::{Cell, RefCell};
use std::path::Path;

use rusqlite::types::{Value, ValueRef};
use webhook_inbox::storage::{Database, Rows, SqlValue, StorageError};

pub struct NativeDb {
    conn: rusqlite::Connection,
    /// While set, every statement is prefixed with `EXPLAIN QUERY PLAN` and its plan kept.
    pub explain: Cell<bool>,
    pub plans: RefCell<Vec<(String, Vec<String>)>>,
}

impl NativeDb {
    /// A new connection, with no pragmas of its own (like Spin's).
    pub fn open(path: &Path) -> rusqlite::Result<NativeDb> {
        Ok(NativeDb {
            conn: rusqlite::Connection::open(path)?,
            explain: Cell::new(false),
            plans: RefCell::new(Vec::new()),
        })
    }

    pub fn conn(&self) -> &rusqlite::Connection {
        &self.conn
    }

    fn explain_rows(&self, sql: &str, params: &[SqlValue]) -> rusqlite::Result<Rows> {
        let mut stmt = self.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        let plan = stmt
            .query_map(rusqlite::params_from_iter(params.iter().map(value)), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        // Indent children under their parents, like the sqlite3 shell.
        let mut depth: Vec<(i64, usize)> = Vec::new();
        let lines = plan
            .into_iter()
            .map(|(id, parent, detail)| {
                let level = depth
                    .iter()
                    .find(|(pid, _)| *pid == parent)
                    .map_or(0, |(_, l)| l + 1);
                depth.push((id, level));
                format!("{}{detail}", "  ".repeat(level))
            })
            .collect();
        self.plans.borrow_mut().push((sql.to_owned(), lines));
        Ok(Vec::new())
    }
}

fn value(p: &SqlValue) -> Value {
    match p {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(n) => Value::Integer(*n),
        SqlValue::Real(x) => Value::Real(*x),
        SqlValue::Text(s) => Value::Text(s.clone()),
        SqlValue::Blob(b) => Value::Blob(b.clone()),
    }
}

impl Database for NativeDb {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Rows, StorageError> {
        let err = |e: rusqlite::Error| StorageError(e.to_string());
        if self.explain.get() {
            return self.explain_rows(sql, params).map_err(err);
        }
        // Cached: seeding runs the same INSERT a million times.
        let mut stmt = self.conn.prepare_cached(sql).map_err(err)?;
        let columns = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter().map(value)))
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
