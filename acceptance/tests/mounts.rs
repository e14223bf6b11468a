//! End to end: the `git_repository` volume type. Its revision checks out on a cluster's nodes
//! (the declared default, `HEAD`, shown in the plan and state) and for one job (a tag), and a
//! revision git would misread is a diagnostic at its path before anything runs.
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, ensure};
use batchai_acceptance::{Workspace, cluster_c, job_on_c, newest_cli, resource_values, walk};

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()?;
    ensure!(out.status.success(), "git {args:?}: {out:?}");
    Ok(())
}

/// A repository whose `file.txt` says "one" at tag `v1` and "two" at `HEAD`.
fn repository(dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    git(dir, &["init", "--quiet"])?;
    std::fs::write(dir.join("file.txt"), "one")?;
    git(dir, &["add", "file.txt"])?;
    git(dir, &["commit", "--quiet", "-m", "one"])?;
    git(dir, &["tag", "v1"])?;
    std::fs::write(dir.join("file.txt"), "two")?;
    git(dir, &["commit", "--quiet", "-am", "two"])?;
    Ok(format!("file://{}", dir.display()))
}

#[test]
fn git_repositories_mount_on_clusters_and_jobs() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let url = repository(&ws.path().join("repo"))?;
    let out = ws.path().join("out");
    let mut config = cluster_c(
        1,
        &format!(
            "  mount_volumes {{\n    git_repository {{\n      url                 = \"{url}\"\n      relative_mount_path = \"code\"\n    }}\n  }}"
        ),
    );
    config.push_str(&job_on_c(
        "read",
        &format!(
            r#"  mount_volumes {{
    git_repository {{
      url                 = "{url}"
      revision            = "v1"
      relative_mount_path = "old"
    }}
  }}
  output_directories {{
    id          = "OUT"
    path_prefix = "{}"
  }}
  custom_toolkit {{
    command_line = "cat $AZ_BATCHAI_MOUNT_ROOT/code/file.txt > $AZ_BATCHAI_OUTPUT_OUT/cluster.txt && cat $AZ_BATCHAI_JOB_MOUNT_ROOT/old/file.txt > $AZ_BATCHAI_OUTPUT_OUT/job.txt"
  }}"#,
            out.display()
        ),
    ));
    ws.write_config(&config)?;
    ws.init()?;

    let plan = ws.plan_json()?;
    let planned = plan["planned_values"]["root_module"]["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["address"] == "batchai_cluster.c"))
        .context("no planned cluster")?;
    ensure!(
        planned["values"]["mount_volumes"]["git_repository"][0]["revision"] == "HEAD",
        "the plan shows the declared default revision: {planned}"
    );

    ws.apply()?;
    let read = |name: &str| {
        walk(&out)
            .into_iter()
            .find(|p| p.file_name().is_some_and(|f| f == name))
            .and_then(|p| std::fs::read_to_string(p).ok())
    };
    ensure!(
        read("cluster.txt").as_deref() == Some("two"),
        "the cluster's volume is HEAD: {:?}",
        read("cluster.txt")
    );
    ensure!(
        read("job.txt").as_deref() == Some("one"),
        "the job's volume is tag v1: {:?}",
        read("job.txt")
    );
    let state = ws.state_json()?;
    let cluster = resource_values(&state, "batchai_cluster.c").context("no cluster in state")?;
    ensure!(
        cluster["mount_volumes"]["git_repository"][0]["revision"] == "HEAD",
        "state keeps the planned default: {cluster}"
    );
    Ok(())
}

#[test]
fn a_revision_git_would_misread_is_refused_at_plan() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    ws.write_config(&cluster_c(
        1,
        "  mount_volumes {\n    git_repository {\n      url                 = \"https://example.com/r.git\"\n      revision            = \"--upload-pack=touch\"\n      relative_mount_path = \"code\"\n    }\n  }",
    ))?;
    ws.init()?;
    let out = ws.run(&["plan", "-no-color"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the plan must fail: {stderr}");
    ensure!(
        stderr.contains("invalid revision") && stderr.contains("starts with `-`"),
        "the diagnostic names the attribute and why: {stderr}"
    );
    ensure!(
        !ws.path().join("touch").exists(),
        "nothing ran before validation"
    );
    Ok(())
}
