//! End to end: the paths a user takes when something went wrong, driven by real Terraform CLIs:
//! a failed job fixed and applied again (also with `-replace`) under the same name, a cluster
//! whose nodes all fail their setup task, every agent killed at once, store outages, corrupt
//! records, and the modes of what the platform writes.
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use batchai_acceptance::{
    Workspace, cluster_c as cluster, job_on_c as job, newest_cli, resource_values, wait_for, walk,
};
use control::jobs::{JobState, JobStatus};
use control::records::{ErrorCode, keys};
use control::{DirStore, Store as _};
use serde_json::Value as Json;

fn store(ws: &Workspace) -> anyhow::Result<DirStore> {
    Ok(DirStore::open(ws.root.join("store"))?)
}

fn status(ws: &Workspace, name: &str) -> anyhow::Result<Option<JobStatus>> {
    batchai_acceptance::job_status(ws, "c", name)
}

/// Applies `config` and waits until job `name` runs.
fn start_running(ws: &Workspace, config: &str, name: &str) -> anyhow::Result<()> {
    ws.write_config(config)?;
    ws.init()?;
    ws.apply()?;
    wait_for(
        &format!("job {name} to run"),
        Duration::from_secs(30),
        || Ok(status(ws, name)?.is_some_and(|s| s.state == JobState::Running)),
    )
}

/// A job on `c` that runs until it is stopped, without apply waiting for it.
fn background_job(name: &str) -> String {
    job(
        name,
        "  wait_for_completion = false\n  custom_toolkit {\n    command_line = \"sleep 300\"\n  }",
    )
}

fn values(ws: &Workspace, address: &str) -> anyhow::Result<Json> {
    resource_values(&ws.state_json()?, address)
        .cloned()
        .with_context(|| format!("no {address} in state"))
}

/// `apply -refresh-only`: what Read reports now, in state.
fn refresh(ws: &Workspace) -> anyhow::Result<()> {
    ws.ok(&[
        "apply",
        "-refresh-only",
        "-auto-approve",
        "-input=false",
        "-no-color",
    ])?;
    Ok(())
}

fn apply_fails(ws: &Workspace) -> anyhow::Result<String> {
    let out = ws.run(&["apply", "-auto-approve", "-input=false", "-no-color"])?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(!out.status.success(), "apply should have failed:\n{stderr}");
    Ok(stderr)
}

/// The documented flow after a failure: the job failed, the user fixes the cause, the next
/// apply replaces the job and runs it; and `-replace` runs it once more. The new submission
/// has the old name and starts at attempt 1 again, on nodes that ran attempt 1 of the old one.
#[test]
fn a_failed_job_fixed_and_applied_again_runs_under_the_same_name() -> anyhow::Result<()> {
    for nodes in [1, 2] {
        let ws = Workspace::new(&newest_cli())?;
        let flag = ws.path().join("fixed");
        let mut config = cluster(nodes, "");
        config.push_str(&job(
            "train",
            &format!(
                "  node_count = {nodes}\n  custom_toolkit {{\n    command_line = \"test -f {} || {{ echo not-fixed-yet >&2; exit 3; }}\"\n  }}",
                flag.display()
            ),
        ));
        ws.write_config(&config)?;
        ws.init()?;
        let stderr = apply_fails(&ws)?;
        ensure!(
            stderr.contains("not-fixed-yet"),
            "{nodes} node(s): the failure quotes the job's stderr:\n{stderr}"
        );
        let first = status(&ws, "train")?.context("no status after the failed run")?;
        ensure!(first.state == JobState::Failed, "{nodes}: {first:?}");

        std::fs::write(&flag, "")?;
        ws.apply()
            .with_context(|| format!("{nodes} node(s): the fixed job runs again"))?;
        let second = status(&ws, "train")?.context("no status after the re-run")?;
        ensure!(
            second.state == JobState::Succeeded && second.uid != first.uid,
            "{nodes} node(s): a new submission succeeded: {second:?}"
        );
        ensure!(second.attempts == 1, "{nodes}: {second:?}");

        ws.ok(&[
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-replace=batchai_job.train",
        ])
        .with_context(|| format!("{nodes} node(s): -replace runs the job again"))?;
        let third = status(&ws, "train")?.context("no status after -replace")?;
        ensure!(
            third.state == JobState::Succeeded && third.uid != second.uid,
            "{nodes} node(s): -replace made a new submission: {third:?}"
        );
        ws.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
    }
    Ok(())
}

/// Job secrets and the records that may hold secrets are private to the user who created
/// them, whatever the umask: the platform root and the store's directories are 0700, every
/// record 0600. Terraform (and so the provider and its nodes) runs with umask 000 here.
#[test]
fn the_platform_root_and_every_record_are_private_whatever_the_umask() -> anyhow::Result<()> {
    let mut cli = newest_cli();
    let tools = tempfile::tempdir()?;
    let wrapper = tools.path().join("terraform-umask-000");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\numask 000\nexec '{}' \"$@\"\n",
            cli.path.display()
        ),
    )?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    cli.path = wrapper;
    let ws = Workspace::new(&cli)?;
    let mut config = cluster(1, "");
    config.push_str(&job(
        "secretive",
        "  wait_for_completion = false\n  secrets_wo = { TOKEN = \"hunter2-private\" }\n  secrets_wo_version = 1\n  custom_toolkit {\n    command_line = \"sleep 300\"\n  }",
    ));
    ws.write_config(&config)?;
    ws.init()?;
    ws.apply()?;

    // Agents write while the test looks: a file or directory renamed or removed meanwhile is
    // skipped (`None`), whatever is there is checked.
    let mode = |p: &Path| -> anyhow::Result<Option<u32>> {
        match std::fs::metadata(p) {
            Ok(m) => Ok(Some(m.permissions().mode() & 0o777)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    ensure!(
        mode(&ws.root)? == Some(0o700),
        "root: {:?}",
        mode(&ws.root)?
    );
    let store_dir = ws.root.join("store");
    let mut secret_seen = false;
    for file in walk(&store_dir) {
        let Some(m) = mode(&file)? else { continue };
        ensure!(m == 0o600, "{} is {m:o}", file.display());
        if std::fs::read(&file)
            .unwrap_or_default()
            .windows(15)
            .any(|w| w == b"hunter2-private")
        {
            secret_seen = true;
        }
    }
    ensure!(
        secret_seen,
        "the secrets record was not found under the store"
    );
    let mut dirs = vec![store_dir];
    while let Some(d) = dirs.pop() {
        let Some(m) = mode(&d)? else { continue };
        ensure!(m == 0o700, "{} is {m:o}", d.display());
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            }
        }
    }
    ws.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
    Ok(())
}

/// The value file of `key` in the workspace's directory store.
fn value_file(ws: &Workspace, key: &str) -> std::path::PathBuf {
    ws.root.join("store/values").join(format!("{key}~v"))
}

fn agent_pids(ws: &Workspace) -> anyhow::Result<Vec<(String, u32)>> {
    Ok(batchai_acceptance::node_records(ws, "c")?
        .into_iter()
        .filter_map(|n| n.pid.map(|p| (n.id, p)))
        .collect())
}

/// `kill -9` of every node agent at once (their jobs' processes are left to the platform).
/// Read must then say what is true, and heal the cluster: the lost nodes are reaped and
/// replaced, and the job that ran on one of them goes back to the queue and runs again.
#[test]
fn a_cluster_whose_agents_all_died_is_healed_by_the_next_refresh() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    start_running(&ws, &(cluster(2, "") + &background_job("long")), "long")?;
    let killed = agent_pids(&ws)?;
    ensure!(killed.len() == 2, "{killed:?}");
    for (_, pid) in &killed {
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
    }
    wait_for("the agents to die", Duration::from_secs(10), || {
        Ok(killed
            .iter()
            .all(|(_, pid)| !batchai_acceptance::alive(*pid)))
    })?;

    // A plan changes nothing, though its checks look the cluster up (for a new job here).
    ws.write_config(&(cluster(2, "") + &background_job("long") + &background_job("extra")))?;
    ws.ok(&["plan", "-refresh=false", "-input=false", "-no-color"])?;
    let planned = batchai_acceptance::node_records(&ws, "c")?;
    ensure!(
        planned.len() == 2
            && planned
                .iter()
                .all(|n| killed.iter().any(|(id, _)| *id == n.id)),
        "plan healed the cluster: {planned:?}"
    );
    ws.write_config(&(cluster(2, "") + &background_job("long")))?;

    refresh(&ws)?;
    let now = batchai_acceptance::node_records(&ws, "c")?;
    ensure!(
        now.iter().all(|n| killed.iter().all(|(id, _)| *id != n.id)),
        "the dead nodes were reaped: {now:?}"
    );
    ensure!(now.len() == 2, "and replaced: {now:?}");
    let job = status(&ws, "long")?.context("no job status")?;
    ensure!(
        job.attempts == 1 && job.state == JobState::Queued
            || job.attempts == 2 && job.state == JobState::Running,
        "the job's attempt on a dead node went back to the queue: {job:?}"
    );
    wait_for("the job to run again", Duration::from_secs(60), || {
        Ok(status(&ws, "long")?.is_some_and(|s| s.state == JobState::Running && s.attempts == 2))
    })?;
    let cluster = values(&ws, "batchai_cluster.c")?;
    ensure!(
        cluster["current_node_count"] == 2,
        "the refreshed state counts the live nodes: {cluster}"
    );
    ws.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
    Ok(())
}

/// A read-only bind mount over the store for as long as it lives; undone when dropped.
struct ReadOnly(std::path::PathBuf);

impl ReadOnly {
    fn mount(dir: &Path) -> anyhow::Result<Self> {
        let run = |args: &[&str]| -> anyhow::Result<()> {
            let out = std::process::Command::new("mount").args(args).output()?;
            ensure!(
                out.status.success(),
                "mount {args:?} failed (this test needs CAP_SYS_ADMIN to make the store read-only): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        };
        let d = dir.to_string_lossy().into_owned();
        run(&["--bind", &d, &d])?;
        let guard = Self(dir.to_path_buf());
        run(&["-o", "remount,ro,bind", &d])?;
        Ok(guard)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The store goes read-only for 20 s while a job runs (longer than a heartbeat takes to go
/// stale, and than the 20 errors in 10 s that once made every agent give up). The job keeps
/// running, finishes during the outage, and its report arrives once the store is back: it
/// succeeds on its first attempt, on the node that ran it.
#[test]
fn a_store_outage_of_twenty_seconds_loses_no_job() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let config = cluster(1, "")
        + &job(
            "steady",
            "  wait_for_completion = false\n  custom_toolkit {\n    command_line = \"for i in $(seq 1 10); do sleep 1; done; echo done-ok\"\n  }",
        );
    start_running(&ws, &config, "steady")?;
    let before = agent_pids(&ws)?;
    {
        let _outage = ReadOnly::mount(&ws.root.join("store"))?;
        ensure!(
            store(&ws)?
                .put("probe", b"x", control::Condition::Always, None)
                .is_err(),
            "the store is read-only during the outage"
        );
        std::thread::sleep(Duration::from_secs(20));
    }
    wait_for("the job to succeed", Duration::from_secs(60), || {
        Ok(status(&ws, "steady")?.is_some_and(|s| s.state.is_terminal()))
    })?;
    let after = status(&ws, "steady")?.context("no status")?;
    ensure!(
        after.state == JobState::Succeeded && after.attempts == 1,
        "the job rode out the outage: {after:?}"
    );
    ensure!(
        agent_pids(&ws)? == before
            && before
                .iter()
                .all(|(_, pid)| batchai_acceptance::alive(*pid)),
        "the node rode out the outage: {before:?}"
    );
    ws.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
    Ok(())
}

/// Truncates a value file to half its length, as a damaged disk would.
fn truncate(path: &Path) -> anyhow::Result<()> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(len / 2)?;
    Ok(())
}

/// One corrupt record is its own job's or node's problem: a truncated job status fails that
/// job (with the reason) while the queue goes on, garbage in a node record replaces that node,
/// and destroy (also with `-refresh=false`) removes everything.
#[test]
fn corrupt_records_are_isolated_and_destroy_still_works() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let mut config = cluster(2, "") + &background_job("victim");
    start_running(&ws, &config, "victim")?;
    truncate(&value_file(&ws, &keys::job_status("c", "victim")))?;

    // A job queued next to the corrupt one runs (a create timeout bounds the old hang).
    config.push_str(&job(
        "after",
        "  timeouts {\n    create = \"2m\"\n  }\n  custom_toolkit {\n    command_line = \"echo fine\"\n  }",
    ));
    ws.write_config(&config)?;
    ws.apply().context("a job next to a corrupt one runs")?;
    let victim = values(&ws, "batchai_job.victim")?;
    ensure!(
        victim["execution_state"] == "failed" && victim["errors"][0]["code"] == "CorruptRecord",
        "the corrupt job is failed with the reason: {victim}"
    );

    // Garbage where a node's record was: that node is replaced, the other one stays.
    let nodes = agent_pids(&ws)?;
    let (bad_id, bad_pid) = nodes.first().cloned().context("no node")?;
    std::fs::write(
        value_file(&ws, &keys::node("c", &bad_id)),
        b"\x00garbage\xff",
    )?;
    wait_for(
        "the node with garbage to be replaced",
        Duration::from_secs(60),
        || {
            let store = store(&ws)?;
            let keys = store.list(&keys::nodes_prefix("c"))?;
            let readable = batchai_acceptance::node_records(&ws, "c").unwrap_or_default();
            Ok(!batchai_acceptance::alive(bad_pid)
                && readable.len() == 2
                && keys.len() == 2
                && readable.iter().all(|n| n.id != bad_id))
        },
    )?;

    // Destroy without a refresh, over a corrupt status and a node record with garbage.
    truncate(&value_file(&ws, &keys::job_status("c", "after")))?;
    let another = agent_pids(&ws)?.first().cloned().context("no node")?;
    std::fs::write(
        value_file(&ws, &keys::node("c", &another.0)),
        b"{\"format\":",
    )?;
    ws.ok(&[
        "destroy",
        "-auto-approve",
        "-input=false",
        "-no-color",
        "-refresh=false",
    ])
    .context("destroy removes what it owns, corrupt or not")?;
    ensure!(
        store(&ws)?.list("clusters/c/")?.is_empty(),
        "nothing of the cluster is left: {:?}",
        store(&ws)?.list("clusters/c/")?
    );
    Ok(())
}

/// The README's first hour: the setup task needs a file that is not there, so every node is
/// unusable. The job does not wait forever: it fails after `max_unschedulable_time`, quoting
/// the nodes' error, stderr and log paths, and the cluster says it is unusable. Once the file
/// is there, the next apply replaces the unusable nodes at once and runs the job.
#[test]
fn a_job_on_a_cluster_whose_nodes_all_fail_fails_in_bounded_time_and_runs_once_fixed()
-> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let needed = ws.path().join("requirements.txt");
    let setup = format!(
        "  setup_task {{\n    command_line = \"test -f {} || {{ echo requirements.txt is missing >&2; exit 1; }}\"\n  }}",
        needed.display()
    );
    // As in the README: an auto-scale cluster starts empty, so it is created fine, and its
    // nodes only fail once the job asks for them.
    let mut config = format!(
        r#"resource "batchai_cluster" "c" {{
  name    = "c"
  vm_size = "Standard_D2s_v3"
  scale_settings {{
    auto_scale {{
      minimum_node_count = 0
      maximum_node_count = 2
    }}
  }}
{setup}
}}
"#
    );
    config.push_str(&job(
        "train",
        "  constraints {\n    max_unschedulable_time = \"10s\"\n  }\n  custom_toolkit {\n    command_line = \"echo trained\"\n  }",
    ));
    ws.write_config(&config)?;
    ws.init()?;
    let stderr = apply_fails(&ws)?;
    for want in [
        "ClusterUnusable",
        "requirements.txt is missing",
        "stderr.txt",
        "apply again",
    ] {
        ensure!(
            stderr.contains(want),
            "the diagnostic says {want:?}:\n{stderr}"
        );
    }
    refresh(&ws)?;
    let cluster = values(&ws, "batchai_cluster.c")?;
    ensure!(
        cluster["errors"][0]["code"] == "ClusterUnusable",
        "the cluster says it is unusable: {}",
        cluster["errors"]
    );
    let job = values(&ws, "batchai_job.train")?;
    ensure!(
        job["execution_state"] == "failed" && job["errors"][0]["code"] == "ClusterUnusable",
        "{job}"
    );

    std::fs::write(&needed, "")?;
    ws.apply()
        .context("once the cause is fixed, the next apply runs the job")?;
    let job = values(&ws, "batchai_job.train")?;
    ensure!(job["execution_state"] == "succeeded", "{job}");
    refresh(&ws)?;
    let cluster = values(&ws, "batchai_cluster.c")?;
    ensure!(
        cluster["node_state_counts"]["unusable"] == 0,
        "the unusable nodes were replaced: {cluster}"
    );
    ws.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
    Ok(())
}

/// A queued gang that the cluster can no longer hold (it was scaled down under it) fails
/// after `max_unschedulable_time` and says why, instead of waiting forever.
#[test]
fn a_job_whose_node_count_can_never_be_met_fails_and_says_why() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let jobs = |nodes: u32| {
        let mut config = cluster(nodes, "") + &background_job("blocker");
        config.push_str(&job(
            "gang",
            "  node_count = 2\n  wait_for_completion = false\n  depends_on = [batchai_job.blocker]\n  constraints {\n    max_unschedulable_time = \"5s\"\n  }\n  custom_toolkit {\n    command_line = \"echo never\"\n  }",
        ));
        config
    };
    start_running(&ws, &jobs(2), "blocker")?;
    // The idle node goes; the gang of two can never start on one node.
    ws.write_config(&jobs(1))?;
    ws.apply()?;
    wait_for("the gang to fail", Duration::from_secs(60), || {
        Ok(status(&ws, "gang")?.is_some_and(|s| s.state.is_terminal()))
    })?;
    let gang = status(&ws, "gang")?.context("no status")?;
    let error = gang.errors.last().context("no error")?;
    ensure!(
        error.code == ErrorCode::NodeCountUnattainable && error.message.contains("at most 1"),
        "{gang:?}"
    );
    ensure!(
        status(&ws, "blocker")?.is_some_and(|s| s.state == JobState::Running),
        "the running job is untouched"
    );
    ws.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
    Ok(())
}
