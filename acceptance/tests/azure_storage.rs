//! Azure Storage mounts on the azure platform end to end: real Terraform against the ARM
//! simulator, whose nodes run the real mount calls against its `mount -t cifs` and `blobfuse2`
//! stand-ins (they check the share's credentials, the blobfuse2 configuration and the nodes'
//! identity's role assignments as Azure would, and serve each share or container as one
//! directory). Keys stay in secrets records; a wrong key is a diagnostic without the key.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use batchai_acceptance::sim::{Sim, workspace};
use batchai_acceptance::state_of;
use serde_json::json;

const ACCOUNT: &str = "mldata";

/// Where the simulator keeps a share's or a container's content.
fn share_dir(sim: &Sim, share: &str) -> PathBuf {
    sim.state.join("fileshares").join(ACCOUNT).join(share)
}

fn container_dir(sim: &Sim, container: &str) -> PathBuf {
    sim.state.join("blobfuse").join(ACCOUNT).join(container)
}

/// A one-node cluster with these volumes.
fn cluster(name: &str, volumes: &str) -> String {
    batchai_acceptance::sim::cluster(
        name,
        &format!("  mount_volumes {{\n{volumes}\n  }}"),
        &batchai_acceptance::sim::manual(1),
    )
}

#[test]
fn shares_and_containers_mount_with_keys_kept_apart_or_with_the_nodes_identity() {
    let sim = Sim::shared();
    let key = sim.storage_keys[ACCOUNT].clone();
    sim.control(
        "POST",
        "fileshares",
        Some(&json!({"account": ACCOUNT, "share": "teamshare"})),
    )
    .unwrap();
    for container in ["datasets", "checkpoints"] {
        sim.blobs_in(ACCOUNT, container)
            .unwrap()
            .ensure_container()
            .unwrap();
    }
    let ws = workspace();
    let volumes = format!(
        r#"    azure_file_share {{
      account_name        = "{ACCOUNT}"
      azure_file_url      = "https://{ACCOUNT}.file.core.windows.net/teamshare"
      account_key         = "{key}"
      relative_mount_path = "share"
    }}
    azure_blob_file_system {{
      account_name        = "{ACCOUNT}"
      container_name      = "datasets"
      relative_mount_path = "datasets"
    }}"#
    );
    let job = format!(
        r#"resource "batchai_job" "j" {{
  name       = "storage"
  cluster_id = batchai_cluster.c.id
  custom_toolkit {{
    command_line = "echo share > $AZ_BATCHAI_MOUNT_ROOT/share/from-job.txt; echo data > $AZ_BATCHAI_MOUNT_ROOT/datasets/from-job.txt; echo ckpt > $AZ_BATCHAI_JOB_MOUNT_ROOT/ckpt/from-job.txt"
  }}
  mount_volumes {{
    azure_blob_file_system {{
      account_name        = "{ACCOUNT}"
      container_name      = "checkpoints"
      account_key         = "{key}"
      relative_mount_path = "ckpt"
    }}
  }}
  wait_for_completion = true
}}
"#
    );
    ws.write_config(&(cluster("azstore", &volumes) + &job))
        .unwrap();
    ws.init().unwrap();
    ws.apply().unwrap();
    let j = state_of(&ws, "batchai_job.j");
    assert_eq!(j["execution_state"], "succeeded", "{j}");

    // What the job wrote is on the share and in both containers.
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    assert_eq!(
        read(share_dir(sim, "teamshare").join("from-job.txt")),
        "share\n"
    );
    assert_eq!(
        read(container_dir(sim, "datasets").join("from-job.txt")),
        "data\n"
    );
    assert_eq!(
        read(container_dir(sim, "checkpoints").join("from-job.txt")),
        "ckpt\n"
    );

    // The key is in the secrets records only: not in the mount records (the cluster's spec,
    // the job's spec), not in any other blob, not on the node's disk.
    let blobs = sim.blobs(ws.azure_container.as_deref().unwrap()).unwrap();
    let mut holders = Vec::new();
    for name in blobs.list_files("").unwrap() {
        if name.starts_with("agent/") {
            continue;
        }
        let data = blobs.download_file(&name).unwrap().unwrap_or_default();
        if String::from_utf8_lossy(&data).contains(&key) {
            holders.push(name);
        }
    }
    assert!(
        holders
            .iter()
            .all(|n| n.ends_with("/secrets") || n.ends_with("/mount-secrets")),
        "the key is only in secrets records: {holders:?}"
    );
    assert!(
        holders
            .iter()
            .any(|n| n.ends_with("clusters/azstore/secrets")),
        "{holders:?}"
    );
    for file in batchai_acceptance::walk(&sim.state.join("vms")) {
        if file.to_string_lossy().contains("/azstore_") {
            let text =
                String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
            assert!(!text.contains(&key), "the key is in {}", file.display());
        }
    }
    ws.ok(&["destroy", "-auto-approve", "-no-color"]).unwrap();
}

#[test]
fn a_share_needs_its_key_and_a_wrong_key_is_a_diagnostic_without_it() {
    let sim = Sim::shared();
    sim.control(
        "POST",
        "fileshares",
        Some(&json!({"account": ACCOUNT, "share": "locked"})),
    )
    .unwrap();
    let ws = workspace();
    let share = |key: &str| {
        format!(
            r#"    azure_file_share {{
      account_name        = "{ACCOUNT}"
      azure_file_url      = "https://{ACCOUNT}.file.core.windows.net/locked"
{key}
      relative_mount_path = "share"
    }}"#
        )
    };
    ws.write_config(&cluster("azlocked", &share(""))).unwrap();
    ws.init().unwrap();
    let out = ws.run(&["plan", "-no-color"]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no account key for the share"), "{stderr}");

    // A key Azure refuses: the node cannot prepare, and the apply says why without the key.
    let wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=";
    ws.write_config(&cluster(
        "azlocked",
        &share(&format!("      account_key         = \"{wrong}\"")),
    ))
    .unwrap();
    let out = ws.run(&["apply", "-auto-approve", "-no-color"]).unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("MountFailed") || all.contains("mount share"),
        "{all}"
    );
    assert!(
        !all.contains(wrong),
        "the key is not in the diagnostic: {all}"
    );
    let c = state_of(&ws, "batchai_cluster.c");
    let errors = c["errors"].to_string();
    assert!(!errors.contains(wrong), "{errors}");
    ws.ok(&["destroy", "-auto-approve", "-no-color"]).unwrap();
}
