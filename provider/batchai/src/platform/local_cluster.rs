//! Clusters on the local platform: nodes are agent processes of this binary, state lives in the
//! directory store under `<root>/store`, node directories under `<root>/clusters/<name>/`.
use std::time::Duration;

use agent::launcher::{LocalLauncher, is_node_process, signal_group, signal_session};
use agent::{Launcher as _, scheduler};
use control::records::{self, ClusterSpec, ClusterStatus, NodeRecord, NodeState, Scale, keys};
use control::{Condition, DirStore, Store, StoreError};
use serde::{Deserialize, Serialize};

use super::local::{LocalPlatform, now_rfc3339};
use super::{ClusterView, PlatformError};
use crate::names::Name;

const KIND: &str = "cluster";
/// How often waits look at the store again.
const POLL: Duration = Duration::from_millis(25);
/// How long stopping nodes may take before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// What the provider keeps beside the spec: the configuration, for import.
#[derive(Debug, Serialize, Deserialize)]
struct ResourceRecord {
    format: u32,
    creation_time: String,
    resource: serde_json::Value,
}

fn resource_key(cluster: &str) -> String {
    format!("clusters/{cluster}/resource")
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

fn launcher(platform: &LocalPlatform) -> LocalLauncher {
    LocalLauncher {
        exe: platform.exe().to_path_buf(),
        root: platform.root().to_path_buf(),
    }
}

/// The node count a new cluster starts with.
fn initial_count(scale: &Scale) -> u32 {
    match scale {
        Scale::Manual {
            target_node_count, ..
        } => *target_node_count,
        Scale::Auto {
            minimum_node_count,
            maximum_node_count,
            initial_node_count,
            ..
        } => (*initial_node_count).clamp(*minimum_node_count, *maximum_node_count),
    }
}

pub(super) async fn create(
    platform: &LocalPlatform,
    spec: &ClusterSpec,
    resource: &serde_json::Value,
) -> Result<ClusterView, PlatformError> {
    let name = spec.name.as_str();
    let store = open_store(platform, "create", name)?;
    match store.put(
        &keys::spec(name),
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
    let record = ResourceRecord {
        format: records::FORMAT,
        creation_time: now_rfc3339(),
        resource: resource.clone(),
    };
    store
        .put(
            &resource_key(name),
            &records::encode(&record),
            Condition::Always,
            None,
        )
        .map_err(|e| failed("create", name, e))?;
    let desired = reset_status(&store, name, &spec.scale, "create")?;
    launcher(platform)
        .launch(&store, spec, desired)
        .map_err(|e| failed("create", name, e))?;
    wait_until_settled(platform, &store, name, "create").await
}

/// Sets the cluster's desired node count to the initial size of `scale`, with activity starting
/// now (so an auto-scale idle timeout counts from here). Returns that count.
fn reset_status(
    store: &DirStore,
    name: &str,
    scale: &Scale,
    operation: &'static str,
) -> Result<u32, PlatformError> {
    // New scale settings are a fresh start: unusable nodes are replaced at once.
    let status = ClusterStatus {
        format: records::FORMAT,
        desired_node_count: initial_count(scale),
        last_active_ms: records::now_ms(),
        ..ClusterStatus::default()
    };
    store
        .put(
            &keys::status(name),
            &records::encode(&status),
            Condition::Always,
            None,
        )
        .map_err(|e| failed(operation, name, e))?;
    Ok(status.desired_node_count)
}

/// Waits until the node count matches the desired count and every node has finished
/// preparing (idle, running or unusable), reconciling whenever no agent holds the scheduler
/// lease (a cluster with no nodes has no scheduler of its own).
async fn wait_until_settled(
    platform: &LocalPlatform,
    store: &DirStore,
    name: &str,
    operation: &'static str,
) -> Result<ClusterView, PlatformError> {
    let launcher = launcher(platform);
    loop {
        reconcile_if_unscheduled(store, &launcher, name).map_err(|e| failed(operation, name, e))?;
        let view = read(store, name).map_err(|e| failed(operation, name, e))?;
        let Some(view) = view else {
            return Err(failed(
                operation,
                name,
                "the cluster was deleted while waiting for it",
            ));
        };
        let settled = view.nodes.iter().all(|n| {
            !n.drain_requested
                && matches!(
                    n.state,
                    NodeState::Idle | NodeState::Running | NodeState::Unusable
                )
        });
        let count = u32::try_from(view.nodes.len()).unwrap_or(u32::MAX);
        if settled && count == view.desired_node_count {
            return Ok(view);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Makes sure someone schedules the cluster: a pass by the provider when no node holds the
/// lease (a cluster with no nodes has no scheduler of its own, but may have queued jobs).
pub(super) fn nudge(
    platform: &LocalPlatform,
    store: &DirStore,
    name: &str,
) -> Result<(), agent::AgentError> {
    reconcile_if_unscheduled(store, &launcher(platform), name)
}

/// Runs one scheduling pass when no node is the scheduler, holding the lease meanwhile so two
/// schedulers never act at once.
fn reconcile_if_unscheduled(
    store: &DirStore,
    launcher: &LocalLauncher,
    name: &str,
) -> Result<(), agent::AgentError> {
    // No scheduler key for a cluster that does not exist (a job naming a missing cluster).
    if store.get(&keys::spec(name))?.is_none() {
        return Ok(());
    }
    let key = keys::scheduler(name);
    match store.put(&key, b"{}", Condition::IfNoneExists, None) {
        Ok(_) => {}
        Err(e) if e.is_conflict() || matches!(e, StoreError::LeaseHeld { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let mut takeover = None;
    let lease = match store.acquire_lease(&key, agent::SCHEDULER_LEASE) {
        Ok(lease) => lease,
        Err(StoreError::LeaseHeld { .. }) if scheduler_is_dead(store, launcher, name)? => {
            // Every agent is gone (killed at once, say): the lease of the dead scheduler would
            // keep the cluster unscheduled, and its state untrue, until it expires. Terraform
            // reads many resources at once, so only the caller that creates the takeover mark
            // breaks the lease; the others leave the pass to it.
            let Some(mark) = claim_takeover(store, name)? else {
                return Ok(());
            };
            takeover = Some(mark);
            tracing::warn!(
                cluster = name,
                "every node's agent is gone; taking over the scheduler lease"
            );
            store.break_lease(&key)?;
            match store.acquire_lease(&key, agent::SCHEDULER_LEASE) {
                Ok(lease) => lease,
                Err(StoreError::LeaseHeld { .. }) => {
                    release_takeover(store, takeover);
                    return Ok(());
                }
                Err(e) => {
                    release_takeover(store, takeover);
                    return Err(e.into());
                }
            }
        }
        Err(StoreError::LeaseHeld { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let result = scheduler::reconcile(store, launcher, name);
    let _ = store.release_lease(&key, &lease);
    release_takeover(store, takeover);
    result.map(|_| ())
}

/// How long a takeover mark stands before it counts as left by a provider that died mid-pass.
const TAKEOVER_STALE_MS: u64 = 60_000;

/// Creates the cluster's takeover mark; `None` when another caller holds a live one.
fn claim_takeover(
    store: &DirStore,
    name: &str,
) -> Result<Option<(String, control::ETag)>, agent::AgentError> {
    let key = format!("{}scheduler-takeover", keys::cluster_prefix(name));
    let now = records::now_ms();
    match store.put(
        &key,
        now.to_string().as_bytes(),
        Condition::IfNoneExists,
        None,
    ) {
        Ok(etag) => Ok(Some((key, etag))),
        Err(e) if e.is_conflict() => {
            if let Some(v) = store.get(&key)? {
                let at: u64 = std::str::from_utf8(&v.data)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                if now.saturating_sub(at) > TAKEOVER_STALE_MS {
                    let _ = store.delete(&key, Condition::IfMatch(v.etag), None);
                }
            }
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn release_takeover(store: &DirStore, mark: Option<(String, control::ETag)>) {
    if let Some((key, etag)) = mark {
        let _ = store.delete(&key, Condition::IfMatch(etag), None);
    }
}

/// True when the cluster has nodes and the platform knows every one of their agents is gone:
/// the scheduler lease, if held, is held by the dead.
fn scheduler_is_dead(
    store: &DirStore,
    launcher: &LocalLauncher,
    name: &str,
) -> Result<bool, agent::AgentError> {
    let nodes = scheduler::nodes(store, name)?;
    Ok(!nodes.is_empty()
        && nodes
            .iter()
            .all(|(n, _)| launcher.liveness(n) == agent::Liveness::Dead))
}

fn read(store: &DirStore, name: &str) -> Result<Option<ClusterView>, agent::AgentError> {
    let Some(spec) = store.get(&keys::spec(name))? else {
        return Ok(None);
    };
    let spec: ClusterSpec = records::decode("cluster spec", &spec.data)?;
    let nodes: Vec<NodeRecord> = scheduler::nodes(store, name)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let resource = match store.get(&resource_key(name))? {
        Some(v) => records::decode::<ResourceRecord>("cluster resource", &v.data)?,
        None => ResourceRecord {
            format: records::FORMAT,
            creation_time: String::new(),
            resource: serde_json::Value::Null,
        },
    };
    let status = match store.get(&keys::status(name))? {
        Some(v) => records::decode::<ClusterStatus>("cluster status", &v.data)?,
        None => ClusterStatus::default(),
    };
    Ok(Some(ClusterView {
        spec,
        nodes,
        resource: resource.resource,
        creation_time: resource.creation_time,
        desired_node_count: status.desired_node_count,
        failing_since_ms: status.failing_since_ms,
    }))
}

/// The cluster as it is; with `heal`, after a scheduling pass when nobody schedules it (lost
/// nodes reaped, their attempts requeued, replacements launched), so that what Read reports is
/// true. Plan-time checks read without healing: a plan changes nothing.
pub(super) fn get(
    platform: &LocalPlatform,
    name: &Name,
    heal: bool,
) -> Result<Option<ClusterView>, PlatformError> {
    let store = open_store(platform, "read", name.as_str())?;
    if heal && let Err(e) = nudge(platform, &store, name.as_str()) {
        tracing::warn!(cluster = name.as_str(), error = %e, "schedule the cluster before reading it");
    }
    let view = read(&store, name.as_str()).map_err(|e| failed("read", name.as_str(), e))?;
    // A cluster being deleted is as good as gone.
    Ok(view.filter(|v| !v.spec.deleting))
}

pub(super) async fn update_scale(
    platform: &LocalPlatform,
    name: &Name,
    scale: &Scale,
    resource: &serde_json::Value,
) -> Result<ClusterView, PlatformError> {
    let name = name.as_str();
    let store = open_store(platform, "update", name)?;
    let updated = records::update(
        &store,
        &keys::spec(name),
        "cluster spec",
        |spec: &mut ClusterSpec| {
            spec.scale = scale.clone();
            true
        },
    )
    .map_err(|e| failed("update", name, e))?;
    if updated.is_none() {
        return Err(failed("update", name, "the cluster does not exist"));
    }
    records::update(
        &store,
        &resource_key(name),
        "cluster resource",
        |r: &mut ResourceRecord| {
            r.resource = resource.clone();
            true
        },
    )
    .map_err(|e| failed("update", name, e))?;
    // New scale settings start over from their initial size (the target for manual scale);
    // the scheduler takes it from there.
    reset_status(&store, name, scale, "update")?;
    wait_until_settled(platform, &store, name, "update").await
}

pub(super) async fn delete(platform: &LocalPlatform, name: &Name) -> Result<(), PlatformError> {
    let name = name.as_str();
    let store = open_store(platform, "delete", name)?;
    // Mark the cluster deleting first, so no scheduler launches replacements meanwhile. A
    // corrupt spec stops every scheduler by itself, and must not stop the destroy.
    let marked = records::update(
        &store,
        &keys::spec(name),
        "cluster spec",
        |spec: &mut ClusterSpec| {
            spec.deleting = true;
            true
        },
    );
    match marked {
        Ok(_) => {}
        Err(e) if e.is_corrupt() => {
            tracing::error!(cluster = name, error = %e, "corrupt cluster spec: deleting anyway");
        }
        Err(e) => return Err(failed("delete", name, e)),
    }
    let nodes: Vec<NodeRecord> = scheduler::nodes(&store, name)
        .map_err(|e| failed("delete", name, e))?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let pids: Vec<(u32, String)> = nodes
        .iter()
        .filter_map(|n| n.pid.map(|p| (p, n.id.clone())))
        .collect();
    for (pid, node) in &pids {
        if is_node_process(*pid, node) {
            // The agent drains per the cluster's node_deallocation_option, then exits.
            signal_group(*pid, libc::SIGTERM);
        }
    }
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    while pids.iter().any(|(pid, node)| is_node_process(*pid, node)) {
        if tokio::time::Instant::now() > deadline {
            for (pid, node) in &pids {
                if is_node_process(*pid, node) {
                    tracing::warn!(node, pid, "node did not stop in time; killing it");
                    signal_session(*pid, libc::SIGKILL);
                }
            }
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    // Processes a job or setup task detached from a node that was killed rather than stopped.
    agent::launcher::stop_marked(
        &agent::launcher::cluster_owner(platform.root(), name),
        Duration::ZERO,
    );
    for node in &nodes {
        let _ = agent::gpu::release(&store, &format!("{name}/{}", node.id));
    }
    let _ = store.break_lease(&keys::scheduler(name));
    for key in store
        .list(&keys::cluster_prefix(name))
        .map_err(|e| failed("delete", name, e))?
    {
        match store.delete(&key, Condition::Always, None) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(failed("delete", name, e)),
        }
    }
    let dir = LocalLauncher::cluster_dir(platform.root(), name);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(failed(
            "delete",
            name,
            format!("remove {}: {e}", dir.display()),
        )),
    }
}
