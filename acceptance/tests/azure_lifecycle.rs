//! The azure platform's cluster and job lifecycle end to end, with real Terraform against the
//! ARM simulator (its own, one per test binary): setup-task and job secrets that reach their
//! processes and nothing else (not the state, not any blob of the control container but their
//! own records, not the nodes' disks and logs); auto-scale from zero to a job's nodes and back to
//! zero; metrics a job appends to `$BATCHAI_METRICS_FILE`; and a cluster imported into another
//! state, then its scale set deleted behind Terraform's back (the next plan replaces the cluster
//! and the apply converges).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use batchai_acceptance::sim::{Sim, cluster, live_instances, manual, workspace};
use batchai_acceptance::{planned_actions, state_of, wait_for};
use serde_json::{Value as Json, json};

/// Every letter shifted by one: what the jobs print instead of a secret, so that the output
/// proves the secret reached the process without holding it.
fn shifted(secret: &str) -> String {
    secret
        .chars()
        .map(|c| match c {
            'z' => 'a',
            'a'..='y' => char::from(c as u8 + 1),
            other => other,
        })
        .collect()
}

fn holds(bytes: &[u8], secret: &str) -> bool {
    bytes.windows(secret.len()).any(|w| w == secret.as_bytes())
}

/// Every regular file below `dir`, without following links (a node's mounts are links).
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

/// The blob name of a kept file from its URL in the control container.
fn blob_name(url: &str, container: &str) -> String {
    let base = format!("{}{container}/", Sim::shared().blob_endpoint);
    url.strip_prefix(&base)
        .unwrap_or_else(|| panic!("{url} is not in {base}"))
        .to_owned()
}

const CLUSTER_SECRET: &str = "setup-hunter2-quartz";
const JOB_SECRET: &str = "job-hunter3-vortex";

#[test]
fn setup_task_and_job_secrets_reach_their_processes_and_nothing_else() {
    let sim = Sim::shared();
    let ws = workspace();
    let name = "azsecret";
    let setup = format!(
        r#"  setup_task {{
    command_line          = "printf '%s-%s' \"$GREETING\" \"$(printf %s $SETUP_TOKEN | tr a-z b-za)\" > $AZ_BATCHAI_MOUNT_ROOT/setup-marker.txt"
    environment_variables = {{ GREETING = "hello" }}
    secrets_wo            = {{ SETUP_TOKEN = "{CLUSTER_SECRET}" }}
    secrets_wo_version    = 1
  }}"#
    );
    let job = format!(
        r#"resource "batchai_job" "s" {{
  name               = "secretive"
  cluster_id         = batchai_cluster.c.id
  secrets_wo         = {{ TOKEN = "{JOB_SECRET}" }}
  secrets_wo_version = 1
  custom_toolkit {{
    command_line = "cat $AZ_BATCHAI_MOUNT_ROOT/setup-marker.txt; echo; printf %s $TOKEN | tr a-z b-za; echo"
  }}
  wait_for_completion = true
}}
"#
    );
    ws.write_config(&(cluster(name, &setup, &manual(1)) + &job))
        .unwrap();
    ws.init().unwrap();
    ws.apply().unwrap();

    let j = state_of(&ws, "batchai_job.s");
    assert_eq!(j["execution_state"], "succeeded", "{j}");
    let container = ws.azure_container.clone().unwrap();
    let blobs = sim.blobs(&container).unwrap();
    // The job's stdout, kept in the control container, proves that both secrets reached their
    // processes: the setup task's through its marker, the job's directly.
    let logs = blob_name(j["std_out_err_directory"].as_str().unwrap(), &container);
    let node = logs.rsplit('/').nth(1).unwrap().to_owned();
    let stdout = blobs
        .download_file(&format!("{logs}/stdout-{node}.txt"))
        .unwrap()
        .unwrap_or_else(|| panic!("no stdout in {:?}", blobs.list_files("files/")));
    assert_eq!(
        String::from_utf8(stdout).unwrap(),
        format!(
            "hello-{}\n{}\n",
            shifted(CLUSTER_SECRET),
            shifted(JOB_SECRET)
        )
    );

    // Not in the state, nor anywhere in the working directory but the configuration.
    for file in files_below(ws.path()) {
        if file == ws.path().join("main.tf") {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap_or_default();
        for secret in [CLUSTER_SECRET, JOB_SECRET] {
            assert!(!holds(&bytes, secret), "{secret} is in {}", file.display());
        }
    }
    assert!(ws.path().join("terraform.tfstate").exists());

    // In the control container, only the cluster's secrets record holds its secret, and the
    // job's secrets record is gone with the job's end.
    let own = format!("values/clusters/{name}/secrets");
    let job_secrets = format!("values/clusters/{name}/jobs/secretive/secrets");
    let names = blobs.list_files("").unwrap();
    assert!(names.contains(&own), "{names:?}");
    assert!(!names.contains(&job_secrets), "{names:?}");
    let mut checked = 0;
    for blob in &names {
        // The agent binary is the provider's own, uploaded before any secret existed.
        if blob.starts_with("agent/") {
            continue;
        }
        let Some(bytes) = blobs.download_file(blob).unwrap() else {
            continue;
        };
        checked += 1;
        if *blob == own {
            assert!(holds(&bytes, CLUSTER_SECRET), "{blob}");
            assert!(!holds(&bytes, JOB_SECRET), "{blob}");
            continue;
        }
        for secret in [CLUSTER_SECRET, JOB_SECRET] {
            assert!(!holds(&bytes, secret), "{secret} is in blob {blob}");
        }
    }
    assert!(checked > 5, "{names:?}");

    // Nor on the nodes: their disks, agent logs, setup and job logs, boot logs.
    let vms = sim.state.join("vms");
    let mut node_files = 0;
    for entry in std::fs::read_dir(&vms).unwrap().flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{name}_"))
        {
            continue;
        }
        for file in files_below(&entry.path()) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            node_files += 1;
            for secret in [CLUSTER_SECRET, JOB_SECRET] {
                assert!(!holds(&bytes, secret), "{secret} is in {}", file.display());
            }
        }
    }
    assert!(node_files > 0, "no node files under {}", vms.display());
    ws.ok(&["destroy", "-auto-approve", "-no-color"]).unwrap();
}

#[test]
fn auto_scale_grows_from_zero_for_a_job_and_shrinks_back_to_zero() {
    let ws = workspace();
    let name = "azauto";
    let scale = "    auto_scale {\n      minimum_node_count = 0\n      maximum_node_count = 2\n      initial_node_count = 0\n      idle_timeout       = \"5s\"\n    }";
    let job = r#"resource "batchai_job" "a" {
  name       = "grow"
  cluster_id = batchai_cluster.c.id
  custom_toolkit {
    command_line = "echo ran on $(hostname)"
  }
  wait_for_completion = true
}
"#;
    ws.write_config(&cluster(name, "", scale)).unwrap();
    ws.init().unwrap();
    ws.apply().unwrap();
    let c = state_of(&ws, "batchai_cluster.c");
    assert_eq!(c["current_node_count"], 0, "{c}");
    assert_eq!(live_instances(name), Vec::<String>::new());

    // A job: the scale set grows (watched while the apply runs) and the job runs.
    ws.write_config(&(cluster(name, "", scale) + job)).unwrap();
    let started = Instant::now();
    let mut most = 0;
    let mut first_instance = None;
    std::thread::scope(|s| {
        let apply = s.spawn(|| ws.apply());
        while !apply.is_finished() {
            let live = live_instances(name).len();
            if live > 0 && first_instance.is_none() {
                first_instance = Some(started.elapsed());
            }
            most = most.max(live);
            std::thread::sleep(Duration::from_millis(200));
        }
        apply.join().unwrap().unwrap();
    });
    let applied = started.elapsed();
    let j = state_of(&ws, "batchai_job.a");
    assert_eq!(j["execution_state"], "succeeded", "{j}");
    assert!(
        most > 0,
        "the scale set never had an instance while the job ran"
    );
    assert!(most <= 2, "more instances than maximum_node_count: {most}");

    // Idle again: the cluster shrinks to zero, and the scale set with it.
    let ended = Instant::now();
    wait_for(
        "the scale set to shrink to 0",
        Duration::from_secs(180),
        || Ok(live_instances(name).is_empty()),
    )
    .unwrap();
    let shrunk = ended.elapsed();
    wait_for(
        "the cluster to report 0 nodes",
        Duration::from_secs(60),
        || {
            ws.ok(&["apply", "-refresh-only", "-auto-approve", "-no-color"])?;
            Ok(state_of(&ws, "batchai_cluster.c")["current_node_count"] == 0)
        },
    )
    .unwrap();
    eprintln!(
        "auto-scale: first instance {:.1} s after the apply started, the job's apply took {:.1} s \
         (at most {most} instances), back to 0 instances {:.1} s after it (idle_timeout 5 s)",
        first_instance.unwrap_or_default().as_secs_f64(),
        applied.as_secs_f64(),
        shrunk.as_secs_f64()
    );
    assert_eq!(
        ws.plan_exit_code().unwrap(),
        0,
        "a shrunk cluster plans no change"
    );
    ws.ok(&["destroy", "-auto-approve", "-no-color"]).unwrap();
}

#[test]
fn metrics_a_job_appends_are_in_state() {
    let ws = workspace();
    let name = "azmetrics";
    let job = r#"resource "batchai_job" "m" {
  name       = "metrics"
  cluster_id = batchai_cluster.c.id
  custom_toolkit {
    command_line = "echo '{\"loss\": 0.5}' >> $BATCHAI_METRICS_FILE; echo '{\"loss\": 0.25, \"acc\": 0.9}' >> $BATCHAI_METRICS_FILE"
  }
  wait_for_completion = true
}

output "loss" {
  value = batchai_job.m.metrics["loss"]
}
"#;
    ws.write_config(&(cluster(name, "", &manual(1)) + job))
        .unwrap();
    ws.init().unwrap();
    ws.apply().unwrap();
    let j = state_of(&ws, "batchai_job.m");
    assert_eq!(j["execution_state"], "succeeded", "{j}");
    assert_eq!(j["metrics"], json!({"loss": 0.25, "acc": 0.9}), "{j}");
    assert_eq!(ws.ok(&["output", "-raw", "loss"]).unwrap().trim(), "0.25");
    assert_eq!(ws.plan_exit_code().unwrap(), 0);
    ws.ok(&["destroy", "-auto-approve", "-no-color"]).unwrap();
}

/// Deletes a scale set through ARM, as someone with the subscription's credentials would.
fn delete_scale_set(name: &str) {
    let sim = Sim::shared();
    let token = std::process::Command::new("curl")
        .args(["-sS", "--fail-with-body", "--cacert", &sim.ca_path])
        .arg(format!(
            "{}{}/oauth2/v2.0/token",
            sim.endpoint, sim.tenant_id
        ))
        .args(["--data-urlencode", "grant_type=client_credentials"])
        .args(["--data-urlencode", &format!("client_id={}", sim.client_id)])
        .args([
            "--data-urlencode",
            &format!("client_secret={}", sim.client_secret),
        ])
        .args([
            "--data-urlencode",
            "scope=https://management.azure.com/.default",
        ])
        .output()
        .unwrap();
    assert!(token.status.success(), "{token:?}");
    let token: Json = serde_json::from_slice(&token.stdout).unwrap();
    let url = format!(
        "{}subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachineScaleSets/{name}?api-version=2026-04-01",
        sim.endpoint, sim.subscription_id, sim.resource_group
    );
    let deleted = std::process::Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "--cacert",
            &sim.ca_path,
            "-X",
            "DELETE",
        ])
        .args([
            "-H",
            &format!(
                "authorization: Bearer {}",
                token["access_token"].as_str().unwrap()
            ),
        ])
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(&url)
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&deleted.stdout).into_owned();
    assert!(deleted.status.success(), "DELETE {url}: {code} {deleted:?}");
    assert!(code == "202" || code == "200" || code == "204", "{code}");
}

#[test]
fn an_imported_cluster_plans_nothing_and_a_scale_set_deleted_behind_terraforms_back_is_replaced() {
    let sim = Sim::shared();
    let ws = workspace();
    let name = "azdrift";
    let config = cluster(name, "", &manual(1));
    ws.write_config(&config).unwrap();
    ws.init().unwrap();
    ws.apply().unwrap();
    let id = state_of(&ws, "batchai_cluster.c")["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Another state imports it by the ID this one shows: the plan is empty.
    let other = ws.sibling().unwrap();
    other.write_config(&config).unwrap();
    other.init().unwrap();
    other
        .ok(&["import", "-no-color", "batchai_cluster.c", &id])
        .unwrap();
    let imported = state_of(&other, "batchai_cluster.c");
    assert_eq!(imported["id"], id.as_str(), "{imported}");
    assert_eq!(imported["current_node_count"], 1, "{imported}");
    assert_eq!(other.plan_exit_code().unwrap(), 0, "plan after import");

    // Drift: the scale set is deleted behind Terraform's back, its instances with it.
    let before = live_instances(name);
    assert_eq!(before.len(), 1, "{before:?}");
    delete_scale_set(name);
    wait_for("the scale set to go", Duration::from_secs(60), || {
        Ok(sim.nodes(&format!("{name}_"))?.is_empty())
    })
    .unwrap();
    let plan = ws.plan_json().unwrap();
    let actions = planned_actions(&plan, "batchai_cluster.c");
    // As on the local platform when a cluster's records go: Read says it is gone.
    assert_eq!(
        actions,
        ["create"],
        "a cluster without its scale set must be created again: {plan}"
    );
    ws.apply().unwrap();
    let c = state_of(&ws, "batchai_cluster.c");
    assert_eq!(c["current_node_count"], 1, "{c}");
    assert_eq!(c["node_state_counts"]["idle"], 1, "{c}");
    let after = live_instances(name);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(ws.plan_exit_code().unwrap(), 0, "plan after the re-create");
    // The other state sees the cluster created again under the same ID.
    assert_eq!(
        other.plan_exit_code().unwrap(),
        0,
        "plan of the importing state"
    );
    ws.ok(&["destroy", "-auto-approve", "-no-color"]).unwrap();
    wait_for("every instance to go", Duration::from_secs(60), || {
        Ok(live_instances(name).is_empty())
    })
    .unwrap();
}
