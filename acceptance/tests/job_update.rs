//! End to end: an in-place update of a job (`timeouts` here) reads the job again, and a job
//! that moved on between plan and apply (it ended) is not an inconsistent result.
use std::time::Duration;

use anyhow::ensure;
use batchai_acceptance::{Workspace, cluster_c, job_on_c, job_status, newest_cli, wait_for};
use control::jobs::JobState;

fn config(create_timeout: &str) -> String {
    let mut config = cluster_c(1, "");
    config.push_str(&job_on_c(
        "j",
        &format!(
            r#"  wait_for_completion = false
  custom_toolkit {{
    command_line = "sleep 3"
  }}
  timeouts {{
    create = "{create_timeout}"
  }}"#
        ),
    ));
    config
}

#[test]
fn a_job_that_ended_between_plan_and_apply_updates_in_place() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    ws.write_config(&config("1h"))?;
    ws.init()?;
    ws.apply()?;
    wait_for("the job to start", Duration::from_secs(60), || {
        Ok(job_status(&ws, "c", "j")?.is_some_and(|s| s.state == JobState::Running))
    })?;
    ws.write_config(&config("2h"))?;
    ws.ok(&["plan", "-out=update.tfplan", "-input=false", "-no-color"])?;
    wait_for("the job to end", Duration::from_secs(60), || {
        Ok(job_status(&ws, "c", "j")?.is_some_and(|s| s.state == JobState::Succeeded))
    })?;
    let out = ws.run(&["apply", "-input=false", "-no-color", "update.tfplan"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "the update must apply though the job ended since the plan: {stderr}"
    );
    let state = ws.state_json()?;
    let job = batchai_acceptance::resource_values(&state, "batchai_job.j")
        .cloned()
        .unwrap_or_default();
    ensure!(
        job["execution_state"] == "succeeded",
        "state shows what the job did: {job}"
    );
    Ok(())
}

/// A job queued behind another when planned and started by apply time: its log directory moves
/// from the mount-root form to the node's path, and the update still applies.
#[test]
fn a_job_that_started_between_plan_and_apply_updates_in_place() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let gate = ws.path().join("gate");
    let body = |create_timeout: &str| {
        let mut config = cluster_c(1, "");
        config.push_str(&job_on_c(
            "blocker",
            &format!(
                "  wait_for_completion = false\n  custom_toolkit {{\n    command_line = \"while [ ! -f {} ]; do sleep 0.1; done\"\n  }}",
                gate.display()
            ),
        ));
        config.push_str(&job_on_c(
            "j",
            &format!(
                r#"  wait_for_completion     = false
  depends_on              = [batchai_job.blocker]
  std_out_err_path_prefix = "$AZ_BATCHAI_JOB_MOUNT_ROOT/logs"
  custom_toolkit {{
    command_line = "sleep 1"
  }}
  timeouts {{
    create = "{create_timeout}"
  }}"#
            ),
        ));
        config
    };
    ws.write_config(&body("1h"))?;
    ws.init()?;
    ws.apply()?;
    ensure!(
        job_status(&ws, "c", "j")?.is_some_and(|s| s.state == JobState::Queued),
        "j waits behind the blocker"
    );
    ws.write_config(&body("2h"))?;
    ws.ok(&["plan", "-out=update.tfplan", "-input=false", "-no-color"])?;
    std::fs::write(&gate, "")?;
    wait_for("j to run", Duration::from_secs(60), || {
        Ok(job_status(&ws, "c", "j")?.is_some_and(|s| s.state != JobState::Queued))
    })?;
    let out = ws.run(&["apply", "-input=false", "-no-color", "update.tfplan"])?;
    ensure!(
        out.status.success(),
        "the update must apply though the job started since the plan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
