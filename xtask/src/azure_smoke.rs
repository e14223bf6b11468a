//! `cargo xtask azure-smoke`: the README's azure example on real Azure, created, run and
//! destroyed, when `ARM_*` credentials and the example's `TF_VAR_*` settings are in the
//! environment; without them it says what is missing and does nothing. Not part of CI, which has
//! no Azure account.
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

/// What the example needs besides a credential azurerm would find.
const SETTINGS: [&str; 5] = [
    "ARM_SUBSCRIPTION_ID",
    "TF_VAR_resource_group_name",
    "TF_VAR_location",
    "TF_VAR_storage_account_name",
    "TF_VAR_subnet_id",
];

/// Why the smoke test cannot run here, when it cannot: the settings or the credential missing.
pub fn missing() -> Option<String> {
    let missing: Vec<&str> = SETTINGS
        .iter()
        .copied()
        .filter(|name| std::env::var(name).map_or(true, |v| v.is_empty()))
        .collect();
    let credential = [
        "ARM_CLIENT_SECRET",
        "ARM_CLIENT_CERTIFICATE_PATH",
        "ARM_USE_OIDC",
        "ARM_USE_MSI",
        "ARM_USE_CLI",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.is_empty()));
    if missing.is_empty() && credential {
        return None;
    }
    Some(format!(
        "it needs {} and a credential as azurerm reads it (ARM_CLIENT_ID with ARM_CLIENT_SECRET \
         or ARM_CLIENT_CERTIFICATE_PATH, ARM_USE_OIDC, ARM_USE_MSI, or ARM_USE_CLI=true with \
         `az login`); missing: {}{}",
        SETTINGS.join(", "),
        missing.join(", "),
        if credential {
            ""
        } else {
            " (and no credential)"
        }
    ))
}

/// Applies the README's azure example with `terraform` (after `init`, which takes the provider
/// `installed` put in the local mirror), then destroys it, whatever the apply did.
pub fn run(
    repo: &Path,
    terraform: &Path,
    installed: &xtask::release::Installed,
) -> anyhow::Result<()> {
    let readme = std::fs::read_to_string(repo.join("README.md")).context("read README.md")?;
    let section = readme
        .split("\n## On Azure\n")
        .nth(1)
        .context("README.md has no `On Azure` section")?;
    let hcl = section
        .split("```hcl\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .context("the `On Azure` section has no HCL block")?;
    let work = repo.join("target/azure-smoke");
    std::fs::create_dir_all(&work)?;
    std::fs::write(work.join("main.tf"), hcl)?;
    let tf = |args: &[&str]| -> anyhow::Result<()> {
        let mut cmd = Command::new(terraform);
        cmd.args(args)
            .current_dir(&work)
            .env("TF_IN_AUTOMATION", "1");
        crate::tf_env(&mut cmd);
        let status = cmd
            .status()
            .with_context(|| format!("run terraform {args:?}"))?;
        if !status.success() {
            bail!(
                "terraform {args:?} failed ({status}); the configuration is in {}",
                work.display()
            );
        }
        Ok(())
    };
    eprintln!(
        "xtask azure-smoke: creating the README's azure example in {}",
        work.display()
    );
    xtask::release::forget_other_builds(&work, installed)?;
    tf(&["init", "-input=false"])?;
    let applied = tf(&["apply", "-auto-approve", "-input=false"]);
    // Whatever the apply did, nothing is left running (and billing) afterwards.
    let destroyed = tf(&["destroy", "-auto-approve", "-input=false"]);
    applied?;
    destroyed?;
    eprintln!("xtask azure-smoke: created, ran the job and destroyed everything");
    Ok(())
}
