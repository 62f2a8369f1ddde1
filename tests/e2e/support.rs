//! Harness: start the component on the test host with its own database (a local SQLite file
//! or a libSQL server), and talk raw HTTP/1.1 to it (raw, so tests control every byte:
//! chunked bodies, odd headers).

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use spin_test_host::sqld::Sqld;
use spin_test_host::{build_component, Host, HostOptions};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const SECRET: &str = "e2e-secret";

fn app_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Hex HMAC-SHA256, computed here independently of the component's own code.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub fn message(id: &str) -> Value {
    json!({"message_id": id, "from": "+919876543210", "to": "+14155550100",
           "ts": "2025-01-15T10:00:00Z", "text": "Hello"})
}

/// Readiness's `sources` while neither native source is configured.
pub fn sources_off() -> Value {
    json!({
        "whatsapp": {"status": "off", "unset": ["whatsapp_app_secret", "whatsapp_verify_token"]},
        "twilio": {"status": "off", "unset": ["twilio_auth_token", "public_base_url"]},
    })
}

/// Where the component's `default` database lives, as the runtime config says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `type = "spin"`: a SQLite file on this machine.
    LocalFile,
    /// `type = "libsql"`: a libSQL server (sqld), the way many instances share one inbox.
    Libsql,
}

/// Runs each test once per backend, as `<test>::local_file` and `<test>::libsql`.
macro_rules! on_each_backend {
    ($($(#[doc = $doc:literal])* fn $name:ident($backend:ident: Backend) $body:block)*) => {$(
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn run($backend: $crate::support::Backend) $body
            #[test]
            fn local_file() {
                run($crate::support::Backend::LocalFile)
            }
            #[test]
            fn libsql() {
                run($crate::support::Backend::Libsql)
            }
        }
    )*};
}

pub struct App {
    host: Option<Host>,
    dir: tempfile::TempDir,
    env: HashMap<String, String>,
    sqlite_statements: Vec<String>,
    backend: Backend,
    /// The libSQL server this app's database lives on; shared by replicas.
    sqld: Option<std::sync::Arc<Sqld>>,
    /// See `HostOptions::hold_responses_until_instance_ends`; on unless a test needs Spin's
    /// own timing.
    hold_responses: bool,
    /// See `HostOptions::record_socket_writes`; off unless a test reads [`App::socket_writes`].
    record_socket_writes: bool,
}

impl App {
    /// The component with `webhook_secret` set and defaults for everything else.
    pub fn start() -> App {
        App::start_on(Backend::LocalFile)
    }

    /// Like [`App::start`], on a fresh database of `backend`.
    pub fn start_on(backend: Backend) -> App {
        App::with_vars_on(backend, &[("webhook_secret", SECRET)])
    }

    /// The component with these application variables (name, value).
    pub fn with_vars(vars: &[(&str, &str)]) -> App {
        App::with_vars_on(Backend::LocalFile, vars)
    }

    pub fn with_vars_on(backend: Backend, vars: &[(&str, &str)]) -> App {
        App::launch(backend, vars, Vec::new())
    }

    /// Like `spin up --sqlite <statements>`.
    pub fn with_sqlite_on(backend: Backend, vars: &[(&str, &str)], statements: Vec<String>) -> App {
        App::launch(backend, vars, statements)
    }

    /// Another host process serving the same database, as a second replica would.
    pub fn replica(&self) -> App {
        App::boot_with(
            self.backend,
            self.sqld.clone(),
            self.env.clone(),
            Vec::new(),
        )
    }

    /// Like [`App::start_on`] with [`Backend::Libsql`], on a sqld started with these server
    /// arguments added, e.g. `["--max-concurrent-requests", "4"]`.
    pub fn start_on_sqld_with_args(sqld_args: &[&str]) -> App {
        let sqld = std::sync::Arc::new(Sqld::start_with_args(sqld_args));
        let env = variables_env(&[("webhook_secret", SECRET)]);
        App::boot_with(Backend::Libsql, Some(sqld), env, Vec::new())
    }

    fn launch(backend: Backend, vars: &[(&str, &str)], sqlite_statements: Vec<String>) -> App {
        let sqld = (backend == Backend::Libsql).then(|| std::sync::Arc::new(Sqld::start()));
        App::boot_with(backend, sqld, variables_env(vars), sqlite_statements)
    }

    fn boot_with(
        backend: Backend,
        sqld: Option<std::sync::Arc<Sqld>>,
        env: HashMap<String, String>,
        sqlite_statements: Vec<String>,
    ) -> App {
        let dir = tempfile::tempdir().unwrap();
        let database = match &sqld {
            None => format!(
                "type = \"spin\"\npath = {:?}\n",
                dir.path().join("inbox.db").display().to_string()
            ),
            Some(sqld) => format!(
                "type = \"libsql\"\nurl = {:?}\ntoken = \"dev\"\n",
                sqld.url()
            ),
        };
        std::fs::write(
            dir.path().join("runtime-config.toml"),
            format!("[sqlite_database.default]\n{database}"),
        )
        .unwrap();
        let mut app = App {
            host: None,
            dir,
            env,
            sqlite_statements,
            backend,
            sqld,
            hold_responses: true,
            record_socket_writes: false,
        };
        app.host = Some(app.boot());
        app
    }

    /// The same app served as Spin serves it: a response ends when the component finishes
    /// its body, not when its instance ends (so its log line may not be written yet).
    pub fn answering_like_spin(mut self) -> App {
        self.hold_responses = false;
        self.restart();
        self
    }

    /// The same app, its host recording each write to a client connection (see
    /// [`App::socket_writes`]).
    pub fn recording_socket_writes(mut self) -> App {
        self.record_socket_writes = true;
        self.restart();
        self
    }

    /// The bytes the host wrote to the connection from `client` (the client's own
    /// `local_addr`), one entry per write, in order; complete once the client has seen the
    /// connection close. Needs [`App::recording_socket_writes`].
    pub fn socket_writes(&self, client: SocketAddr) -> Vec<usize> {
        self.host
            .as_ref()
            .unwrap()
            .socket_writes(client)
            .expect("recording_socket_writes, and a connection from that address")
    }

    /// The first column of the first row of `sql`, read directly from the app's database.
    pub fn query_i64(&self, sql: &str) -> i64 {
        match &self.sqld {
            None => rusqlite::Connection::open(self.db_path())
                .and_then(|conn| conn.query_row(sql, [], |r| r.get(0)))
                .unwrap(),
            Some(sqld) => run_on_libsql(&sqld.url(), |conn| async move {
                let mut rows = conn.query(sql, ()).await?;
                let row = rows.next().await?.expect("a row");
                row.get::<i64>(0)
            }),
        }
    }

    /// The first column of every row of `sql`, as text (the query makes it text, e.g. with
    /// `json_array`), read directly from the app's database.
    pub fn query_texts(&self, sql: &str) -> Vec<String> {
        match &self.sqld {
            None => rusqlite::Connection::open(self.db_path())
                .and_then(|conn| {
                    let mut statement = conn.prepare(sql)?;
                    let rows = statement.query_map([], |r| r.get(0))?;
                    rows.collect()
                })
                .unwrap(),
            Some(sqld) => run_on_libsql(&sqld.url(), |conn| async move {
                let mut rows = conn.query(sql, ()).await?;
                let mut texts = Vec::new();
                while let Some(row) = rows.next().await? {
                    texts.push(row.get::<String>(0)?);
                }
                Ok(texts)
            }),
        }
    }

    /// Runs one statement on the app's database directly (not through the component).
    pub fn execute_sql(&self, sql: &str) {
        match &self.sqld {
            None => {
                rusqlite::Connection::open(self.db_path())
                    .and_then(|conn| conn.execute_batch(sql))
                    .unwrap();
            }
            Some(sqld) => run_on_libsql(&sqld.url(), |conn| async move {
                conn.execute(sql, ()).await.map(drop)
            }),
        }
    }

    /// The libSQL server's own log so far (for [`Backend::Libsql`] apps).
    pub fn sqld_log(&self) -> String {
        self.sqld.as_ref().expect("a libSQL server").log()
    }

    /// Stops the libSQL server under a running app: its database becomes unreachable.
    pub fn stop_database(&mut self) {
        assert_eq!(
            self.backend,
            Backend::Libsql,
            "only a server can be stopped"
        );
        let sqld = self.sqld.take().expect("a server");
        drop(Arc::try_unwrap(sqld).ok().expect("no replica shares it"));
    }

    fn boot(&self) -> Host {
        let wasm: PathBuf = build_component(app_dir()).expect("component builds");
        let mut opts = HostOptions::new(app_dir());
        opts.runtime_config = Some(self.dir.path().join("runtime-config.toml"));
        opts.env = Some(self.env.clone());
        opts.log_files = false;
        // When held: once a response is read, that request's log line and counters are written.
        opts.hold_responses_until_instance_ends = self.hold_responses;
        opts.record_socket_writes = self.record_socket_writes;
        opts.sqlite_statements = self.sqlite_statements.clone();
        opts.component_sources.insert("webhook-inbox".into(), wasm);
        Host::start(opts).expect("host starts")
    }

    /// Stops the host and starts a new one on the same database, with changed variables.
    pub fn restart_with_vars(&mut self, vars: &[(&str, &str)]) {
        for (k, v) in vars {
            self.env
                .insert(format!("SPIN_VARIABLE_{}", k.to_uppercase()), v.to_string());
        }
        self.restart();
    }

    pub fn restart(&mut self) {
        if let Some(host) = self.host.take() {
            host.shutdown();
        }
        self.host = Some(self.boot());
    }

    /// The local database file (for [`Backend::LocalFile`] apps).
    pub fn db_path(&self) -> PathBuf {
        assert_eq!(
            self.backend,
            Backend::LocalFile,
            "a libSQL database has no local path"
        );
        self.dir.path().join("inbox.db")
    }

    pub fn addr(&self) -> SocketAddr {
        self.host.as_ref().unwrap().addr()
    }

    pub fn get(&self, path_and_query: &str) -> Resp {
        self.send(&Req::new("GET", path_and_query))
    }

    /// POSTs `body` to /webhook signed with [`SECRET`].
    pub fn post_signed(&self, body: &[u8]) -> Resp {
        self.send(
            &Req::new("POST", "/webhook")
                .header("X-Signature", &sign(SECRET, body))
                .body(body),
        )
    }

    pub fn deliver(&self, message: &Value) -> Resp {
        self.post_signed(message.to_string().as_bytes())
    }

    pub fn send(&self, req: &Req) -> Resp {
        send(self.addr(), req)
    }

    /// Every log line the component printed so far, parsed (a line that is not JSON fails).
    pub fn log_lines(&self) -> Vec<Value> {
        self.host
            .as_ref()
            .unwrap()
            .stdout()
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// The largest linear memory of any instance since the last [`App::reset_peak_memory`].
    pub fn peak_memory(&self) -> u64 {
        self.host.as_ref().unwrap().peak_instance_memory()
    }

    pub fn reset_peak_memory(&self) {
        self.host.as_ref().unwrap().reset_peak_instance_memory()
    }

    pub fn raw_stdout(&self) -> String {
        self.host.as_ref().unwrap().stdout()
    }

    /// `total` from GET /messages (with an optional query).
    pub fn total(&self, query: &str) -> i64 {
        let resp = self.get(&format!("/messages?{query}"));
        assert_eq!(
            resp.status,
            200,
            "{}\n{}",
            resp.text(),
            self.last_log_lines(3)
        );
        resp.json()["total"].as_i64().unwrap()
    }

    /// The component's last `n` log lines: what a failed assertion on a status shows, since
    /// a 503's body leaves the storage error's text to the log.
    pub fn last_log_lines(&self, n: usize) -> String {
        let stdout = self.raw_stdout();
        let lines: Vec<&str> = stdout.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Application variables (name, value) as the environment `spin up` reads them from.
fn variables_env(vars: &[(&str, &str)]) -> HashMap<String, String> {
    vars.iter()
        .map(|(k, v)| (format!("SPIN_VARIABLE_{}", k.to_uppercase()), v.to_string()))
        .collect()
}

/// Runs `op` with a libSQL client of its own (the same client the host uses).
fn run_on_libsql<T, F>(url: &str, op: impl FnOnce(libsql::Connection) -> F) -> T
where
    F: std::future::Future<Output = libsql::Result<T>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = libsql::Builder::new_remote(url.to_owned(), "dev".to_owned())
            .build()
            .await
            .unwrap();
        op(db.connect().unwrap()).await.unwrap()
    })
}

#[derive(Clone)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Req {
    pub fn new(method: &str, target: &str) -> Req {
        Req {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.as_bytes().to_vec()));
        self
    }

    pub fn raw_header(mut self, name: &str, value: &[u8]) -> Req {
        self.headers.push((name.into(), value.to_vec()));
        self
    }

    pub fn body(mut self, body: &[u8]) -> Req {
        self.body = body.to_vec();
        self
    }

    /// Send the body with `Transfer-Encoding: chunked` (no Content-Length).
    pub fn chunked(mut self) -> Req {
        self.chunked = true;
        self
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n",
            self.method, self.target
        )
        .into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if self.chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for chunk in self.body.chunks(1000) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            let explicit = self
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
            if !explicit && (!self.body.is_empty() || self.method == "POST") {
                out.extend_from_slice(
                    format!("Content-Length: {}\r\n", self.body.len()).as_bytes(),
                );
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One request on a fresh connection. Write errors are ignored (the server may answer and
/// close before a large body is sent); the answer is whatever it said.
pub fn send(addr: SocketAddr, req: &Req) -> Resp {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let bytes = req.to_bytes();
    let _ = stream.write_all(&bytes);
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if raw.is_empty() => panic!("no answer to {} {}: {e}", req.method, req.target),
            Err(_) => break,
        }
    }
    parse_response(&raw)
}

/// A GET whose answer is read as it arrives: the head, then the body as raw bytes (chunk
/// framing included), at the caller's pace.
pub struct Streaming {
    stream: TcpStream,
    pub head: Resp,
    /// Bytes after the head read so far, framing included.
    pub raw: Vec<u8>,
}

impl Streaming {
    pub fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Streaming {
        let mut req = Req::new("GET", target);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        stream.write_all(&req.to_bytes()).unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let n = stream.read(&mut buf).expect("head");
            assert!(n > 0, "closed before the head");
            raw.extend_from_slice(&buf[..n]);
        };
        let rest = raw.split_off(head_end + 4);
        let head = parse_response(&raw);
        Streaming {
            stream,
            head,
            raw: rest,
        }
    }

    /// Reads until at least `n` body bytes (framing included) are in, or the end.
    pub fn read_at_least(&mut self, n: usize) {
        let mut buf = [0u8; 65536];
        while self.raw.len() < n {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(k) => self.raw.extend_from_slice(&buf[..k]),
            }
        }
    }

    /// Reads to the end of the connection; whether it ended in error (reset) rather than
    /// an orderly close.
    pub fn read_to_end(&mut self) -> bool {
        let mut buf = [0u8; 65536];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(k) => self.raw.extend_from_slice(&buf[..k]),
                Err(_) => return true,
            }
        }
    }

    /// The chunked body so far, decoded, and whether its terminating chunk arrived.
    pub fn dechunked(&self) -> (Vec<u8>, bool) {
        let mut data = self.raw.as_slice();
        let mut out = Vec::new();
        while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
            let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                return (out, data[line_end..].starts_with(b"\r\n\r\n"));
            }
            let start = line_end + 2;
            if data.len() < start + size + 2 {
                out.extend_from_slice(&data[start.min(data.len())..]);
                return (out, false);
            }
            out.extend_from_slice(&data[start..start + size]);
            data = &data[start + size + 2..];
        }
        (out, false)
    }
}

fn parse_response(raw: &[u8]) -> Resp {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("incomplete answer: {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..head_end]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let rest = &raw[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}

/// Runs `jobs` closures on `threads` threads; returns their results in job order.
pub fn parallel<T: Send + 'static>(
    threads: usize,
    jobs: Vec<Box<dyn FnOnce() -> T + Send>>,
) -> Vec<T> {
    use std::sync::{Arc, Mutex};
    let count = jobs.len();
    let queue = Arc::new(Mutex::new(jobs.into_iter().enumerate().collect::<Vec<_>>()));
    let results = Arc::new(Mutex::new(
        (0..count).map(|_| None).collect::<Vec<Option<T>>>(),
    ));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let queue = queue.clone();
            let results = results.clone();
            std::thread::spawn(move || loop {
                let job = queue.lock().unwrap().pop();
                let Some((i, job)) = job else { break };
                let value = job();
                results.lock().unwrap()[i] = Some(value);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let results = Arc::try_unwrap(results).ok().unwrap().into_inner().unwrap();
    results.into_iter().map(Option::unwrap).collect()
}

/// A strict parser of Prometheus text format 0.0.4: families must be declared with HELP and
/// TYPE before their samples; returns samples keyed by `name{labels}`.
pub fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut declared: HashMap<String, String> = HashMap::new();
    let mut helped = std::collections::HashSet::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "blank line in exposition");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has text");
            assert!(!help.is_empty());
            assert!(helped.insert(name.to_owned()), "HELP twice for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                declared.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice: {name}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                let inner = labels
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .expect("braces");
                for pair in split_labels(inner) {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert!(
                        v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                        "{line}"
                    );
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| declared.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(declared.contains_key(family), "sample before TYPE: {line}");
        assert!(helped.contains(family), "sample before HELP: {line}");
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "duplicate series {series}"
        );
    }
    samples
}

fn split_labels(inner: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < inner.len() {
        out.push(&inner[start..]);
    }
    out
}
