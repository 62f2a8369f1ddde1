//! Storage failures, sorted once into the kinds the rest of storage acts on.
//!
//! Spin hands every SQLite failure to the guest as `Io(text)`, whether it came from a local
//! file or from a libSQL server, so the kind is read off the text: each adapter calls
//! [`StorageError::from_text`] once, and nothing else looks at the words.

/// What went wrong, as far as storage needs to know to act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A table is not there: a fresh database, or one a newer schema step has not reached.
    MissingSchema,
    /// Another writer held the lock past the busy timeout; or a libSQL server refused the
    /// request for now (too many at once, no connection free within its wait, a
    /// transaction of ours rolled back after holding the write slot too long), or
    /// interrupted the statement. The statement, or the transaction, may run again: every
    /// write on the ingest path is idempotent.
    Busy,
    /// The backend refuses the statement itself. The libSQL client refuses the pragmas that
    /// only mean something for a local file, before anything goes over the network.
    Unsupported,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError {
    pub kind: ErrorKind,
    /// The text SQLite, the libSQL client or the host gave; for the log only.
    pub message: String,
}

impl StorageError {
    /// Classifies a failure by the text SQLite and the libSQL client use for it.
    pub fn from_text(message: impl Into<String>) -> StorageError {
        let message = message.into();
        let lower = message.to_ascii_lowercase();
        // A table or an index a newer schema adds (the statement names it with INDEXED BY).
        let kind = if lower.contains("no such table") || lower.contains("no such index") {
            ErrorKind::MissingSchema
        } else if [
            "database is locked",
            "database is busy",
            "sqlite_interrupt",
            // sqld 0.24.32's own refusals (libsql-server/src/error.rs).
            "too many concurrent requests",
            "timed out while opening database connection",
            "server can't handle additional transactions",
            "transaction timed-out",
        ]
        .iter()
        .any(|transient| lower.contains(transient))
        {
            ErrorKind::Busy
        } else if lower.contains("unsupported statement") {
            ErrorKind::Unsupported
        } else {
            ErrorKind::Other
        };
        StorageError { kind, message }
    }

    /// A failure of our own making, not reported by the database.
    pub fn other(message: impl Into<String>) -> StorageError {
        StorageError {
            kind: ErrorKind::Other,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StorageError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_the_texts_sqlite_and_libsql_give() {
        let kind = |text: &str| StorageError::from_text(text).kind;
        // rusqlite's and Spin's wording of SQLite's messages.
        assert_eq!(kind("no such table: messages"), ErrorKind::MissingSchema);
        assert_eq!(
            kind("no such index: messages_by_sender_with_recipient"),
            ErrorKind::MissingSchema
        );
        assert_eq!(kind("database is locked"), ErrorKind::Busy);
        // libsql 0.5's client, for a pragma it will not send to the server.
        assert_eq!(kind("unsupported statement"), ErrorKind::Unsupported);
        // sqld's own wording, through the client.
        assert_eq!(
            kind("Hrana: `api error: `status=400 Bad Request, body={\"message\":\"SQLite error: no such table: messages\"}``"),
            ErrorKind::MissingSchema
        );
        // sqld interrupting a statement under write contention (seen with 60 deliveries
        // through two replicas): retried like a busy lock, not lost.
        assert_eq!(
            kind("Hrana: `cursor error: `error at step 0: (error code: SQLITE_INTERRUPT) `SQLite error: interrupted```"),
            ErrorKind::Busy
        );
        // sqld refusing more work for now: its cap on concurrent requests (128 unless
        // `--max-concurrent-requests` says otherwise), no connection within its wait, and a
        // transaction rolled back after holding the write slot past 5 s.
        for refusal in [
            "Hrana: `api error: `status=429 Too Many Requests, body={\"error\":\"Too many concurrent requests\"}``",
            "Hrana: `api error: `status=500 Internal Server Error, body={\"error\":\"Timed out while opening database connection\"}``",
            "Hrana: `stream error: `Transaction timed-out``",
        ] {
            assert_eq!(kind(refusal), ErrorKind::Busy, "{refusal}");
        }
        assert_eq!(kind("disk I/O error"), ErrorKind::Other);
    }
}
