//! End to end: `constraints.termination_grace_period`. A job stopped by its wall-clock limit
//! gets SIGTERM and then the period it declares to save its work before SIGKILL: a checkpoint
//! that takes 3 s is written under the default (10 s) and lost under 1 s.
use std::time::Duration;

use anyhow::ensure;
use batchai_acceptance::{Workspace, cluster_c, job_on_c, job_status, newest_cli, wait_for, walk};
use control::jobs::JobState;

/// Sleeps until SIGTERM, then takes 3 s to write its checkpoint.
const SCRIPT: &str =
    "trap 'sleep 3; echo saved > $AZ_BATCHAI_OUTPUT_OUT/checkpoint; exit 1' TERM; sleep 600 & wait";

fn job(name: &str, grace: Option<&str>, out: &std::path::Path) -> String {
    let grace = grace
        .map(|g| format!("\n    termination_grace_period = \"{g}\""))
        .unwrap_or_default();
    job_on_c(
        name,
        &format!(
            r#"  wait_for_completion = false
  constraints {{
    max_wall_clock_time = "00:00:02"{grace}
  }}
  output_directories {{
    id          = "OUT"
    path_prefix = "{}"
  }}
  custom_toolkit {{
    command_line = "{SCRIPT}"
  }}"#,
            out.display()
        ),
    )
}

#[test]
fn a_stopped_job_gets_its_grace_period_to_checkpoint() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let out = ws.path().join("out");
    let mut config = cluster_c(2, "");
    config.push_str(&job("default", None, &out));
    config.push_str(&job("short", Some("1s"), &out));
    ws.write_config(&config)?;
    ws.init()?;
    ws.apply()?;
    for name in ["default", "short"] {
        wait_for(
            &format!("job {name} to fail"),
            Duration::from_secs(120),
            || Ok(job_status(&ws, "c", name)?.is_some_and(|s| s.state == JobState::Failed)),
        )?;
    }
    let saved = |name: &str| {
        walk(&out.join("c/jobs").join(name))
            .iter()
            .any(|p| p.file_name().is_some_and(|f| f == "checkpoint"))
    };
    ensure!(
        saved("default"),
        "the default 10 s let the job write its checkpoint"
    );
    ensure!(
        !saved("short"),
        "1 s was not enough, and SIGKILL ended the checkpoint"
    );
    Ok(())
}
