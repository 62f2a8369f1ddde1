//! webhook-inbox: a Spin component that receives HMAC-signed webhook messages, stores each
//! exactly once in SQLite, and serves listing, search, stats, health and metrics.
//!
//! Only [`edge`] (compiled for wasm32) touches Spin. Everything else is plain Rust, tested
//! natively: the request flow ([`handler`]), read tokens, signature checks, payload validation,
//! timestamps, query parameters, SQL ([`storage`]), metrics text, log lines and the console page.

pub mod auth;
pub mod config;
pub mod console;
pub mod domain;
pub mod handler;
pub mod logline;
pub mod metrics;
pub mod problem;
pub mod query;
pub mod rejections;
pub mod responses;
pub mod routes;
pub mod sources;
pub mod storage;
pub mod timestamp;

#[cfg(target_arch = "wasm32")]
mod edge;
