//! End to end: real Terraform CLIs drive `batchai_cluster` on the local platform: nodes with a
//! file server mounted and a setup task, in-place scaling, auto-scale, a node killed with
//! SIGKILL, a failing setup task, and a destroy that leaves no process and no directory behind.
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use batchai_acceptance::{
    Cli, Workspace, alive, for_every_cli, newest_cli, planned_actions, resource_values, wait_for,
};
use control::records::{NodeRecord, NodeState, keys};
use serde_json::Value as Json;

const FILE_SERVER: &str = r#"resource "batchai_file_server" "data" {
  name    = "data"
  vm_size = "Standard_D2s_v3"
  data_disks {
    disk_count           = 1
    disk_size_gb         = 10
    storage_account_type = "Standard_LRS"
  }
}
"#;

fn cluster(scale: &str, setup: &str, logs: &Path) -> String {
    format!(
        r#"{FILE_SERVER}
resource "batchai_cluster" "gpu" {{
  name    = "gpu"
  vm_size = "Standard_NC6"
  scale_settings {{
    {scale}
  }}
  setup_task {{
    command_line            = "{setup}"
    environment_variables   = {{ GREETING = "hello" }}
    std_out_err_path_prefix = "{logs}"
  }}
  mount_volumes {{
    file_server {{
      file_server_id      = batchai_file_server.data.id
      relative_mount_path = "data"
    }}
  }}
}}
"#,
        logs = logs.display()
    )
}

const SETUP: &str = "echo $GREETING from $AZ_BATCHAI_NODE_ID; touch $AZ_BATCHAI_MOUNT_ROOT/data/$AZ_BATCHAI_NODE_ID";

fn nodes(ws: &Workspace) -> anyhow::Result<Vec<NodeRecord>> {
    batchai_acceptance::node_records(ws, "gpu")
}

fn node_count(state: &Json) -> u64 {
    resource_values(state, "batchai_cluster.gpu")
        .and_then(|v| v.get("current_node_count"))
        .and_then(Json::as_u64)
        .unwrap_or(u64::MAX)
}

fn lifecycle(cli: &Cli) -> anyhow::Result<()> {
    let ws = Workspace::new(cli)?;
    let logs = ws.path().join("logs");
    ws.write_config(&cluster("manual { target_node_count = 2 }", SETUP, &logs))?;
    ws.init()?;
    ws.apply()?;

    let state = ws.state_json()?;
    let values = resource_values(&state, "batchai_cluster.gpu").context("no cluster in state")?;
    ensure!(
        values.get("current_node_count") == Some(&Json::from(2)),
        "{values}"
    );
    ensure!(
        values.pointer("/node_state_counts/idle") == Some(&Json::from(2)),
        "{values}"
    );
    ensure!(
        values.get("allocation_state") == Some(&Json::from("steady")),
        "{values}"
    );
    let export = ws.platform_root().join("fileservers/data/export");
    let nodes_now = nodes(&ws)?;
    ensure!(nodes_now.len() == 2, "{nodes_now:?}");
    for node in &nodes_now {
        // The setup task ran on the node, wrote through the mount into the file server...
        ensure!(
            export.join(&node.id).exists(),
            "setup task of {} did not write to the mount",
            node.id
        );
        // ...and its stdout is under the prefix, in a per-cluster segment.
        let found = walk(&logs)
            .into_iter()
            .find(|p| p.ends_with(format!("{}/stdout.txt", node.id)))
            .with_context(|| format!("no setup log for {}", node.id))?;
        let text = std::fs::read_to_string(&found)?;
        ensure!(text.trim() == format!("hello from {}", node.id), "{text:?}");
    }
    ensure!(ws.plan_exit_code()? == 0, "plan after create is not empty");

    // Scaling changes the cluster in place.
    for target in [3, 1] {
        ws.write_config(&cluster(
            &format!("manual {{ target_node_count = {target} }}"),
            SETUP,
            &logs,
        ))?;
        let plan = ws.plan_json()?;
        ensure!(
            planned_actions(&plan, "batchai_cluster.gpu") == ["update"],
            "scaling to {target}: {plan}"
        );
        ws.apply()?;
        ensure!(
            node_count(&ws.state_json()?) == target,
            "not {target} nodes"
        );
        let live: Vec<u32> = nodes(&ws)?.iter().filter_map(|n| n.pid).collect();
        ensure!(live.len() == target as usize, "{live:?}");
        ensure!(
            ws.plan_exit_code()? == 0,
            "plan after scaling to {target} is not empty"
        );
    }

    // Auto-scale: starts at its initial size, then shrinks to the minimum when idle. The live
    // count is computed only, so it never produces a diff.
    ws.write_config(&cluster(
        "auto_scale {\n      minimum_node_count = 0\n      maximum_node_count = 3\n      initial_node_count = 2\n      idle_timeout       = \"3s\"\n    }",
        SETUP,
        &logs,
    ))?;
    let plan = ws.plan_json()?;
    ensure!(
        planned_actions(&plan, "batchai_cluster.gpu") == ["update"],
        "switch to auto-scale: {plan}"
    );
    ws.apply()?;
    ensure!(
        node_count(&ws.state_json()?) == 2,
        "auto-scale did not start with 2 nodes"
    );
    let pids: Vec<u32> = nodes(&ws)?.iter().filter_map(|n| n.pid).collect();
    wait_for("auto-scale to shrink to 0", Duration::from_secs(30), || {
        Ok(nodes(&ws)?.is_empty())
    })?;
    wait_for("idle nodes to exit", Duration::from_secs(10), || {
        Ok(pids.iter().all(|p| !alive(*p)))
    })?;
    let plan = ws.plan_json()?;
    let actions = planned_actions(&plan, "batchai_cluster.gpu");
    ensure!(
        actions == ["no-op"] || actions.is_empty(),
        "auto-scaled count produced a diff: {actions:?}"
    );
    ws.ok(&["apply", "-refresh-only", "-auto-approve", "-no-color"])?;
    ensure!(
        node_count(&ws.state_json()?) == 0,
        "refresh did not see 0 nodes"
    );

    // Back to a fixed size, then destroy: every node process ends and nothing is left.
    ws.write_config(&cluster("manual { target_node_count = 2 }", SETUP, &logs))?;
    ws.apply()?;
    let pids: Vec<u32> = nodes(&ws)?.iter().filter_map(|n| n.pid).collect();
    ensure!(
        pids.len() == 2 && pids.iter().all(|p| alive(*p)),
        "{pids:?}"
    );
    destroy_and_check_nothing_left(&ws)?;
    ensure!(nodes(&ws)?.is_empty(), "node records left behind");
    let store = ws.store()?;
    ensure!(
        store.list(&keys::cluster_prefix("gpu"))?.is_empty(),
        "cluster keys left behind"
    );
    Ok(())
}

/// Destroys everything and checks that every node process the cluster had has ended and that
/// no cluster directory is left. Returns the PIDs it checked.
fn destroy_and_check_nothing_left(ws: &Workspace) -> anyhow::Result<Vec<u32>> {
    let pids: Vec<u32> = nodes(ws)?.iter().filter_map(|n| n.pid).collect();
    ensure!(!pids.is_empty(), "no node processes to check");
    ws.ok(&["destroy", "-auto-approve", "-no-color"])?;
    ensure!(
        pids.iter().all(|p| !alive(*p)),
        "node processes survived destroy: {pids:?}"
    );
    ensure!(
        !ws.platform_root().join("clusters/gpu").exists(),
        "cluster directory left behind"
    );
    Ok(pids)
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn create_mount_scale_autoscale_and_destroy() {
    for_every_cli(lifecycle);
}

#[test]
fn a_killed_node_is_replaced_and_the_cluster_converges() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let logs = ws.path().join("logs");
    ws.write_config(&cluster("manual { target_node_count = 2 }", SETUP, &logs))?;
    ws.init()?;
    ws.apply()?;
    let before = nodes(&ws)?;
    let victim = before.first().context("no node")?.clone();
    let pid = victim.pid.context("no pid")?;
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    // Lost after the heartbeat goes stale (10 s); a scheduler lease held by the victim
    // expires after 15 s. Either way the survivor replaces it.
    wait_for(
        "the cluster to converge on 2 idle nodes",
        Duration::from_secs(60),
        || {
            let now = nodes(&ws)?;
            Ok(now.len() == 2
                && now.iter().all(|n| n.state == NodeState::Idle)
                && now.iter().all(|n| n.id != victim.id))
        },
    )?;
    ensure!(!alive(pid), "the killed node is still running");
    ensure!(
        ws.plan_exit_code()? == 0,
        "plan after convergence is not empty"
    );
    destroy_and_check_nothing_left(&ws)?;
    Ok(())
}

#[test]
fn a_failing_setup_task_is_a_diagnostic_and_nothing_leaks() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let logs = ws.path().join("logs");
    ws.write_config(&cluster(
        "manual { target_node_count = 1 }",
        "echo cannot install drivers >&2; exit 3",
        &logs,
    ))?;
    ws.init()?;
    let out = ws.run(&["apply", "-auto-approve", "-no-color"])?;
    ensure!(
        !out.status.success(),
        "apply succeeded despite the failing setup task"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(stderr.contains("setup task failed"), "{stderr}");
    ensure!(stderr.contains("exit code 3"), "{stderr}");
    ensure!(stderr.contains("cannot install drivers"), "{stderr}");
    ensure!(
        stderr.contains("stderr.txt"),
        "the log path is missing: {stderr}"
    );
    // Saved and tainted, so nothing is forgotten and the next apply replaces it.
    let plan = ws.plan_json()?;
    ensure!(
        planned_actions(&plan, "batchai_cluster.gpu") == ["delete", "create"],
        "{plan}"
    );
    let state = ws.state_json()?;
    let values = resource_values(&state, "batchai_cluster.gpu").context("cluster not in state")?;
    ensure!(
        values.pointer("/node_state_counts/unusable") == Some(&Json::from(1)),
        "{values}"
    );
    ensure!(
        values.to_string().contains("SetupTaskFailed"),
        "errors missing: {values}"
    );
    destroy_and_check_nothing_left(&ws)?;
    Ok(())
}

#[test]
fn plan_time_diagnostics_point_at_the_attribute() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let logs = ws.path().join("logs");
    let bad_path = cluster("manual { target_node_count = 1 }", SETUP, &logs).replace(
        "relative_mount_path = \"data\"",
        "relative_mount_path = \"../escape\"",
    );
    ws.write_config(&bad_path)?;
    ws.init()?;
    let out = ws.run(&["validate", "-json", "-no-color"])?;
    let report: Json = serde_json::from_slice(&out.stdout)?;
    let text = report.to_string();
    ensure!(
        text.contains("invalid relative_mount_path") && text.contains("relative_mount_path"),
        "{text}"
    );

    let missing = cluster("manual { target_node_count = 1 }", SETUP, &logs)
        .replace("batchai_file_server.data.id", "\"local/fileServers/nope\"");
    ws.write_config(&missing)?;
    let out = ws.run(&["plan", "-no-color"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("file server not found"),
        "{stderr}"
    );
    ensure!(stderr.contains("file_server_id"), "{stderr}");
    Ok(())
}

#[test]
fn gpus_are_disjoint_import_works_and_drift_recreates() -> anyhow::Result<()> {
    let mut ws = Workspace::new(&newest_cli())?;
    // Pretend the machine has 4 GPUs; Standard_NC12 nodes get 2 each.
    ws.env("BATCHAI_LOCAL_GPU_COUNT", "4");
    let logs = ws.path().join("logs");
    let setup = "echo $AZ_BATCHAI_NUM_GPUS/$CUDA_VISIBLE_DEVICES > $AZ_BATCHAI_MOUNT_ROOT/data/$AZ_BATCHAI_NODE_ID.gpus";
    let config = cluster("manual { target_node_count = 2 }", setup, &logs)
        .replace("Standard_NC6", "Standard_NC12");
    ws.write_config(&config)?;
    ws.init()?;
    ws.apply()?;
    let export = ws.platform_root().join("fileservers/data/export");
    let mut seen = Vec::new();
    for node in nodes(&ws)? {
        let text = std::fs::read_to_string(export.join(format!("{}.gpus", node.id)))?;
        let (count, devices) = text.trim().split_once('/').context("bad gpu report")?;
        ensure!(count == "2", "{}: {text}", node.id);
        ensure!(node.gpus.len() == 2, "{node:?}");
        for d in devices.split(',') {
            ensure!(!seen.contains(&d.to_owned()), "GPU {d} given to two nodes");
            seen.push(d.to_owned());
        }
    }
    ensure!(seen.len() == 4, "{seen:?}");
    // State shows each node's GPUs, as the nodes saw them.
    let state = ws.state_json()?;
    let in_state = resource_values(&state, "batchai_cluster.gpu").context("no cluster")?["nodes"]
        .as_array()
        .context("no nodes in state")?
        .iter()
        .map(|n| n["gpus"].as_array().map_or(0, Vec::len))
        .collect::<Vec<_>>();
    ensure!(in_state == [2, 2], "{in_state:?}");

    // Import the cluster into another state: the plan is empty.
    let other = ws.sibling()?;
    other.write_config(&config)?;
    other.init()?;
    other.ok(&[
        "import",
        "-no-color",
        "batchai_file_server.data",
        "local/fileServers/data",
    ])?;
    other.ok(&[
        "import",
        "-no-color",
        "batchai_cluster.gpu",
        "local/clusters/gpu",
    ])?;
    ensure!(
        other.plan_exit_code()? == 0,
        "plan after import is not empty"
    );

    // Drift: the cluster is removed behind Terraform's back; the next plan re-creates it.
    let pids: Vec<u32> = nodes(&ws)?.iter().filter_map(|n| n.pid).collect();
    for pid in &pids {
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
    }
    let store = ws.store()?;
    for key in store.list(&keys::cluster_prefix("gpu"))? {
        let _ = store.delete(&key, control::Condition::Always, None);
    }
    let _ = store.put(
        "local/gpus",
        b"{\"format\":1,\"held\":{}}",
        control::Condition::Always,
        None,
    );
    let plan = ws.plan_json()?;
    ensure!(
        planned_actions(&plan, "batchai_cluster.gpu") == ["create"],
        "drift: {plan}"
    );
    ws.apply()?;
    ensure!(node_count(&ws.state_json()?) == 2, "not re-created");
    destroy_and_check_nothing_left(&ws)?;
    Ok(())
}

#[test]
fn ctrl_c_during_create_keeps_the_partial_cluster_in_state() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let logs = ws.path().join("logs");
    ws.write_config(&cluster(
        "manual { target_node_count = 2 }",
        "sleep 60",
        &logs,
    ))?;
    ws.init()?;
    let mut apply = ws.spawn(&["apply", "-auto-approve", "-no-color"])?;
    wait_for(
        "nodes to start their setup task",
        Duration::from_secs(60),
        || {
            let now = nodes(&ws)?;
            Ok(now.len() == 2 && now.iter().all(|n| n.state == NodeState::Preparing))
        },
    )?;
    // What Ctrl-C does: Terraform gets SIGINT and asks the provider to stop.
    std::process::Command::new("kill")
        .args(["-INT", &apply.id().to_string()])
        .status()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = apply.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = apply.kill();
            anyhow::bail!("terraform did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    ensure!(!status.success(), "an interrupted apply reported success");
    // The half-created cluster is in state, so destroy can find and stop its nodes.
    let listed = ws.ok(&["state", "list"])?;
    ensure!(
        listed.contains("batchai_cluster.gpu"),
        "cluster missing from state: {listed}"
    );
    destroy_and_check_nothing_left(&ws)?;
    Ok(())
}

#[test]
fn a_setup_task_longer_than_the_heartbeat_timeout_is_not_mistaken_for_a_lost_node()
-> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let logs = ws.path().join("logs");
    // Longer than the 10 s after which a silent node counts as lost.
    ws.write_config(&cluster(
        "manual { target_node_count = 1 }",
        "sleep 13; echo done",
        &logs,
    ))?;
    ws.init()?;
    ws.apply()?;
    let now = nodes(&ws)?;
    ensure!(
        now.len() == 1 && now[0].id == "node-0",
        "the node was replaced during setup: {now:?}"
    );
    ensure!(now[0].state == NodeState::Idle, "{now:?}");
    ws.ok(&["destroy", "-auto-approve", "-no-color"])?;
    Ok(())
}
