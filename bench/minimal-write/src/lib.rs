//! The benchmark's minimal-write baseline: the least a Spin component can do to store a
//! webhook durably, so webhook-inbox's ingest can be priced as a share of it.
//!
//! Any request: open `default`, `PRAGMA synchronous = NORMAL` (what webhook-inbox's WAL
//! setting also uses), one `INSERT` of the raw body into a one-table database the benchmark
//! created in WAL mode, then 200 `{"status":"ok"}` once committed. No signature, no parsing,
//! no indexes, no counters, no log line.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::sqlite::{Connection, Value};

// The benchmark creates the database before serving (`bench/src/fixture.rs`):
// `PRAGMA journal_mode = WAL; CREATE TABLE bodies (body BLOB NOT NULL)`.

#[http_component]
fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let stored = Connection::open_default().and_then(|db| {
        db.execute("PRAGMA synchronous = NORMAL", &[])?;
        db.execute(
            "INSERT INTO bodies (body) VALUES (?)",
            &[Value::Blob(req.into_body())],
        )
    });
    let (status, body) = match stored {
        Ok(_) => (200, r#"{"status":"ok"}"#.to_owned()),
        Err(err) => (
            503,
            format!(r#"{{"detail":"{}"}}"#, json_escape(&err.to_string())),
        ),
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body)
        .build())
}

/// `text` as the inside of a JSON string (SQLite's messages may hold quotes or backslashes).
fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}
