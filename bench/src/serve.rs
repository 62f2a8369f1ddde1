//! Serving an app on the project's host, in this process or in a child process of this
//! binary (`--serve-child <spec>`), from one [`ServeSpec`], so both run the same options.
//! A child's peak RSS (`VmHWM`) is the serving process's alone: no load generator, no
//! other host, no seeding, no earlier phase.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use spin_test_host::{Host, HostOptions};

/// One app to serve: a single component with `default` configured by a runtime-config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServeSpec {
    /// Directory with the app's `spin.toml`.
    pub app_dir: PathBuf,
    /// `[sqlite_database.default]` and nothing else.
    pub runtime_config: PathBuf,
    /// Base for relative paths in the runtime config.
    pub base_dir: PathBuf,
    /// Stands in for the process environment (`SPIN_VARIABLE_*`).
    pub env: HashMap<String, String>,
    /// Component id and the `.wasm` that runs for it.
    pub component: (String, PathBuf),
    /// Keep component output in memory (`Host::stdout`, scanned for "database is locked").
    /// Off for memory figures: a long run's log lines would count as the component's.
    pub capture_logs: bool,
}

/// Where the served `default` database lives.
pub enum Db<'a> {
    LocalFile(&'a Path),
    Libsql(&'a str),
}

impl ServeSpec {
    /// Writes `<dir>/<config_name>` pointing `default` at `db`, and the spec that uses it.
    pub fn new(
        app_dir: &Path,
        dir: &Path,
        config_name: &str,
        db: Db,
        component: (&str, &Path),
        env: HashMap<String, String>,
    ) -> Result<ServeSpec> {
        let database = match db {
            Db::LocalFile(path) => {
                format!("type = \"spin\"\npath = {:?}\n", path.display().to_string())
            }
            Db::Libsql(url) => format!("type = \"libsql\"\nurl = {url:?}\ntoken = \"bench\"\n"),
        };
        let config = dir.join(config_name);
        std::fs::write(&config, format!("[sqlite_database.default]\n{database}"))?;
        Ok(ServeSpec {
            app_dir: app_dir.to_path_buf(),
            runtime_config: config,
            base_dir: dir.to_path_buf(),
            env,
            component: (component.0.to_owned(), component.1.to_path_buf()),
            capture_logs: true,
        })
    }

    fn options(&self) -> HostOptions {
        let mut opts = HostOptions::new(&self.app_dir);
        opts.runtime_config = Some(self.runtime_config.clone());
        opts.base_dir = Some(self.base_dir.clone());
        opts.env = Some(self.env.clone());
        opts.log_files = false;
        opts.echo_logs = false;
        opts.capture_logs = self.capture_logs;
        opts.component_sources
            .insert(self.component.0.clone(), self.component.1.clone());
        opts
    }

    /// Serves in this process.
    pub fn start(&self) -> Result<Host> {
        Host::start(self.options())
    }

    /// Serves in a child process of this binary.
    pub fn spawn(&self) -> Result<ServingChild> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--serve-child")
            .arg(serde_json::to_string(self)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a serving child")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut line)?;
        let addr = match line.trim().parse() {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait()?;
                bail!("serving child printed {line:?} instead of its address ({status})");
            }
        };
        Ok(ServingChild { child, addr })
    }
}

/// A host in a child process; stops when its stdin closes (or it is dropped).
pub struct ServingChild {
    child: Child,
    addr: SocketAddr,
}

impl ServingChild {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Peak RSS of the child so far, KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        crate::report::pid_status_kib(self.child.id(), "VmHWM")
    }

    /// Closes its stdin (a graceful shutdown) and waits for it.
    pub fn stop(mut self) -> Result<()> {
        drop(self.child.stdin.take());
        let status = self.child.wait()?;
        if !status.success() {
            bail!("serving child ended with {status}");
        }
        Ok(())
    }
}

impl Drop for ServingChild {
    fn drop(&mut self) {
        // Only when `stop` was not reached (an error on the way): never leave it running.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `--serve-child <spec>`: serves the spec, prints the address on stdout, and serves until
/// stdin closes.
pub fn child_main(spec: &str) -> Result<()> {
    let spec: ServeSpec = serde_json::from_str(spec).context("--serve-child spec")?;
    let host = spec.start()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", host.addr())?;
    out.flush()?;
    drop(out);
    let mut rest = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut rest);
    host.shutdown();
    Ok(())
}
