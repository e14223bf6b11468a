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
