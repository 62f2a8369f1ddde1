//! The steps of [`Host::start`](crate::Host::start), in the order it runs them.
//!
//! Each step fails the start the way `spin up` fails: before anything listens.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use tokio::sync::watch;

use crate::calls::Calls;
use crate::instance::ComponentConfig;
use crate::logs::{Captured, Sink, Stream};
use crate::manifest::Manifest;
use crate::runtime_config::SqliteDatabases;
use crate::server::{self, ComponentRuntime};
use crate::variables::ComponentVariables;
use crate::{runtime_config, sqlite, HostOptions};

/// The two directories paths are resolved against.
pub struct Dirs {
    /// Where `spin.toml` is; `.spin/` (default database, log files) goes here.
    pub app: PathBuf,
    /// Base for relative runtime-config paths and `--sqlite @file`.
    pub base: PathBuf,
}

impl Dirs {
    pub fn resolve(opts: &HostOptions) -> Result<Dirs> {
        let app = std::path::absolute(&opts.app_dir)
            .with_context(|| format!("bad app dir {}", opts.app_dir.display()))?;
        let base = match &opts.base_dir {
            Some(b) => std::path::absolute(b)?,
            None => std::env::current_dir()?,
        };
        Ok(Dirs { app, base })
    }
}

/// Where each database label lives (runtime config over the defaults), with file databases'
/// directories created and `--sqlite` statements run against `default`.
pub fn databases(opts: &HostOptions, dirs: &Dirs) -> Result<SqliteDatabases> {
    let configured = match &opts.runtime_config {
        Some(p) => runtime_config::load(&dirs.base.join(p), &dirs.base)?,
        None => Default::default(),
    };
    let databases = runtime_config::sqlite_databases(&dirs.app, configured);
    sqlite::prepare_locations(&databases)?;
    if let Some(default) = databases.get("default") {
        sqlite::run_startup_statements(default, &opts.sqlite_statements, &dirs.base)?;
    }
    Ok(databases)
}

/// Where component output goes: memory (shared by every component), optionally the log
/// files under `.spin/logs/` and this process's own stdout/stderr.
pub struct Output {
    pub stdout: Arc<Captured>,
    pub stderr: Arc<Captured>,
    /// `None` when log files are off.
    log_dir: Option<PathBuf>,
    echo: bool,
}

impl Output {
    pub fn new(opts: &HostOptions, dirs: &Dirs) -> Result<Output> {
        let log_dir = opts.log_files.then(|| dirs.app.join(".spin").join("logs"));
        if let Some(dir) = &log_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(Output {
            stdout: Arc::new(Captured::new(opts.capture_logs)),
            stderr: Arc::new(Captured::new(opts.capture_logs)),
            log_dir,
            echo: opts.echo_logs,
        })
    }

    fn sink(&self, component: &str, stream: Stream) -> Arc<Sink> {
        let (captured, name) = match stream {
            Stream::Stdout => (&self.stdout, "stdout"),
            Stream::Stderr => (&self.stderr, "stderr"),
        };
        let file = self
            .log_dir
            .as_ref()
            .map(|dir| dir.join(format!("{component}_{name}.txt")));
        Sink::new(
            captured.clone(),
            file.as_deref(),
            self.echo.then_some(stream),
        )
    }
}

/// Every component a trigger routes to, compiled (once per process) and configured.
pub fn components(
    opts: &HostOptions,
    manifest: &Manifest,
    mut variables: ComponentVariables,
    databases: &Arc<SqliteDatabases>,
    calls: &Arc<Calls>,
    output: &Output,
) -> Result<HashMap<String, ComponentRuntime>> {
    let mut components = HashMap::new();
    for trigger in &manifest.http_triggers {
        let id = &trigger.component;
        if components.contains_key(id) {
            continue;
        }
        let c = manifest
            .component(id)
            .expect("manifest checked trigger targets");
        let source = opts.component_sources.get(id).unwrap_or(&c.source);
        let runtime = ComponentRuntime {
            pre: crate::component::load(source)?,
            config: ComponentConfig {
                id: id.clone(),
                environment: c.environment.clone().into_iter().collect(),
                allowed_databases: Arc::new(
                    c.sqlite_databases.iter().cloned().collect::<HashSet<_>>(),
                ),
                databases: databases.clone(),
                variables: variables.remove(id).unwrap_or_default(),
                outbound_allowed: !c.allowed_outbound_hosts.is_empty(),
                calls: calls.clone(),
            },
            stdout: output.sink(id, Stream::Stdout),
            stderr: output.sink(id, Stream::Stderr),
        };
        components.insert(id.clone(), runtime);
    }
    Ok(components)
}

/// Binds and serves `app` on a thread of its own until `shutdown` turns true. Returns once the
/// listener accepts connections.
pub fn spawn_server(
    listen: SocketAddr,
    app: server::App,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>)> {
    let app = Arc::new(app);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    // The runtime lives on its own thread so `start`/`shutdown` work from sync code and from
    // inside another tokio runtime alike.
    let thread = std::thread::Builder::new()
        .name("spin-test-host".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("spin-test-host-worker")
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match server::bind(listen) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(anyhow::anyhow!("cannot listen on {listen}: {e}")));
                        return;
                    }
                };
                let addr = listener.local_addr().expect("bound socket has an address");
                let _ = ready_tx.send(Ok(addr));
                server::serve(listener, app, shutdown).await;
            });
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
        })?;
    let addr = ready_rx
        .recv()
        .context("server thread ended before listening")??;
    Ok((addr, thread))
}
