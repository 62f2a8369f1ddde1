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
    /// Another writer held the lock past the busy timeout, or (libSQL) the server
    /// interrupted the statement to hand its write lock to another connection. Either way
    /// the statement changed nothing and may run again.
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
        let kind = if lower.contains("no such table") {
            ErrorKind::MissingSchema
        } else if lower.contains("database is locked")
            || lower.contains("database is busy")
            || lower.contains("sqlite_interrupt")
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
        assert_eq!(kind("disk I/O error"), ErrorKind::Other);
    }
}
