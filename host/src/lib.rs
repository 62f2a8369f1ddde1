//! A Spin-compatible test host for `webhook-inbox`.
//!
//! It runs a Spin HTTP app (manifest v2) on wasmtime the way `spin up` would, as far as a
//! component can tell: Spin's routing and `spin-*` headers, a fresh instance per request,
//! `fermyon:spin/sqlite` (and `spin:sqlite` 3.0) on local SQLite files or a libSQL server, and
//! `fermyon:spin/variables` from `SPIN_VARIABLE_*`. See `README.md` next to this crate.
//!
//! ```no_run
//! let wasm = spin_test_host::build_component(".".as_ref()).unwrap();
//! let host = spin_test_host::Host::start(spin_test_host::HostOptions::new(".")).unwrap();
//! println!("{} serving {}", wasm.display(), host.url("/health/live"));
//! host.shutdown();
//! ```

mod bindings;
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
mod socket_writes;
pub mod sqld;
mod sqlite;
mod startup;
pub mod variables;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Result;
use tokio::sync::watch;

pub use calls::CallCounts;
pub use cargo_build::build_component;
pub use component::pooling_allocator;

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
    /// Record every write to a client connection, for [`Host::socket_writes`] (default off:
    /// the record grows with every connection).
    pub record_socket_writes: bool,
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
            record_socket_writes: false,
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
    socket_writes: Option<Arc<socket_writes::SocketWrites>>,
}

impl Host {
    /// Loads the app, compiles its components (once per process), binds, and serves in a
    /// background thread. Returns once the listener accepts connections.
    pub fn start(opts: HostOptions) -> Result<Host> {
        let dirs = startup::Dirs::resolve(&opts)?;
        let manifest = manifest::Manifest::load(&dirs.app)?;
        // Every variable is resolved now, so a required one without a value stops the start.
        let env = variables::EnvSource::new(opts.env.clone(), &dirs.app);
        let component_vars = variables::resolve(&manifest, &env)?;
        let databases = Arc::new(startup::databases(&opts, &dirs)?);
        let calls = Arc::new(calls::Calls::default());
        let output = startup::Output::new(&opts, &dirs)?;
        let router = routing::Router::build(&manifest.http_triggers)?;
        let components = startup::components(
            &opts,
            &manifest,
            component_vars,
            &databases,
            &calls,
            &output,
        )?;

        let routes = router.routes().to_vec();
        let socket_writes = opts
            .record_socket_writes
            .then(|| Arc::new(socket_writes::SocketWrites::default()));
        let app = server::App {
            hold_responses_until_instance_ends: opts.hold_responses_until_instance_ends,
            router,
            components,
            info_json: serde_json::json!({
                "name": manifest.app_name,
                "version": manifest.app_version,
            })
            .to_string(),
            socket_writes: socket_writes.clone(),
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (addr, thread) = startup::spawn_server(opts.listen, app, shutdown_rx)?;

        Ok(Host {
            addr,
            stdout: output.stdout,
            stderr: output.stderr,
            shutdown,
            thread: Some(thread),
            routes,
            calls,
            socket_writes,
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

    /// With [`HostOptions::record_socket_writes`]: how many bytes the socket took from each
    /// write the server made to the connection from `client` (the connection's peer, e.g. a
    /// client's `TcpStream::local_addr`), in order, over every response on that connection.
    /// A response that went out in one write is one entry of its whole length. `None` when
    /// not recording or when no connection from `client` was accepted.
    ///
    /// A write is recorded when it returns, which may be just after the client has read its
    /// bytes; once the client has seen the connection end (after a `Connection: close`
    /// response), every write is in, since the server closes a connection only after its
    /// last write returned.
    pub fn socket_writes(&self, client: SocketAddr) -> Option<Vec<usize>> {
        self.socket_writes.as_ref()?.of(client)
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
