//! Spin's SQLite interfaces (`fermyon:spin/sqlite@2.0.0`, `spin:sqlite/sqlite@3.0.0`).
//!
//! With Spin's rules: the grant check comes before the existence check, every `open` is a new
//! connection opened lazily on first use with no pragmas of its own, only the first statement
//! of a query runs, results over 128 MiB are refused, and every SQLite error becomes
//! `io(<message>)`. Local files run on rusqlite (as Spin's `crates/sqlite-inproc`);
//! `type = "libsql"` databases on the libSQL client ([`crate::libsql`]).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rusqlite::types::{Value as SqlValue, ValueRef};
use wasmtime::component::{HasData, Resource, ResourceTable};

use crate::bindings::fermyon::spin::sqlite as v2;
use crate::bindings::spin::sqlite::sqlite as v3;
use crate::calls::{Call, Calls};
use crate::libsql::LazyLibsql;
use crate::runtime_config::{DbLocation, SqliteDatabases};

/// Spin refuses query results above this many bytes.
pub const MAX_RESULT_BYTES: usize = 128 * 1024 * 1024;
/// Spin's per-instance limit on simultaneously open connections.
const MAX_CONNECTIONS: usize = 256;

/// Creates the parent directories of every file database, as Spin does at start.
pub fn prepare_locations(dbs: &SqliteDatabases) -> anyhow::Result<()> {
    for location in dbs.values() {
        if let DbLocation::Path(p) = location {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).with_context(|| {
                    format!("cannot create database directory {}", parent.display())
                })?;
            }
        }
    }
    Ok(())
}

/// Runs `--sqlite` statements (`@file` or SQL text) against a database before serving.
pub fn run_startup_statements(
    location: &DbLocation,
    statements: &[String],
    base_dir: &Path,
) -> anyhow::Result<()> {
    if statements.is_empty() {
        return Ok(());
    }
    let batches = statements
        .iter()
        .map(|stmt| match stmt.strip_prefix('@') {
            Some(file) => {
                let path = base_dir.join(file);
                std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read --sqlite file {}", path.display()))
            }
            None => Ok(stmt.clone()),
        })
        .collect::<anyhow::Result<Vec<String>>>()?;
    if let DbLocation::Libsql { url, token } = location {
        let client = LazyLibsql::new(url.clone(), token.clone());
        // A runtime of its own, on a thread of its own: the caller may be inside one.
        return std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async {
                        for (stmt, sql) in statements.iter().zip(&batches) {
                            client
                                .execute_batch(sql)
                                .await
                                .with_context(|| format!("--sqlite statement failed: {stmt}"))?;
                        }
                        Ok(())
                    })
                })
                .join()
                .map_err(|_| anyhow::anyhow!("--sqlite runner panicked"))?
        });
    }
    let conn = open(location).map_err(|e| anyhow::anyhow!("{e}"))?;
    for (stmt, sql) in statements.iter().zip(&batches) {
        conn.execute_batch(sql)
            .with_context(|| format!("--sqlite statement failed: {stmt}"))?;
    }
    Ok(())
}

fn open(location: &DbLocation) -> rusqlite::Result<rusqlite::Connection> {
    let conn = match location {
        DbLocation::InMemory => rusqlite::Connection::open_in_memory(),
        DbLocation::Path(p) => rusqlite::Connection::open(p),
        DbLocation::Libsql { .. } => unreachable!("libSQL databases are not opened by rusqlite"),
    }?;
    deny_attaching_files(&conn);
    Ok(conn)
}

/// Spin 4.0.2 (`crates/sqlite-inproc`) gives every local connection an authorizer that
/// refuses `ATTACH` of a file ("not authorized"); a temporary or `:memory:` database may
/// still be attached. Its `allow_attach_file` runtime-config switch defaults to off, and
/// the default database never has it. The authorizer also runs, as on Spin, for every
/// table and column a statement touches while it is compiled.
fn deny_attaching_files(conn: &rusqlite::Connection) {
    use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
    conn.authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
        AuthAction::Attach { filename } if !matches!(filename, "" | ":memory:") => {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }));
}

/// The host side of a `connection` resource. Dropping it closes the connection.
pub enum Connection {
    /// A local file (or in-memory database) and, after the first query, its connection.
    Local {
        location: DbLocation,
        conn: LazyConnection,
    },
    Libsql(Arc<LazyLibsql>),
}

/// Opened on first query; shared with the blocking task that runs the query.
type LazyConnection = Arc<Mutex<Option<rusqlite::Connection>>>;

/// Per-instance SQLite state: which labels the component may open and what exists.
pub struct SqliteState {
    allowed: Arc<HashSet<String>>,
    databases: Arc<SqliteDatabases>,
    open_connections: usize,
    calls: Arc<Calls>,
}

impl SqliteState {
    pub fn new(
        allowed: Arc<HashSet<String>>,
        databases: Arc<SqliteDatabases>,
        calls: Arc<Calls>,
    ) -> Self {
        Self {
            allowed,
            databases,
            open_connections: 0,
            calls,
        }
    }
}

/// What the generated host traits are implemented on: the state plus the store's table.
pub struct SqliteView<'a> {
    pub state: &'a mut SqliteState,
    pub table: &'a mut ResourceTable,
}

/// Marker that tells `add_to_linker` which view type to hand out.
pub struct SqliteData;

impl HasData for SqliteData {
    type Data<'a> = SqliteView<'a>;
}

impl SqliteView<'_> {
    fn open_impl(&mut self, label: &str) -> Result<Resource<Connection>, v3::Error> {
        self.state.calls.count(Call::SqliteOpen);
        if !self.state.allowed.contains(label) {
            return Err(v3::Error::AccessDenied);
        }
        let location = self
            .state
            .databases
            .get(label)
            .ok_or(v3::Error::NoSuchDatabase)?
            .clone();
        if self.state.open_connections >= MAX_CONNECTIONS {
            return Err(v3::Error::Io("too many connections opened".into()));
        }
        let connection = match location {
            DbLocation::Libsql { url, token } => {
                Connection::Libsql(Arc::new(LazyLibsql::new(url, token)))
            }
            location => Connection::Local {
                location,
                conn: Arc::new(Mutex::new(None)),
            },
        };
        let res = self
            .table
            .push(connection)
            .map_err(|e| v3::Error::Io(e.to_string()))?;
        self.state.open_connections += 1;
        Ok(res)
    }

    fn connection(&self, res: &Resource<Connection>) -> Result<&Connection, v3::Error> {
        self.table
            .get(res)
            .map_err(|_| v3::Error::InvalidConnection)
    }

    async fn execute_impl(
        &mut self,
        res: &Resource<Connection>,
        sql: String,
        params: Vec<v3::Value>,
    ) -> Result<v3::QueryResult, v3::Error> {
        self.state.calls.count(Call::SqliteExecute);
        let (location, conn) = match self.connection(res)? {
            Connection::Libsql(client) => {
                let client = client.clone();
                return client.query(&sql, params).await;
            }
            Connection::Local { location, conn } => (location.clone(), conn.clone()),
        };
        // SQLite blocks (busy timeout up to 5 s): keep it off the async worker threads.
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                *guard = Some(open(&location).map_err(io)?);
            }
            query(guard.as_ref().unwrap(), &sql, params)
        })
        .await
        .map_err(|e| v3::Error::Io(e.to_string()))?
    }

    /// `changes` or `last-insert-rowid`, from whichever client the connection has.
    fn counter<T: Default>(
        &self,
        res: &Resource<Connection>,
        local: impl FnOnce(&rusqlite::Connection) -> T,
        remote: impl FnOnce(&LazyLibsql) -> T,
    ) -> T {
        self.state.calls.count(Call::SqliteCounters);
        match self.connection(res) {
            Ok(Connection::Local { conn, .. }) => {
                let guard = conn.lock().unwrap_or_else(|p| p.into_inner());
                guard.as_ref().map(local).unwrap_or_default()
            }
            Ok(Connection::Libsql(client)) => remote(client),
            Err(_) => T::default(),
        }
    }

    fn drop_impl(&mut self, res: Resource<Connection>) -> wasmtime::Result<()> {
        self.state.calls.count(Call::SqliteClose);
        self.table.delete(res)?;
        self.state.open_connections = self.state.open_connections.saturating_sub(1);
        Ok(())
    }
}

fn io(e: rusqlite::Error) -> v3::Error {
    v3::Error::Io(e.to_string())
}

/// Runs the first statement of `sql` and collects its rows.
fn query(
    conn: &rusqlite::Connection,
    sql: &str,
    params: Vec<v3::Value>,
) -> Result<v3::QueryResult, v3::Error> {
    let mut stmt = conn.prepare_cached(sql).map_err(io)?;
    let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
    let ncols = columns.len();
    let params = params.into_iter().map(|p| match p {
        v3::Value::Integer(i) => SqlValue::Integer(i),
        v3::Value::Real(r) => SqlValue::Real(r),
        v3::Value::Text(t) => SqlValue::Text(t),
        v3::Value::Blob(b) => SqlValue::Blob(b),
        v3::Value::Null => SqlValue::Null,
    });
    let mut rows = stmt.query(rusqlite::params_from_iter(params)).map_err(io)?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next().map_err(io)? {
        let mut values = Vec::with_capacity(ncols);
        for i in 0..ncols {
            let v = match row.get_ref(i).map_err(io)? {
                ValueRef::Null => v3::Value::Null,
                ValueRef::Integer(i) => v3::Value::Integer(i),
                ValueRef::Real(r) => v3::Value::Real(r),
                ValueRef::Text(t) => v3::Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => v3::Value::Blob(b.to_vec()),
            };
            bytes += value_size(&v);
            values.push(v);
        }
        if bytes > MAX_RESULT_BYTES {
            return Err(v3::Error::Io(format!(
                "query result exceeds limit of {MAX_RESULT_BYTES} bytes"
            )));
        }
        out.push(v3::RowResult { values });
    }
    Ok(v3::QueryResult { columns, rows: out })
}

/// What a value counts toward the result-size limit, as Spin counts it.
pub(crate) fn value_size(v: &v3::Value) -> usize {
    std::mem::size_of::<v3::Value>()
        + match v {
            v3::Value::Text(t) => t.len(),
            v3::Value::Blob(b) => b.len(),
            _ => 0,
        }
}

// ---- spin:sqlite/sqlite@3.0.0 ----

impl v3::Host for SqliteView<'_> {}

impl v3::HostConnection for SqliteView<'_> {
    async fn open(&mut self, database: String) -> Result<Resource<v3::Connection>, v3::Error> {
        self.open_impl(&database)
    }

    async fn execute(
        &mut self,
        this: Resource<v3::Connection>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> Result<v3::QueryResult, v3::Error> {
        self.execute_impl(&this, statement, parameters).await
    }

    async fn last_insert_rowid(&mut self, this: Resource<v3::Connection>) -> i64 {
        self.counter(
            &this,
            rusqlite::Connection::last_insert_rowid,
            LazyLibsql::last_insert_rowid,
        )
    }

    async fn changes(&mut self, this: Resource<v3::Connection>) -> u64 {
        self.counter(&this, rusqlite::Connection::changes, LazyLibsql::changes)
    }

    async fn drop(&mut self, rep: Resource<v3::Connection>) -> wasmtime::Result<()> {
        self.drop_impl(rep)
    }
}

// ---- fermyon:spin/sqlite@2.0.0: same behaviour, older types ----

impl v2::Host for SqliteView<'_> {}

impl v2::HostConnection for SqliteView<'_> {
    async fn open(&mut self, database: String) -> Result<Resource<v2::Connection>, v2::Error> {
        self.open_impl(&database).map_err(to_v2_error)
    }

    async fn execute(
        &mut self,
        this: Resource<v2::Connection>,
        statement: String,
        parameters: Vec<v2::Value>,
    ) -> Result<v2::QueryResult, v2::Error> {
        let params = parameters.into_iter().map(from_v2_value).collect();
        let result = self
            .execute_impl(&this, statement, params)
            .await
            .map_err(to_v2_error)?;
        Ok(v2::QueryResult {
            columns: result.columns,
            rows: result
                .rows
                .into_iter()
                .map(|r| v2::RowResult {
                    values: r.values.into_iter().map(to_v2_value).collect(),
                })
                .collect(),
        })
    }

    async fn drop(&mut self, rep: Resource<v2::Connection>) -> wasmtime::Result<()> {
        self.drop_impl(rep)
    }
}

fn to_v2_error(e: v3::Error) -> v2::Error {
    match e {
        v3::Error::NoSuchDatabase => v2::Error::NoSuchDatabase,
        v3::Error::AccessDenied => v2::Error::AccessDenied,
        v3::Error::InvalidConnection => v2::Error::InvalidConnection,
        v3::Error::DatabaseFull => v2::Error::DatabaseFull,
        v3::Error::Io(s) => v2::Error::Io(s),
    }
}

fn from_v2_value(v: v2::Value) -> v3::Value {
    match v {
        v2::Value::Integer(i) => v3::Value::Integer(i),
        v2::Value::Real(r) => v3::Value::Real(r),
        v2::Value::Text(t) => v3::Value::Text(t),
        v2::Value::Blob(b) => v3::Value::Blob(b),
        v2::Value::Null => v3::Value::Null,
    }
}

fn to_v2_value(v: v3::Value) -> v2::Value {
    match v {
        v3::Value::Integer(i) => v2::Value::Integer(i),
        v3::Value::Real(r) => v2::Value::Real(r),
        v3::Value::Text(t) => v2::Value::Text(t),
        v3::Value::Blob(b) => v2::Value::Blob(b),
        v3::Value::Null => v2::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> rusqlite::Connection {
        rusqlite::Connection::open_in_memory().unwrap()
    }

    #[test]
    fn only_first_statement_runs() {
        let c = mem();
        c.execute_batch("CREATE TABLE t(x)").unwrap();
        query(
            &c,
            "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)",
            vec![],
        )
        .unwrap();
        let r = query(&c, "SELECT count(*) AS n FROM t", vec![]).unwrap();
        assert_eq!(r.columns, ["n"]);
        assert!(matches!(r.rows[0].values[0], v3::Value::Integer(1)));
    }

    #[test]
    fn attaching_a_file_is_refused_as_on_spin() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(&DbLocation::Path(dir.path().join("main.db"))).unwrap();
        let other = dir.path().join("other.db");
        let attach = format!("ATTACH DATABASE '{}' AS other", other.display());
        match query(&c, &attach, vec![]) {
            Err(v3::Error::Io(msg)) => assert!(msg.contains("not authorized"), "{msg}"),
            other => panic!("attached a file: {other:?}"),
        }
        assert!(!other.exists());
        // Memory and temporary databases stay allowed.
        query(&c, "ATTACH DATABASE ':memory:' AS scratch", vec![]).unwrap();
        query(&c, "ATTACH DATABASE '' AS temp2", vec![]).unwrap();
    }

    #[test]
    fn errors_are_io_with_sqlite_text() {
        let c = mem();
        match query(&c, "SELEC 1", vec![]) {
            Err(v3::Error::Io(msg)) => assert!(msg.contains("syntax error"), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn values_round_trip_with_positional_params() {
        let c = mem();
        let r = query(
            &c,
            "SELECT ?, ?, ?, ?, ?",
            vec![
                v3::Value::Integer(7),
                v3::Value::Real(1.5),
                v3::Value::Text("t".into()),
                v3::Value::Blob(vec![1, 2]),
                v3::Value::Null,
            ],
        )
        .unwrap();
        let v = &r.rows[0].values;
        assert!(matches!(v[0], v3::Value::Integer(7)));
        assert!(matches!(v[1], v3::Value::Real(x) if x == 1.5));
        assert!(matches!(&v[2], v3::Value::Text(t) if t == "t"));
        assert!(matches!(&v[3], v3::Value::Blob(b) if b == &[1, 2]));
        assert!(matches!(v[4], v3::Value::Null));
    }
}
