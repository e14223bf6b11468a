//! The agent's main loop on one node: register, prepare (mounts, setup task), heartbeat, take
//! part in the scheduler election, and drain on request or SIGTERM.
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use control::jobs::Assignment;
use control::records::{
    self, ClusterSpec, ClusterStatus, DeallocationOption, NodeError, NodeRecord, NodeState, keys,
};
use control::{Condition, LeaseId, Store, StoreError};

use crate::execute::{Execution, NodeContext, Stop};
use crate::launcher::{Launcher, LocalLauncher};
use crate::store::StoreLocation;
use crate::{AgentError, HEARTBEAT, SCHEDULER_LEASE, TICK, gpu, scheduler, setup};

/// What the agent is started with (`terraform-provider-batchai agent --store S --cluster C
/// --node N --work-dir D --local-root R`): everything it knows comes from the store it names.
#[derive(Debug, Clone)]
pub struct NodeArgs {
    /// The cluster's control store (its credential, if any, comes from the environment).
    pub store: StoreLocation,
    pub cluster: String,
    pub node: String,
    /// The node's work directory: mounts, job temp directories, setup-task logs.
    pub work_dir: PathBuf,
    /// The local platform's root, where this node starts sibling nodes when it schedules;
    /// `None` for a node that joined on its own, which starts none.
    pub local_root: Option<PathBuf>,
    /// This binary, to start sibling nodes and to bridge `mpirun` to them.
    pub exe: PathBuf,
}

/// What draining does with running work, per the cluster's `node_deallocation_option`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainAction {
    /// Stop the work and put it back in the queue.
    StopAndRequeue,
    /// Stop the work and mark it terminated.
    StopAndTerminate,
    /// Let the work finish, take nothing new.
    WaitForCompletion,
}

pub fn drain_action(option: DeallocationOption) -> DrainAction {
    match option {
        DeallocationOption::Requeue => DrainAction::StopAndRequeue,
        DeallocationOption::Terminate => DrainAction::StopAndTerminate,
        DeallocationOption::Waitforjobcompletion => DrainAction::WaitForCompletion,
    }
}

/// Applies `change` to this node's record with compare-and-swap. `None` once the record is gone
/// (the node was removed and must exit).
fn update_record(
    store: &dyn Store,
    key: &str,
    change: impl Fn(&mut NodeRecord),
) -> Result<Option<NodeRecord>, AgentError> {
    Ok(records::update(store, key, "node record", |r| {
        change(r);
        true
    })?)
}

/// The scheduler role: held while this node owns the cluster's scheduler lease.
struct Election {
    key: String,
    lease: Option<LeaseId>,
}

impl Election {
    fn tick(&mut self, store: &dyn Store) {
        match &self.lease {
            Some(id) => {
                if let Err(e) = store.renew_lease(&self.key, id) {
                    tracing::warn!(error = %e, "lost the scheduler lease");
                    self.lease = None;
                }
            }
            None => {
                // The lease needs a value to hang on; whoever creates it first is fine.
                match store.put(&self.key, b"{}", Condition::IfNoneExists, None) {
                    Ok(_) => {}
                    Err(e) if e.is_conflict() || matches!(e, StoreError::LeaseHeld { .. }) => {}
                    Err(e) => tracing::warn!(error = %e, "create the scheduler key"),
                }
                match store.acquire_lease(&self.key, SCHEDULER_LEASE) {
                    Ok(id) => {
                        tracing::info!("became the cluster's scheduler");
                        self.lease = Some(id);
                    }
                    Err(StoreError::LeaseHeld { .. }) => {}
                    Err(e) => tracing::warn!(error = %e, "acquire the scheduler lease"),
                }
            }
        }
    }

    fn release(&mut self, store: &dyn Store) {
        if let Some(id) = self.lease.take() {
            let _ = store.release_lease(&self.key, &id);
        }
    }
}

/// Runs a node until it is drained, removed or stopped.
pub fn run_node(args: NodeArgs) -> Result<(), AgentError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| AgentError::io("install signal handler", "SIGTERM", e))?;
    }
    let store: Arc<dyn Store> = args.store.open()?;
    let launcher: Box<dyn Launcher> = match &args.local_root {
        Some(root) => Box::new(LocalLauncher {
            exe: args.exe.clone(),
            root: root.clone(),
            store: args.store.clone(),
        }),
        None => Box::new(crate::launcher::JoinedLauncher),
    };
    let key = keys::node(&args.cluster, &args.node);
    let owner = format!("{}/{}", args.cluster, args.node);
    let node_dir = args.work_dir.clone();
    let mount_root = crate::execute::mount_root(&node_dir);

    let Some(spec) = store.get(&keys::spec(&args.cluster))? else {
        return Err(AgentError::Node {
            node: args.node.clone(),
            reason: "its cluster does not exist".to_owned(),
        });
    };
    let spec: ClusterSpec = records::decode("cluster spec", &spec.data)?;

    let available = std::env::var("BATCHAI_LOCAL_GPU_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(gpu::detect_gpus);
    let gpu_key = gpu::allocation_key(args.store.is_blob());
    let gpus = gpu::allocate(
        store.as_ref(),
        &gpu_key,
        &owner,
        available,
        spec.gpus_per_node,
    )?;
    let pid = std::process::id();
    let host = crate::host::identity();
    let registered = update_record(store.as_ref(), &key, |r| {
        r.state = NodeState::Preparing;
        r.pid = Some(pid);
        r.gpus = gpus.clone();
        r.last_heartbeat_ms = records::now_ms();
        r.features = control::jobs::FEATURES
            .iter()
            .map(|f| (*f).to_owned())
            .collect();
        r.work_dir = Some(node_dir.display().to_string());
        r.host = Some(host.clone());
        r.address
            .get_or_insert_with(|| crate::host::address_towards(&args.store.url).to_string());
    })?;
    if registered.is_none() {
        let _ = gpu::release_at(store.as_ref(), &gpu_key, &owner);
        return Err(AgentError::Node {
            node: args.node.clone(),
            reason: "its record was removed before it started".to_owned(),
        });
    }
    tracing::info!(node = %args.node, gpus = ?gpus, "registered");

    let env = setup::node_environment(&spec, &args.node, &mount_root, &gpus);
    // Setup tasks may take minutes; the node keeps heartbeating meanwhile so it is not taken
    // for lost, and a drain request or removal stops the setup task.
    let preparing = Arc::new(AtomicBool::new(true));
    let heartbeat = {
        let store = store.clone();
        let key = key.clone();
        let preparing = preparing.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while preparing.load(Ordering::SeqCst) {
                match update_record(store.as_ref(), &key, |r| {
                    r.last_heartbeat_ms = records::now_ms()
                }) {
                    Ok(Some(r)) if !r.drain_requested => {}
                    Ok(_) => stop.store(true, Ordering::SeqCst),
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
                let next = Instant::now() + HEARTBEAT;
                while preparing.load(Ordering::SeqCst) && Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };
    let prepared = setup::realise_mounts(&spec.mounts, &mount_root)
        .and_then(|()| setup_secrets(store.as_ref(), &spec))
        .and_then(|secrets| {
            setup::run_setup_task(&spec, &args.node, &node_dir, &env, &secrets, &stop)
        });
    preparing.store(false, Ordering::SeqCst);
    let _ = heartbeat.join();
    let state = match &prepared {
        Ok(()) => NodeState::Idle,
        Err(error) => {
            tracing::error!(node = %args.node, error = %error.message, "preparation failed");
            NodeState::Unusable
        }
    };
    let error: Option<NodeError> = prepared.err();
    // The cluster's health: a failure starts (or extends) its failing streak, a success ends it.
    // A node stopped during its preparation (drained, scaled in) says nothing about it.
    let now = records::now_ms();
    if !stop.load(Ordering::SeqCst)
        && let Err(e) = records::update(
            store.as_ref(),
            &keys::status(&args.cluster),
            "cluster status",
            |s: &mut ClusterStatus| {
                s.record_preparation(&args.node, error.as_ref(), now);
                true
            },
        )
    {
        tracing::warn!(error = %e, "record the node's preparation in the cluster status");
    }
    // Through a store outage too: a prepared node must not give up on what it prepared.
    crate::until_stored("record the node's preparation", || {
        records::update(store.as_ref(), &key, "node record", |r: &mut NodeRecord| {
            r.state = state;
            r.last_heartbeat_ms = records::now_ms();
            if let Some(e) = &error {
                r.errors.push(e.clone());
            }
            true
        })
    })?;

    let mut election = Election {
        key: keys::scheduler(&args.cluster),
        lease: None,
    };
    let ctx = Arc::new(NodeContext {
        cluster: args.cluster.clone(),
        node: args.node.clone(),
        node_dir: node_dir.clone(),
        mount_root: mount_root.clone(),
        cluster_volumes: spec
            .mounts
            .iter()
            .filter_map(|m| match &m.source {
                records::MountSource::Directory { path } => Some(PathBuf::from(path)),
                records::MountSource::Command { .. } | records::MountSource::Git { .. } => None,
            })
            .collect(),
        env,
        exe: args.exe.clone(),
    });
    let action = drain_action(spec.scale.deallocation());
    // A store error (a full or read-only disk, a blob service that is down) ends one pass of
    // the loop, never the node: it backs off and goes on, its running attempt untouched, for
    // as long as the outage lasts. Whatever the end, a running attempt is stopped and handed
    // back before the node leaves, so no job process outlives its node.
    let mut execution: Option<Execution> = None;
    // The last attempt this node ran: kept across passes that a store error cut short, or
    // the node would take an attempt it already ran for a new one.
    let mut last_done: Option<Assignment> = None;
    let mut failing = StoreFailures::default();
    let result = loop {
        let ran = node_loop(
            &store,
            launcher.as_ref(),
            &args,
            &key,
            &stop,
            &mut election,
            &ctx,
            action,
            &mut execution,
            &mut last_done,
            &mut failing,
        );
        match ran {
            Ok(()) => break Ok::<(), AgentError>(()),
            Err(e) => std::thread::sleep(failing.next(&e)),
        }
    };
    if let Some(running) = execution.take() {
        running.stop(Stop::Requeue);
        running.join();
    }
    // What the setup task or a job left running, however it detached, goes with the node.
    crate::launcher::stop_marked(
        &crate::launcher::node_owner(&node_dir),
        crate::execute::TERMINATE_GRACE,
    );
    election.release(store.as_ref());
    leave(store.as_ref(), &key, &owner, &gpu_key, action);
    result
}

/// The setup task's secrets: the cluster's secrets record, read only here (a node preparing
/// itself), plus those that specs of older providers carried themselves. A store outage delays
/// preparation; a record that cannot be read makes the node unusable, saying why.
fn setup_secrets(
    store: &dyn Store,
    spec: &ClusterSpec,
) -> Result<control::secrets::Secrets, NodeError> {
    let Some(task) = &spec.setup_task else {
        return Ok(control::secrets::Secrets::default());
    };
    let key = keys::cluster_secrets(&spec.name);
    let stored = crate::until_stored("read the cluster's secrets", || Ok(store.get(&key)?))
        .and_then(|value| {
            value
                .map(|v| {
                    records::decode::<control::secrets::ClusterSecrets>("cluster secrets", &v.data)
                })
                .transpose()
                .map_err(Into::into)
        })
        .map_err(|e| {
            setup::node_error(
                records::ErrorCode::SetupTaskFailed,
                format!("read the setup task's secrets: {e}"),
                &[],
            )
        })?;
    let mut secrets = task.secrets.clone();
    if let Some(stored) = stored {
        secrets.0.extend(stored.setup_task.0);
    }
    Ok(secrets)
}

/// Consecutive failed passes of the node loop: how long to wait before the next, and when to
/// say so (the first failure and then every 30 s, not every pass).
#[derive(Debug, Default)]
struct StoreFailures {
    since: Option<Instant>,
    nap: Duration,
    said: Option<Instant>,
}

impl StoreFailures {
    fn next(&mut self, error: &AgentError) -> Duration {
        let since = *self.since.get_or_insert_with(Instant::now);
        if self
            .said
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(30))
        {
            tracing::warn!(
                error = %error,
                failing_for_s = since.elapsed().as_secs(),
                "node loop failed; going on (a running job keeps running)"
            );
            self.said = Some(Instant::now());
        }
        self.nap = (self.nap * 2).clamp(TICK * 4, crate::STORE_RETRY_MAX);
        self.nap
    }
}

/// Tells the scheduler to look at the queue now (a node freed up, a job was queued). `why` is
/// a job name or `.freed-<node>`, which no job name can be. A lost mark only delays dispatch to
/// the next full pass, so a failure is logged, not returned.
pub fn wake_scheduler(store: &dyn Store, cluster: &str, why: &str) {
    if let Err(e) = store.put(
        &keys::queue_mark(cluster, why),
        b"{}",
        Condition::Always,
        None,
    ) {
        tracing::warn!(error = %e, "wake the scheduler");
    }
}

/// The node's life after preparation: heartbeats, its job attempts, drain, and (while it holds
/// the lease) the scheduler's duties. It looks for new work every [`TICK`].
#[allow(clippy::too_many_arguments)]
fn node_loop(
    shared: &Arc<dyn Store>,
    launcher: &dyn Launcher,
    args: &NodeArgs,
    key: &str,
    stop: &AtomicBool,
    election: &mut Election,
    ctx: &Arc<NodeContext>,
    action: DrainAction,
    execution: &mut Option<Execution>,
    last_done: &mut Option<Assignment>,
    failing: &mut StoreFailures,
) -> Result<(), AgentError> {
    let store = shared.as_ref();
    let mut draining = false;
    let mut removed = false;
    let mut next_heartbeat = Instant::now();
    let mut next_reconcile = Instant::now();
    loop {
        // The attempt's thread freed the node record itself before it finished.
        if let Some(done) = execution.take_if(|e| e.is_finished()) {
            let assignment = done.assignment.clone();
            done.join();
            *last_done = Some(assignment);
        }
        if stop.load(Ordering::SeqCst) && !draining {
            tracing::info!(node = %args.node, ?action, "SIGTERM: draining");
            draining = true;
            // Marked so that no scheduler hands this node new work while it drains. Best effort:
            // a store that is down must not keep a node from stopping.
            if let Err(e) = update_record(store, key, |r| r.drain_requested = true) {
                tracing::warn!(error = %e, "mark the node draining");
            }
        }
        if draining || removed {
            match &*execution {
                None => return Ok(()),
                Some(e) if removed => e.stop(Stop::Requeue),
                Some(e) => match action {
                    DrainAction::WaitForCompletion => {}
                    DrainAction::StopAndRequeue => e.stop(Stop::Requeue),
                    DrainAction::StopAndTerminate => e.stop(Stop::Terminate),
                },
            }
        }

        let now = Instant::now();
        let record = if removed {
            None
        } else if now >= next_heartbeat {
            next_heartbeat = now + HEARTBEAT;
            let record = own_record(update_record(store, key, |r| {
                r.last_heartbeat_ms = records::now_ms();
            }))?;
            // A heartbeat got through: the store works (again).
            *failing = StoreFailures::default();
            record
        } else {
            own_record(match store.get(key)? {
                Some(v) => records::decode::<NodeRecord>("node record", &v.data)
                    .map(Some)
                    .map_err(AgentError::from),
                None => Ok(None),
            })?
        };
        // The attempt ran here and its thread could not free the node (the store was down
        // then): free it now, or the node would never take work again.
        if execution.is_none()
            && let Some(done) = last_done.as_ref()
            && record.as_ref().and_then(|r| r.job.as_ref()) == Some(done)
        {
            update_record(store, key, |r| {
                if r.job.as_ref() == Some(done) {
                    r.job = None;
                    if r.state == NodeState::Running {
                        r.state = NodeState::Idle;
                    }
                }
            })?;
            continue;
        }
        match &record {
            None if !removed => {
                tracing::info!(node = %args.node, "record removed: leaving");
                removed = true;
                continue;
            }
            Some(r) if r.drain_requested && !draining => {
                tracing::info!(node = %args.node, ?action, "drain requested by the scheduler");
                draining = true;
                continue;
            }
            _ => {}
        }
        if let Some(assignment) = record.as_ref().and_then(|r| r.job.clone())
            && execution.is_none()
            && !draining
            && last_done.as_ref() != Some(&assignment)
        {
            // Started only if the assignment still stands (a hand-over can be undone).
            let mut taken = false;
            records::update(store, key, "node record", |r: &mut NodeRecord| {
                taken = r.job.as_ref() == Some(&assignment);
                if taken {
                    r.state = NodeState::Running;
                }
                taken
            })?;
            if taken {
                *execution = Some(Execution::start(ctx.clone(), shared.clone(), assignment));
            }
        }

        if !removed {
            if now >= next_reconcile {
                next_reconcile = now + HEARTBEAT;
                election.tick(store);
                if election.lease.is_some()
                    && let Err(e) = scheduler::reconcile(store, launcher, &args.cluster)
                {
                    tracing::warn!(error = %e, "scheduling pass failed");
                }
            } else if election.lease.is_some()
                && !store.list(&keys::queue_prefix(&args.cluster))?.is_empty()
                && let Err(e) = scheduler::dispatch_now(store, launcher, &args.cluster)
            {
                tracing::warn!(error = %e, "dispatch pass failed");
            }
        }
        std::thread::sleep(TICK);
    }
}

/// This node's own record as the loop reads it: a record that is not a record any more (garbage
/// where it was) counts as removed, so the node leaves and the scheduler replaces it, instead
/// of failing every pass.
fn own_record(
    read: Result<Option<NodeRecord>, AgentError>,
) -> Result<Option<NodeRecord>, AgentError> {
    match read {
        Err(e) if e.is_corrupt() => {
            tracing::error!(error = %e, "this node's record is corrupt: leaving");
            Ok(None)
        }
        other => other,
    }
}

/// Leaves the cluster once its work is settled (finished, requeued or terminated per the
/// deallocation option): the node marks itself leaving, frees its GPUs and removes its record.
fn leave(store: &dyn Store, key: &str, owner: &str, gpu_key: &str, action: DrainAction) {
    tracing::info!(?action, "leaving");
    let _ = update_record(store, key, |r| r.state = NodeState::Leaving);
    let _ = gpu::release_at(store, gpu_key, owner);
    let _ = store.delete(key, Condition::Always, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_up_marks_are_valid_keys() {
        // A mark the store refuses is lost silently, and dispatch falls back to the 1 s pass.
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = control::DirStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        wake_scheduler(&store, "c", "train-1");
        wake_scheduler(&store, "c", ".freed-node-3");
        let marks = store.list(&keys::queue_prefix("c")).unwrap_or_default();
        assert_eq!(marks.len(), 2, "{marks:?}");
    }

    #[test]
    fn drain_actions_follow_the_deallocation_option() {
        let cases = [
            (DeallocationOption::Requeue, DrainAction::StopAndRequeue),
            (DeallocationOption::Terminate, DrainAction::StopAndTerminate),
            (
                DeallocationOption::Waitforjobcompletion,
                DrainAction::WaitForCompletion,
            ),
        ];
        for (option, action) in cases {
            assert_eq!(drain_action(option), action);
        }
    }
}
