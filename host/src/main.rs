//! `spin up` stand-in: serve a Spin app (by default the one in the current directory) until
//! Ctrl-C or SIGTERM.
//!
//! It runs in the dev profile, whose dependencies are optimised (see the profile notes in the
//! workspace `Cargo.toml`; `--release` would fat-LTO wasmtime, 20+ minutes on two cores):
//!
//! ```text
//! cargo run -p spin-test-host -- [--listen 127.0.0.1:3000]
//!     [--runtime-config-file runtime-config.toml] [--sqlite @migrations.sql]...
//!     [--variable NAME=VALUE]... [--app-dir .] [--quiet]
//! ```

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use spin_test_host::{Host, HostOptions};

const USAGE: &str = "usage: spin-test-host [--listen ADDR] [--runtime-config-file FILE] \
[--sqlite SQL|@FILE]... [--variable NAME=VALUE]... [--app-dir DIR] [--quiet]";

fn main() {
    if let Err(e) = run() {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut opts = HostOptions::new(".");
    opts.listen = "127.0.0.1:3000".parse().unwrap();
    opts.echo_logs = true;

    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args.next().with_context(|| format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "--listen" => opts.listen = value()?.parse().context("--listen wants IP:PORT")?,
            "--runtime-config-file" => opts.runtime_config = Some(PathBuf::from(value()?)),
            "--sqlite" => opts.sqlite_statements.push(value()?),
            "--variable" => {
                // Like `spin up --variable name=value`: beats the environment.
                let v = value()?;
                let (name, val) = v.split_once('=').context("--variable wants NAME=VALUE")?;
                opts.env
                    .get_or_insert_with(|| std::env::vars().collect())
                    .insert(
                        format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
                        val.to_string(),
                    );
            }
            "--app-dir" | "--from" | "-f" => opts.app_dir = PathBuf::from(value()?),
            "--quiet" => opts.echo_logs = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }

    let host = Host::start(opts)?;
    println!("\nServing {}", host.url(""));
    println!("Available Routes:");
    for (route, component) in host.routes() {
        println!("  {component}: {}{route}", host.url(""));
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(stop_signal())?;
    eprintln!("Shutting down");
    host.shutdown();
    Ok(())
}

/// Ctrl-C, or SIGTERM (what container runtimes and `timeout` send).
async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await
}
