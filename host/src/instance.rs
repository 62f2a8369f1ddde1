//! Per-request store data and everything an instance links against.

use std::collections::HashSet;
use std::sync::Arc;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::Engine;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, OutgoingRequestConfig};
use wasmtime_wasi_http::p2::{HttpResult, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::bindings;
use crate::calls::Calls;
use crate::logs::InstanceOutput;
use crate::runtime_config::SqliteDatabases;
use crate::sqlite::{SqliteData, SqliteState, SqliteView};
use crate::variables::VariablesState;

/// Everything one component instance (one request) owns.
pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundPolicy,
    sqlite: SqliteState,
    variables: VariablesState,
    /// The store's resource limiter: records how far linear memory grows.
    pub memory: crate::calls::MemoryWatch,
}

/// What the server knows about a component when it creates an instance.
pub struct ComponentConfig {
    pub id: String,
    pub environment: Vec<(String, String)>,
    pub allowed_databases: Arc<HashSet<String>>,
    pub databases: Arc<SqliteDatabases>,
    pub variables: Arc<std::collections::BTreeMap<String, String>>,
    pub outbound_allowed: bool,
    /// The host's tally of guest -> host calls.
    pub calls: Arc<Calls>,
}

impl InstanceState {
    pub fn new(config: &ComponentConfig, stdout: InstanceOutput, stderr: InstanceOutput) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout).stderr(stderr).envs(&config.environment);
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundPolicy {
                allowed: config.outbound_allowed,
            },
            sqlite: SqliteState::new(
                config.allowed_databases.clone(),
                config.databases.clone(),
                config.calls.clone(),
            ),
            variables: VariablesState {
                component: config.id.clone(),
                values: config.variables.clone(),
                calls: config.calls.clone(),
            },
            memory: crate::calls::MemoryWatch {
                calls: config.calls.clone(),
            },
        }
    }

    fn sqlite_view(&mut self) -> SqliteView<'_> {
        SqliteView {
            state: &mut self.sqlite,
            table: &mut self.table,
        }
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound HTTP: denied when the manifest grants no hosts (Spin's default). Any grant allows
/// every host here; this host does not model `allowed_outbound_hosts` patterns.
struct OutboundPolicy {
    allowed: bool,
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: hyper::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> HttpResult<HostFutureIncomingResponse> {
        if !self.allowed {
            return Err(ErrorCode::HttpRequestDenied.into());
        }
        Ok(wasmtime_wasi_http::p2::default_send_request(
            request, config,
        ))
    }
}

/// A linker with WASI 0.2, wasi:http and the Spin interfaces this host implements.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    bindings::fermyon::spin::sqlite::add_to_linker::<_, SqliteData>(
        &mut linker,
        InstanceState::sqlite_view,
    )?;
    bindings::spin::sqlite::sqlite::add_to_linker::<_, SqliteData>(
        &mut linker,
        InstanceState::sqlite_view,
    )?;
    bindings::fermyon::spin::variables::add_to_linker::<_, Variables>(&mut linker, |s| {
        &mut s.variables
    })?;
    Ok(linker)
}

/// Marker for the variables interface's view (the state itself).
struct Variables;

impl wasmtime::component::HasData for Variables {
    type Data<'a> = &'a mut VariablesState;
}
