//! The Spin edge: the only code that touches `spin_sdk`. It turns Spin's request, variables
//! and SQLite into the [`handler`] traits and the handler's answer into Spin's response.

use crate::handler::{self, AfterResponse, BodyError, Chunk, Request, RequestBody, Runtime};
use crate::storage::{Database, Rows, SqlValue, StorageError};
use spin_sdk::http::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};
use spin_sdk::http_component;
use spin_sdk::sqlite::{self, Connection, Value};
use spin_sdk::variables;
use std::io::Write;
use wasi::io::streams::{OutputStream, StreamError};

#[http_component]
fn handle_request(request: IncomingRequest, response_out: ResponseOutparam) {
    let path_with_query = request.path_with_query().unwrap_or_else(|| "/".to_owned());
    let (path, query) = match path_with_query.split_once('?') {
        Some((path, query)) => (path.to_owned(), query.to_owned()),
        None => (path_with_query, String::new()),
    };
    let headers = request
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    let request = Request {
        method: method(&request),
        path,
        query,
        headers,
        body: Box::new(SpinBody(request)),
    };
    let handler::Handled {
        response,
        mut after,
    } = handler::handle(&SpinRuntime, request);
    send(response_out, response, &mut after);
    // The client has its whole answer; metrics, the log line and closing the connection
    // happen while it moves on.
    after.complete();
}

/// The request's method as `http` spells it. The host parsed the request line, so it is a
/// token; should one still not convert, it routes as an unknown method (a 405 or 404).
fn method(request: &IncomingRequest) -> http::Method {
    let name = request.method().to_string();
    http::Method::from_bytes(name.as_bytes())
        .unwrap_or_else(|_| http::Method::from_bytes(b"UNKNOWN").expect("a valid token"))
}

/// Sends the status, headers and whole body, and finishes the body so the client's
/// response is complete now, not when this instance ends. A streamed body
/// ([`handler::Response::streamed`]) goes on with each chunk `after` hands out, written as
/// it comes, so the instance never holds more than one; if one cannot be produced, the body
/// is dropped unfinished, which makes the host abort the response (no terminating chunk),
/// so the client can tell a broken answer from a complete one.
///
/// The body is queued before the head is released, so the host writes head and body to the
/// socket together. Spin does not set `TCP_NODELAY`: a head sent on its own and the body
/// after it (or a body in several flushed pieces) holds the later segment until the client's
/// delayed ACK, 40 ms on Linux.
fn send(out: ResponseOutparam, answer: handler::Response, after: &mut AfterResponse) {
    let fields: Vec<(String, Vec<u8>)> = answer
        .headers
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.into_bytes()))
        .collect();
    // Our header names and values are fixed or validated ASCII; should the host still refuse
    // them, an empty header set beats no answer.
    let headers = Fields::from_list(&fields).unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(answer.status.as_u16());
    let Ok(body) = response.body() else {
        return;
    };
    let stream = body.write().ok();
    // Spin takes one write of up to 1 MiB before anyone reads it: all of a usual answer.
    let queued = stream
        .as_ref()
        .map_or(0, |stream| write_now(stream, &answer.body).unwrap_or(0));
    out.set(response);
    let Some(stream) = stream else {
        let _ = OutgoingBody::finish(body, None);
        return;
    };
    // Client gone on error; nothing more to do for it.
    let mut sent = write_all(&stream, &answer.body[queued..]).is_ok();
    if answer.streamed {
        loop {
            match after.next_chunk() {
                Chunk::Data(bytes) => {
                    // A client that went away stops the export: no more pages are read.
                    sent = sent && write_all(&stream, &bytes).is_ok();
                    if !sent {
                        break;
                    }
                }
                Chunk::End => break,
                Chunk::Failed => {
                    // Unfinished: the stream and the body are dropped without `finish`.
                    return;
                }
            }
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

/// Writes as much of `bytes` as the stream takes without waiting; how much that was.
fn write_now(stream: &OutputStream, bytes: &[u8]) -> Result<usize, StreamError> {
    let allowed = usize::try_from(stream.check_write()?).unwrap_or(usize::MAX);
    let len = bytes.len().min(allowed);
    if len > 0 {
        stream.write(&bytes[..len])?;
    }
    Ok(len)
}

/// Writes `bytes` in as few writes as the host allows, waiting for room, then flushes once.
fn write_all(stream: &OutputStream, mut bytes: &[u8]) -> Result<(), StreamError> {
    while !bytes.is_empty() {
        let written = write_now(stream, bytes)?;
        if written == 0 {
            stream.subscribe().block();
        }
        bytes = &bytes[written..];
    }
    stream.blocking_flush()
}

struct SpinRuntime;

impl Runtime for SpinRuntime {
    fn variable(&self, name: &str) -> Result<Option<String>, String> {
        match variables::get(name) {
            Ok(value) => Ok(Some(value)),
            Err(variables::Error::Undefined(_)) => Ok(None),
            Err(err) => Err(err.to_string()),
        }
    }

    fn open_database(&self) -> Result<Box<dyn Database>, StorageError> {
        Connection::open_default()
            .map(|conn| Box::new(SpinDb(conn)) as Box<dyn Database>)
            .map_err(storage_error)
    }

    fn log(&self, line: &str) {
        // One write per line, so concurrent instances never interleave within a line.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

struct SpinDb(Connection);

impl Database for SpinDb {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Rows, StorageError> {
        let params: Vec<Value> = params.iter().map(to_spin).collect();
        let result = self.0.execute(sql, &params).map_err(storage_error)?;
        Ok(result
            .rows
            .into_iter()
            .map(|row| row.values.into_iter().map(from_spin).collect())
            .collect())
    }
}

fn storage_error(err: sqlite::Error) -> StorageError {
    match err {
        sqlite::Error::Io(text) => StorageError::from_text(text),
        other => StorageError::from_text(format!("{other:?}")),
    }
}

fn to_spin(value: &SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(n) => Value::Integer(*n),
        SqlValue::Real(x) => Value::Real(*x),
        SqlValue::Text(s) => Value::Text(s.clone()),
        SqlValue::Blob(b) => Value::Blob(b.clone()),
    }
}

fn from_spin(value: Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Integer(n) => SqlValue::Integer(n),
        Value::Real(x) => SqlValue::Real(x),
        Value::Text(s) => SqlValue::Text(s),
        Value::Blob(b) => SqlValue::Blob(b),
    }
}

/// The request body, read with a hard limit: reading stops one byte past it, so a huge
/// (or endless chunked) body costs at most `limit + 1` bytes of memory.
struct SpinBody(IncomingRequest);

const READ_CHUNK: u64 = 16 * 1024;

impl RequestBody for SpinBody {
    fn read_to_limit(self: Box<Self>, limit: usize) -> Result<Vec<u8>, BodyError> {
        let body = self
            .0
            .consume()
            .map_err(|()| BodyError::Io("body already taken".into()))?;
        let stream = body
            .stream()
            .map_err(|()| BodyError::Io("body stream unavailable".into()))?;
        let mut out = Vec::new();
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => {
                    out.extend_from_slice(&chunk);
                    if out.len() > limit {
                        return Err(BodyError::TooLarge);
                    }
                }
                Err(StreamError::Closed) => break,
                Err(err) => return Err(BodyError::Io(format!("{err:?}"))),
            }
        }
        // The stream is a child of the body: drop it first.
        drop(stream);
        drop(body);
        Ok(out)
    }
}
