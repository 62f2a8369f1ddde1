//! End-to-end tests: the real `.wasm`, built from this tree, served over real HTTP by the
//! project's Spin-compatible host (`host/`). Each test gets its own database.

#![cfg(not(target_arch = "wasm32"))]

#[macro_use]
mod support;

mod browser;
mod concurrency;
mod console;
mod export;
mod feed;
mod folding;
mod headers;
mod health;
mod lifecycle;
mod load;
mod logs;
mod messages;
mod metrics;
mod ops;
mod persistence;
mod read_auth;
mod rejections;
mod replicas;
mod responses;
mod routing;
mod sources;
mod standard_webhooks;
mod stats;
mod upgrade;
mod webhook;
