//! End to end: the paths a user takes when something went wrong, driven by real Terraform CLIs:
//! a failed job fixed and applied again (also with `-replace`) under the same name, a cluster
//! whose nodes all fail their setup task, every agent killed at once, store outages, corrupt
//! records, and the modes of what the platform writes.
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use batchai_acceptance::{Workspace, newest_cli, resource_values, wait_for, walk};
use control::jobs::{JobState, JobStatus};
use control::records::{self, keys};
use control::{DirStore, Store as _};
use serde_json::Value as Json;

fn cluster(nodes: u32, extra: &str) -> String {
    format!(
        r#"resource "batchai_cluster" "c" {{
  name    = "c"
  vm_size = "Standard_D2s_v3"
  scale_settings {{
    manual {{
      target_node_count = {nodes}
    }}
  }}
{extra}
}}
"#
    )
}

/// A job on cluster `c` with `body` inside its block.
fn job(name: &str, body: &str) -> String {
    format!(
        r#"resource "batchai_job" "{name}" {{
  name       = "{name}"
  cluster_id = batchai_cluster.c.id
{body}
}}
"#
    )
}

fn store(ws: &Workspace) -> anyhow::Result<DirStore> {
    Ok(DirStore::open(ws.root.join("store"))?)
}

fn status(ws: &Workspace, name: &str) -> anyhow::Result<Option<JobStatus>> {
    let Some(v) = store(ws)?.get(&keys::job_status("c", name))? else {
        return Ok(None);
    };
    Ok(Some(records::decode("job status", &v.data)?))
}

fn values(ws: &Workspace, address: &str) -> anyhow::Result<Json> {
    resource_values(&ws.state_json()?, address)
        .cloned()
        .with_context(|| format!("no {address} in state"))
}

fn apply_fails(ws: &Workspace) -> anyhow::Result<String> {
    let out = ws.run(&["apply", "-auto-approve", "-input=false", "-no-color"])?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(!out.status.success(), "apply should have failed:\n{stderr}");
    Ok(stderr)
}

/// The documented flow after a failure: the job failed, the user fixes the cause, the next
/// apply replaces the job and runs it; and `-replace` runs it once more. The new submission
/// has the old name and starts at attempt 1 again, on nodes that ran attempt 1 of the old one.
#[test]
fn a_failed_job_fixed_and_applied_again_runs_under_the_same_name() -> anyhow::Result<()> {
    for nodes in [1, 2] {
        let ws = Workspace::new(&newest_cli())?;
        let flag = ws.path().join("fixed");
        let mut config = cluster(nodes, "");
        config.push_str(&job(
            "train",
            &format!(
                "  node_count = {nodes}\n  custom_toolkit {{\n    command_line = \"test -f {} || {{ echo not-fixed-yet >&2; exit 3; }}\"\n  }}",
                flag.display()
            ),
        ));
        ws.write_config(&config)?;
        ws.init()?;
        let stderr = apply_fails(&ws)?;
        ensure!(
            stderr.contains("not-fixed-yet"),
            "{nodes} node(s): the failure quotes the job's stderr:\n{stderr}"
        );
        let first = status(&ws, "train")?.context("no status after the failed run")?;
        ensure!(first.state == JobState::Failed, "{nodes}: {first:?}");

        std::fs::write(&flag, "")?;
        ws.apply()
            .with_context(|| format!("{nodes} node(s): the fixed job runs again"))?;
        let second = status(&ws, "train")?.context("no status after the re-run")?;
        ensure!(
            second.state == JobState::Succeeded && second.uid != first.uid,
            "{nodes} node(s): a new submission succeeded: {second:?}"
        );
        ensure!(second.attempts == 1, "{nodes}: {second:?}");

        ws.ok(&[
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-replace=batchai_job.train",
        ])
        .with_context(|| format!("{nodes} node(s): -replace runs the job again"))?;
        let third = status(&ws, "train")?.context("no status after -replace")?;
        ensure!(
            third.state == JobState::Succeeded && third.uid != second.uid,
            "{nodes} node(s): -replace made a new submission: {third:?}"
        );
        ws.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
    }
    Ok(())
}

/// Job secrets and the records that may hold secrets are private to the user who created
/// them, whatever the umask: the platform root and the store's directories are 0700, every
/// record 0600. Terraform (and so the provider and its nodes) runs with umask 000 here.
#[test]
fn the_platform_root_and_every_record_are_private_whatever_the_umask() -> anyhow::Result<()> {
    let mut cli = newest_cli();
    let tools = tempfile::tempdir()?;
    let wrapper = tools.path().join("terraform-umask-000");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\numask 000\nexec '{}' \"$@\"\n",
            cli.path.display()
        ),
    )?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    cli.path = wrapper;
    let ws = Workspace::new(&cli)?;
    let mut config = cluster(1, "");
    config.push_str(&job(
        "secretive",
        "  wait_for_completion = false\n  secrets_wo = { TOKEN = \"hunter2-private\" }\n  secrets_wo_version = 1\n  custom_toolkit {\n    command_line = \"sleep 300\"\n  }",
    ));
    ws.write_config(&config)?;
    ws.init()?;
    ws.apply()?;

    let mode = |p: &Path| -> anyhow::Result<u32> {
        Ok(std::fs::metadata(p)?.permissions().mode() & 0o777)
    };
    ensure!(mode(&ws.root)? == 0o700, "root: {:o}", mode(&ws.root)?);
    let store_dir = ws.root.join("store");
    let mut secret_seen = false;
    for file in walk(&store_dir) {
        let m = mode(&file)?;
        ensure!(m == 0o600, "{} is {m:o}", file.display());
        if std::fs::read(&file)?
            .windows(15)
            .any(|w| w == b"hunter2-private")
        {
            secret_seen = true;
        }
    }
    ensure!(
        secret_seen,
        "the secrets record was not found under the store"
    );
    let mut dirs = vec![store_dir];
    while let Some(d) = dirs.pop() {
        ensure!(mode(&d)? == 0o700, "{} is {:o}", d.display(), mode(&d)?);
        for entry in std::fs::read_dir(&d)? {
            let p = entry?.path();
            if p.is_dir() {
                dirs.push(p);
            }
        }
    }
    ws.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
    Ok(())
}
