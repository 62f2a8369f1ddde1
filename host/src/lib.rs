//! A Spin-compatible test host for `webhook-inbox`.
//!
//! It runs a Spin HTTP app (manifest v2) on wasmtime the way `spin up` would, as far as a
//! component can tell: Spin's routing and `spin-*` headers, a fresh instance per request,
//! `fermyon:spin/sqlite` (and `spin:sqlite` 3.0) on local SQLite files or a libSQL server, and
//! `fermyon:spin/variables` from `SPIN_VARIABLE_*`. See `README.md` next to this crate.
//!
//! ```no_run
//! let wasm = spin_test_host::build_component("/work/main".as_ref()).unwrap();
//! let host = spin_test_host::Host::start(spin_test_host::HostOptions::new("/work/main")).unwrap();
//! println!("{} serving {}", wasm.display(), host.url("/health/live"));
//! host.shutdown();
//! ```

mod calls;
mod cargo_build;
mod component;
mod instance;
mod libsql;
mod logs;
pub mod manifest;
pub mod routing;
pub mod runtime_config;
mod server;
pub mod sqld;
mod sqlite;
pub mod variables;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use tokio::sync::watch;

pub use calls::CallCounts;
pub use cargo_build::build_component;
pub use component::pooling_allocator;

/// Host traits generated from the vendored Spin WIT (`host/wit`).
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "fermyon:spin/host",
        imports: { default: async },
        with: {
            "fermyon:spin/sqlite.connection": crate::sqlite::Connection,
            "spin:sqlite/sqlite.connection": crate::sqlite::Connection,
        },
    });
}

/// How to run an app. Build with [`HostOptions::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Directory containing `spin.toml`.
    pub app_dir: PathBuf,
    /// Like `spin up --runtime-config-file`.
    pub runtime_config: Option<PathBuf>,
    /// Where to listen; port 0 picks a free port (see [`Host::addr`]).
    pub listen: SocketAddr,
    /// Stands in for the process environment when `Some` (keys like
    /// `SPIN_VARIABLE_WEBHOOK_SECRET`); `None` reads `std::env`.
    pub env: Option<HashMap<String, String>>,
    /// Also print component output to this process's stdout/stderr.
    pub echo_logs: bool,
    /// Like `spin up --sqlite`: SQL text or `@file`, run against `default` before serving.
    pub sqlite_statements: Vec<String>,
    /// Base for relative paths in the runtime config and `@file` statements. `None` = the
    /// current directory, which is what Spin uses.
    pub base_dir: Option<PathBuf>,
    /// Component id -> `.wasm` to run instead of the manifest's `source` (e.g. a build in a
    /// separate target dir).
    pub component_sources: HashMap<String, PathBuf>,
    /// Append component output to `<app_dir>/.spin/logs/<component>_{stdout,stderr}.txt`.
    pub log_files: bool,
    /// Keep each response open until its instance has finished, so that once a client has
    /// read a response, that request's log lines and database writes are all done. Off by
    /// default, as in Spin, where a response completes when the guest finishes its body.
    pub hold_responses_until_instance_ends: bool,
    /// Keep component output in memory for [`Host::stdout`] / [`Host::stderr`] (default on).
    /// Off, those stay empty and a long run's memory holds no log lines (what a memory
    /// measurement wants; Spin writes them to files only).
    pub capture_logs: bool,
}

impl HostOptions {
    /// Defaults: listen on `127.0.0.1:0`, no runtime config, process env, no echo, log files on.
    pub fn new(app_dir: impl Into<PathBuf>) -> Self {
        Self {
            app_dir: app_dir.into(),
            runtime_config: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            env: None,
            echo_logs: false,
            sqlite_statements: Vec::new(),
            base_dir: None,
            component_sources: HashMap::new(),
            log_files: true,
            hold_responses_until_instance_ends: false,
            capture_logs: true,
        }
    }
}

/// A running app. Dropping it shuts it down like [`Host::shutdown`].
pub struct Host {
    addr: SocketAddr,
    stdout: Arc<logs::Captured>,
    stderr: Arc<logs::Captured>,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    routes: Vec<(String, String)>,
    calls: Arc<calls::Calls>,
}

impl Host {
    /// Loads the app, compiles its components (once per process), binds, and serves in a
    /// background thread. Returns once the listener accepts connections.
    pub fn start(opts: HostOptions) -> Result<Host> {
        let app_dir = std::path::absolute(&opts.app_dir)
            .with_context(|| format!("bad app dir {}", opts.app_dir.display()))?;
        let base_dir = match &opts.base_dir {
            Some(b) => std::path::absolute(b)?,
            None => std::env::current_dir()?,
        };
        let manifest = manifest::Manifest::load(&app_dir)?;

        let env = variables::EnvSource::new(opts.env.clone(), &app_dir);
        let mut component_vars = variables::resolve(&manifest, &env)?;

        let configured = match &opts.runtime_config {
            Some(p) => runtime_config::load(&base_dir.join(p), &base_dir)?,
            None => Default::default(),
        };
        let databases = runtime_config::sqlite_databases(&app_dir, configured);
        sqlite::prepare_locations(&databases)?;
        if let Some(default) = databases.get("default") {
            sqlite::run_startup_statements(default, &opts.sqlite_statements, &base_dir)?;
        }
        let databases = Arc::new(databases);
        let calls = Arc::new(calls::Calls::default());

        let stdout = Arc::new(logs::Captured::new(opts.capture_logs));
        let stderr = Arc::new(logs::Captured::new(opts.capture_logs));
        let log_dir = app_dir.join(".spin").join("logs");
        if opts.log_files {
            std::fs::create_dir_all(&log_dir)
                .with_context(|| format!("cannot create {}", log_dir.display()))?;
        }

        let router = routing::Router::build(&manifest.http_triggers)?;
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
            let pre = component::load(source)?;
            let file = |stream: &str| {
                opts.log_files
                    .then(|| log_dir.join(format!("{id}_{stream}.txt")))
            };
            let echo = |s| opts.echo_logs.then_some(s);
            components.insert(
                id.clone(),
                server::ComponentRuntime {
                    pre,
                    config: instance::ComponentConfig {
                        id: id.clone(),
                        environment: c.environment.clone().into_iter().collect(),
                        allowed_databases: Arc::new(
                            c.sqlite_databases.iter().cloned().collect::<HashSet<_>>(),
                        ),
                        databases: databases.clone(),
                        variables: component_vars.remove(id).unwrap_or_default(),
                        outbound_allowed: !c.allowed_outbound_hosts.is_empty(),
                        calls: calls.clone(),
                    },
                    stdout: logs::Sink::new(
                        stdout.clone(),
                        file("stdout").as_deref(),
                        echo(logs::Stream::Stdout),
                    ),
                    stderr: logs::Sink::new(
                        stderr.clone(),
                        file("stderr").as_deref(),
                        echo(logs::Stream::Stderr),
                    ),
                },
            );
        }
        let routes = router.routes().to_vec();
        let app = Arc::new(server::App {
            hold_responses_until_instance_ends: opts.hold_responses_until_instance_ends,
            router,
            components,
            info_json: serde_json::json!({
                "name": manifest.app_name,
                "version": manifest.app_version,
            })
            .to_string(),
        });

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let listen = opts.listen;
        // The runtime lives on its own thread so `start`/`shutdown` work from sync code and
        // from inside another tokio runtime alike.
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
                            let _ = ready_tx
                                .send(Err(anyhow::anyhow!("cannot listen on {listen}: {e}")));
                            return;
                        }
                    };
                    let addr = listener.local_addr().expect("bound socket has an address");
                    let _ = ready_tx.send(Ok(addr));
                    server::serve(listener, app, shutdown_rx).await;
                });
                rt.shutdown_timeout(std::time::Duration::from_secs(1));
            })?;
        let addr = ready_rx
            .recv()
            .context("server thread ended before listening")??;

        Ok(Host {
            addr,
            stdout,
            stderr,
            shutdown: shutdown_tx,
            thread: Some(thread),
            routes,
            calls,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Everything the app's components printed to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Everything the app's components printed to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Guest -> host calls so far, over every component instance this host ran (see
    /// [`CallCounts`]).
    pub fn calls(&self) -> CallCounts {
        self.calls.snapshot()
    }

    /// The largest linear memory any component instance of this host grew to, in bytes,
    /// since it started or since [`Host::reset_peak_instance_memory`].
    pub fn peak_instance_memory(&self) -> u64 {
        self.calls.memory_peak()
    }

    pub fn reset_peak_instance_memory(&self) {
        self.calls.reset_memory_peak();
    }

    /// (route as displayed, component id) pairs, like `spin up`'s route list.
    pub fn routes(&self) -> &[(String, String)] {
        &self.routes
    }

    /// Stops accepting, lets in-flight requests finish (up to 30 s), and closes.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop();
    }
}
