//! End to end: the provider installed as `cargo xtask install` installs it (the same code, into
//! a temporary home's `~/.terraform.d/plugins`), then a plain `init`, `apply` and `destroy` on
//! every CLI with a clean CLI setup: no CLI configuration file, no plugin cache, no
//! `dev_overrides`. Also what a user meets after installing a new build of the same version,
//! and the way out the README documents.
use anyhow::{Context as _, ensure};
use batchai_acceptance::{Workspace, for_every_cli, provider_binary, resource_values, walk};

const CONFIG: &str = r#"resource "batchai_file_server" "fs" {
  name    = "fs"
  vm_size = "Standard_D2s_v3"
  data_disks {
    disk_count           = 1
    disk_size_gb         = 32
    storage_account_type = "Standard_LRS"
  }
}
"#;

/// The only warning a first `init` from a local mirror may print: Terraform (1.4 and later)
/// and OpenTofu say it of every provider that came from a mirror rather than a registry,
/// since they could hash only this platform's package for the lock file.
const INCOMPLETE_LOCK: &str = "Incomplete lock file information for providers";

/// Stdout and stderr of a command that must succeed.
fn succeeds(ws: &Workspace, args: &[&str]) -> anyhow::Result<String> {
    let out = ws.run(args)?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "{} {args:?} failed:\n{text}", ws.cli);
    ensure!(
        !text.contains("overrides"),
        "{} {args:?} mentions development overrides:\n{text}",
        ws.cli
    );
    Ok(text)
}

/// The warnings' titles in a CLI's plain output.
fn warnings(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            l.trim_start_matches(['│', '╷', ' '])
                .strip_prefix("Warning: ")
        })
        .map(str::to_owned)
        .collect()
}

fn lock_file(ws: &Workspace) -> anyhow::Result<String> {
    std::fs::read_to_string(ws.path().join(".terraform.lock.hcl")).context("no lock file")
}

#[test]
fn init_installs_from_the_local_mirror_and_apply_runs_it() {
    for_every_cli(|cli| {
        let ws = Workspace::installed(cli)?;
        let home = ws
            .home
            .clone()
            .context("an installed workspace has a home")?;
        let version = xtask::release::version(&batchai_acceptance::repo())?;
        let host = if cli.tofu {
            "registry.opentofu.org"
        } else {
            "registry.terraform.io"
        };
        let package = xtask::release::plugins_dir(&home).join(format!(
            "{host}/batchai/batchai/{version}/{}",
            xtask::release::current_platform()
        ));
        let h1 = xtask::release::h1(&xtask::release::package_files(&package)?)?;
        ws.write_config(CONFIG)?;

        let init = succeeds(&ws, &["init", "-input=false", "-no-color"])?;
        ensure!(
            init.contains(&format!("Installed batchai/batchai v{version}")),
            "{init}"
        );
        let expected: &[&str] = if cli.tofu || cli.at_least(1, 4) {
            &[INCOMPLETE_LOCK]
        } else {
            &[]
        };
        ensure!(warnings(&init) == expected, "init warned:\n{init}");
        // The lock file names the provider under this CLI's default registry with the hash of
        // the installed package, as our own h1 computes it.
        let lock = lock_file(&ws)?;
        ensure!(
            lock.contains(&format!("provider \"{host}/batchai/batchai\""))
                && lock.contains(&format!("version = \"{version}\""))
                && lock.contains(&format!("\"{h1}\"")),
            "lock file without {host}/batchai/batchai {version} {h1}:\n{lock}"
        );

        let apply = succeeds(
            &ws,
            &["apply", "-auto-approve", "-input=false", "-no-color"],
        )?;
        ensure!(warnings(&apply).is_empty(), "apply warned:\n{apply}");
        let state = ws.state_json()?;
        let fs = resource_values(&state, "batchai_file_server.fs").context("no file server")?;
        ensure!(fs["name"] == "fs", "{fs}");
        ensure!(
            ws.root.join("fileservers/fs/export").is_dir(),
            "no export under {}: {:?}",
            ws.root.display(),
            walk(&ws.root)
        );
        let destroy = succeeds(
            &ws,
            &["destroy", "-auto-approve", "-input=false", "-no-color"],
        )?;
        ensure!(warnings(&destroy).is_empty(), "destroy warned:\n{destroy}");
        ensure!(!ws.root.join("fileservers/fs/export").exists());
        Ok(())
    });
}

/// A new build of the same version has another hash than the one the lock file recorded:
/// init refuses it, with or without `-upgrade`, naming the lock file; without that build's
/// entry (what the README says to remove, and what the examples' runner removes) init records
/// the new build and it runs.
#[test]
fn a_new_build_of_the_same_version_needs_its_old_lock_entry_removed() {
    for_every_cli(|cli| {
        let ws = Workspace::installed(cli)?;
        let home = ws
            .home
            .clone()
            .context("an installed workspace has a home")?;
        ws.write_config(CONFIG)?;
        succeeds(&ws, &["init", "-input=false", "-no-color"])?;

        // Another build: the same program with other bytes (trailing data an ELF loader ignores).
        let rebuilt = ws.path().join("rebuilt");
        let mut bytes = std::fs::read(provider_binary())?;
        bytes.extend_from_slice(b"another build");
        std::fs::write(&rebuilt, bytes)?;
        let installed = ws.install_into(&home, &rebuilt)?;

        for args in [
            &["init", "-input=false", "-no-color"][..],
            &["init", "-upgrade", "-input=false", "-no-color"],
        ] {
            let out = ws.run(args)?;
            let text = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            ensure!(
                !out.status.success(),
                "{args:?} took the new build:\n{text}"
            );
            // The CLIs wrap their messages; the README quotes this one.
            let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
            ensure!(
                words.contains(
                    "doesn't match any of the checksums previously recorded in the dependency lock file"
                ),
                "{args:?}: {text}"
            );
        }

        ensure!(xtask::release::forget_other_builds(ws.path(), &installed)?);
        succeeds(&ws, &["init", "-input=false", "-no-color"])?;
        let lock = lock_file(&ws)?;
        ensure!(lock.contains(&format!("\"{}\"", installed.h1)), "{lock}");
        // The new build serves the plan.
        ensure!(
            ws.plan_exit_code()? == 2,
            "the plan should create the file server"
        );
        Ok(())
    });
}
