//! End-to-end tests: the real `.wasm`, built from this tree, served over real HTTP by the
//! project's Spin-compatible host (`host/`). Each test gets its own database.

#![cfg(not(target_arch = "wasm32"))]

#[path = "e2e/support.rs"]
#[macro_use]
mod support;

#[path = "e2e/browser.rs"]
mod browser;
#[path = "e2e/concurrency.rs"]
mod concurrency;
#[path = "e2e/console.rs"]
mod console;
#[path = "e2e/export.rs"]
mod export;
#[path = "e2e/folding.rs"]
mod folding;
#[path = "e2e/headers.rs"]
mod headers;
#[path = "e2e/health.rs"]
mod health;
#[path = "e2e/logs.rs"]
mod logs;
#[path = "e2e/messages.rs"]
mod messages;
#[path = "e2e/metrics.rs"]
mod metrics;
#[path = "e2e/persistence.rs"]
mod persistence;
#[path = "e2e/read_auth.rs"]
mod read_auth;
#[path = "e2e/rejections.rs"]
mod rejections;
#[path = "e2e/replicas.rs"]
mod replicas;
#[path = "e2e/responses.rs"]
mod responses;
#[path = "e2e/routing.rs"]
mod routing;
#[path = "e2e/standard_webhooks.rs"]
mod standard_webhooks;
#[path = "e2e/stats.rs"]
mod stats;
#[path = "e2e/upgrade.rs"]
mod upgrade;
#[path = "e2e/webhook.rs"]
mod webhook;
