//! The azure platform end to end: real Terraform against the ARM simulator, whose scale set
//! instances boot as real nodes (the bootstrap downloads the agent from Azurite with the
//! instance's managed identity, each node in a network namespace of its own), and Azurite as
//! the control store. Clusters, MPI across nodes, scaling in place, a Spot eviction, throttling,
//! a failed create, instances deleted behind Terraform's back, and logs and outputs that
//! outlive the node that wrote them on its own disk.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use batchai_acceptance::sim::{Sim, cluster, live_instances, manual, workspace};
use batchai_acceptance::{state_of, wait_for};
use serde_json::{Value as Json, json};

/// The ARM requests (method and path, status) logged since `seq`.
fn arm_requests(seq: u64) -> Vec<(String, u64)> {
    Sim::shared()
        .requests_since(seq)
        .unwrap()
        .iter()
        .map(|r| {
            (
                format!(
                    "{} {}",
                    r["method"].as_str().unwrap_or(""),
                    r["path"].as_str().unwrap_or("")
                ),
                r["status"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn a_cluster_runs_mpi_across_nodes_scales_in_place_and_is_destroyed() {
    let sim = Sim::shared();
    let ws = workspace();
    let name = "azmpi";
    let job = format!(
        r#"resource "batchai_job" "mpi" {{
  name                    = "ranks"
  cluster_id              = batchai_cluster.c.id
  node_count              = 2
  std_out_err_path_prefix = "{logs}"
  custom_mpi {{
    command_line  = "sh -c 'echo rank $OMPI_COMM_WORLD_RANK on $(hostname -I)'"
    process_count = 2
  }}
  wait_for_completion = true
}}
"#,
        logs = ws.path().join("logs").display()
    );
    ws.write_config(&(cluster(name, "", &manual(2)) + &job))
        .unwrap();
    ws.init().unwrap();
    let before = sim.last_seq().unwrap();
    ws.apply().unwrap();
    let apply_requests = arm_requests(before);
    eprintln!(
        "ARM requests for the apply of a 2-node cluster and a job: {}",
        apply_requests.len()
    );

    let c = state_of(&ws, "batchai_cluster.c");
    assert_eq!(c["current_node_count"], 2, "{c}");
    assert_eq!(c["node_state_counts"]["idle"], 2, "{c}");
    let j = state_of(&ws, "batchai_job.mpi");
    assert_eq!(j["execution_state"], "succeeded", "{j}");
    // Each rank ran on its own node, at its own address: MPI crossed namespaces.
    let logs = batchai_acceptance::walk(&ws.path().join("logs"));
    let stdout = logs
        .iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("stdout"))
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .unwrap_or_default();
    let addresses: std::collections::BTreeSet<&str> = stdout
        .lines()
        .filter_map(|l| l.split(" on ").nth(1))
        .map(str::trim)
        .collect();
    assert!(
        stdout.contains("rank 0") && stdout.contains("rank 1"),
        "{stdout}"
    );
    assert_eq!(addresses.len(), 2, "two ranks on two addresses: {stdout}");
    assert_eq!(live_instances(name).len(), 2);

    // A plan reads the cluster and the job and changes nothing.
    let before = sim.last_seq().unwrap();
    assert_eq!(ws.plan_exit_code().unwrap(), 0);
    eprintln!("ARM requests for a plan: {}", arm_requests(before).len());

    // Scale 2 -> 3 -> 1 in place: the scale set grows, then loses the nodes the scheduler chose.
    for (count, job_nodes) in [(3, 2), (1, 1)] {
        let job = job
            .replace(
                "node_count              = 2",
                &format!("node_count              = {job_nodes}"),
            )
            .replace("process_count = 2", &format!("process_count = {job_nodes}"));
        ws.write_config(&(cluster(name, "", &manual(count)) + &job))
            .unwrap();
        ws.apply().unwrap();
        let c = state_of(&ws, "batchai_cluster.c");
        assert_eq!(c["current_node_count"], count, "{c}");
        wait_for("the scale set to match", Duration::from_secs(60), || {
            Ok(live_instances(name).len() == count as usize)
        })
        .unwrap();
    }
    assert_eq!(ws.plan_exit_code().unwrap(), 0);

    ws.ok(&["destroy", "-auto-approve", "-no-color"]).unwrap();
    wait_for("every instance to go", Duration::from_secs(60), || {
        Ok(live_instances(name).is_empty())
    })
    .unwrap();
    let vmss = format!(
        "subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachineScaleSets/{name}",
        sim.subscription_id, sim.resource_group
    );
    let after = arm_requests(0);
    assert!(
        after
            .iter()
            .any(|(r, status)| r.starts_with("DELETE") && r.ends_with(&vmss) && *status < 300),
        "destroy deleted the scale set"
    );
}

#[test]
fn a_spot_eviction_mid_job_requeues_it_and_it_succeeds_elsewhere() {
    let sim = Sim::shared();
    let ws = workspace();
    let name = "azspot";
    let marker = ws.path().join("started");
    let job = format!(
        r#"resource "batchai_job" "long" {{
  name       = "long"
  cluster_id = batchai_cluster.c.id
  node_count = 1
  custom_toolkit {{
    command_line = "hostname -I >> {marker}; sleep 20; echo done"
  }}
  wait_for_completion = true
}}
"#,
        marker = marker.display()
    );
    ws.write_config(&(cluster(name, "  vm_priority = \"lowpriority\"", &manual(2)) + &job))
        .unwrap();
    ws.init().unwrap();
    let mut apply = ws.spawn(&["apply", "-auto-approve", "-no-color"]).unwrap();
    wait_for("the job to start", Duration::from_secs(120), || {
        Ok(marker.exists())
    })
    .unwrap();
    // Which node runs it: the instance whose address the job wrote.
    let address = std::fs::read_to_string(&marker).unwrap().trim().to_owned();
    let nodes = sim.nodes(&format!("{name}_")).unwrap();
    let running = nodes
        .iter()
        .find(|n| n["address"].as_str().is_some_and(|a| address.contains(a)))
        .or_else(|| nodes.first())
        .unwrap();
    let instance = running["name"]
        .as_str()
        .unwrap()
        .rsplit('_')
        .next()
        .unwrap()
        .to_owned();
    sim.control(
        "POST",
        &format!(
            "resourceGroups/{}/vmss/{name}/instances/{instance}/evict",
            sim.resource_group
        ),
        Some(&json!({ "notice": 30 })),
    )
    .unwrap();
    let status = apply.wait().unwrap();
    assert!(status.success(), "apply: {status}");
    let j = state_of(&ws, "batchai_job.long");
    assert_eq!(j["execution_state"], "succeeded", "{j}");
    assert_eq!(j["attempts"], 2, "the evicted attempt was requeued: {j}");
    let starts = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(starts.lines().count(), 2, "{starts}");
    assert_ne!(
        starts.lines().next(),
        starts.lines().nth(1),
        "it ran again on another node"
    );
    ws.ok(&["destroy", "-auto-approve", "-no-color"]).unwrap();
}

#[test]
fn a_throttling_storm_during_create_converges() {
    let sim = Sim::shared();
    let ws = workspace();
    let name = "azthrottle";
    ws.write_config(&cluster(name, "", &manual(1))).unwrap();
    ws.init().unwrap();
    sim.control(
        "POST",
        "faults",
        Some(&json!({"kind": "throttle", "count": 6, "retryAfter": 1, "path": format!("virtualMachineScaleSets/{name}")})),
    )
    .unwrap();
    let before = sim.last_seq().unwrap();
    let started = std::time::Instant::now();
    ws.apply().unwrap();
    let throttled = arm_requests(before)
        .iter()
        .filter(|(_, s)| *s == 429)
        .count();
    eprintln!(
        "a create under a storm of {throttled} throttled requests converged in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(throttled, 6, "every throttled request was retried");
    assert_eq!(state_of(&ws, "batchai_cluster.c")["current_node_count"], 1);
    ws.ok(&["destroy", "-auto-approve", "-no-color"]).unwrap();
}

#[test]
fn a_create_that_fails_in_arm_keeps_partial_state_and_the_next_apply_converges() {
    let sim = Sim::shared();
    let ws = workspace();
    let name = "azfail";
    ws.write_config(&cluster(name, "", &manual(1))).unwrap();
    ws.init().unwrap();
    sim.control(
        "POST",
        "faults",
        Some(&json!({"kind": "fail", "count": 1, "code": "AllocationFailed", "method": "PUT", "path": format!("virtualMachineScaleSets/{name}$")})),
    )
    .unwrap();
    let out = ws.run(&["apply", "-auto-approve", "-no-color"]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("AllocationFailed"), "{stderr}");
    assert!(stderr.contains("correlation id"), "{stderr}");
    // The cluster is in state (tainted), so the next apply replaces it rather than leaking it.
    assert!(!state_of(&ws, "batchai_cluster.c").is_null());
    ws.apply().unwrap();
    assert_eq!(state_of(&ws, "batchai_cluster.c")["current_node_count"], 1);
    ws.ok(&["destroy", "-auto-approve", "-no-color"]).unwrap();
    wait_for("every instance to go", Duration::from_secs(60), || {
        Ok(live_instances(name).is_empty())
    })
    .unwrap();
}

#[test]
fn instances_deleted_behind_terraforms_back_are_replaced_and_destroy_still_succeeds() {
    let sim = Sim::shared();
    let ws = workspace();
    let name = "azgone";
    ws.write_config(&cluster(name, "", &manual(2))).unwrap();
    ws.init().unwrap();
    ws.apply().unwrap();
    for instance in live_instances(name) {
        let id = instance.rsplit('_').next().unwrap().to_owned();
        sim.control(
            "POST",
            &format!(
                "resourceGroups/{}/vmss/{name}/instances/{id}/delete",
                sim.resource_group
            ),
            Some(&json!({})),
        )
        .unwrap();
    }
    // Read notices the lost nodes (their heartbeats stop) and the cluster grows new ones.
    wait_for("replacement nodes", Duration::from_secs(120), || {
        ws.ok(&["apply", "-refresh-only", "-auto-approve", "-no-color"])?;
        let c = state_of(&ws, "batchai_cluster.c");
        Ok(c["node_state_counts"]["idle"] == 2 && live_instances(name).len() == 2)
    })
    .unwrap();
    // And by hand again, then destroy: nothing is left, and destroy does not fail on what is gone.
    for instance in live_instances(name) {
        let id = instance.rsplit('_').next().unwrap().to_owned();
        sim.control(
            "POST",
            &format!(
                "resourceGroups/{}/vmss/{name}/instances/{id}/delete",
                sim.resource_group
            ),
            Some(&json!({})),
        )
        .unwrap();
    }
    ws.ok(&["destroy", "-auto-approve", "-no-color"]).unwrap();
    assert!(live_instances(name).is_empty());
}

#[test]
fn plans_check_the_size_and_the_subnet_with_azure() {
    let sim = Sim::shared();
    let ws = workspace();
    let private = sim
        .subnet_id
        .replace("/subnets/default", "/subnets/private");
    ws.write_config(&format!(
        r#"resource "batchai_cluster" "c" {{
  name      = "azplan"
  vm_size   = "Standard_NoSuchSize_v9"
  subnet_id = "{subnet}"
  scale_settings {{
    manual {{
      target_node_count = 1
    }}
  }}
}}
"#,
        subnet = sim.subnet_id
    ))
    .unwrap();
    ws.init().unwrap();
    let out = ws.run(&["plan", "-no-color"]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("VM size not offered here"), "{stderr}");
    assert!(stderr.contains("Standard_NoSuchSize_v9"), "{stderr}");

    ws.write_config(&format!(
        r#"resource "batchai_cluster" "c" {{
  name      = "azplan"
  vm_size   = "Standard_D4s_v5"
  subnet_id = "{private}"
  scale_settings {{
    manual {{
      target_node_count = 1
    }}
  }}
}}
"#
    ))
    .unwrap();
    let out = ws.run(&["plan", "-no-color"]).unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("the subnet may have no outbound access"),
        "{all}"
    );
}

#[test]
fn nodes_azure_cannot_allocate_fail_the_apply_with_azures_reason_then_converge() {
    let sim = Sim::shared();
    let ws = workspace();
    let name = "azalloc";
    ws.write_config(&cluster(name, "", &manual(1))).unwrap();
    ws.init().unwrap();
    // Every capacity change of this scale set allocates nothing until the fault is cleared.
    let fault = sim
        .control(
            "POST",
            "faults",
            Some(&json!({"kind": "fail", "count": null, "code": "AllocationFailed", "method": "PATCH", "path": format!("virtualMachineScaleSets/{name}$")})),
        )
        .unwrap();
    let out = ws.run(&["apply", "-auto-approve", "-no-color"]).unwrap();
    // Terraform wraps diagnostics: compare words.
    let stderr = String::from_utf8_lossy(&out.stderr)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(!out.status.success());
    assert!(stderr.contains("has failed to add nodes"), "{stderr}");
    assert!(stderr.contains("AllocationFailed"), "{stderr}");
    let c = state_of(&ws, "batchai_cluster.c");
    let errors = c["errors"].to_string();
    assert!(
        errors.contains("LaunchFailed") && errors.contains("AllocationFailed"),
        "{c}"
    );
    // Capacity is back: the next apply replaces the tainted cluster and converges.
    let id = match &fault["id"] {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    sim.control("DELETE", &format!("faults/{id}"), None)
        .unwrap();
    ws.apply().unwrap();
    let c = state_of(&ws, "batchai_cluster.c");
    assert_eq!(c["current_node_count"], 1, "{c}");
    assert_eq!(c["errors"], json!([]), "{c}");
    ws.ok(&["destroy", "-auto-approve", "-no-color"]).unwrap();
}

#[test]
fn logs_and_outputs_on_a_nodes_own_disk_outlive_the_node() {
    let sim = Sim::shared();
    let ws = workspace();
    let name = "azkeep";
    // No log prefix: the azure default is on the node's own disk, as is this output directory.
    let job = r#"resource "batchai_job" "keep" {
  name       = "keep"
  cluster_id = batchai_cluster.c.id
  custom_toolkit {
    command_line = "echo hello from $AZ_BATCHAI_JOB_NAME; echo weights > $AZ_BATCHAI_OUTPUT_MODEL/model.txt"
  }
  output_directories {
    id          = "MODEL"
    path_prefix = "$AZ_BATCHAI_MOUNT_ROOT/outputs"
  }
  wait_for_completion = true
}
"#;
    ws.write_config(&(cluster(name, "", &manual(1)) + job))
        .unwrap();
    ws.init().unwrap();
    ws.apply().unwrap();
    let j = state_of(&ws, "batchai_job.keep");
    assert_eq!(j["execution_state"], "succeeded", "{j}");
    let segment = j["job_output_directory_path_segment"]
        .as_str()
        .unwrap()
        .to_owned();
    let container = ws.azure_container.clone().unwrap();
    let logs = j["std_out_err_directory"].as_str().unwrap().to_owned();
    let node = live_instances(name).first().cloned().unwrap();
    let node_name = node.replace('_', "-");
    assert_eq!(
        logs,
        format!(
            "{}{container}/files/{segment}/{node_name}/stdouterr",
            sim.blob_endpoint
        ),
        "{j}"
    );

    // Scaling to zero deletes the VM, and its disk with it.
    let disk = sim.state.join("vms").join(&node).join("rootfs");
    assert!(disk.exists(), "{}", disk.display());
    ws.write_config(&(cluster(name, "", &manual(0)) + job))
        .unwrap();
    ws.apply().unwrap();
    wait_for("the node's disk to go", Duration::from_secs(60), || {
        Ok(!disk.exists())
    })
    .unwrap();

    let blobs = sim.blobs(&container).unwrap();
    let kept = format!("files/{segment}/{node_name}");
    let read = |file: &str| {
        String::from_utf8(
            blobs
                .download_file(&format!("{kept}/{file}"))
                .unwrap()
                .unwrap_or_else(|| panic!("{file} was not kept: {:?}", blobs.list_files("files/"))),
        )
        .unwrap()
    };
    assert_eq!(
        read(&format!("stdouterr/stdout-{node_name}.txt")),
        "hello from keep\n"
    );
    assert_eq!(read("outputs/MODEL/model.txt"), "weights\n");
    ws.ok(&["destroy", "-auto-approve", "-no-color"]).unwrap();
}

#[test]
fn a_file_server_exports_its_striped_disks_over_nfs_to_a_cluster_and_goes_with_destroy() {
    let sim = Sim::shared();
    let ws = workspace();
    let file_server = |subnet: &str| {
        format!(
            r#"resource "batchai_file_server" "fs" {{
  name    = "aznfs"
  vm_size = "Standard_D2s_v5"
{subnet}
  data_disks {{
    disk_count           = 2
    disk_size_gb         = 32
    storage_account_type = "Premium_LRS"
  }}
  ssh_configuration {{
    user_account_settings {{
      admin_user_name     = "ops"
      admin_user_password = "not-on-azure"
    }}
  }}
}}
"#
        )
    };
    // On Azure a file server needs a subnet, and SSH keys rather than a password: the plan says
    // so, at the attributes.
    ws.write_config(&file_server("")).unwrap();
    ws.init().unwrap();
    let out = ws.run(&["plan", "-no-color"]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no subnet for the file server"), "{stderr}");
    assert!(
        stderr.contains("passwords are not used on the azure platform"),
        "{stderr}"
    );

    let subnet = format!("  subnet_id = \"{}\"", sim.subnet_id);
    let fs = file_server(&subnet).replace(
        "      admin_user_password = \"not-on-azure\"",
        "      admin_user_ssh_public_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps ops\"",
    );
    let job = r#"resource "batchai_job" "j" {
  name                    = "shared"
  cluster_id              = batchai_cluster.c.id
  std_out_err_path_prefix = "$AZ_BATCHAI_MOUNT_ROOT/nfs/logs"
  custom_toolkit {
    command_line = "echo trained on $(hostname -I) > $AZ_BATCHAI_OUTPUT_MODEL/model.txt; echo scratch > $AZ_BATCHAI_JOB_MOUNT_ROOT/scratch/from-job.txt"
  }
  output_directories {
    id          = "MODEL"
    path_prefix = "$AZ_BATCHAI_MOUNT_ROOT/nfs/outputs"
  }
  # The user's own mount command, for this job's run only.
  mount_volumes {
    unmanaged_file_system {
      mount_command       = "mount -t nfs -o rw,hard ${batchai_file_server.fs.mount_settings.file_server_internal_ip}:/data"
      relative_mount_path = "scratch"
    }
  }
  wait_for_completion = true
}
"#;
    let mounts = "  mount_volumes {\n    file_server {\n      file_server_id      = batchai_file_server.fs.id\n      relative_mount_path = \"nfs\"\n    }\n  }";
    ws.write_config(&(fs.clone() + &cluster("aznfsc", mounts, &manual(1)) + job))
        .unwrap();
    ws.apply().unwrap();

    // The file server is a VM of its own, at the address clusters mount.
    let f = state_of(&ws, "batchai_file_server.fs");
    let server = sim.nodes("aznfs").unwrap();
    let server = server
        .iter()
        .find(|n| n["name"] == "aznfs")
        .unwrap_or_else(|| panic!("no VM aznfs: {server:?}"));
    assert_eq!(f["mount_settings"]["mount_point"], "/data", "{f}");
    assert_eq!(
        f["mount_settings"]["file_server_internal_ip"], server["address"],
        "{f} {server}"
    );
    assert_eq!(f["provisioning_state"], "succeeded", "{f}");

    // The job wrote through the mount: its output and its logs are on the file server's
    // array, and nothing was copied into the control container (they were not on the node's
    // own disk).
    let j = state_of(&ws, "batchai_job.j");
    assert_eq!(j["execution_state"], "succeeded", "{j}");
    let segment = j["job_output_directory_path_segment"].as_str().unwrap();
    let data = std::path::Path::new(server["dir"].as_str().unwrap()).join("rootfs/data");
    let model = std::fs::read_to_string(data.join("outputs").join(segment).join("model.txt"))
        .unwrap_or_else(|e| {
            panic!(
                "model.txt on the file server: {e}: {:?}",
                batchai_acceptance::walk(&data)
            )
        });
    assert!(model.starts_with("trained on "), "{model}");
    assert_eq!(
        std::fs::read_to_string(data.join("from-job.txt")).unwrap_or_default(),
        "scratch\n",
        "the job-level unmanaged mount reached the file server"
    );
    let logs = batchai_acceptance::walk(&data.join("logs").join(segment).join("stdouterr"));
    assert!(
        logs.iter().any(|p| p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("stdout"))),
        "{logs:?}"
    );
    let blobs = sim.blobs(ws.azure_container.as_deref().unwrap()).unwrap();
    assert_eq!(
        blobs.list_files(&format!("files/{segment}/")).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(ws.plan_exit_code().unwrap(), 0);

    // Destroy removes the VM; its disks and NIC go with it.
    ws.ok(&["destroy", "-auto-approve", "-no-color"]).unwrap();
    wait_for("the file server VM to go", Duration::from_secs(60), || {
        Ok(!sim
            .nodes("aznfs")
            .unwrap()
            .iter()
            .any(|n| n["name"] == "aznfs" && n["state"] != "Deleting"))
    })
    .unwrap();
    let vm = format!(
        "subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/aznfs",
        sim.subscription_id, sim.resource_group
    );
    assert!(
        arm_requests(0)
            .iter()
            .any(|(r, status)| r.starts_with("DELETE") && r.ends_with(&vm) && *status < 300),
        "destroy deleted the VM"
    );
}
