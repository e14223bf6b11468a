//! Installs the Azurite the blob-store tests run (`control_blob::azurite::VERSION`) with npm, into
//! a cache outside the clone that every clone and CI run on the machine shares. A warm run finds
//! it and costs nothing.
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};
use control_blob::azurite;

/// The `azurite-blob` to run: `BATCHAI_AZURITE` when set, else the cached install, made first
/// when missing.
pub fn ensure() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os(azurite::ENV).filter(|bin| !bin.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    let dir = azurite::install_dir()
        .context("no cache directory for Azurite: set BATCHAI_CACHE (or HOME)")?;
    let bin = azurite::bin_in(&dir);
    if bin.is_file() {
        return Ok(bin);
    }
    let parent = dir.parent().context("the Azurite cache has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    // Install beside the final place and rename when complete, so an interrupted install is
    // never mistaken for a finished one.
    let partial = parent.join(format!(
        "azurite-{}.partial-{}",
        azurite::VERSION,
        std::process::id()
    ));
    eprintln!(
        "xtask: installing Azurite {} into {} with npm (about 190 MB, once)",
        azurite::VERSION,
        dir.display()
    );
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
        .arg(format!("azurite@{}", azurite::VERSION))
        .arg("--prefix")
        .arg(&partial)
        .status()
        .context("run npm (Node.js 20 and npm are needed to install Azurite)")?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        bail!(
            "npm install azurite@{} failed with {status}",
            azurite::VERSION
        );
    }
    if let Err(error) = std::fs::rename(&partial, &dir) {
        let _ = std::fs::remove_dir_all(&partial);
        // Another run installed it meanwhile; theirs is as good as ours.
        if !bin.is_file() {
            bail!("move Azurite into {}: {error}", dir.display());
        }
    }
    if !bin.is_file() {
        bail!("npm installed Azurite but {} is missing", bin.display());
    }
    Ok(bin)
}
