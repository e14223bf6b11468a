//! End to end: the README's examples, applied exactly as printed with the newest Terraform CLI,
//! which finds the provider as the README says: installed by `cargo xtask install`'s code into
//! the local mirror of a home of its own, then `terraform init` with no CLI configuration:
//! "Using the provider" (its HCL blocks as `main.tf`, its Python block as `train.py`), on a
//! machine with or without GPUs, and "One cluster across machines" (its HCL against a container
//! of an Azurite, then its shell lines, which join a node to the cluster), and "On Azure" (its
//! HCL against the ARM simulator with the variables `cargo xtask sim up` exports).
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
    // And it says to install the provider and init, which is what this test does.
    let sh = blocks(&readme, "Using the provider", "sh");
    ensure!(
        sh.len() == 1 && sh[0].contains("cargo xtask install") && sh[0].contains("terraform init"),
        "README shell lines: {sh:?}"
    );

    let mut ws = Workspace::installed(&newest_cli())?;
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

#[test]
fn the_shared_store_example_joins_a_node_as_written() -> anyhow::Result<()> {
    use control_blob::azurite::{ACCOUNT_KEY, Azurite};
    let readme = std::fs::read_to_string(repo().join("README.md"))?;
    let title = "One cluster across machines";
    let (hcl, sh) = (blocks(&readme, title, "hcl"), blocks(&readme, title, "sh"));
    ensure!(
        hcl.len() == 1 && sh.len() == 1,
        "README blocks: {hcl:?} {sh:?}"
    );

    let azurite = Azurite::shared()
        .map_err(|e| anyhow::anyhow!("{e}; run `cargo xtask test`, which installs Azurite"))?;
    let url = azurite.container_url(&Azurite::unique_container("readme"));
    let mut ws = Workspace::installed(&newest_cli())?;
    let home = ws.path().join("batchai-home");
    ws.env("BATCHAI_HOME", &home.display().to_string());
    ws.root = home;
    std::fs::write(ws.path().join("main.tf"), &hcl[0])?;
    ws.init()?;
    let vars = [
        format!("-var=control_container_url={url}"),
        format!("-var=control_account_key={ACCOUNT_KEY}"),
    ];
    let with_vars = |command: &[&str]| -> Vec<String> {
        command
            .iter()
            .map(|s| (*s).to_owned())
            .chain(vars.iter().cloned())
            .collect()
    };
    let apply = with_vars(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    ws.ok(&apply.iter().map(String::as_str).collect::<Vec<_>>())?;

    // The shell lines as printed, with the provider on PATH and the variables they name.
    let path = format!(
        "{}:{}",
        batchai_acceptance::provider_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut node = std::process::Command::new("sh")
        .args(["-c", &sh[0]])
        .env("PATH", path)
        .env("HOME", ws.path())
        .env("ACCOUNT_KEY", ACCOUNT_KEY)
        .env("CONTAINER_URL", &url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(ws.path().join("join.log"))?)
        .spawn()?;
    let reader = ws_with_store(&ws, &url);
    let joined = batchai_acceptance::wait_for(
        "the node to join",
        std::time::Duration::from_secs(60),
        || {
            Ok(batchai_acceptance::node_records(&reader, "room")?
                .iter()
                .any(|n| n.joined && n.state == control::records::NodeState::Idle))
        },
    );
    let destroy = with_vars(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    let destroyed = ws.ok(&destroy.iter().map(String::as_str).collect::<Vec<_>>());
    let left = (0..300).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        node.try_wait().ok().flatten().is_some()
    });
    if !left {
        let _ = node.kill();
    }
    let _ = node.wait();
    joined
        .with_context(|| std::fs::read_to_string(ws.path().join("join.log")).unwrap_or_default())?;
    destroyed?;
    ensure!(left, "the joined node outlived its cluster");
    Ok(())
}

/// A workspace value whose store is the README example's container (for reading records).
fn ws_with_store(ws: &Workspace, url: &str) -> Workspace {
    let mut view = Workspace::new(&ws.cli).unwrap_or_else(|e| panic!("{e}"));
    view.control_store = Some(batchai_acceptance::BlobStoreTarget {
        container_url: url.to_owned(),
        account_key: control_blob::azurite::ACCOUNT_KEY.to_owned(),
    });
    view
}

#[test]
fn the_azure_example_runs_as_written_against_the_simulator() -> anyhow::Result<()> {
    use batchai_acceptance::sim::Sim;
    let readme = std::fs::read_to_string(repo().join("README.md"))?;
    let hcl = blocks(&readme, "On Azure", "hcl");
    let sh = blocks(&readme, "On Azure", "sh");
    ensure!(
        hcl.len() == 1 && sh.len() == 1,
        "README blocks: {hcl:?} {sh:?}"
    );
    // The shell lines start the simulator with `cargo xtask sim up`; this process's own stands
    // in for it, with the same variables exported.
    ensure!(sh[0].contains("cargo xtask sim up") && sh[0].contains("source target/sim/env"));
    let sim = Sim::shared();
    let mut ws = Workspace::installed(&newest_cli())?;
    for (k, v) in sim.env() {
        ws.env(&k, &v);
    }
    for (k, v) in [
        ("ARM_SUBSCRIPTION_ID", sim.subscription_id.as_str()),
        ("ARM_METADATA_HOSTNAME", sim.metadata_host.as_str()),
        ("TF_VAR_resource_group_name", sim.resource_group.as_str()),
        ("TF_VAR_location", sim.location.as_str()),
        ("TF_VAR_storage_account_name", sim.storage_account.as_str()),
        ("TF_VAR_subnet_id", sim.subnet_id.as_str()),
    ] {
        ws.env(k, v);
    }
    std::fs::write(ws.path().join("main.tf"), &hcl[0])?;
    ws.init()?;
    ws.apply()?;
    let state = ws.ok(&["output", "-raw", "hello"])?;
    ensure!(state.trim() == "succeeded", "job {state:?}");
    ensure!(
        sim.nodes("gpu_")?.len() == 2,
        "two scale set instances: {:?}",
        sim.nodes("gpu_")?
    );
    ws.ok(&["destroy", "-auto-approve", "-no-color"])?;
    batchai_acceptance::wait_for(
        "the scale set's instances to go",
        std::time::Duration::from_secs(60),
        || Ok(sim.nodes("gpu_")?.is_empty()),
    )?;
    Ok(())
}
