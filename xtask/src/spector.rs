//! Installs the Microsoft ARM mock scenarios the `arm` crate's poller tests run
//! (`@azure-tools/azure-http-specs`, `arm::spector::VERSION`, with its `tsp-spector` server) with
//! npm, into a cache outside the clone that every clone and CI run on the machine shares. A
//! warm run finds it and costs nothing.
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};
use arm::spector;

/// The install directory to export as `BATCHAI_SPECTOR`: that variable when set, else the
/// cached install, made first when missing.
pub fn ensure() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(spector::ENV).filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let dir = spector::install_dir()
        .context("no cache directory for Spector: set BATCHAI_CACHE (or HOME)")?;
    let bin = spector::bin_in(&dir);
    if bin.is_file() {
        return Ok(dir);
    }
    let parent = dir.parent().context("the Spector cache has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    // Install beside the final place and rename when complete, so an interrupted install is
    // never mistaken for a finished one.
    let partial = parent.join(format!(
        "azure-http-specs-{}.partial-{}",
        spector::VERSION,
        std::process::id()
    ));
    eprintln!(
        "xtask: installing {}@{} into {} with npm (about 160 MB, once)",
        spector::PACKAGE,
        spector::VERSION,
        dir.display()
    );
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
        .arg(format!("{}@{}", spector::PACKAGE, spector::VERSION))
        .arg("--prefix")
        .arg(&partial)
        .status()
        .context("run npm (Node.js 20 and npm are needed to install Spector)")?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        bail!(
            "npm install {}@{} failed with {status}",
            spector::PACKAGE,
            spector::VERSION
        );
    }
    if let Err(error) = std::fs::rename(&partial, &dir) {
        let _ = std::fs::remove_dir_all(&partial);
        // Another run installed it meanwhile; theirs is as good as ours.
        if !bin.is_file() {
            bail!("move Spector into {}: {error}", dir.display());
        }
    }
    if !bin.is_file() {
        bail!("npm installed Spector but {} is missing", bin.display());
    }
    Ok(dir)
}
