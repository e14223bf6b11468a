//! `cargo xtask bench azure`: the azure platform's figures against the ARM simulator, with real
//! Terraform: ARM requests per apply and per plan of a 4-node cluster (the provider's and the
//! nodes' apart), requests per minute of an idle cluster, the create time, the time to converge
//! under a 429 storm, and the time from a Spot eviction notice to the job running elsewhere.
//! Printed, never asserted: the simulator's delays are its own, and these machines are shared.
#![allow(clippy::print_stdout)]
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use batchai_acceptance::sim::Sim;
use batchai_acceptance::{Workspace, newest_cli, wait_for};
use serde_json::json;

fn cluster(name: &str, priority: &str, nodes: u32) -> String {
    format!(
        r#"resource "batchai_cluster" "c" {{
  name        = "{name}"
  vm_size     = "Standard_D4s_v5"
  vm_priority = "{priority}"
  subnet_id   = "{subnet}"
  scale_settings {{
    manual {{
      target_node_count = {nodes}
    }}
  }}
}}
"#,
        subnet = Sim::shared().subnet_id
    )
}

/// ARM requests since `seq`, counted by who made them (the provider's service principal or a
/// node's managed identity).
fn requests(sim: &Sim, seq: u64) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut by = BTreeMap::new();
    for r in sim.requests_since(seq)? {
        let who = match r["caller"].as_str() {
            Some(c) if c == sim.client_id => "provider",
            Some(_) => "nodes",
            None => "unknown",
        };
        *by.entry(who.to_owned()).or_insert(0) += 1;
    }
    Ok(by)
}

fn show(by: &BTreeMap<String, usize>) -> String {
    let total: usize = by.values().sum();
    let parts: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!("{total} ({})", parts.join(", "))
}

fn main() -> anyhow::Result<()> {
    let sim = Sim::shared();
    let cli = newest_cli();
    println!(
        "azure platform against the ARM simulator, Terraform {}",
        cli.version
    );

    // A 4-node cluster: create, plan, idle, destroy.
    let ws = Workspace::on_azure(&cli)?;
    ws.write_config(&cluster("bench4", "dedicated", 4))?;
    ws.init()?;
    let seq = sim.last_seq()?;
    let started = Instant::now();
    ws.apply()?;
    let created = started.elapsed();
    println!(
        "apply of a 4-node cluster: {:.1} s, ARM requests {}",
        created.as_secs_f64(),
        show(&requests(sim, seq)?)
    );
    let seq = sim.last_seq()?;
    let started = Instant::now();
    let code = ws.plan_exit_code()?;
    println!(
        "plan of it (exit code {code}): {:.1} s, ARM requests {}",
        started.elapsed().as_secs_f64(),
        show(&requests(sim, seq)?)
    );
    let seq = sim.last_seq()?;
    std::thread::sleep(Duration::from_secs(60));
    println!(
        "the idle 4-node cluster over 60 s: ARM requests {}",
        show(&requests(sim, seq)?)
    );
    let seq = sim.last_seq()?;
    let started = Instant::now();
    ws.ok(&["destroy", "-auto-approve", "-no-color"])?;
    println!(
        "destroy: {:.1} s, ARM requests {}",
        started.elapsed().as_secs_f64(),
        show(&requests(sim, seq)?)
    );

    // A create under a storm of throttled requests.
    let ws = Workspace::on_azure(&cli)?;
    ws.write_config(&cluster("benchstorm", "dedicated", 1))?;
    ws.init()?;
    sim.control(
        "POST",
        "faults",
        Some(&json!({"kind": "throttle", "count": 6, "retryAfter": 1, "path": "virtualMachineScaleSets/benchstorm"})),
    )?;
    let started = Instant::now();
    ws.apply()?;
    println!(
        "apply of a 1-node cluster under 6 throttled requests (Retry-After: 1): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    ws.ok(&["destroy", "-auto-approve", "-no-color"])?;

    // A Spot eviction mid-job: from the notice to the job running on another node.
    let ws = Workspace::on_azure(&cli)?;
    let marker = ws.path().join("started");
    let job = format!(
        r#"resource "batchai_job" "long" {{
  name       = "long"
  cluster_id = batchai_cluster.c.id
  custom_toolkit {{
    command_line = "hostname -I >> {marker}; sleep 30"
  }}
  wait_for_completion = true
}}
"#,
        marker = marker.display()
    );
    ws.write_config(&(cluster("benchspot", "lowpriority", 2) + &job))?;
    ws.init()?;
    let mut apply = ws.spawn(&["apply", "-auto-approve", "-no-color"])?;
    wait_for("the job to start", Duration::from_secs(180), || {
        Ok(marker.exists())
    })?;
    let address = std::fs::read_to_string(&marker)?.trim().to_owned();
    let nodes = sim.nodes("benchspot_")?;
    let running = nodes
        .iter()
        .find(|n| n["address"].as_str().is_some_and(|a| address.contains(a)))
        .context("the node running the job")?;
    let instance = running["name"]
        .as_str()
        .and_then(|n| n.rsplit('_').next())
        .context("an instance ID")?
        .to_owned();
    let started = Instant::now();
    sim.control(
        "POST",
        &format!(
            "resourceGroups/{}/vmss/benchspot/instances/{instance}/evict",
            sim.resource_group
        ),
        Some(&json!({ "notice": 30 })),
    )?;
    wait_for("the job to start again", Duration::from_secs(180), || {
        Ok(std::fs::read_to_string(&marker)?.lines().count() >= 2)
    })?;
    println!(
        "Spot eviction (30 s notice) to the job running on another node: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let status = apply.wait()?;
    anyhow::ensure!(status.success(), "the apply of the evicted job: {status}");
    ws.ok(&["destroy", "-auto-approve", "-no-color"])?;
    Ok(())
}
