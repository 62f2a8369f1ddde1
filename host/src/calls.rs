//! A per-host tally of guest -> host calls, read with [`Host::calls`](crate::Host::calls).
//!
//! Always on: a few relaxed atomic increments per request. It tells how many times a component
//! crosses into the host per request (every crossing is a copy of its arguments, and for SQLite
//! a blocking task), which timing figures alone do not show.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The live counters, shared by every instance of one host.
#[derive(Debug, Default)]
pub struct Calls {
    instances: AtomicU64,
    sqlite_open: AtomicU64,
    sqlite_execute: AtomicU64,
    sqlite_counters: AtomicU64,
    sqlite_close: AtomicU64,
    variables_get: AtomicU64,
    /// The largest linear memory an instance has grown to, in bytes (see [`MemoryWatch`]).
    memory_peak: AtomicU64,
}

/// Which call to count.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    /// A component instance created for a request (the host's own paths are not counted).
    Instance,
    /// `sqlite` `open` (v2 or v3), whether or not it succeeded.
    SqliteOpen,
    /// `sqlite` `execute` (v2 or v3), whether or not it succeeded.
    SqliteExecute,
    /// `last-insert-rowid` or `changes` (v3).
    SqliteCounters,
    /// A connection resource dropped (closed).
    SqliteClose,
    /// `variables` `get`, whether or not it succeeded.
    VariablesGet,
}

impl Calls {
    pub fn count(&self, call: Call) {
        let counter = match call {
            Call::Instance => &self.instances,
            Call::SqliteOpen => &self.sqlite_open,
            Call::SqliteExecute => &self.sqlite_execute,
            Call::SqliteCounters => &self.sqlite_counters,
            Call::SqliteClose => &self.sqlite_close,
            Call::VariablesGet => &self.variables_get,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The largest linear memory any instance has had since the start or the last reset.
    pub fn memory_peak(&self) -> u64 {
        self.memory_peak.load(Ordering::Relaxed)
    }

    pub fn reset_memory_peak(&self) {
        self.memory_peak.store(0, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CallCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CallCounts {
            instances: get(&self.instances),
            sqlite_open: get(&self.sqlite_open),
            sqlite_execute: get(&self.sqlite_execute),
            sqlite_counters: get(&self.sqlite_counters),
            sqlite_close: get(&self.sqlite_close),
            variables_get: get(&self.variables_get),
        }
    }
}

/// A snapshot of [`Calls`]. Counts are totals since the host started; subtract two snapshots
/// ([`CallCounts::since`]) for what happened in between. Instances still running when the
/// snapshot is taken may have made only some of their calls.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CallCounts {
    pub instances: u64,
    pub sqlite_open: u64,
    pub sqlite_execute: u64,
    pub sqlite_counters: u64,
    pub sqlite_close: u64,
    pub variables_get: u64,
}

impl CallCounts {
    /// What was counted between `earlier` and `self`.
    pub fn since(&self, earlier: &CallCounts) -> CallCounts {
        CallCounts {
            instances: self.instances - earlier.instances,
            sqlite_open: self.sqlite_open - earlier.sqlite_open,
            sqlite_execute: self.sqlite_execute - earlier.sqlite_execute,
            sqlite_counters: self.sqlite_counters - earlier.sqlite_counters,
            sqlite_close: self.sqlite_close - earlier.sqlite_close,
            variables_get: self.variables_get - earlier.variables_get,
        }
    }
}

/// Watches an instance's linear memories as they grow (a store's resource limiter): it only
/// records the largest size asked for, and allows every growth, as Spin's default does. The
/// figure shows whether a request's memory depends on its data (e.g. an export's row count).
pub struct MemoryWatch {
    pub calls: std::sync::Arc<Calls>,
}

impl wasmtime::ResourceLimiter for MemoryWatch {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.calls
            .memory_peak
            .fetch_max(desired as u64, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}
