//! End to end: the README's "Using the provider" example, applied exactly as printed (its HCL
//! blocks as `main.tf`, its Python block as `train.py`) with the newest Terraform CLI, on a
//! machine with or without GPUs.
use std::path::PathBuf;

use anyhow::{Context as _, ensure};
use batchai_acceptance::{Workspace, newest_cli, repo, resource_values, walk};
use serde_json::Value as Json;

/// The fenced blocks of `language` in the README section titled `title`, in order.
fn blocks(readme: &str, title: &str, language: &str) -> Vec<String> {
    let heading = format!("\n## {title}\n");
    let Some(start) = readme.find(&heading) else {
        return Vec::new();
    };
    let section = &readme[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let fence = format!("```{language}\n");
    section
        .split(&fence)
        .skip(1)
        .filter_map(|rest| rest.split("```").next().map(str::to_owned))
        .collect()
}

#[test]
fn the_readme_example_runs_as_written() -> anyhow::Result<()> {
    let readme = std::fs::read_to_string(repo().join("README.md"))?;
    let hcl = blocks(&readme, "Using the provider", "hcl");
    let python = blocks(&readme, "Using the provider", "python");
    ensure!(
        hcl.len() == 2 && python.len() == 1,
        "README blocks: {hcl:?} {python:?}"
    );

    let mut ws = Workspace::new(&newest_cli())?;
    // The README relies on the provider's default root; keep it in the workspace.
    let home = ws.path().join("batchai-home");
    ws.env("BATCHAI_HOME", &home.display().to_string());
    ws.root = home.clone();
    std::fs::write(ws.path().join("main.tf"), hcl.join("\n"))?;
    std::fs::write(ws.path().join("train.py"), &python[0])?;
    ws.init()?;
    ws.apply()?;

    let accuracy = ws.ok(&["output", "-raw", "accuracy"])?;
    ensure!(accuracy.trim() == "0.99", "accuracy {accuracy:?}");
    let state = ws.state_json()?;
    let job = resource_values(&state, "batchai_job.train").context("no job in state")?;
    ensure!(job["execution_state"] == "succeeded", "{job}");
    let segment = job["job_output_directory_path_segment"]
        .as_str()
        .context("no path segment")?;
    let model = home
        .join("fileservers/data/export/outputs")
        .join(segment)
        .join("model.json");
    let saved: Json = serde_json::from_str(&std::fs::read_to_string(&model)?)?;
    ensure!(saved["world_size"] == 8, "{saved}");
    // Eight ranks, four on each of two nodes, each with its own log.
    let logs = PathBuf::from(ws.ok(&["output", "-raw", "logs"])?.trim());
    let said: Vec<String> = walk(&logs)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("stdout-"))
        })
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    ensure!(
        said.iter().filter(|s| s.starts_with("rank ")).count() == 8,
        "{said:?}"
    );
    ws.ok(&["destroy", "-auto-approve", "-no-color"])?;
    Ok(())
}
