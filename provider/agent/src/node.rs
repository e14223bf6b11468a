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
use control::store::{Changed, Volatile, Watch};
use control::{Condition, ETag, LeaseId, Store, StoreError};

use crate::execute::{Execution, NodeContext, Stop};
use crate::launcher::{Launcher, LocalLauncher};
use crate::store::StoreLocation;
use crate::{AgentError, Rates, SCHEDULER_LEASE, gpu, scheduler, setup};

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
    /// Set, together with the stop flag, when the platform is about to take the machine away
    /// (a Spot eviction): the node then requeues its running attempt at once, whatever the
    /// cluster's deallocation option, because the machine will not wait for it.
    pub evicted: Arc<AtomicBool>,
    /// Where the node keeps copies of the job files it wrote on its own disk, on a platform
    /// whose machines take their disks with them (an Azure VM); `None` where the disk stays
    /// (the local platform's nodes write to this machine's).
    pub keep_files: Option<control_blob::BlobStore>,
    /// The client ID of the managed identity blob mounts without an account key use (an Azure
    /// node's own); `None` where nodes have none.
    pub mount_identity: Option<String>,
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
///
/// Node records are written volatile: a crash of the machine that holds a directory store ends
/// every node on it too (they are its processes), so their records are stale afterwards
/// whatever they say, and the scheduler reaps them (a damaged one as corrupt). On a blob store
/// every write is durable anyway.
fn update_record(
    store: &dyn Store,
    key: &str,
    change: impl Fn(&mut NodeRecord),
) -> Result<Option<NodeRecord>, AgentError> {
    Ok(records::update(
        &Volatile(store),
        key,
        "node record",
        |r| {
            change(r);
            true
        },
    )?)
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
                // One request while another node schedules: the key exists from the first
                // election on, so it is created only when the lease finds nothing to hang on.
                let mut acquired = store.acquire_lease(&self.key, SCHEDULER_LEASE);
                if matches!(&acquired, Err(e) if e.is_not_found()) {
                    match store.put(&self.key, b"{}", Condition::IfNoneExists, None) {
                        Ok(_) => {}
                        Err(e) if e.is_conflict() || matches!(e, StoreError::LeaseHeld { .. }) => {}
                        Err(e) => tracing::warn!(error = %e, "create the scheduler key"),
                    }
                    acquired = store.acquire_lease(&self.key, SCHEDULER_LEASE);
                }
                match acquired {
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

/// Runs a node until it is drained, removed or stopped (SIGTERM, SIGINT).
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
    run_node_with(&args, store, launcher.as_ref(), &stop, Rates::STANDARD)
}

/// A node's life on a given store and launcher, at the given rates, until it is drained,
/// removed or `stop` is set: what [`run_node`] runs, and what tests and benchmarks run
/// in-process (a counting store, a launcher that starts nothing, faster rates).
pub fn run_node_with(
    args: &NodeArgs,
    store: Arc<dyn Store>,
    launcher: &dyn Launcher,
    stop: &Arc<AtomicBool>,
    rates: Rates,
) -> Result<(), AgentError> {
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
                let next = Instant::now() + rates.heartbeat;
                while preparing.load(Ordering::SeqCst) && Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };
    let prepared = cluster_mount_keys(store.as_ref(), &spec)
        .and_then(|keys| {
            let private_dir = node_dir.join("private");
            setup::realise_mounts(
                &spec.mounts,
                &mount_root,
                &crate::storage_mounts::MountKeys {
                    keys: &keys,
                    identity: args.mount_identity.as_deref(),
                    private_dir: &private_dir,
                },
            )
        })
        .and_then(|()| setup_secrets(store.as_ref(), &spec))
        .and_then(|secrets| {
            setup::run_setup_task(&spec, &args.node, &node_dir, &env, &secrets, stop)
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

    // Watched from here on, so that no change after this point goes unnoticed.
    let watch = watch_node(store.as_ref(), &args.cluster, &key);
    let ctx = Arc::new(NodeContext {
        cluster: args.cluster.clone(),
        node: args.node.clone(),
        node_dir: node_dir.clone(),
        mount_root: mount_root.clone(),
        cluster_mounts: spec.mounts.clone(),
        cluster_volumes: spec
            .mounts
            .iter()
            .filter_map(|m| match &m.source {
                records::MountSource::Directory { path } => Some(PathBuf::from(path)),
                records::MountSource::Command { .. }
                | records::MountSource::Git { .. }
                | records::MountSource::AzureFileShare { .. }
                | records::MountSource::AzureBlob { .. } => None,
            })
            .collect(),
        env,
        exe: args.exe.clone(),
        rates,
        keep_files: args.keep_files.clone(),
        mount_identity: args.mount_identity.clone(),
    });
    let action = drain_action(spec.scale.deallocation());
    let mut node = Node {
        store: store.clone(),
        launcher,
        args,
        key: key.clone(),
        stop,
        rates,
        ctx,
        action,
        watch,
        election: Election {
            key: keys::scheduler(&args.cluster),
            lease: None,
        },
        scheduling: crate::dispatch::Memory::default(),
        execution: None,
        last_done: None,
        failing: StoreFailures::default(),
    };
    // A store error (a full or read-only disk, a blob service that is down) ends one pass of
    // the loop, never the node: it backs off and goes on, its running attempt untouched, for
    // as long as the outage lasts. Whatever the end, a running attempt is stopped and handed
    // back before the node leaves, so no job process outlives its node.
    let result = loop {
        match node.run() {
            Ok(()) => break Ok::<(), AgentError>(()),
            Err(e) => {
                let nap = node.failing.next(&e);
                std::thread::sleep(nap);
            }
        }
    };
    if let Some(running) = node.execution.take() {
        running.stop(Stop::Requeue);
        running.join();
    }
    // What the setup task or a job left running, however it detached, goes with the node.
    crate::launcher::stop_marked(
        &crate::launcher::node_owner(&node_dir),
        crate::execute::TERMINATE_GRACE,
    );
    node.election.release(store.as_ref());
    leave(store.as_ref(), &key, &owner, &gpu_key, action);
    result
}

/// What a node watches: its own record, its cluster's queue (for when it is the scheduler) and
/// its cluster's spec (a changed scale setting is reconciled at once). `None` on a store
/// without change notifications, or when they fail (an instance limit reached, say): the node
/// then polls.
fn watch_node(store: &dyn Store, cluster: &str, key: &str) -> Option<Box<dyn Watch>> {
    match store.watch(&[key, &keys::queue_prefix(cluster), &keys::spec(cluster)]) {
        Ok(watch) => watch,
        Err(e) => {
            tracing::warn!(error = %e, "no change notifications from the store; polling it every {:?}", crate::POLL);
            None
        }
    }
}

/// The prefixes [`watch_node`] watches, by index, and how many.
const OWN_RECORD: usize = 0;
const QUEUE: usize = 1;
const SPEC: usize = 2;
const WATCHED: usize = 3;

/// The cluster's secrets record, read only by a node preparing itself. A store outage delays
/// preparation; a record that cannot be read makes the node unusable with `code`, saying why.
fn cluster_secrets(
    store: &dyn Store,
    spec: &ClusterSpec,
    what: &str,
    code: records::ErrorCode,
) -> Result<Option<control::secrets::ClusterSecrets>, NodeError> {
    let key = keys::cluster_secrets(&spec.name);
    crate::until_stored(&format!("read {what}"), || Ok(store.get(&key)?))
        .and_then(|value| {
            value
                .map(|v| records::decode("cluster secrets", &v.data))
                .transpose()
                .map_err(Into::into)
        })
        .map_err(|e| setup::node_error(code, format!("read {what}: {e}"), &[]))
}

/// The storage account keys of the cluster's Azure Storage mounts (none when no mount needs
/// one).
fn cluster_mount_keys(
    store: &dyn Store,
    spec: &ClusterSpec,
) -> Result<control::secrets::Secrets, NodeError> {
    if !spec.mounts.iter().any(|m| m.source.needs_key()) {
        return Ok(control::secrets::Secrets::default());
    }
    let stored = cluster_secrets(
        store,
        spec,
        "the cluster's mount keys",
        records::ErrorCode::MountFailed,
    )?;
    Ok(stored.map(|s| s.mounts).unwrap_or_default())
}

/// The setup task's secrets: those in the cluster's secrets record plus those that specs of
/// older providers carried themselves.
fn setup_secrets(
    store: &dyn Store,
    spec: &ClusterSpec,
) -> Result<control::secrets::Secrets, NodeError> {
    let Some(task) = &spec.setup_task else {
        return Ok(control::secrets::Secrets::default());
    };
    let stored = cluster_secrets(
        store,
        spec,
        "the setup task's secrets",
        records::ErrorCode::SetupTaskFailed,
    )?;
    let mut secrets = task.secrets.clone();
    if let Some(stored) = stored {
        secrets.0.extend(stored.setup_task.0);
    }
    Ok(secrets)
}

/// The first wait after a failed pass of the node loop; it doubles up to
/// [`crate::STORE_RETRY_MAX`].
const FIRST_RETRY: Duration = Duration::from_millis(200);

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
        self.nap = (self.nap * 2).clamp(FIRST_RETRY, crate::STORE_RETRY_MAX);
        self.nap
    }
}

/// Tells the scheduler to look at the queue now (a node freed up, a job was queued, a
/// hand-over found a job changed). `why` is a job name, or `.freed-<node>` or `.stale`, which
/// no job name can be. A lost mark only delays dispatch to the next full pass, so a failure is
/// logged, not returned.
pub fn wake_scheduler(store: &dyn Store, cluster: &str, why: &str) {
    // Volatile: a mark lost in a crash only delays dispatch, like any lost mark.
    if let Err(e) = store.put_volatile(
        &keys::queue_mark(cluster, why),
        b"{}",
        Condition::Always,
        None,
    ) {
        tracing::warn!(error = %e, "wake the scheduler");
    }
}

/// How often a waiting node checks for what no store event announces: SIGTERM, and (on a store
/// without events) its attempt's end.
const WAKE_CHECK: Duration = Duration::from_millis(100);

/// A node after its preparation: its job attempts, heartbeats, drain, and (while it holds the
/// lease) the scheduler's duties.
struct Node<'a> {
    store: Arc<dyn Store>,
    launcher: &'a dyn Launcher,
    args: &'a NodeArgs,
    key: String,
    stop: &'a AtomicBool,
    rates: Rates,
    ctx: Arc<NodeContext>,
    action: DrainAction,
    watch: Option<Box<dyn Watch>>,
    election: Election,
    /// What the scheduler remembers between its passes while this node holds the lease.
    scheduling: crate::dispatch::Memory,
    execution: Option<Execution>,
    /// The last attempt this node ran: kept across passes that a store error cut short, or
    /// the node would take an attempt it already ran for a new one.
    last_done: Option<Assignment>,
    failing: StoreFailures,
}

/// When the node loop next has something to do without being told.
#[derive(Debug, Clone, Copy)]
struct Due {
    heartbeat: Instant,
    reconcile: Instant,
    /// An idle node's look at its record, on a store without events.
    look: Instant,
    /// The scheduler's look at its queue, on a store without events.
    queue: Instant,
}

/// What a look at the node's own record found.
enum Looked {
    Fine,
    /// Someone wrote the record meanwhile, or the node changed it: look again.
    Again,
    Removed,
    DrainRequested,
}

impl Node<'_> {
    /// Passes until the node leaves (`Ok`) or a pass fails (the caller backs off and runs the
    /// loop again). Each pass does what changed or fell due, then waits for the next change
    /// (on a store with events) or for the next time something falls due.
    fn run(&mut self) -> Result<(), AgentError> {
        let mut draining = false;
        let mut removed = false;
        let start = Instant::now();
        let mut due = Due {
            heartbeat: start,
            reconcile: start,
            look: start,
            queue: start,
        };
        // The first pass looks at everything: changes may have come while the loop was down.
        let mut changed = Changed::all(WATCHED);
        loop {
            // The attempt's thread freed the node record itself before it finished.
            if let Some(done) = self.execution.take_if(|e| e.is_finished()) {
                let assignment = done.assignment.clone();
                done.join();
                self.last_done = Some(assignment);
            }
            if self.stop.load(Ordering::SeqCst) && !draining {
                tracing::info!(node = %self.args.node, action = ?self.action, "SIGTERM: draining");
                draining = true;
                // Marked so that no scheduler hands this node new work while it drains. Best
                // effort: a store that is down must not keep a node from stopping.
                if let Err(e) =
                    update_record(self.store.as_ref(), &self.key, |r| r.drain_requested = true)
                {
                    tracing::warn!(error = %e, "mark the node draining");
                }
            }
            if draining || removed {
                match &self.execution {
                    None => return Ok(()),
                    Some(e) if removed || self.args.evicted.load(Ordering::SeqCst) => {
                        e.stop(Stop::Requeue);
                    }
                    Some(e) => match self.action {
                        DrainAction::WaitForCompletion => {}
                        DrainAction::StopAndRequeue => e.stop(Stop::Requeue),
                        DrainAction::StopAndTerminate => e.stop(Stop::Terminate),
                    },
                }
            }

            let now = Instant::now();
            let polling = self.watch.is_none();
            let idle = self.execution.is_none();
            let heartbeat = now >= due.heartbeat;
            // An idle node looks at its record for work when it changed (or, on a store that
            // does not say, every poll); a busy one only to heartbeat: a drain request or its
            // removal can wait that long.
            let look = !removed
                && (heartbeat || changed.has(OWN_RECORD) || (polling && idle && now >= due.look));
            if look {
                due.look = now + self.rates.poll;
                match self.look(heartbeat, draining)? {
                    Looked::Fine => {}
                    Looked::Again => {
                        changed = Changed::only(OWN_RECORD);
                        continue;
                    }
                    Looked::Removed => {
                        tracing::info!(node = %self.args.node, "record removed: leaving");
                        removed = true;
                        continue;
                    }
                    Looked::DrainRequested => {
                        tracing::info!(node = %self.args.node, action = ?self.action, "drain requested by the scheduler");
                        draining = true;
                        continue;
                    }
                }
                if heartbeat {
                    due.heartbeat = now + self.rates.heartbeat;
                }
            }
            if !removed {
                self.schedule(now, changed, &mut due)?;
            }

            let scheduler = self.election.lease.is_some();
            let mut next = due.heartbeat.min(due.reconcile);
            if polling && self.execution.is_none() {
                next = next.min(due.look);
            }
            if polling && scheduler {
                next = next.min(due.queue);
            }
            changed = self.wait(next, !draining);
        }
    }

    /// Reads the node's record, heartbeats on it when `heartbeat` (one conditional write on
    /// the version just read, not a second read), and acts on it: leave, drain, free the node
    /// of an attempt it ran, take a new assignment.
    fn look(&mut self, heartbeat: bool, draining: bool) -> Result<Looked, AgentError> {
        let store = self.store.as_ref();
        let Some((mut record, etag)) = own_record(read_own(store, &self.key))? else {
            return Ok(Looked::Removed);
        };
        if heartbeat {
            record.last_heartbeat_ms = records::now_ms();
            match store.put_volatile(
                &self.key,
                &records::encode(&record),
                Condition::IfMatch(etag),
                None,
            ) {
                // A heartbeat got through: the store works (again).
                Ok(_) => self.failing = StoreFailures::default(),
                Err(e) if e.is_conflict() => return Ok(Looked::Again),
                Err(e) => return Err(e.into()),
            }
        }
        // The attempt ran here and its thread could not free the node (the store was down
        // then): free it now, or the node would never take work again.
        if self.execution.is_none()
            && let Some(done) = self.last_done.as_ref()
            && record.job.as_ref() == Some(done)
        {
            update_record(store, &self.key, |r| {
                if r.job.as_ref() == Some(done) {
                    r.job = None;
                    if r.state == NodeState::Running {
                        r.state = NodeState::Idle;
                    }
                }
            })?;
            return Ok(Looked::Again);
        }
        if record.drain_requested && !draining {
            return Ok(Looked::DrainRequested);
        }
        if let Some(assignment) = record.job
            && self.execution.is_none()
            && !draining
            && self.last_done.as_ref() != Some(&assignment)
        {
            // Started only if the assignment still stands (a hand-over can be undone).
            let mut taken = false;
            records::update(
                &Volatile(store),
                &self.key,
                "node record",
                |r: &mut NodeRecord| {
                    taken = r.job.as_ref() == Some(&assignment);
                    if taken {
                        r.state = NodeState::Running;
                    }
                    taken
                },
            )?;
            if taken {
                self.execution = Some(Execution::start(
                    self.ctx.clone(),
                    self.store.clone(),
                    assignment,
                ));
            }
        }
        Ok(Looked::Fine)
    }

    /// The scheduler's duties, and the election that decides who has them: a full
    /// reconciliation every [`Rates::reconcile`] (and at once when the cluster's spec changed),
    /// a dispatch pass when the queue has marks (looked at when it changed, or every poll on a
    /// store without events).
    fn schedule(
        &mut self,
        now: Instant,
        changed: Changed,
        due: &mut Due,
    ) -> Result<(), AgentError> {
        let store = self.store.as_ref();
        let cluster = &self.args.cluster;
        let scheduler = self.election.lease.is_some();
        if now >= due.reconcile || (scheduler && changed.has(SPEC)) {
            due.reconcile = now + self.rates.reconcile;
            due.queue = now + self.rates.poll;
            self.election.tick(store);
            if self.election.lease.is_none() {
                self.scheduling = crate::dispatch::Memory::default();
            } else if let Err(e) = scheduler::reconcile_remembering(
                store,
                self.launcher,
                cluster,
                &mut self.scheduling,
            ) {
                tracing::warn!(error = %e, "scheduling pass failed");
            }
        } else if scheduler && (changed.has(QUEUE) || (self.watch.is_none() && now >= due.queue)) {
            due.queue = now + self.rates.poll;
            if !store.list(&keys::queue_prefix(cluster))?.is_empty()
                && let Err(e) =
                    scheduler::dispatch_now(store, self.launcher, cluster, &mut self.scheduling)
            {
                tracing::warn!(error = %e, "dispatch pass failed");
            }
        }
        Ok(())
    }

    /// Waits until `deadline`, a change the node watches, or something it must see sooner:
    /// SIGTERM (with `for_stop`) and its attempt's end.
    fn wait(&mut self, deadline: Instant, for_stop: bool) -> Changed {
        loop {
            let now = Instant::now();
            if now >= deadline
                || (for_stop && self.stop.load(Ordering::SeqCst))
                || self.execution.as_ref().is_some_and(Execution::is_finished)
            {
                return Changed::NONE;
            }
            let slice = (deadline - now).min(WAKE_CHECK);
            match &mut self.watch {
                Some(watch) => {
                    let changed = watch.wait(slice);
                    if changed.any() {
                        return changed;
                    }
                }
                None => std::thread::sleep(slice),
            }
        }
    }
}

/// This node's record and its version.
fn read_own(store: &dyn Store, key: &str) -> Result<Option<(NodeRecord, ETag)>, AgentError> {
    match store.get(key)? {
        Some(v) => Ok(Some((records::decode("node record", &v.data)?, v.etag))),
        None => Ok(None),
    }
}

/// This node's own record as the loop reads it: a record that is not a record any more (garbage
/// where it was) counts as removed, so the node leaves and the scheduler replaces it, instead
/// of failing every pass.
fn own_record<T>(read: Result<Option<T>, AgentError>) -> Result<Option<T>, AgentError> {
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
    let _ = store.delete_volatile(key, Condition::Always, None);
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
