//! What nodes ask of their store, counted rather than estimated: two nodes run in-process on a
//! store that counts their requests and gives no change notifications (as a blob container
//! does not), idle for a window, then each running a job for a window. `cargo xtask bench
//! jobs` reports it per minute at the agent's own rates; `tests/request_rates.rs` checks it
//! against [`Rates`] at faster ones.
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use control::jobs::{JobSpec, JobState, JobStatus, Priority, Retry, Toolkit};
use control::records::{self, ClusterSpec, DeallocationOption, NodeRecord, NodeState, Scale, keys};
use control::store::{Counting, Requests};
use control::{Condition, Store};

use crate::store::StoreLocation;
use crate::{AgentError, Launcher, NodeArgs, Rates};

/// The nodes measured.
const NODES: [&str; 2] = ["node-0", "node-1"];
/// The cluster they form.
const CLUSTER: &str = "rates";
/// The longest the nodes may take to come up, or to start their jobs.
const SETTLE: Duration = Duration::from_secs(30);

/// One node's requests in each window.
#[derive(Debug, Clone)]
pub struct NodeRequests {
    pub node: String,
    /// Whether it held the scheduler lease (it lists the queue; the other node never lists).
    pub scheduler: bool,
    pub idle: Requests,
    /// Running one job, of which it is the master.
    pub busy: Requests,
}

/// In-process nodes need no launching, and their liveness is their heartbeat.
#[derive(Debug)]
struct InProcess;

impl Launcher for InProcess {
    fn launch(
        &self,
        _store: &dyn Store,
        _spec: &ClusterSpec,
        _count: u32,
    ) -> Result<Vec<String>, AgentError> {
        Ok(Vec::new())
    }

    fn reap(&self, _record: &NodeRecord) {}
}

/// Runs two nodes on `store` (whose cluster `rates` must not exist yet) at `rates`, with their
/// work directories under `work`, and counts each node's requests while both are idle for
/// `window`, then while each runs a job for `window`.
pub fn count_requests(
    store: Arc<dyn Store>,
    work: &Path,
    rates: Rates,
    window: Duration,
) -> Result<Vec<NodeRequests>, AgentError> {
    let spec = ClusterSpec {
        format: records::FORMAT,
        name: CLUSTER.to_owned(),
        uid: "rates".to_owned(),
        vm_size: "Standard_D2s_v3".to_owned(),
        vm_priority: "dedicated".to_owned(),
        scale: Scale::Manual {
            target_node_count: NODES.len() as u32,
            node_deallocation_option: DeallocationOption::Requeue,
        },
        setup_task: None,
        mounts: Vec::new(),
        gpus_per_node: 0,
        deleting: false,
        scale_generation: 0,
    };
    put(store.as_ref(), &keys::spec(CLUSTER), &spec)?;
    for node in NODES {
        let record = NodeRecord::launching(CLUSTER, node, records::now_ms());
        put(store.as_ref(), &keys::node(CLUSTER, node), &record)?;
    }
    let counters: Vec<Arc<Counting>> = NODES
        .iter()
        .map(|_| Arc::new(Counting::new(store.clone(), false)))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let exe = std::env::current_exe().map_err(|e| AgentError::io("find", "this binary", e))?;
    std::thread::scope(|scope| {
        let nodes: Vec<_> = NODES
            .iter()
            .zip(&counters)
            .map(|(node, counter)| {
                let args = NodeArgs {
                    store: StoreLocation {
                        url: work.join("store").display().to_string(),
                        credential: None,
                    },
                    cluster: CLUSTER.to_owned(),
                    node: (*node).to_owned(),
                    work_dir: work.join(node),
                    local_root: Some(work.to_path_buf()),
                    exe: exe.clone(),
                    evicted: Default::default(),
                    keep_files: None,
                    mount_identity: None,
                };
                let store: Arc<dyn Store> = counter.clone();
                let stop = &stop;
                scope.spawn(move || {
                    crate::node::run_node_with(&args, store, &InProcess, stop, rates)
                })
            })
            .collect();
        let measured = measure(store.as_ref(), work, &counters, rates, window);
        stop.store(true, Ordering::SeqCst);
        for node in nodes {
            match node.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(AgentError::Config {
                        reason: "a measured node panicked".to_owned(),
                    });
                }
            }
        }
        measured
    })
}

/// The two windows, once the nodes are up.
fn measure(
    store: &dyn Store,
    work: &Path,
    counters: &[Arc<Counting>],
    rates: Rates,
    window: Duration,
) -> Result<Vec<NodeRequests>, AgentError> {
    wait_for(store, "the nodes to come up", |nodes, _| {
        nodes.iter().all(|n| n.state == NodeState::Idle)
    })?;
    // One node wins the election and reconciles before the counting starts.
    std::thread::sleep(rates.reconcile * 2);
    let idle = count(counters, window);
    for (i, _) in NODES.iter().enumerate() {
        let name = format!("busy-{i}");
        put(
            store,
            &keys::job_spec(CLUSTER, &name),
            &sleeper(&name, work),
        )?;
        put(
            store,
            &keys::job_status(CLUSTER, &name),
            &JobStatus::queued(&name, records::now_ms()),
        )?;
        crate::node::wake_scheduler(store, CLUSTER, &name);
    }
    wait_for(store, "the jobs to start", |nodes, running| {
        running == NODES.len() && nodes.iter().all(|n| n.state == NodeState::Running)
    })?;
    // The attempts have read their specs: what is counted from here on is their steady state.
    std::thread::sleep(rates.poll);
    let busy = count(counters, window);
    Ok(NODES
        .iter()
        .zip(idle.into_iter().zip(busy))
        .map(|(node, (idle, busy))| NodeRequests {
            node: (*node).to_owned(),
            scheduler: idle.list > 0,
            idle,
            busy,
        })
        .collect())
}

/// Each counter's requests over `window`.
fn count(counters: &[Arc<Counting>], window: Duration) -> Vec<Requests> {
    let before: Vec<Requests> = counters.iter().map(|c| c.requests()).collect();
    std::thread::sleep(window);
    counters
        .iter()
        .zip(&before)
        .map(|(c, before)| c.requests().since(before))
        .collect()
}

/// Waits (reading the store directly, uncounted) until `done` holds for the node records and
/// the number of running jobs.
fn wait_for(
    store: &dyn Store,
    what: &str,
    done: impl Fn(&[NodeRecord], usize) -> bool,
) -> Result<(), AgentError> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let nodes: Vec<NodeRecord> = crate::scheduler::nodes(store, CLUSTER)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let running = crate::dispatch::active_jobs(store, CLUSTER)?
            .iter()
            .filter(|j| j.status.state == JobState::Running)
            .count();
        if done(&nodes, running) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(AgentError::Config {
                reason: format!("waited {SETTLE:?} in vain for {what}"),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A one-node job that runs until its node stops it.
fn sleeper(name: &str, work: &Path) -> JobSpec {
    JobSpec {
        format: records::FORMAT,
        name: name.to_owned(),
        cluster: CLUSTER.to_owned(),
        uid: name.to_owned(),
        created_ms: records::now_ms(),
        node_count: 1,
        priority: Priority::Normal,
        toolkit: Toolkit::CustomToolkit {
            command_line: "sleep 3600".to_owned(),
        },
        job_preparation: None,
        environment_variables: Default::default(),
        has_secrets: false,
        input_directories: Vec::new(),
        output_directories: Vec::new(),
        std_out_err_path_prefix: work.join("logs").display().to_string(),
        mounts: Vec::new(),
        max_wall_clock_ms: 3_600_000,
        max_unschedulable_ms: control::jobs::DEFAULT_MAX_UNSCHEDULABLE_MS,
        termination_grace_ms: 1_000,
        retry: Retry::default(),
        container: None,
    }
}

fn put<T: serde::Serialize>(store: &dyn Store, key: &str, value: &T) -> Result<(), AgentError> {
    store.put(key, &records::encode(value), Condition::Always, None)?;
    Ok(())
}
