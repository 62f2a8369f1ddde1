//! The benchmark's minimal-write baseline: the least a Spin component can do to store a
//! webhook durably, so webhook-inbox's ingest can be priced as a share of it.
//!
//! Any request but `GET /read`: open `default`, `PRAGMA synchronous = NORMAL` (what
//! webhook-inbox's WAL setting also uses), one `INSERT` of the raw body into a one-table
//! database the benchmark created, then 200 `{"status":"ok"}` once committed. No signature,
//! no parsing, no indexes, no counters, no log line.
//!
//! On a libSQL server (`type = "libsql"`) the client refuses the pragma itself, without a
//! round trip; as webhook-inbox does, that refusal is taken to mean "a server", and there an
//! INSERT the server refuses as busy ("database is locked") is retried with the same backoff
//! as webhook-inbox's (2 ms doubling to 64 ms, for up to 10 s), since a server answers busy
//! at once where a local file waits itself (Spin's busy timeout). On a local file nothing of
//! that runs.
//!
//! `GET /read?id=N`: the minimal read, one `SELECT` of one row by its key (the rowid), 200
//! with the stored body, 404 when there is no such row.

use std::time::{Duration, Instant, SystemTime};

use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::sqlite::{Connection, Error, Value};

// The benchmark creates the database before serving (`bench/src/fixture.rs` for a local file,
// `bench/src/libsql.rs` for a server): `CREATE TABLE bodies (body BLOB NOT NULL)`, in WAL
// mode on a local file.

/// How long a busy INSERT on a server is retried (webhook-inbox's `SERVER_RETRY_MS`).
const RETRY_FOR: Duration = Duration::from_secs(10);

#[http_component]
fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    if *req.method() == Method::Get && req.path() == "/read" {
        return Ok(read(req.query()));
    }
    let (status, body) = match store(req.into_body()) {
        Ok(()) => (200, r#"{"status":"ok"}"#.to_owned()),
        Err(err) => (503, detail(&err.to_string())),
    };
    Ok(json(status, body))
}

/// One INSERT of `body`; on a server, retried while it is refused as busy.
fn store(body: Vec<u8>) -> Result<(), Error> {
    let db = Connection::open_default()?;
    // A local file takes it; a libSQL client refuses it locally (no round trip).
    let server = db.execute("PRAGMA synchronous = NORMAL", &[]).is_err();
    let started = Instant::now();
    let mut step = Duration::from_millis(2);
    let params = [Value::Blob(body)];
    loop {
        match db.execute("INSERT INTO bodies (body) VALUES (?)", &params) {
            Err(err) if server && busy(&err) && started.elapsed() < RETRY_FOR => {
                // A wait drawn from the step's upper half, so that writers refused together
                // do not retry together.
                let nanos = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let fraction = f64::from(nanos % 1024) / 1024.0;
                std::thread::sleep(step.mul_f64(0.5 + fraction / 2.0));
                step = (step * 2).min(Duration::from_millis(64));
            }
            result => return result.map(|_| ()),
        }
    }
}

/// "database is locked" / "database is busy", as webhook-inbox classifies it.
fn busy(err: &Error) -> bool {
    let text = err.to_string().to_ascii_lowercase();
    text.contains("database is locked") || text.contains("database is busy")
}

/// `GET /read?id=N`: one row by its key.
fn read(query: &str) -> Response {
    let id = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("id="))
        .and_then(|id| id.parse::<i64>().ok());
    let Some(id) = id else {
        return json(400, detail("need ?id=<rowid>"));
    };
    let row = Connection::open_default().and_then(|db| {
        db.execute(
            "SELECT body FROM bodies WHERE rowid = ?",
            &[Value::Integer(id)],
        )
    });
    match row {
        Ok(result) => match result.rows.into_iter().next() {
            Some(row) => match row.values.into_iter().next() {
                Some(Value::Blob(body)) => Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(body)
                    .build(),
                _ => json(500, detail("the row holds no blob")),
            },
            None => json(404, detail(&format!("no row {id}"))),
        },
        Err(err) => json(503, detail(&err.to_string())),
    }
}

fn json(status: u16, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body)
        .build()
}

fn detail(text: &str) -> String {
    format!(r#"{{"detail":"{}"}}"#, json_escape(text))
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
