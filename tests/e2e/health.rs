//! Liveness and readiness, and the migration file for `spin up --sqlite @migrations.sql`.

use crate::support::{message, sources_off, App, Backend};
use serde_json::json;

on_each_backend! {
fn live_and_ready(backend: Backend) {
    let app = App::start_on(backend);
    let live = app.get("/health/live");
    assert_eq!((live.status, live.json()), (200, json!({"status": "ok"})));
    let ready = app.get("/health/ready");
    assert_eq!(
        (ready.status, ready.json()),
        (
            200,
            json!({"status": "ready", "read_auth": "open", "metrics_auth": "open",
                   "sources": sources_off()})
        )
    );
}
}

#[test]
fn readiness_reports_a_database_it_cannot_use() {
    // A database path inside a file cannot be opened: ready must say so, live must not care.
    let app = App::start();
    std::fs::remove_file(app.db_path()).ok();
    std::fs::create_dir_all(app.db_path()).unwrap();
    let ready = app.get("/health/ready");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["checks"]["database"], "database unavailable");
    assert_eq!(app.get("/health/live").status, 200);
    let resp = app.deliver(&message("m1"));
    assert_eq!(resp.status, 503, "storage failure is retryable, never 500");
    assert_eq!(resp.header("retry-after"), Some("1"));
    let lines = app.log_lines();
    let last = lines.last().unwrap();
    assert_eq!(
        (last["level"].as_str(), last["result"].as_str()),
        (Some("error"), Some("storage_error"))
    );
    assert!(last["error"].as_str().unwrap().starts_with("storage:"));
    assert_eq!(app.get("/messages").status, 503);
    assert_eq!(app.get("/stats").status, 503);
    assert_eq!(app.get("/metrics").status, 503);
}

on_each_backend! {
fn migrations_sql_prepares_the_database_as_spin_up_sqlite_does(backend: Backend) {
    let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations.sql");
    // The file runs before the component starts, so it holds nothing libSQL refuses.
    let app = App::with_sqlite_on(
        backend,
        &[("webhook_secret", crate::support::SECRET)],
        vec![format!("@{migrations}")],
    );
    assert_eq!(app.get("/health/ready").status, 200);
    assert_eq!(app.deliver(&message("m1")).status, 200);
    assert_eq!(app.get("/stats").json()["total_messages"], 1);
    if backend == Backend::LocalFile {
        // The file cannot carry the journal mode; the component's first write sets it.
        let conn = rusqlite::Connection::open(app.db_path()).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
}
