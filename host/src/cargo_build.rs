//! `build_component`: runs the app's build command, once per process.
//!
//! So tests never run a stale `.wasm`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{bail, Context, Result};

use crate::manifest::Manifest;

/// Runs the `[component.<id>.build]` command of the app's first HTTP component (for
/// webhook-inbox: `cargo build --target wasm32-wasip1 --release`) in its workdir, at most once
/// per process and app dir, and returns that component's `.wasm` path.
///
/// `cargo` in the command is the cargo running the tests (`$CARGO`) when there is one, and
/// `CARGO_TARGET_DIR` is cleared so the output lands where `source` says. Calling this from
/// inside `cargo test` of the same workspace does not deadlock: cargo releases its
/// target-dir lock before it runs test binaries (checked with cargo 1.95). Set
/// `SPIN_TEST_HOST_SKIP_BUILD=1` to skip building and only resolve the path.
pub fn build_component(app_dir: &Path) -> Result<PathBuf> {
    type Slot = Arc<OnceLock<Result<PathBuf, String>>>;
    static BUILDS: OnceLock<Mutex<HashMap<PathBuf, Slot>>> = OnceLock::new();

    let app_dir = std::path::absolute(app_dir)?;
    let slot = BUILDS
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(app_dir.clone())
        .or_default()
        .clone();
    // Concurrent callers block here until the one build finishes.
    slot.get_or_init(|| build(&app_dir).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build(app_dir: &Path) -> Result<PathBuf> {
    let manifest = Manifest::load(app_dir)?;
    let id = manifest
        .http_triggers
        .first()
        .map(|t| t.component.clone())
        .context("the app has no HTTP trigger")?;
    let component = manifest
        .component(&id)
        .expect("manifest checked trigger targets");
    let skip = std::env::var_os("SPIN_TEST_HOST_SKIP_BUILD").is_some_and(|v| v != "0");
    if let (Some(build), false) = (&component.build, skip) {
        for command in &build.commands {
            run(command, &build.workdir)?;
        }
    }
    if !component.source.exists() {
        bail!(
            "component {id:?} has no build output at {}",
            component.source.display()
        );
    }
    Ok(component.source.clone())
}

fn run(command: &str, workdir: &Path) -> Result<()> {
    let mut words = command.split_whitespace();
    let program = words.next().context("empty build command")?;
    let program = match (program, std::env::var_os("CARGO")) {
        ("cargo", Some(cargo)) => PathBuf::from(cargo),
        _ => PathBuf::from(program),
    };
    let output = Command::new(&program)
        .args(words)
        .current_dir(workdir)
        // The manifest's `source` assumes the default target dir.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .output()
        .with_context(|| format!("cannot run `{command}` in {}", workdir.display()))?;
    if !output.status.success() {
        bail!(
            "`{command}` failed in {} ({}):\n{}",
            workdir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
