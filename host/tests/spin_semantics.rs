//! Proves the host's Spin semantics against the fixture component in `tests/fixture`
//! (built to wasm32-wasip1 on first use through `build_component`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde_json::Value;
use spin_test_host::{build_component, Host, HostOptions};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixture")
}

fn fixture_built() {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_component(&fixture_dir()).expect("fixture builds"));
}

/// A fresh scratch directory under the system temp dir.
fn scratch() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "spin-test-host-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn base_env() -> HashMap<String, String> {
    HashMap::from([("SPIN_VARIABLE_SECRET".to_string(), "s3".to_string())])
}

/// Options with the required secret set and `default` in a private scratch database.
fn options() -> HostOptions {
    let dir = scratch();
    let rc = dir.join("runtime-config.toml");
    std::fs::write(
        &rc,
        "[sqlite_database.default]\ntype = \"spin\"\npath = \"db/app.db\"\n",
    )
    .unwrap();
    let mut o = HostOptions::new(fixture_dir());
    o.env = Some(base_env());
    o.runtime_config = Some(rc);
    o.base_dir = Some(dir);
    // These tests read a request's output right after its response.
    o.hold_responses_until_instance_ends = true;
    o
}

fn start(opts: HostOptions) -> Host {
    fixture_built();
    Host::start(opts).expect("host starts")
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Minimal HTTP/1.1 client: one request per connection, raw control over the body framing.
fn send(addr: SocketAddr, head: &str, body_parts: &[&[u8]], chunked: bool) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked\r\n".to_string()
    } else {
        format!(
            "Content-Length: {}\r\n",
            body_parts.iter().map(|p| p.len()).sum::<usize>()
        )
    };
    write!(
        s,
        "{head}\r\nHost: {addr}\r\nConnection: close\r\n{framing}\r\n"
    )
    .unwrap();
    for part in body_parts {
        if chunked {
            write!(s, "{:x}\r\n", part.len()).unwrap();
            s.write_all(part).unwrap();
            s.write_all(b"\r\n").unwrap();
            s.flush().unwrap();
        } else {
            s.write_all(part).unwrap();
        }
    }
    if chunked {
        s.write_all(b"0\r\n\r\n").unwrap();
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let is_chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if is_chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            rest = &rest[nl + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn get(host: &Host, path: &str) -> Resp {
    send(host.addr(), &format!("GET {path} HTTP/1.1"), &[], false)
}

fn post(host: &Host, path: &str, body: &str) -> Resp {
    send(
        host.addr(),
        &format!("POST {path} HTTP/1.1"),
        &[body.as_bytes()],
        false,
    )
}

#[test]
fn routes_and_spin_headers_match_spin() {
    let host = start(options());
    let port = host.addr().port();

    let r = get(&host, "/exact");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    let h = &j["headers"];
    assert_eq!(h["spin-matched-route"], "/exact");
    assert_eq!(h["spin-raw-component-route"], "/exact");
    assert_eq!(h["spin-component-route"], "/exact");
    assert_eq!(h["spin-path-info"], "");
    assert_eq!(h["spin-base-path"], "/");
    assert_eq!(h["spin-full-url"], format!("http://127.0.0.1:{port}/exact"));
    assert!(h["spin-client-addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(j["path"], "/exact");

    let j = get(&host, "/wild/a/b?x=1&y=2").json();
    assert_eq!(j["headers"]["spin-matched-route"], "/wild/...");
    assert_eq!(j["headers"]["spin-raw-component-route"], "/wild/...");
    assert_eq!(j["headers"]["spin-component-route"], "/wild");
    assert_eq!(j["headers"]["spin-path-info"], "/a/b");
    assert_eq!(
        j["headers"]["spin-full-url"],
        format!("http://127.0.0.1:{port}/wild/a/b?x=1&y=2")
    );
    assert_eq!(j["query"], "x=1&y=2");

    // Longest prefix wins; exact beats wildcard; a bare prefix matches its wildcard.
    let j = get(&host, "/wild/deeper/z/").json();
    assert_eq!(j["headers"]["spin-matched-route"], "/wild/deeper/...");
    assert_eq!(j["headers"]["spin-path-info"], "/z/");
    assert_eq!(
        get(&host, "/wild/exact").json()["headers"]["spin-matched-route"],
        "/wild/exact"
    );
    assert_eq!(
        get(&host, "/wild").json()["headers"]["spin-matched-route"],
        "/wild/..."
    );
    let j = get(&host, "/users/42/edit").json();
    assert_eq!(j["headers"]["spin-path-match-id"], "42");
    assert_eq!(j["headers"]["spin-path-info"], "/edit");

    // No route: Spin's empty 404. Spin's own well-known paths never reach the component.
    let r = get(&host, "/nope");
    assert_eq!((r.status, r.body.len()), (404, 0));
    assert_eq!(get(&host, "/exact/more").status, 404);
    let r = get(&host, "/.well-known/spin/health");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"OK"[..]));
    assert_eq!(
        get(&host, "/.well-known/spin/info").json()["name"],
        "fixture"
    );
    assert_eq!(get(&host, "/.well-known/spin/nope").status, 404);

    // The manifest's `environment` reaches the component; the Host header is stripped as by
    // wasmtime-wasi-http.
    let j = get(&host, "/exact").json();
    assert_eq!(j["env"], "from-manifest");
    assert_eq!(j["host_header"], Value::Null);
    host.shutdown();
}

#[test]
fn non_utf8_header_values_are_refused_like_spin() {
    let host = start(options());
    let mut s = TcpStream::connect(host.addr()).unwrap();
    s.write_all(b"GET /exact HTTP/1.1\r\nHost: x\r\nX-Odd: \xff\xfe\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let r = parse_response(&raw);
    assert_eq!((r.status, r.body.len()), (500, 0));
    // Valid UTF-8 beyond ASCII is fine.
    let r = send(
        host.addr(),
        "GET /exact HTTP/1.1\r\nX-Name: tëxt",
        &[],
        false,
    );
    assert_eq!(r.status, 200);
}

#[test]
fn every_request_gets_a_fresh_instance() {
    let host = start(options());
    for _ in 0..5 {
        assert_eq!(get(&host, "/exact").json()["counter"], 1);
    }
}

#[test]
fn sqlite_access_denied_before_no_such_database() {
    let host = start(options());
    assert_eq!(
        get(&host, "/exact?op=open&label=default").json()["ok"],
        true
    );
    // Not granted: AccessDenied whether or not it exists.
    assert_eq!(
        get(&host, "/exact?op=open&label=other").json()["error"],
        "access-denied"
    );
    // Granted but not configured.
    assert_eq!(
        get(&host, "/exact?op=open&label=extra").json()["error"],
        "no-such-database"
    );
    host.shutdown();

    // Configured in the runtime config (in-memory, since it has no path).
    let mut opts = options();
    let rc = opts.runtime_config.clone().unwrap();
    let mut text = std::fs::read_to_string(&rc).unwrap();
    text.push_str("[sqlite_database.extra]\ntype = \"spin\"\n");
    std::fs::write(&rc, text).unwrap();
    opts.runtime_config = Some(rc);
    let host = start(opts);
    assert_eq!(get(&host, "/exact?op=open&label=extra").json()["ok"], true);
    let j = post(&host, "/exact?op=sql&label=extra", "SELECT 41 + 1 AS n").json();
    assert_eq!(j["columns"][0], "n");
    assert_eq!(j["rows"][0][0], 42);
}

#[test]
fn sqlite_runs_only_the_first_statement_and_reports_io_text() {
    let opts = options();
    let db = opts.base_dir.clone().unwrap().join("db/app.db");
    let host = start(opts);
    let r = post(
        &host,
        "/exact?op=sql",
        "CREATE TABLE t(x UNIQUE); CREATE TABLE u(y)",
    )
    .json();
    assert!(r.get("error").is_none(), "{r}");
    let j = post(
        &host,
        "/exact?op=sql",
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
    )
    .json();
    assert_eq!(j["rows"], serde_json::json!([["t"]]));
    assert!(
        db.exists(),
        "relative runtime-config path resolves against base_dir"
    );

    post(&host, "/exact?op=sql", "INSERT INTO t VALUES (1)");
    let j = post(&host, "/exact?op=sql", "INSERT INTO t VALUES (1)").json();
    assert_eq!(j["error"], "io:UNIQUE constraint failed: t.x");
    let j = post(&host, "/exact?op=sql", "SELEC 1").json();
    let e = j["error"].as_str().unwrap();
    assert!(e.starts_with("io:") && e.contains("syntax error"), "{e}");

    let j = get(&host, "/exact?op=params").json();
    assert_eq!(
        j["row"],
        serde_json::json!([-7, 2.5, "tëxt", {"blob": [0, 255]}, null])
    );
}

#[test]
fn sqlite_v3_interface_counts_rows() {
    let host = start(options());
    let j = get(&host, "/exact?op=v3").json();
    assert_eq!(j["before"], serde_json::json!([0, 0]), "{j}");
    assert_eq!(j["after_insert"], serde_json::json!([3, 3]), "{j}");
    assert_eq!(j["delete_ok"], true);
    assert_eq!(j["after_delete_changes"], 2);
    let j = get(&host, "/exact?op=v3&label=other").json();
    assert_eq!(j["error"], "Error::AccessDenied");
}

#[test]
fn default_database_lives_in_app_state_dir_without_runtime_config() {
    let mut opts = options();
    opts.runtime_config = None;
    let host = start(opts);
    let j = post(&host, "/exact?op=sql", "SELECT 1").json();
    assert_eq!(j["rows"][0][0], 1);
    assert!(fixture_dir().join(".spin/sqlite_db.db").exists());
}

#[test]
fn startup_sqlite_statements_run_before_serving() {
    let mut opts = options();
    let dir = opts.base_dir.clone().unwrap();
    std::fs::write(
        dir.join("seed.sql"),
        "CREATE TABLE IF NOT EXISTS seeded(x); INSERT INTO seeded VALUES (2);",
    )
    .unwrap();
    opts.sqlite_statements = vec![
        "CREATE TABLE IF NOT EXISTS seeded(x); INSERT INTO seeded VALUES (1)".into(),
        "@seed.sql".into(),
    ];
    let host = start(opts);
    let j = post(&host, "/exact?op=sql", "SELECT x FROM seeded ORDER BY x").json();
    assert_eq!(j["rows"], serde_json::json!([[1], [2]]));
}

#[test]
fn variables_follow_spin_rules() {
    let host = start(options());
    let var = |name: &str| get(&host, &format!("/exact?op=var&name={name}")).json();
    assert_eq!(var("greeting")["value"], "hello"); // default
    assert_eq!(var("secret")["value"], "s3"); // env
    assert_eq!(var("mixed")["value"], "<hello|s3>"); // template
    assert_eq!(var("literal")["value"], "plain");
    for bad in ["Bad", "a__b", "1a", "a_", "_a", "a-b", ""] {
        assert_eq!(var(bad)["error"], "invalid-name", "{bad:?}");
    }
    // Not a component variable (even though `unused` is an application variable).
    assert_eq!(var("unused")["error"], "undefined");
    assert_eq!(var("nope")["error"], "undefined");
    host.shutdown();

    let mut opts = options();
    opts.env
        .as_mut()
        .unwrap()
        .insert("SPIN_VARIABLE_GREETING".into(), "hi".into());
    let host = start(opts);
    assert_eq!(
        get(&host, "/exact?op=var&name=mixed").json()["value"],
        "<hi|s3>"
    );
}

#[test]
fn missing_required_variable_stops_start() {
    fixture_built();
    let mut opts = options();
    opts.env = Some(HashMap::new());
    let err = Host::start(opts).err().expect("start fails").to_string();
    assert!(err.contains("secret"), "{err}");
}

#[test]
fn chunked_and_large_bodies_arrive_whole() {
    let host = start(options());
    let parts: Vec<Vec<u8>> = vec![vec![b'a'; 10], vec![b'b'; 70_000], vec![b'c'; 3]];
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    let r = send(host.addr(), "POST /exact HTTP/1.1", &refs, true);
    assert_eq!(r.json()["body_len"], 70_013);

    // No body-size limit of the host's own.
    let big = vec![b'z'; 8 << 20];
    let r = send(host.addr(), "POST /exact HTTP/1.1", &[&big], false);
    assert_eq!(r.json()["body_len"], 8 << 20);
}

#[test]
fn component_output_is_captured_whole_lines() {
    let host = start(options());
    let r = get(&host, "/exact?op=print&n=3&tag=first");
    assert_eq!(r.json()["printed"], 3);
    // Captured by the time the response is complete.
    let out = host.stdout();
    assert_eq!(out.matches("\"tag\":\"first\"").count(), 3, "{out}");
    assert!(host.stderr().contains("stderr line from first"));

    // Many instances printing at once never interleave within a line.
    let addr = host.addr();
    std::thread::scope(|s| {
        for t in 0..16 {
            s.spawn(move || {
                let r = send(
                    addr,
                    &format!("GET /exact?op=print&n=25&tag=c{t} HTTP/1.1"),
                    &[],
                    false,
                );
                assert_eq!(r.status, 200);
            });
        }
    });
    let out = host.stdout();
    let mut lines = 0;
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["tag"].as_str().unwrap().starts_with('c') {
            lines += 1;
        }
    }
    assert_eq!(lines, 16 * 25);
    let log = std::fs::read_to_string(fixture_dir().join(".spin/logs/fixture_stdout.txt")).unwrap();
    assert!(log.contains("\"tag\":\"first\""));
}

#[test]
fn a_trapping_instance_gets_500_and_the_host_keeps_serving() {
    let host = start(options());
    let r = get(&host, "/exact?op=trap");
    assert_eq!((r.status, r.body.len()), (500, 0));
    assert_eq!(get(&host, "/exact").status, 200);
}

#[test]
fn many_concurrent_keep_alive_clients() {
    let host = start(options());
    let addr = host.addr();
    std::thread::scope(|s| {
        for _ in 0..128 {
            s.spawn(move || {
                // Several requests on one keep-alive connection.
                let mut conn = TcpStream::connect(addr).unwrap();
                for i in 0..5 {
                    let close = if i == 4 { "Connection: close\r\n" } else { "" };
                    write!(
                        conn,
                        "GET /exact HTTP/1.1\r\nHost: {addr}\r\n{close}Content-Length: 0\r\n\r\n"
                    )
                    .unwrap();
                    let status = read_one_response(&mut conn);
                    assert_eq!(status, 200);
                }
            });
        }
    });
}

/// Reads one response (content-length or chunked) from a keep-alive connection.
fn read_one_response(conn: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).unwrap();
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let lower = head.to_ascii_lowercase();
    if let Some(len) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
    {
        let mut body = vec![0u8; len.trim().parse().unwrap()];
        conn.read_exact(&mut body).unwrap();
    } else {
        // Chunked: read chunks until the zero-size one.
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                conn.read_exact(&mut byte).unwrap();
                line.push(byte[0]);
            }
            let size =
                usize::from_str_radix(std::str::from_utf8(&line).unwrap().trim(), 16).unwrap();
            let mut chunk = vec![0u8; size + 2];
            conn.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
        }
    }
    status
}

#[test]
fn shutdown_lets_in_flight_requests_finish() {
    let host = start(options());
    let addr = host.addr();
    let slow = std::thread::spawn(move || get_addr(addr, "/exact?op=sleep&ms=700"));
    std::thread::sleep(std::time::Duration::from_millis(250));
    host.shutdown();
    let r = slow.join().unwrap();
    assert_eq!((r.status, r.json()["slept"].as_u64()), (200, Some(700)));
}

fn get_addr(addr: SocketAddr, path: &str) -> Resp {
    send(addr, &format!("GET {path} HTTP/1.1"), &[], false)
}

#[test]
fn shutdown_stops_accepting() {
    let host = start(options());
    let addr = host.addr();
    assert_eq!(get(&host, "/exact").status, 200);
    host.shutdown();
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn binary_serves_like_spin_up_and_stops_on_ctrl_c() {
    use std::io::BufRead;
    fixture_built();
    let opts = options();
    let dir = opts.base_dir.unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_spin-test-host"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--quiet",
            "--variable",
            "secret=cli",
        ])
        .args(["--runtime-config-file", "runtime-config.toml"])
        .args(["--sqlite", "CREATE TABLE cli(x)"])
        .arg("--app-dir")
        .arg(fixture_dir())
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find_map(|l| l.strip_prefix("Serving http://").map(str::to_string))
        .expect("banner");
    let addr: SocketAddr = url.parse().unwrap();
    assert_eq!(
        get_addr(addr, "/exact?op=var&name=secret").json()["value"],
        "cli"
    );
    // Runtime config and --sqlite resolve against the working directory, like `spin up`.
    let j = send(
        addr,
        "POST /exact?op=sql HTTP/1.1",
        &[b"SELECT count(*) FROM cli"],
        false,
    )
    .json();
    assert_eq!(j["rows"][0][0], 0);
    assert!(dir.join("db/app.db").exists());

    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}

#[test]
fn host_counts_guest_calls_per_request() {
    use spin_test_host::CallCounts;
    let host = start(options());
    assert_eq!(host.calls(), CallCounts::default());
    // Answered by the host alone: no instance, no calls.
    assert_eq!(get(&host, "/.well-known/spin/health").status, 200);
    assert_eq!(host.calls(), CallCounts::default());

    // One open, one execute, one close (the connection dropped at the end of the request).
    let before = host.calls();
    let j = post(&host, "/exact?op=sql", "SELECT 1").json();
    assert_eq!(j["rows"][0][0], 1, "{j}");
    assert_eq!(
        host.calls().since(&before),
        CallCounts {
            instances: 1,
            sqlite_open: 1,
            sqlite_execute: 1,
            sqlite_close: 1,
            ..CallCounts::default()
        }
    );

    // A refused open is still a call; there is no connection to close.
    let before = host.calls();
    get(&host, "/exact?op=open&label=other");
    get(&host, "/exact?op=var&name=secret");
    get(&host, "/exact?op=var&name=Bad");
    assert_eq!(
        host.calls().since(&before),
        CallCounts {
            instances: 3,
            sqlite_open: 1,
            variables_get: 2,
            ..CallCounts::default()
        }
    );

    // v3: three executes, and rowid/changes read five times.
    let before = host.calls();
    assert_eq!(get(&host, "/exact?op=v3").json()["delete_ok"], true);
    assert_eq!(
        host.calls().since(&before),
        CallCounts {
            instances: 1,
            sqlite_open: 1,
            sqlite_execute: 3,
            sqlite_counters: 5,
            sqlite_close: 1,
            variables_get: 0,
        }
    );
    // Another host has its own tally.
    let other = start(options());
    assert_eq!(other.calls(), CallCounts::default());
}

/// One response with a `Content-Length`, read whole from a keep-alive connection: its bytes.
fn read_sized_response(conn: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).unwrap();
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw.clone()).unwrap().to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .expect("a content-length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).unwrap();
    raw.extend(body);
    raw
}

#[test]
fn host_records_each_write_to_a_connection_when_asked() {
    let mut opts = options();
    // Answers end with the component's body, as in Spin, so they keep their length.
    opts.hold_responses_until_instance_ends = false;
    opts.record_socket_writes = true;
    let host = start(opts);
    let addr = host.addr();
    let mut conn = TcpStream::connect(addr).unwrap();
    let client = conn.local_addr().unwrap();
    // The host's own answers have their whole body when their head is written: one write
    // each, of the whole answer.
    write!(
        conn,
        "GET /.well-known/spin/health HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    let health = read_sized_response(&mut conn);
    write!(
        conn,
        "GET /.well-known/spin/info HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    let info = read_sized_response(&mut conn);
    // A component's: the fixture answers through spin-sdk, which sets the head before it
    // writes the body (chunked, without a length), so how many writes it takes varies; every
    // byte is in the record either way.
    write!(
        conn,
        "GET /exact HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut echo = Vec::new();
    conn.read_to_end(&mut echo).unwrap();
    assert_eq!(parse_response(&echo).status, 200);

    let writes = host
        .socket_writes(client)
        .expect("a record of the connection");
    assert_eq!(writes[..2], [health.len(), info.len()], "{writes:?}");
    assert!(writes.len() > 2, "{writes:?}");
    assert_eq!(writes[2..].iter().sum::<usize>(), echo.len(), "{writes:?}");
    // A connection the host never accepted has no record.
    assert_eq!(
        host.socket_writes(SocketAddr::from(([127, 0, 0, 1], 1))),
        None
    );

    // Off by default.
    let host = start(options());
    let mut conn = TcpStream::connect(host.addr()).unwrap();
    let client = conn.local_addr().unwrap();
    write!(
        conn,
        "GET /.well-known/spin/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    conn.read_to_end(&mut Vec::new()).unwrap();
    assert_eq!(host.socket_writes(client), None);
}
