//! Jobs on the local platform: the provider writes a job's spec, secrets and status into the
//! cluster's store and wakes the scheduler; the cluster's agents do the rest. Termination asks
//! the job's nodes to stop it and waits until none holds it any more.
use std::collections::BTreeMap;
use std::time::Duration;

use control::jobs::{JobSpec, JobState, JobStatus};
use control::records::{self, keys};
use control::{Condition, DirStore, Store};
use serde::{Deserialize, Serialize};

use super::local::{LocalPlatform, now_rfc3339};
use super::{JobView, PlatformError};

const KIND: &str = "job";
/// How often waits look at the job again: soon at first (most jobs in a pipeline are short),
/// then backing off so that a day-long run costs the waiting provider next to nothing.
const POLL_FIRST: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(500);

/// What the provider keeps beside the spec: the configuration (without secrets), for import.
#[derive(Debug, Serialize, Deserialize)]
struct ResourceRecord {
    format: u32,
    creation_time: String,
    resource: serde_json::Value,
}

fn resource_key(cluster: &str, job: &str) -> String {
    format!("clusters/{cluster}/jobs/{job}/resource")
}

fn failed(operation: &'static str, name: &str, reason: impl ToString) -> PlatformError {
    PlatformError::failed(operation, KIND, name, reason)
}

fn open_store(
    platform: &LocalPlatform,
    operation: &'static str,
    name: &str,
) -> Result<DirStore, PlatformError> {
    platform.open_store(operation, KIND, name)
}

/// Where job logs go when the job names no `std_out_err_path_prefix`.
pub(super) fn default_log_prefix(platform: &LocalPlatform) -> String {
    platform.root().join("jobs").display().to_string()
}

pub(super) fn submit(
    platform: &LocalPlatform,
    spec: &JobSpec,
    secrets: &BTreeMap<String, String>,
    resource: &serde_json::Value,
) -> Result<JobView, PlatformError> {
    let name = spec.name.as_str();
    let cluster = spec.cluster.as_str();
    let store = open_store(platform, "create", name)?;
    let Some(cluster_spec) = store
        .get(&keys::spec(cluster))
        .map_err(|e| failed("create", name, e))?
    else {
        return Err(failed(
            "create",
            name,
            format!("cluster {cluster} does not exist; create it first or fix cluster_id"),
        ));
    };
    let cluster_spec: records::ClusterSpec = records::decode("cluster spec", &cluster_spec.data)
        .map_err(|e| failed("create", name, e))?;
    if cluster_spec.deleting {
        return Err(failed(
            "create",
            name,
            format!("cluster {cluster} is being deleted"),
        ));
    }
    match store.put(
        &keys::job_spec(cluster, name),
        &records::encode(spec),
        Condition::IfNoneExists,
        None,
    ) {
        Ok(_) => {}
        Err(e) if e.is_conflict() => {
            return Err(PlatformError::AlreadyExists {
                kind: KIND,
                name: name.to_owned(),
            });
        }
        Err(e) => return Err(failed("create", name, e)),
    }
    // If a later write fails, the job is withdrawn again: it must not run unknown to state.
    let put = |key: &str, bytes: &[u8]| {
        store
            .put(key, bytes, Condition::Always, None)
            .map(|_| ())
            .map_err(|e| {
                for key in [
                    keys::job_status(cluster, name),
                    keys::job_secrets(cluster, name),
                    resource_key(cluster, name),
                    keys::job_spec(cluster, name),
                ] {
                    let _ = store.delete(&key, Condition::Always, None);
                }
                failed("create", name, e)
            })
    };
    if !secrets.is_empty() {
        put(
            &keys::job_secrets(cluster, name),
            &serde_json::to_vec(secrets).unwrap_or_default(),
        )?;
    }
    let record = ResourceRecord {
        format: records::FORMAT,
        creation_time: now_rfc3339(),
        resource: resource.clone(),
    };
    put(&resource_key(cluster, name), &records::encode(&record))?;
    // The status goes last: it is what makes the job visible to the scheduler.
    let status = JobStatus::queued(&spec.uid, records::now_ms());
    put(&keys::job_status(cluster, name), &records::encode(&status))?;
    // A new job is the moment the user may have fixed what made nodes unusable (a missing
    // file on the share, say): they are replaced now rather than after their backoff.
    let retried = records::update(
        &store,
        &keys::status(cluster),
        "cluster status",
        |s: &mut records::ClusterStatus| {
            let waiting = s.next_replacement_ms != 0;
            s.next_replacement_ms = 0;
            waiting
        },
    );
    if let Err(e) = retried {
        tracing::warn!(job = name, error = %e, "ask for unusable nodes to be replaced");
    }
    agent::node::wake_scheduler(&store, cluster, name);
    // The job is queued and in the store now; a failed nudge only delays it (waits nudge again).
    if let Err(e) = super::local_cluster::nudge(platform, &store, cluster) {
        tracing::warn!(job = name, error = %e, "schedule the cluster after queueing a job");
    }
    Ok(JobView {
        std_out_err_directory: log_directory(platform, Some(&cluster_spec), spec, &status),
        spec: spec.clone(),
        status,
        resource: resource.clone(),
        creation_time: record.creation_time,
    })
}

/// Every record of a job, the order in which they go.
fn job_keys(cluster: &str, name: &str) -> [String; 5] {
    [
        keys::job_status(cluster, name),
        keys::job_spec(cluster, name),
        keys::job_secrets(cluster, name),
        resource_key(cluster, name),
        keys::queue_mark(cluster, name),
    ]
}

/// Where the job's stdout and stderr files are, as a path on this machine: through the
/// cluster's directory mounts (a file server's export) when the prefix is below a mount root,
/// else as the master node sees it; unexpanded while no node is assigned and no mount tells.
fn log_directory(
    platform: &LocalPlatform,
    cluster: Option<&records::ClusterSpec>,
    spec: &JobSpec,
    status: &JobStatus,
) -> String {
    use control::jobs::{MOUNT_ROOT_VAR, split_job_path};
    let tail = std::path::Path::new(&spec.path_segment()).join("stdouterr");
    let through_mount = |mounts: &[records::Mount], rest: &str| {
        mounts.iter().find_map(|m| {
            let records::MountSource::Directory { path } = &m.source else {
                return None;
            };
            let below = rest.strip_prefix(m.relative_mount_path.trim_matches('/'))?;
            (below.is_empty() || below.starts_with('/'))
                .then(|| std::path::Path::new(path).join(below.trim_start_matches('/')))
        })
    };
    let from_mounts = match split_job_path(&spec.std_out_err_path_prefix) {
        Ok((None, absolute)) => Some(std::path::PathBuf::from(absolute)),
        Ok((Some(var), rest)) if var == MOUNT_ROOT_VAR => {
            through_mount(cluster.map_or(&[], |c| &c.mounts), rest)
        }
        Ok((Some(_), rest)) => through_mount(&spec.mounts, rest),
        Err(_) => None,
    };
    if let Some(dir) = from_mounts {
        return dir.join(tail).display().to_string();
    }
    status
        .nodes
        .first()
        .and_then(|master| {
            agent::execute::JobDirs::for_local_node(platform.root(), &spec.cluster, master, spec)
                .ok()
        })
        .map_or_else(
            || format!("{}/{}", spec.std_out_err_path_prefix, tail.display()),
            |dirs| dirs.stdouterr.display().to_string(),
        )
}

fn read(
    platform: &LocalPlatform,
    store: &DirStore,
    cluster: &str,
    name: &str,
) -> Result<Option<JobView>, PlatformError> {
    let get = |key: &str| store.get(key).map_err(|e| failed("read", name, e));
    let status_key = keys::job_status(cluster, name);
    let (Some(spec), Some(mut status)) = (get(&keys::job_spec(cluster, name))?, get(&status_key)?)
    else {
        return Ok(None);
    };
    let corrupt = |e: records::RecordError| PlatformError::Corrupt {
        operation: "read",
        kind: KIND,
        name: name.to_owned(),
        reason: e.to_string(),
    };
    // One corrupt record is the job's problem alone. A corrupt status fails the job, with the
    // reason in its errors. Without its spec the job cannot be shown: its status is failed all
    // the same (its nodes stop it) and the caller gets `Corrupt`, keeps what it knew and can
    // still destroy the job, whose removal needs no spec.
    let spec: JobSpec = match records::decode("job spec", &spec.data) {
        Ok(spec) => spec,
        Err(e) if e.is_corrupt() => {
            agent::dispatch::write_off(store, &status_key, status.etag, "", &e.to_string());
            return Err(corrupt(e));
        }
        Err(e) => return Err(corrupt(e)),
    };
    if let Err(e) = records::decode::<JobStatus>("job status", &status.data)
        && e.is_corrupt()
    {
        agent::dispatch::write_off(store, &status_key, status.etag, &spec.uid, &e.to_string());
        let Some(again) = get(&status_key)? else {
            return Ok(None);
        };
        status = again;
    }
    let record: Option<ResourceRecord> = match get(&resource_key(cluster, name))? {
        Some(v) => match records::decode("job resource", &v.data) {
            Ok(r) => Some(r),
            // Only import reads it; a corrupt one is as good as none.
            Err(e) if e.is_corrupt() => None,
            Err(e) => return Err(corrupt(e)),
        },
        None => None,
    };
    let status: JobStatus = records::decode("job status", &status.data).map_err(corrupt)?;
    // Only for the log path: a cluster spec that cannot be read leaves it as the master sees it.
    let cluster_spec = get(&keys::spec(cluster))
        .ok()
        .flatten()
        .and_then(|v| records::decode::<records::ClusterSpec>("cluster spec", &v.data).ok());
    Ok(Some(JobView {
        std_out_err_directory: log_directory(platform, cluster_spec.as_ref(), &spec, &status),
        spec,
        status,
        resource: record
            .as_ref()
            .map(|r| r.resource.clone())
            .unwrap_or_default(),
        creation_time: record.map(|r| r.creation_time).unwrap_or_default(),
    }))
}

pub(super) fn get(
    platform: &LocalPlatform,
    cluster: &str,
    name: &str,
) -> Result<Option<JobView>, PlatformError> {
    let store = open_store(platform, "read", name)?;
    let mut view = read(platform, &store, cluster, name)?;
    // A job that has not ended is reported only after its cluster was scheduled: an attempt on
    // nodes that died goes back to the queue first. Ended jobs (most of a large plan) cost no
    // scheduling pass.
    if view.as_ref().is_some_and(|v| !v.status.state.is_terminal()) {
        if let Err(e) = super::local_cluster::nudge(platform, &store, cluster) {
            tracing::warn!(job = name, error = %e, "schedule the cluster before reading the job");
        }
        view = read(platform, &store, cluster, name)?;
    }
    if let Some(v) = &mut view {
        live_metrics(platform, v);
    }
    Ok(view)
}

/// A running job's metrics so far, read from its metrics file (on the local platform the
/// provider sees the same files as the nodes). Ended jobs carry theirs in the status.
fn live_metrics(platform: &LocalPlatform, view: &mut JobView) {
    if !matches!(view.status.state, JobState::Running | JobState::Terminating) {
        return;
    }
    let Some(master) = view.status.nodes.first() else {
        return;
    };
    let Ok(dirs) = agent::execute::JobDirs::for_local_node(
        platform.root(),
        &view.spec.cluster,
        master,
        &view.spec,
    ) else {
        return;
    };
    if let Ok(text) = std::fs::read_to_string(dirs.metrics_file(view.status.attempts)) {
        view.status
            .metrics
            .extend(control::jobs::parse_metrics(&text));
    }
}

/// How long a wait for an ended job waits for its nodes to let go.
const HOLD_GRACE: Duration = Duration::from_secs(30);

/// Whether a node still holds the job: the submission `uid` when given, any submission under
/// this name otherwise (destroy waits for every one of them).
fn held_by_a_node(
    store: &DirStore,
    cluster: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<bool, PlatformError> {
    Ok(agent::scheduler::nodes(store, cluster)
        .map_err(|e| failed("wait for", name, e))?
        .iter()
        .any(|(n, _)| {
            n.job
                .as_ref()
                .is_some_and(|a| a.job == name && uid.is_none_or(|u| a.uid == u))
        }))
}

fn ended_for(view: &JobView) -> Duration {
    let end = view.status.end_ms.unwrap_or(0);
    Duration::from_millis(records::now_ms().saturating_sub(end))
}

/// Waits until the job is terminal (or, with `until_terminal` false, until it left the queue),
/// keeping the cluster scheduled meanwhile: a cluster scaled to zero has no agent to grow it.
pub(super) async fn wait(
    platform: &LocalPlatform,
    cluster: &str,
    name: &str,
    until_terminal: bool,
) -> Result<JobView, PlatformError> {
    let store = open_store(platform, "wait for", name)?;
    let mut last_nudge = tokio::time::Instant::now();
    let mut poll = POLL_FIRST;
    loop {
        let Some(view) = read(platform, &store, cluster, name)? else {
            return Err(failed(
                "wait for",
                name,
                "the job was deleted while waiting for it",
            ));
        };
        let done = if until_terminal {
            // Ended, and let go by its nodes (their processes stopped, job mounts released), so
            // that nothing of the job runs once apply returns. A node that does not let go
            // within a grace period is not waited for.
            view.status.state.is_terminal()
                && (!held_by_a_node(&store, cluster, name, Some(&view.spec.uid))?
                    || ended_for(&view) > HOLD_GRACE)
        } else {
            view.status.state != JobState::Queued
        };
        if done {
            return Ok(view);
        }
        if view.status.state.is_terminal() {
            // Ended and about to be let go: look again soon.
            poll = POLL_FIRST / 4;
        }
        if last_nudge.elapsed() >= Duration::from_secs(1) {
            last_nudge = tokio::time::Instant::now();
            super::local_cluster::nudge(platform, &store, cluster)
                .map_err(|e| failed("wait for", name, e))?;
        }
        tokio::time::sleep(poll).await;
        poll = (poll * 5 / 4).min(POLL_MAX);
    }
}

/// Terminates the job if it runs (SIGTERM, a grace period, SIGKILL, done by its nodes), waits
/// until no node holds it, then removes its records. Outputs and logs stay where they are.
pub(super) async fn delete(
    platform: &LocalPlatform,
    cluster: &str,
    name: &str,
) -> Result<(), PlatformError> {
    let store = open_store(platform, "delete", name)?;
    let status_key = keys::job_status(cluster, name);
    let now = records::now_ms();
    let asked = records::update(&store, &status_key, "job status", |s: &mut JobStatus| {
        let before = s.state;
        s.request_termination(now);
        s.state != before || s.terminate_requested
    });
    match asked {
        Ok(_) => {}
        // Destroy always removes what it owns: a corrupt status is written off (its nodes
        // stop the job) and the wait below finds the job ended.
        Err(e) if e.is_corrupt() => {
            if let Some(v) = store
                .get(&status_key)
                .map_err(|e| failed("delete", name, e))?
            {
                agent::dispatch::write_off(&store, &status_key, v.etag, "", &e.to_string());
            }
        }
        Err(e) => return Err(failed("delete", name, e)),
    }
    // The job's nodes stop it within their grace period; nodes that are gone are noticed by the
    // scheduler. Either way the wait ends once no node holds the job.
    loop {
        let view = read(platform, &store, cluster, name)?;
        let terminal = view.as_ref().is_none_or(|v| v.status.state.is_terminal());
        let held = held_by_a_node(&store, cluster, name, None)?;
        if terminal && !held {
            break;
        }
        // Destroy goes on whatever the cluster's state: a pass that fails only delays it.
        if let Err(e) = super::local_cluster::nudge(platform, &store, cluster) {
            tracing::warn!(job = name, error = %e, "schedule the cluster while deleting a job");
        }
        tokio::time::sleep(POLL_FIRST * 5).await;
    }
    for key in job_keys(cluster, name) {
        match store.delete(&key, Condition::Always, None) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(failed("delete", name, e)),
        }
    }
    Ok(())
}
