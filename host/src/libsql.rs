//! `type = "libsql"` databases, served as Spin 4.0.2 serves them (`crates/sqlite-libsql`).
//!
//! The `libsql` 0.5 client with its `remote` feature, one client per `open`, created on the
//! first query; a client that cannot be created is `invalid-connection`, and every other
//! failure is `io(<the client's text>)`. The client parses each statement before sending it
//! and refuses some (local-file pragmas among them) as "unsupported statement", without a
//! round trip.

use tokio::sync::OnceCell;

use crate::bindings::spin::sqlite::sqlite as v3;
use crate::sqlite::{value_size, MAX_RESULT_BYTES};

/// A libSQL connection that creates its client on first use.
pub struct LazyLibsql {
    url: String,
    token: String,
    client: OnceCell<libsql::Connection>,
}

impl LazyLibsql {
    pub fn new(url: String, token: String) -> LazyLibsql {
        LazyLibsql {
            url,
            token,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<&libsql::Connection, v3::Error> {
        self.client
            .get_or_try_init(|| async {
                let db = libsql::Builder::new_remote(self.url.clone(), self.token.clone())
                    .build()
                    .await?;
                db.connect()
            })
            .await
            .map_err(|_| v3::Error::InvalidConnection)
    }

    /// Runs the first statement of `sql` and collects its rows.
    pub async fn query(
        &self,
        sql: &str,
        params: Vec<v3::Value>,
    ) -> Result<v3::QueryResult, v3::Error> {
        let client = self.client().await?;
        let params: Vec<libsql::Value> = params.into_iter().map(to_libsql).collect();
        let mut rows = client.query(sql, params).await.map_err(io)?;
        let count = rows.column_count();
        let columns = (0..count)
            .map(|i| rows.column_name(i).unwrap_or("").to_owned())
            .collect();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(row) = rows.next().await.map_err(io)? {
            let values: Vec<v3::Value> = (0..count)
                .map(|i| row.get_value(i).map(from_libsql).map_err(io))
                .collect::<Result<_, _>>()?;
            bytes += values.iter().map(value_size).sum::<usize>();
            if bytes > MAX_RESULT_BYTES {
                return Err(v3::Error::Io(format!(
                    "query result exceeds limit of {MAX_RESULT_BYTES} bytes"
                )));
            }
            out.push(v3::RowResult { values });
        }
        Ok(v3::QueryResult { columns, rows: out })
    }

    /// Runs every statement of `sql` (`spin up --sqlite`).
    pub async fn execute_batch(&self, sql: &str) -> anyhow::Result<()> {
        let client = self
            .client()
            .await
            .map_err(|_| anyhow::anyhow!("cannot create a libSQL client for {}", self.url))?;
        client.execute_batch(sql).await?;
        Ok(())
    }

    /// Rows changed by the last statement, or 0 before the first.
    pub fn changes(&self) -> u64 {
        self.client.get().map_or(0, libsql::Connection::changes)
    }

    pub fn last_insert_rowid(&self) -> i64 {
        self.client
            .get()
            .map_or(0, libsql::Connection::last_insert_rowid)
    }
}

fn io(err: libsql::Error) -> v3::Error {
    v3::Error::Io(err.to_string())
}

fn to_libsql(value: v3::Value) -> libsql::Value {
    match value {
        v3::Value::Integer(n) => libsql::Value::Integer(n),
        v3::Value::Real(x) => libsql::Value::Real(x),
        v3::Value::Text(s) => libsql::Value::Text(s),
        v3::Value::Blob(b) => libsql::Value::Blob(b),
        v3::Value::Null => libsql::Value::Null,
    }
}

fn from_libsql(value: libsql::Value) -> v3::Value {
    match value {
        libsql::Value::Integer(n) => v3::Value::Integer(n),
        libsql::Value::Real(x) => v3::Value::Real(x),
        libsql::Value::Text(s) => v3::Value::Text(s),
        libsql::Value::Blob(b) => v3::Value::Blob(b),
        libsql::Value::Null => v3::Value::Null,
    }
}
