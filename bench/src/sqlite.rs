//! Query plans of the component's own SQL: a `Database` that answers every statement with
//! nothing and keeps its `EXPLAIN QUERY PLAN` instead. Running the storage code through it
//! shows the plans of the exact statements the component sends.

use std::cell::RefCell;

use webhook_inbox::storage::native::to_rusqlite;
use webhook_inbox::storage::{Database, Rows, SqlValue, StorageError};

pub struct PlanRecorder<'a> {
    conn: &'a rusqlite::Connection,
    /// One entry per statement: (SQL, plan lines indented like the sqlite3 shell's).
    pub plans: RefCell<Vec<(String, Vec<String>)>>,
}

impl<'a> PlanRecorder<'a> {
    pub fn new(conn: &'a rusqlite::Connection) -> Self {
        PlanRecorder {
            conn,
            plans: RefCell::new(Vec::new()),
        }
    }

    fn explain(&self, sql: &str, params: &[SqlValue]) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        let plan = stmt
            .query_map(
                rusqlite::params_from_iter(params.iter().map(to_rusqlite)),
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
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
        Ok(())
    }
}

impl Database for PlanRecorder<'_> {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Rows, StorageError> {
        self.explain(sql, params)
            .map_err(|e| StorageError::from_text(e.to_string()))?;
        Ok(Vec::new())
    }
}
