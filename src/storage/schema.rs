//! Creating and upgrading the schema from `migrations.sql`, on first use.
//!
//! Spin's `execute` runs only the first statement of a string, so the file is split into
//! statements here. Many first requests may race (on one machine or, with libSQL, on many):
//! the version is re-checked inside a `BEGIN IMMEDIATE` transaction, so exactly one of them
//! applies the statements (which are idempotent anyway) and the others see the new version.
//! The file holds only statements a libSQL server accepts; the local-file settings live in
//! [`super::session`].

use super::{first_value, in_transaction, Database, StorageError};

/// The schema this build expects; `migrations.sql` ends by setting `user_version` to it.
pub const SCHEMA_VERSION: i64 = 8;

const MIGRATIONS: &str = include_str!("../../migrations.sql");

/// The statements of `migrations.sql`, comments removed, each complete on its own. A
/// statement ends at a `;` that closes a line (the file has no triggers, whose bodies would
/// hold more).
pub fn statements() -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in MIGRATIONS.lines() {
        let code = line.split("--").next().unwrap_or("").trim_end();
        if code.trim().is_empty() {
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(code);
        if code.ends_with(';') {
            out.push(std::mem::take(&mut current));
        }
    }
    debug_assert!(
        current.trim().is_empty(),
        "migrations.sql ends mid-statement"
    );
    out
}

pub fn user_version(db: &dyn Database) -> Result<i64, StorageError> {
    let rows = db.execute("PRAGMA user_version", &[])?;
    Ok(first_value(&rows).and_then(|v| v.as_i64()).unwrap_or(0))
}

/// Applies the schema unless the database already has it (one cheap read when it does).
pub fn ensure(db: &dyn Database) -> Result<(), StorageError> {
    if user_version(db)? >= SCHEMA_VERSION {
        return Ok(());
    }
    let statements = statements();
    in_transaction(db, || {
        if user_version(db)? < SCHEMA_VERSION {
            for statement in &statements {
                db.execute(statement, &[])?;
            }
        }
        Ok(())
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::storage::testing::TestDb;

    #[test]
    fn splits_into_complete_statements() {
        let statements = statements();
        assert!(statements.len() >= 10, "{statements:#?}");
        for s in &statements {
            assert!(s.ends_with(';'), "{s}");
            let c = std::ffi::CString::new(s.as_str()).unwrap();
            // SAFETY: a valid NUL-terminated string; sqlite3_complete only reads it.
            let complete = unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr()) } != 0;
            assert!(complete, "incomplete: {s}");
        }
        assert!(statements.last().unwrap().contains("user_version"));
    }

    /// Every request's new connection parses the whole schema before its first statement,
    /// and a trigger costs more to parse than a table (see storage/fold.rs).
    #[test]
    fn the_schema_has_no_triggers() {
        let db = TestDb::new();
        ensure(&db).unwrap();
        let triggers: i64 = db
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(triggers, 0);
    }

    #[test]
    fn one_statement_at_a_time_builds_the_same_schema_as_the_whole_file() {
        let piecewise = TestDb::new();
        ensure(&piecewise).unwrap();
        let batch = TestDb::new();
        batch.conn().execute_batch(MIGRATIONS).unwrap();
        assert_eq!(piecewise.schema(), batch.schema());
        assert_eq!(user_version(&piecewise).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn is_idempotent_and_respects_a_prepared_database() {
        let db = TestDb::new();
        db.conn().execute_batch(MIGRATIONS).unwrap();
        db.conn().execute_batch(MIGRATIONS).unwrap();
        ensure(&db).unwrap();
        ensure(&db).unwrap();
        assert_eq!(user_version(&db).unwrap(), SCHEMA_VERSION);
    }

    /// The schema version 1 left (`tests/fixtures/schema-v1.sql`), with messages stored
    /// through its trigger.
    fn version_1_database(timestamps: &[&str]) -> TestDb {
        let db = TestDb::new();
        let fixture = include_str!("../../tests/fixtures/schema-v1.sql");
        db.conn()
            .execute_batch(&fixture.replace("\n\n", ";\n"))
            .unwrap();
        for (i, ts) in timestamps.iter().enumerate() {
            let key = crate::timestamp::instant_key(ts).unwrap();
            db.conn()
                .execute(
                    "INSERT INTO messages (message_id, sender, recipient, ts, ts_key) \
                     VALUES (?, '+1', '+2', ?, ?)",
                    rusqlite::params![format!("m{i}"), ts, key],
                )
                .unwrap();
        }
        db
    }

    #[test]
    fn upgrading_a_version_1_database_backfills_the_hour_counts() {
        let db = version_1_database(&[
            "2025-01-15T10:00:00Z",
            "2025-01-15T10:59:00Z",
            "2025-01-15T11:00:00Z",
        ]);
        assert_eq!(user_version(&db).unwrap(), 1);
        ensure(&db).unwrap();
        let hours: Vec<(String, i64)> = db
            .conn()
            .prepare("SELECT key, n FROM tallies WHERE kind = 'hour' ORDER BY key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            hours,
            [
                ("2025-01-15T10".to_owned(), 2),
                ("2025-01-15T11".to_owned(), 1)
            ]
        );
        assert_eq!(user_version(&db).unwrap(), SCHEMA_VERSION);
        // Running the schema again neither doubles the counts nor brings a trigger back.
        db.conn().execute_batch(MIGRATIONS).unwrap();
        let m = crate::sources::webhook::payload::parse(
            br#"{"message_id":"m9","from":"+1","to":"+2","ts":"2025-01-15T11:30:00Z"}"#,
        )
        .unwrap();
        crate::storage::insert_message(&db, &m).unwrap();
        crate::storage::fold(&db).unwrap();
        let eleven: i64 = db
            .conn()
            .query_row(
                "SELECT n FROM tallies WHERE kind = 'hour' AND key = '2025-01-15T11'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(eleven, 2);
        assert_eq!(crate::storage::stats(&db).unwrap().total_messages, 4);
    }

    #[test]
    fn concurrent_first_requests_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("race.db");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || ensure(&TestDb::open(&path)))
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
        assert_eq!(user_version(&TestDb::open(&path)).unwrap(), SCHEMA_VERSION);
    }
}
