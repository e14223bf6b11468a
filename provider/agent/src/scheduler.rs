//! The scheduler: run by whichever node holds the cluster's scheduler lease (and by the provider
//! when it changes a cluster), it reaps lost nodes and converges the node count on what the
//! scale settings ask for. Decisions are pure functions; `reconcile` does the I/O.
use control::records::{
    self, ClusterSpec, ClusterStatus, ErrorCode, NodeError, NodeRecord, NodeState, Scale, keys,
};
use control::{Condition, Store};

use crate::{AgentError, LAUNCH_GRACE_MS, Launcher, Liveness, STALE_AFTER_MS, STALE_ALIVE_MS};

/// The node count to converge on, and the updated time of last activity.
///
/// Manual scale asks for its target. Auto-scale follows demand (queued plus running work)
/// between its bounds, keeps its current size while there is none, and shrinks to the minimum
/// once the cluster has been idle for `idle_timeout`. While it has fewer nodes up (`live`:
/// prepared, or failed to) than it is growing to (its initial size, say) it counts as active: the idle time starts once it has
/// grown, however late the first scheduling pass after new settings comes (a store without
/// change notifications is looked at every few seconds, longer than a short idle timeout).
pub fn desired_count(
    scale: &Scale,
    status: &ClusterStatus,
    demand: u32,
    live: u32,
    now_ms: u64,
) -> (u32, u64) {
    match scale {
        Scale::Manual {
            target_node_count, ..
        } => (*target_node_count, status.last_active_ms),
        Scale::Auto {
            minimum_node_count: min,
            maximum_node_count: max,
            idle_timeout_secs,
            ..
        } => {
            if demand > 0 {
                let want = demand
                    .clamp(*min, *max)
                    .max(status.desired_node_count.min(*max));
                return (want, now_ms);
            }
            let target = status.desired_node_count.clamp(*min, *max);
            if live < target {
                return (target, now_ms);
            }
            let idle_for = now_ms.saturating_sub(status.last_active_ms);
            if idle_for >= idle_timeout_secs.saturating_mul(1000) {
                (*min, status.last_active_ms)
            } else {
                (
                    status.desired_node_count.clamp(*min, *max),
                    status.last_active_ms,
                )
            }
        }
    }
}

/// Which nodes to remove when shrinking by `count`: useless ones first (unusable), then idle,
/// then those still starting, busy ones last; newest first within each group.
pub fn pick_for_removal(nodes: &[&NodeRecord], count: usize) -> Vec<String> {
    let rank = |state: NodeState| match state {
        NodeState::Unusable => 0,
        NodeState::Idle => 1,
        NodeState::Launching | NodeState::Preparing => 2,
        NodeState::Running => 3,
        NodeState::Leaving => 4,
    };
    let number = |id: &str| {
        id.rsplit('-')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut sorted: Vec<&&NodeRecord> = nodes.iter().collect();
    sorted.sort_by(|a, b| {
        rank(a.state)
            .cmp(&rank(b.state))
            .then(number(&b.id).cmp(&number(&a.id)))
    });
    sorted
        .into_iter()
        .take(count)
        .map(|n| n.id.clone())
        .collect()
}

/// What one reconciliation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub desired: u32,
    pub launched: Vec<String>,
    pub drained: Vec<String>,
    pub reaped: Vec<String>,
    pub jobs: crate::dispatch::Pass,
}

/// A node record that cannot be read: garbage where a node's record should be.
#[derive(Debug, Clone)]
pub struct CorruptNode {
    pub key: String,
    pub etag: control::ETag,
    pub error: String,
}

/// A cluster's node records as read: the readable ones with their ETags, the corrupt ones apart.
#[derive(Debug, Default)]
pub struct NodeRecords {
    pub readable: Vec<(NodeRecord, control::ETag)>,
    pub corrupt: Vec<CorruptNode>,
}

/// Reads every node record of a cluster with its ETag, and the keys of corrupt ones apart: one
/// bad record must not hide the others (nor block a destroy).
pub fn read_nodes(store: &dyn Store, cluster: &str) -> Result<NodeRecords, AgentError> {
    let mut out = Vec::new();
    let mut corrupt = Vec::new();
    for key in store.list(&keys::nodes_prefix(cluster))? {
        if let Some(v) = store.get(&key)? {
            match records::decode("node record", &v.data) {
                Ok(node) => out.push((node, v.etag)),
                Err(e) if e.is_corrupt() => corrupt.push(CorruptNode {
                    key,
                    etag: v.etag,
                    error: e.to_string(),
                }),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(NodeRecords {
        readable: out,
        corrupt,
    })
}

/// Every readable node record of a cluster with its ETag (corrupt ones are the scheduler's to
/// remove, see [`reconcile`]).
pub fn nodes(
    store: &dyn Store,
    cluster: &str,
) -> Result<Vec<(NodeRecord, control::ETag)>, AgentError> {
    Ok(read_nodes(store, cluster)?.readable)
}

/// Whether a node is gone: its agent died (as far as the platform can tell), or its heartbeat
/// is stale and the platform cannot say it lives. A live agent with a stale heartbeat is cut
/// off from the store, and keeps its node (and its running job) until [`STALE_ALIVE_MS`].
/// Whether every platform node has got past launching (its agent runs).
fn launched_all(live: &[NodeRecord]) -> bool {
    live.iter()
        .filter(|n| !n.joined)
        .all(|n| n.state != NodeState::Launching)
}

pub fn is_lost(launcher: &dyn Launcher, node: &NodeRecord, now_ms: u64) -> bool {
    match launcher.liveness(node) {
        Liveness::Dead => true,
        Liveness::Alive => node.is_lost(now_ms, STALE_ALIVE_MS, STALE_ALIVE_MS),
        Liveness::Unknown => node.is_lost(now_ms, STALE_AFTER_MS, LAUNCH_GRACE_MS),
    }
}

/// One pass of the scheduler over a cluster.
pub fn reconcile(
    store: &dyn Store,
    launcher: &dyn Launcher,
    cluster: &str,
) -> Result<Outcome, AgentError> {
    reconcile_remembering(
        store,
        launcher,
        cluster,
        &mut crate::dispatch::Memory::default(),
    )
}

/// [`reconcile`], leaving in `memory` what [`dispatch_now`] starts from: what a node that
/// holds the lease runs.
pub fn reconcile_remembering(
    store: &dyn Store,
    launcher: &dyn Launcher,
    cluster: &str,
    memory: &mut crate::dispatch::Memory,
) -> Result<Outcome, AgentError> {
    let Some(spec) = store.get(&keys::spec(cluster))? else {
        return Ok(Outcome::default());
    };
    // A corrupt spec leaves nothing to converge on, but lost nodes are still reaped and their
    // attempts requeued (or failed), so that jobs can end and be destroyed.
    let spec: Option<ClusterSpec> = match records::decode("cluster spec", &spec.data) {
        Ok(spec) => Some(spec),
        Err(e) if e.is_corrupt() => {
            tracing::error!(error = %e, "corrupt cluster spec: reaping lost nodes only");
            None
        }
        Err(e) => return Err(e.into()),
    };
    if spec.as_ref().is_some_and(|s| s.deleting) {
        return Ok(Outcome::default());
    }
    let now = records::now_ms();
    let mut outcome = Outcome::default();

    let mut live = Vec::new();
    let mut present = Vec::new();
    let NodeRecords { readable, corrupt } = read_nodes(store, cluster)?;
    for bad in corrupt {
        // A node whose record is garbage is treated as lost: its agent finds the record gone
        // and leaves, and a replacement is launched below.
        match store.delete(&bad.key, Condition::IfMatch(bad.etag), None) {
            Ok(()) => {
                tracing::error!(key = %bad.key, error = %bad.error, "corrupt node record removed; replacing the node");
                if let Some(id) = bad.key.rsplit('/').next() {
                    let _ = crate::gpu::release(store, &format!("{cluster}/{id}"));
                    // Its agent leaves by itself if it lives; what its jobs started in
                    // sessions of their own is stopped by the node's ID alone.
                    launcher.reap(&NodeRecord::launching(cluster, id, 0));
                    outcome.reaped.push(id.to_owned());
                }
            }
            Err(e) if e.is_conflict() || e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (node, etag) in readable {
        if is_lost(launcher, &node, now) {
            // Compare-and-swap: a node that heartbeats right now keeps its record.
            match store.delete(
                &keys::node(cluster, &node.id),
                Condition::IfMatch(etag),
                None,
            ) {
                Ok(()) => {
                    tracing::warn!(node = %node.id, joined = node.joined, "node lost: no heartbeat; replacing it unless it joined on its own");
                    crate::gpu::release_node(store, &node);
                    launcher.reap(&node);
                    outcome.reaped.push(node.id);
                }
                Err(e) if e.is_conflict() || e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        if !node.drain_requested && node.state != NodeState::Leaving {
            live.push(node.clone());
        }
        present.push(node);
    }
    let Some(spec) = spec else {
        outcome.jobs =
            crate::dispatch::pass_remembering(store, cluster, &present, None, now, memory)?;
        return Ok(outcome);
    };
    let status_key = keys::status(cluster);
    let (mut status, mut status_condition) = match store.get(&status_key)? {
        Some(v) => match records::decode::<ClusterStatus>("cluster status", &v.data) {
            Ok(status) => (status, Condition::IfMatch(v.etag)),
            // Rewritten below: a corrupt status must not stop the cluster.
            Err(e) if e.is_corrupt() => {
                tracing::error!(error = %e, "corrupt cluster status: starting it over");
                (ClusterStatus::default(), Condition::IfMatch(v.etag))
            }
            Err(e) => return Err(e.into()),
        },
        None => (ClusterStatus::default(), Condition::IfNoneExists),
    };
    // Settings newer than the status (the provider changed them and has not started the
    // status over yet): start over from them now, as the provider will.
    if status.scale_generation != spec.scale_generation {
        status = ClusterStatus {
            next_replacement_ms: 0,
            ..ClusterStatus::start(&spec, now)
        };
    }
    let mut before = status.clone();
    // Attempts on reaped nodes go back to the queue before demand is counted.
    let capacity = crate::dispatch::Capacity::of(&spec, &status, &present);
    outcome.jobs =
        crate::dispatch::pass_remembering(store, cluster, &present, Some(&capacity), now, memory)?;
    // Nodes that are up (prepared, or failed to): a cluster still starting nodes is growing.
    let up = live.iter().filter(|n| {
        !n.joined
            && matches!(
                n.state,
                NodeState::Idle | NodeState::Running | NodeState::Unusable
            )
    });
    let up = u32::try_from(up.count()).unwrap_or(u32::MAX);
    let (desired, last_active) = desired_count(&spec.scale, &status, outcome.jobs.demand, up, now);
    outcome.desired = desired;

    // Unusable nodes get another chance once their backoff is over (or at once after a new
    // apply): whatever made them fail may be fixed by now.
    // The backoff is stored before any node is drained, so that a conflicting write (a node
    // reporting its preparation) can never lose it: on a conflict the next pass decides.
    // Nodes that joined on their own are not the platform's to replace (or count): their
    // machines' owners start and stop them.
    let replaceable = |n: &NodeRecord| n.state == NodeState::Unusable && !n.joined;
    if live.iter().any(replaceable) && now >= status.next_replacement_ms {
        let mut claimed = status.clone();
        claimed.format = records::FORMAT;
        claimed.replacements = claimed.replacements.saturating_add(1);
        claimed.next_replacement_ms = now + records::replacement_backoff_ms(claimed.replacements);
        match store.put(
            &status_key,
            &records::encode(&claimed),
            status_condition.clone(),
            None,
        ) {
            Ok(etag) => {
                status = claimed;
                before = status.clone();
                status_condition = Condition::IfMatch(etag);
                for node in live.iter().filter(|n| replaceable(n)) {
                    if request_drain(store, cluster, &node.id)? {
                        tracing::info!(node = %node.id, "replacing an unusable node");
                        outcome.drained.push(node.id.clone());
                    }
                }
                live.retain(|n| !replaceable(n));
            }
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
    }

    let launched: Vec<&NodeRecord> = live.iter().filter(|n| !n.joined).collect();
    let count = u32::try_from(launched.len()).unwrap_or(u32::MAX);
    if count < desired {
        // A platform that cannot add nodes now (no capacity, a quota, throttling) is told in
        // the status, which Read shows, and asked again next pass.
        match launcher.launch(store, &spec, desired - count) {
            // The error stays until the cluster has its nodes: a platform may accept a request
            // and fail the instances later, which the next pass finds.
            Ok(launched) => outcome.launched = launched,
            Err(e) => {
                tracing::warn!(cluster, error = %e, "add nodes");
                let since = status
                    .launch_error
                    .as_ref()
                    .and_then(|l| l.details.get("since_ms").cloned())
                    .unwrap_or_else(|| records::now_ms().to_string());
                status.launch_error = Some(NodeError {
                    code: ErrorCode::LaunchFailed,
                    message: e.to_string(),
                    details: [("since_ms".to_owned(), since)].into(),
                });
            }
        }
    } else if count > desired {
        let refs = launched;
        for id in pick_for_removal(&refs, (count - desired) as usize) {
            if request_drain(store, cluster, &id)? {
                outcome.drained.push(id);
            }
        }
    }

    // Cleared once the cluster has its nodes and none is still being launched: an instance a
    // platform accepted may yet fail (and be replaced), which must not make the error flicker.
    if count >= desired && launched_all(&live) {
        status.launch_error = None;
    }
    status.format = records::FORMAT;
    status.desired_node_count = desired;
    status.last_active_ms = last_active;
    if status != before {
        match store.put(
            &status_key,
            &records::encode(&status),
            status_condition,
            None,
        ) {
            Ok(_) => {}
            // Someone else (the provider, a node reporting its preparation) wrote it; the next
            // pass decides again.
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(outcome)
}

/// A quick dispatch pass (see [`crate::dispatch::Memory`]) between full reconciliations: run
/// when a queue mark says there is something to place.
pub fn dispatch_now(
    store: &dyn Store,
    launcher: &dyn Launcher,
    cluster: &str,
    memory: &mut crate::dispatch::Memory,
) -> Result<crate::dispatch::Pass, AgentError> {
    let started = std::time::Instant::now();
    let now = records::now_ms();
    let present: Vec<NodeRecord> = nodes(store, cluster)?
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !is_lost(launcher, n, now))
        .collect();
    let pass = crate::dispatch::pass_from_memory(store, cluster, &present, now, memory);
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "dispatch pass"
    );
    pass
}

/// Asks a node to drain and leave. False if the node is already gone.
pub fn request_drain(store: &dyn Store, cluster: &str, node: &str) -> Result<bool, AgentError> {
    let key = keys::node(cluster, node);
    let updated = records::update(store, &key, "node record", |r: &mut NodeRecord| {
        r.drain_requested = true;
        true
    })?;
    Ok(updated.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::records::DeallocationOption;

    fn auto(min: u32, max: u32) -> Scale {
        Scale::Auto {
            minimum_node_count: min,
            maximum_node_count: max,
            initial_node_count: 0,
            idle_timeout_secs: 60,
        }
    }

    fn status(desired: u32, last_active_ms: u64) -> ClusterStatus {
        ClusterStatus {
            format: 1,
            desired_node_count: desired,
            last_active_ms,
            ..ClusterStatus::default()
        }
    }

    #[test]
    fn desired_counts() {
        let manual = Scale::Manual {
            target_node_count: 3,
            node_deallocation_option: DeallocationOption::Requeue,
        };
        let cases = [
            ("manual", manual, status(1, 0), 0, 100_000, 3),
            ("auto-demand", auto(0, 4), status(0, 0), 2, 100_000, 2),
            (
                "auto-demand-capped",
                auto(0, 4),
                status(0, 0),
                9,
                100_000,
                4,
            ),
            (
                "auto-demand-raises-to-min",
                auto(2, 4),
                status(0, 0),
                1,
                100_000,
                2,
            ),
            (
                "auto-idle-keeps-size",
                auto(0, 4),
                status(3, 90_000),
                0,
                100_000,
                3,
            ),
            (
                "auto-idle-timeout",
                auto(0, 4),
                status(3, 10_000),
                0,
                100_000,
                0,
            ),
            (
                "auto-idle-timeout-min",
                auto(1, 4),
                status(3, 10_000),
                0,
                100_000,
                1,
            ),
            (
                "auto-clamps-initial",
                auto(1, 2),
                status(5, 90_000),
                0,
                100_000,
                2,
            ),
        ];
        for (name, scale, st, demand, now, want) in cases {
            let live = st.desired_node_count;
            assert_eq!(
                desired_count(&scale, &st, demand, live, now).0,
                want,
                "{name}"
            );
        }
        // Still growing to its initial size when the idle timeout has passed: it grows first.
        let growing = desired_count(&auto(0, 4), &status(2, 10_000), 0, 1, 100_000);
        assert_eq!(growing, (2, 100_000), "growing counts as activity");
    }

    fn node(id: &str, state: NodeState) -> NodeRecord {
        NodeRecord {
            format: 1,
            id: id.into(),
            cluster: "c".into(),
            state,
            pid: None,
            gpus: vec![],
            launched_at_ms: 0,
            last_heartbeat_ms: 0,
            errors: vec![],
            drain_requested: false,
            job: None,
            features: Vec::new(),
            work_dir: None,
            joined: false,
            host: None,
            address: None,
        }
    }

    #[test]
    fn removal_prefers_useless_then_idle_then_newest() {
        let nodes = [
            node("node-1", NodeState::Running),
            node("node-2", NodeState::Idle),
            node("node-3", NodeState::Idle),
            node("node-10", NodeState::Unusable),
            node("node-4", NodeState::Preparing),
        ];
        let refs: Vec<&NodeRecord> = nodes.iter().collect();
        assert_eq!(pick_for_removal(&refs, 3), ["node-10", "node-3", "node-2"]);
        assert_eq!(
            pick_for_removal(&refs, 5).last().map(String::as_str),
            Some("node-1")
        );
    }

    /// Records what it was asked to launch; starts nothing.
    #[derive(Debug, Default)]
    struct Counting(std::sync::Mutex<u32>);

    impl Launcher for Counting {
        fn launch(
            &self,
            _store: &dyn Store,
            _spec: &ClusterSpec,
            count: u32,
        ) -> Result<Vec<String>, AgentError> {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) += count;
            Ok(Vec::new())
        }

        fn reap(&self, _record: &NodeRecord) {}
    }

    fn put<T: serde::Serialize>(store: &dyn Store, key: &str, value: &T) {
        store
            .put(key, &records::encode(value), Condition::Always, None)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn spec(scale: Scale, generation: u64) -> ClusterSpec {
        ClusterSpec {
            format: records::FORMAT,
            name: "c".into(),
            uid: "u".into(),
            vm_size: "Standard_D2s_v3".into(),
            vm_priority: "dedicated".into(),
            scale,
            setup_task: None,
            mounts: Vec::new(),
            gpus_per_node: 0,
            deleting: false,
            scale_generation: generation,
        }
    }

    #[test]
    fn new_scale_settings_start_over_even_before_their_status_is_written() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = control::DirStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let now = records::now_ms();
        // One idle node, and an old status whose activity lies long past the new idle timeout.
        let mut idle = node("node-1", NodeState::Idle);
        idle.last_heartbeat_ms = now;
        put(&store, &keys::node("c", "node-1"), &idle);
        put(
            &store,
            &keys::status("c"),
            &ClusterStatus {
                format: records::FORMAT,
                desired_node_count: 1,
                last_active_ms: now - 600_000,
                ..ClusterStatus::default()
            },
        );
        let auto = Scale::Auto {
            minimum_node_count: 0,
            maximum_node_count: 3,
            initial_node_count: 2,
            idle_timeout_secs: 3,
        };
        put(&store, &keys::spec("c"), &spec(auto, 1));
        let launcher = Counting::default();
        let outcome = reconcile(&store, &launcher, "c").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome.desired, 2, "the new settings' initial size");
        assert!(outcome.drained.is_empty(), "{:?}", outcome.drained);
        assert_eq!(*launcher.0.lock().unwrap_or_else(|e| e.into_inner()), 1);
    }

    #[test]
    fn joined_nodes_are_neither_counted_nor_scaled_in() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = control::DirStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let now = records::now_ms();
        for id in ["node-1", "node-2"] {
            let mut joined = node(id, NodeState::Idle);
            joined.joined = true;
            joined.last_heartbeat_ms = now;
            put(&store, &keys::node("c", id), &joined);
        }
        let manual = Scale::Manual {
            target_node_count: 1,
            node_deallocation_option: DeallocationOption::Requeue,
        };
        let spec = spec(manual, 0);
        put(&store, &keys::spec("c"), &spec);
        put(
            &store,
            &keys::status("c"),
            &ClusterStatus::start(&spec, now),
        );
        let launcher = Counting::default();
        let outcome = reconcile(&store, &launcher, "c").unwrap_or_else(|e| panic!("{e}"));
        assert!(outcome.drained.is_empty(), "{:?}", outcome.drained);
        assert_eq!(
            *launcher.0.lock().unwrap_or_else(|e| e.into_inner()),
            1,
            "the one node the settings ask for is launched beside them"
        );
    }
}
