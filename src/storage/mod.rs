//! Everything that speaks SQL. The rest of the crate sees typed calls.
//!
//! Storage talks to a [`Database`]: Spin's `sqlite` connection in the component (a local
//! file or a libSQL server, as the runtime config says), rusqlite in native tests and the
//! benchmark. The handler goes through a [`Session`], which owns the request's connection,
//! finds out which backend it reaches, and creates or upgrades the schema when needed.
//!
//! Limits and offsets are written into a statement's text as numbers, never bound as `?`.
//! SQLite lets a bound limit shape the plan, so binding one discards the statement's first
//! compile and compiles it again when it runs; and on Spin every request compiles its
//! statements afresh, on a new connection. The numbers are the component's own integers, never
//! request text; `session::tests::every_statement_a_request_sends_is_compiled_once` holds
//! every statement a request sends to this.

mod counters;
mod error;
mod feed;
mod fold;
pub(crate) mod lifecycle;
mod listing;
mod messages;
mod rejections;
mod schema;
mod search;
mod session;
mod stats;

pub use counters::{read_counters, record};
pub use error::{ErrorKind, StorageError};
pub use feed::{Commit, Consumer, FeedMessage, FeedPage};
#[cfg(all(test, not(target_arch = "wasm32")))]
use fold::statements as statements_of_fold;
pub use fold::{fold, statements as fold_statements, FOLD_EVERY};
pub use lifecycle::{tombstone_key, Erased, Purged, Removal};
pub use listing::{export_page, export_sql, list_messages, MessagePage, EXPORT_PAGE_ROWS};
pub use messages::{get_message, insert_message, Inserted, StoredMessage};
pub use rejections::{LoggedRejection, RejectionPage, TRIM_EVERY as REJECTION_LOG_TRIM_EVERY};
pub use schema::{statements as schema_statements, SCHEMA_VERSION};
pub use search::{index_query, SearchPlan, BACKFILL_ROWS, INDEX_MAX_CANDIDATES};
pub use session::{
    apply_local_settings, prepare, Backend, BusyWaits, Session, Upkeep, SERVER_RETRY_MS,
};
pub use stats::{hourly, stats, Stats};

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

pub type Rows = Vec<Vec<SqlValue>>;

/// One open connection. Like Spin's `execute`, only the first statement of `sql` runs.
pub trait Database {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Rows, StorageError>;
}

/// The stored schema version (`PRAGMA user_version`); [`SCHEMA_VERSION`] when current.
pub fn schema_version(db: &dyn Database) -> Result<i64, StorageError> {
    schema::user_version(db)
}

/// Runs `work` inside `BEGIN IMMEDIATE` ... `COMMIT`: all of it or, on any failure, none of
/// it. Each statement goes on its own (Spin runs only the first statement of a string).
fn in_transaction<T>(
    db: &dyn Database,
    work: impl FnOnce() -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    db.execute("BEGIN IMMEDIATE", &[])?;
    let done = work().and_then(|value| db.execute("COMMIT", &[]).map(|_| value));
    if done.is_err() {
        // Best effort: a dropped connection rolls back anyway.
        let _ = db.execute("ROLLBACK", &[]);
    }
    done
}

/// A scalar from the first column of the first row.
fn first_value(rows: &Rows) -> Option<&SqlValue> {
    rows.first().and_then(|row| row.first())
}

#[cfg(all(not(target_arch = "wasm32"), any(test, feature = "native-sqlite")))]
pub mod native;
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod testing;
