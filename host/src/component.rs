//! One process-wide wasmtime engine, and components compiled once per process.
//!
//! A wasip1 core module is turned into a component with the reactor adapter, as Spin does at
//! load time. Compiled components are cached in memory by (path, content hash), and on disk by
//! wasmtime's own cache so a fresh test process does not pay for cranelift again.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::instance::{linker, InstanceState};

/// The engine shared by every host in the process (a compiled component belongs to one engine).
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // For `perf`: the compiled code's symbols in /tmp/perf-<pid>.map.
        if std::env::var_os("SPIN_TEST_HOST_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(cache) = disk_cache() {
            config.cache(Some(cache));
        }
        // Spin serves from wasmtime's pooling allocator where the address space allows it;
        // so does this host, falling back to on-demand allocation as Spin does.
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool()));
        Engine::new(&config).unwrap_or_else(|_| {
            POOLING_UNAVAILABLE.store(true, std::sync::atomic::Ordering::Relaxed);
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Engine::new(&config).expect("wasmtime engine configuration is valid")
        })
    })
}

static POOLING_UNAVAILABLE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Whether instances come from the pooling allocator (false once it could not be set up).
pub fn pooling_allocator() -> bool {
    engine();
    !POOLING_UNAVAILABLE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Instance slots kept ready: instantiating takes a slot's memory, table and stack instead
/// of mapping new ones, and ending an instance returns them without unmapping. Sized like
/// Spin's default (about a thousand live instances; `SPIN_TEST_HOST_MAX_INSTANCES`).
fn pool() -> PoolingAllocationConfig {
    let slots: u32 = std::env::var("SPIN_TEST_HOST_MAX_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_memories(slots)
        .total_tables(2 * slots)
        .total_stacks(slots)
        .total_core_instances(4 * slots)
        // An adapted wasip1 component is a handful of core modules, each with one table and
        // at most one memory; the adapter's state needs more than the 1 MiB default.
        .max_tables_per_module(2)
        .max_memories_per_module(2)
        .max_component_instance_size(10 << 20)
        .max_core_instance_size(10 << 20)
        .max_memory_size(4 << 30)
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(512 << 10);
    pool
}

/// wasmtime's on-disk compilation cache, in `$SPIN_TEST_HOST_CACHE_DIR` or the temp dir.
/// Setting `SPIN_TEST_HOST_CACHE_DIR=off` disables it.
fn disk_cache() -> Option<wasmtime::Cache> {
    let dir = match std::env::var_os("SPIN_TEST_HOST_CACHE_DIR") {
        Some(d) if d == "off" => return None,
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join("spin-test-host-wasmtime-cache"),
    };
    let mut cfg = wasmtime::CacheConfig::new();
    cfg.with_directory(dir);
    wasmtime::Cache::new(cfg).ok()
}

/// Loads, adapts, compiles and pre-instantiates the component at `path`, once per content.
pub fn load(path: &Path) -> Result<ProxyPre<InstanceState>> {
    type Cache = HashMap<(PathBuf, u64), ProxyPre<InstanceState>>;
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read component {}", path.display()))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    let key = (
        path.canonicalize().unwrap_or_else(|_| path.to_path_buf()),
        hasher.finish(),
    );

    // Holding the lock while compiling makes concurrent starts wait for one compilation
    // instead of doing it twice.
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    if let Some(pre) = cache.get(&key) {
        return Ok(pre.clone());
    }
    let component_bytes = to_component(&bytes)
        .with_context(|| format!("cannot adapt {} into a component", path.display()))?;
    let engine = engine();
    let component = Component::new(engine, &component_bytes)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| format!("cannot compile {}", path.display()))?;
    let linker = linker(engine)?;
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| {
            format!(
                "{} needs an import this test host does not provide",
                path.display()
            )
        })?;
    let pre = ProxyPre::new(instance_pre)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| {
            format!(
                "{} does not export wasi:http/incoming-handler",
                path.display()
            )
        })?;
    cache.insert(key, pre.clone());
    Ok(pre)
}

/// Core modules start with version 1; components with the component-model layer marker.
fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[0..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

fn to_component(bytes: &[u8]) -> Result<Vec<u8>> {
    if is_component(bytes) {
        return Ok(bytes.to_vec());
    }
    wit_component::ComponentEncoder::default()
        .module(bytes)?
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .validate(true)
        .encode()
}
