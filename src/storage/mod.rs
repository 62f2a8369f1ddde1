//! Everything that speaks SQL. The rest of the crate sees typed calls.
//!
//! Storage talks to a [`Database`]: Spin's `sqlite` connection in the component, rusqlite in
//! native tests. Each request opens its own connection (Spin gives no other choice), so
//! [`prepare`] sets the per-connection pragmas and makes sure the schema exists, cheaply.

mod counters;
mod messages;
mod schema;

pub use counters::{read_counters, record};
pub use messages::{
    insert_message, list_messages, stats, Inserted, MessagePage, Stats, StoredMessage,
};
pub use schema::{statements as schema_statements, SCHEMA_VERSION};

/// A SQLite value, as both Spin and rusqlite represent them.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl SqlValue {
    fn text(value: impl Into<String>) -> SqlValue {
        SqlValue::Text(value.into())
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            SqlValue::Text(s) => Some(s),
            _ => None,
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match self {
            SqlValue::Integer(n) => Some(*n),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            SqlValue::Integer(n) => Some(*n as f64),
            SqlValue::Real(x) => Some(*x),
            _ => None,
        }
    }
}

/// The error text SQLite (or the host) gave. Spin reports every SQLite failure this way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError(pub String);

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StorageError {}

pub type Rows = Vec<Vec<SqlValue>>;

/// One open connection. Like Spin's `execute`, only the first statement of `sql` runs.
pub trait Database {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Rows, StorageError>;
}

/// How long a connection waits for the write lock before failing with "database is locked"
/// (then the sender gets a 503 and retries). A write holds the lock for well under a
/// millisecond, but SQLite's waiters poll with sleeps of up to 100 ms rather than queue, so
/// under hundreds of concurrent senders an unlucky one can wait seconds: at 256 concurrent
/// senders on 2 cores the longest wait measured 5.2 s, past Spin's default of 5 s. Ten
/// seconds keeps the answer inside common sender timeouts (10-30 s).
pub const BUSY_TIMEOUT_MS: u32 = 10_000;

/// Sets the per-connection pragmas a write needs. Spin gives every request a new connection
/// and sets none itself beyond a 5 s busy timeout.
pub fn configure(db: &dyn Database) -> Result<(), StorageError> {
    db.execute(&format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"), &[])?;
    // WAL + NORMAL: a commit survives a crash of the process; only power loss can take the
    // last few commits (FULL would fsync every commit, at a large cost). See README.
    db.execute("PRAGMA synchronous = NORMAL", &[])?;
    Ok(())
}

/// Readies a fresh connection for writing: [`configure`], then [`ensure_schema`]. Costs
/// three small statements when the schema is current.
pub fn prepare(db: &dyn Database) -> Result<(), StorageError> {
    configure(db)?;
    ensure_schema(db)
}

/// Creates or upgrades the schema unless it is current (one cheap read when it is).
pub fn ensure_schema(db: &dyn Database) -> Result<(), StorageError> {
    schema::ensure(db)
}

/// Whether `err` says the schema (or part of it) is not there yet: a fresh database.
pub fn schema_missing(err: &StorageError) -> bool {
    err.0.contains("no such table")
}

/// Whether the schema is in place (for readiness): the stored version is ours or newer.
pub fn schema_version(db: &dyn Database) -> Result<i64, StorageError> {
    schema::user_version(db)
}

/// A scalar from the first column of the first row.
fn first_value(rows: &Rows) -> Option<&SqlValue> {
    rows.first().and_then(|row| row.first())
}

#[cfg(all(not(target_arch = "wasm32"), any(test, feature = "native-sqlite")))]
pub mod native;
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod testing;
