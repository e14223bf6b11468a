//! Running a node's part of a job attempt: the job's directories and environment, job-level
//! mounts, job preparation, the toolkit's processes (on the host or in a container), the
//! wall-clock limit, termination, and the report that moves the job on. One thread per attempt;
//! the node's main loop starts it and tells it to stop.
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use control::Store;
use control::jobs::{self, Assignment, JobSpec, JobState, JobStatus, NodeReport};
use control::records::{self, ErrorCode, MountSource, NodeError, NodeRecord, NodeState, keys};
use serde::{Deserialize, Serialize};

use crate::launcher::OWNER_VAR;
use crate::setup::{self, node_error as job_error, redact, tail};
use crate::toolkit::{self, Layout, Proc, sh_quote};

/// How long a node's leftover processes have between SIGTERM and SIGKILL when the node leaves;
/// a job's own processes get their job's `termination_grace_ms`.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(10);
/// How often a running attempt looks at its processes (its job status it reads every
/// [`crate::Rates::poll`], and at once when it changes on a store with events).
const POLL: Duration = Duration::from_millis(50);
/// How long an attempt's processes are looked at every millisecond: a short job's end is on
/// the path of every job's dispatch behind it.
const QUICK: Duration = Duration::from_millis(20);
/// How often the master of an MPI attempt looks for the rank environments it waits for, on a
/// store without events.
const RANKS_POLL: Duration = Duration::from_millis(500);
/// What an attempt watches, by index: its job status, and the rank environments of its nodes.
const STATUS: usize = 0;
const RANKS: usize = 1;
/// The address peers rendezvous on: every local node is this machine.
const LOCAL_ADDRESS: &str = "127.0.0.1";

/// Why the node's main loop stops an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stop {
    Keep = 0,
    /// The node is removed with `requeue`: the job goes back to the queue.
    Requeue = 1,
    /// The node is removed with `terminate`: the job fails.
    Terminate = 2,
}

/// What a node knows about itself, for every attempt it runs.
#[derive(Debug, Clone)]
pub struct NodeContext {
    pub cluster: String,
    pub node: String,
    /// The node's work directory (mounts, job temp, agent log).
    pub node_dir: PathBuf,
    pub mount_root: PathBuf,
    /// The cluster's mounts, as the node realised them (they never change: a cluster whose
    /// mounts change is replaced, nodes and all).
    pub cluster_mounts: Vec<records::Mount>,
    /// Directories a job's container must see besides the node's own: the cluster's directory
    /// mounts, which the node's mount links point into.
    pub cluster_volumes: Vec<PathBuf>,
    /// The node's environment (`AZ_BATCHAI_MOUNT_ROOT`, GPUs, ...).
    pub env: BTreeMap<String, String>,
    /// This binary: `mpirun` reaches other nodes through `<exe> agent rsh`.
    pub exe: PathBuf,
    /// How often the node's attempts read their job status.
    pub rates: crate::Rates,
    /// Where the node copies the job files it wrote on its own disk when an attempt ends
    /// ([`crate::keep`]), on a platform whose machines take their disks with them.
    pub keep_files: Option<control_blob::BlobStore>,
    /// See [`crate::NodeArgs::mount_identity`].
    pub mount_identity: Option<String>,
}

/// What the rsh bridge needs to start MPI ranks "on" this node: its job-specific environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankEnvironment {
    #[serde(default)]
    pub format: u32,
    /// The publishing node's machine and network (`host::identity`): the master runs commands
    /// for nodes on its own host itself, and asks the others through the store.
    #[serde(default)]
    pub host: Option<String>,
    pub job: String,
    #[serde(default)]
    pub uid: String,
    pub attempt: u32,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
}

/// The environment variable that tells `agent rsh` where the master keeps the rank
/// environments it gathered from the store before it started `mpirun`.
pub const RANKS_DIR_VAR: &str = "BATCHAI_RANKS_DIR";

/// How long the master waits for every node of an MPI attempt to publish its rank environment.
const RANKS_WAIT: Duration = Duration::from_secs(60);

/// Where a node mounts its cluster's volumes (`AZ_BATCHAI_MOUNT_ROOT`).
pub fn mount_root(node_dir: &Path) -> PathBuf {
    node_dir.join("mounts")
}

/// The directory beside a node's work directory that the nodes of one machine share
/// (`AZ_BATCHAI_SHARED_JOB_TEMP` lies below it).
pub fn shared_dir(node_dir: &Path) -> PathBuf {
    node_dir
        .parent()
        .map_or_else(|| node_dir.join("shared"), |p| p.join("shared"))
}

/// An attempt running on this node.
#[derive(Debug)]
pub struct Execution {
    pub assignment: Assignment,
    stop: Arc<AtomicU8>,
    handle: std::thread::JoinHandle<()>,
}

impl Execution {
    pub fn start(ctx: Arc<NodeContext>, store: Arc<dyn Store>, assignment: Assignment) -> Self {
        let stop = Arc::new(AtomicU8::new(Stop::Keep as u8));
        let handle = {
            let stop = stop.clone();
            let assignment = assignment.clone();
            std::thread::spawn(move || {
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(&ctx, &store, &assignment, &stop)
                }));
                match ran {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(job = %assignment.job, error = %e, "running the job failed");
                    }
                    // A bug must not leave the node held forever: it is freed below, and the
                    // attempt, which no longer runs anywhere, is requeued by the scheduler.
                    Err(_) => tracing::error!(job = %assignment.job, "running the job panicked"),
                }
                // Free the node at once, rather than on the main loop's next tick, and tell
                // the scheduler: both are the floor of job throughput.
                let key = keys::node(&ctx.cluster, &ctx.node);
                // Volatile, as every node record write (see `node::update_record`).
                let volatile = control::store::Volatile(store.as_ref());
                let freed =
                    records::update(&volatile, &key, "node record", |r: &mut NodeRecord| {
                        let mine = r.job.as_ref() == Some(&assignment);
                        if mine {
                            r.job = None;
                        }
                        // Also when the hand-over was undone meanwhile: a node without a job is idle.
                        let stale = r.job.is_none() && r.state == NodeState::Running;
                        if stale {
                            r.state = NodeState::Idle;
                        }
                        mine || stale
                    });
                if let Err(e) = freed {
                    tracing::warn!(error = %e, "free the node after its job");
                }
                crate::node::wake_scheduler(
                    store.as_ref(),
                    &ctx.cluster,
                    &format!(".freed-{}", ctx.node),
                );
            })
        };
        Self {
            assignment,
            stop,
            handle,
        }
    }

    pub fn stop(&self, why: Stop) {
        self.stop.store(why as u8, Ordering::SeqCst);
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    pub fn join(self) {
        let _ = self.handle.join();
    }
}

fn stop_reason(stop: &AtomicU8) -> Stop {
    match stop.load(Ordering::SeqCst) {
        1 => Stop::Requeue,
        2 => Stop::Terminate,
        _ => Stop::Keep,
    }
}

fn failed(error: NodeError, exit_code: Option<i32>) -> NodeReport {
    NodeReport {
        exit_code,
        error: Some(error),
    }
}

/// A job's directories on one node.
#[derive(Debug, Clone)]
pub struct JobDirs {
    pub job_mount_root: PathBuf,
    pub temp_parent: PathBuf,
    pub temp: PathBuf,
    pub shared_temp: PathBuf,
    pub stdouterr: PathBuf,
    pub inputs: Vec<(String, PathBuf)>,
    pub outputs: Vec<(String, PathBuf)>,
}

impl JobDirs {
    pub fn resolve(ctx: &NodeContext, spec: &JobSpec) -> Result<Self, jobs::JobPathError> {
        Self::on_node(&ctx.node_dir, &ctx.mount_root, spec)
    }

    /// The directories as the node whose work directory is `node_dir` (its record's
    /// `work_dir`) sees them, for readers outside the node: the provider tells a user where a
    /// job's logs are from what the store says, without reading the node.
    pub fn for_node(node_dir: &Path, spec: &JobSpec) -> Result<Self, jobs::JobPathError> {
        Self::on_node(node_dir, &mount_root(node_dir), spec)
    }

    fn on_node(
        node_dir: &Path,
        mount_root: &Path,
        spec: &JobSpec,
    ) -> Result<Self, jobs::JobPathError> {
        let job_mount_root = node_dir.join("jobmounts").join(&spec.name);
        let resolve = |p: &str| jobs::resolve_job_path(p, mount_root, &job_mount_root);
        let segment = spec.path_segment();
        let stdouterr = resolve(&spec.std_out_err_path_prefix)?
            .join(&segment)
            .join("stdouterr");
        let inputs = spec
            .input_directories
            .iter()
            .map(|d| Ok((d.id.clone(), resolve(&d.path)?)))
            .collect::<Result<_, jobs::JobPathError>>()?;
        let outputs = spec
            .output_directories
            .iter()
            .map(|d| {
                Ok((
                    d.id.clone(),
                    resolve(&d.path_prefix)?.join(d.below_prefix(&segment)),
                ))
            })
            .collect::<Result<_, jobs::JobPathError>>()?;
        let temp_parent = node_dir.join("jobtemp");
        Ok(Self {
            temp: temp_parent.join(&spec.name),
            temp_parent,
            shared_temp: shared_dir(node_dir).join(&spec.name).join(&spec.uid),
            job_mount_root,
            stdouterr,
            inputs,
            outputs,
        })
    }

    /// The metrics file every process of an attempt appends to: one per attempt, so a retry
    /// reports its own values, not its predecessors'.
    pub fn metrics_file(&self, attempt: u32) -> PathBuf {
        self.stdouterr.join(format!("metrics-{attempt}.jsonl"))
    }

    pub fn host_file(&self) -> PathBuf {
        self.temp.join("mpi-hostfile")
    }
}

/// Where the master keeps the rank environments it gathered for `agent rsh`.
fn rank_envs_dir(dirs: &JobDirs) -> PathBuf {
    dirs.temp.join(".batchai-ranks")
}

/// The Batch AI job environment on this node (secrets excluded).
pub fn job_environment(
    ctx: &NodeContext,
    spec: &JobSpec,
    dirs: &JobDirs,
    status: &JobStatus,
    index: usize,
) -> BTreeMap<String, String> {
    let mut env = ctx.env.clone();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };
    let show = |p: &Path| p.display().to_string();
    set("AZ_BATCHAI_JOB_NAME", spec.name.clone());
    set("AZ_BATCHAI_JOB_UID", spec.uid.clone());
    set("AZ_BATCHAI_JOB_ATTEMPT", status.attempts.to_string());
    set("AZ_BATCHAI_JOB_NODE_COUNT", spec.node_count.to_string());
    set("AZ_BATCHAI_JOB_NODE_INDEX", index.to_string());
    set(
        "AZ_BATCHAI_JOB_MASTER_NODE",
        status.nodes.first().cloned().unwrap_or_default(),
    );
    set("AZ_BATCHAI_JOB_MOUNT_ROOT", show(&dirs.job_mount_root));
    set("AZ_BATCHAI_JOB_TEMP_DIR", show(&dirs.temp_parent));
    set("AZ_BATCHAI_JOB_TEMP", show(&dirs.temp));
    // OpenMPI keys its session directories by host name, which every local node shares: each
    // node's processes keep theirs in the node's own job temp so they never collide.
    set("TMPDIR", show(&dirs.temp));
    set("AZ_BATCHAI_SHARED_JOB_TEMP", show(&dirs.shared_temp));
    set("AZ_BATCHAI_STDOUTERR_DIR", show(&dirs.stdouterr));
    set("AZ_BATCHAI_MPI_HOST_FILE", show(&dirs.host_file()));
    set("AZ_BATCHAI_TASK_INDEX", index.to_string());
    set(
        "BATCHAI_METRICS_FILE",
        show(&dirs.metrics_file(status.attempts)),
    );
    set(RANKS_DIR_VAR, show(&rank_envs_dir(dirs)));
    for (id, path) in &dirs.inputs {
        set(&format!("AZ_BATCHAI_INPUT_{id}"), show(path));
    }
    for (id, path) in &dirs.outputs {
        set(&format!("AZ_BATCHAI_OUTPUT_{id}"), show(path));
    }
    env.extend(spec.environment_variables.clone());
    env
}

/// The variables that differ between nodes: the rsh bridge overlays them on the master's
/// environment when `mpirun` starts ranks on this node.
const NODE_SPECIFIC: &[&str] = &[
    "AZ_BATCHAI_NODE_ID",
    "AZ_BATCHAI_MOUNT_ROOT",
    "AZ_BATCHAI_JOB_MOUNT_ROOT",
    "AZ_BATCHAI_JOB_TEMP",
    "AZ_BATCHAI_JOB_TEMP_DIR",
    "TMPDIR",
    "AZ_BATCHAI_JOB_NODE_INDEX",
    "AZ_BATCHAI_NUM_GPUS",
    "CUDA_VISIBLE_DEVICES",
    // Ranks on this node belong to this node's attempt, so its termination finds them.
    OWNER_VAR,
];

/// `mpirun` as the local platform runs it. Ranks reach other nodes through this binary's rsh
/// bridge. Every local node has this machine's host name, so OpenMPI would take them for one
/// host and use shared memory between them (which crashes across separate session
/// directories): ranks talk TCP over loopback instead. Node names are not resolved (they are
/// not in DNS, and a lookup stalls for the resolver's timeout), and each rank starts in its
/// node's working directory (`-wdir /proc/self/cwd`, the directory its daemon was started in).
/// No tree spawn flag: with it the daemons daemonize, escape the rsh bridge, and a daemon that
/// dies early leaves mpirun waiting forever. Each rank's output also goes to its own files,
/// `<ranks>/1/rank.<N>/{stdout,stderr}` (still copied to mpirun's), so a failure can quote the
/// failing rank rather than mpirun's summary.
///
/// With nodes on other machines (`all_local` false) ranks and daemons talk over the network
/// instead of loopback, on whichever interfaces reach each other.
pub fn mpirun(exe: &Path, ranks: &Path, all_local: bool) -> String {
    let interfaces = if all_local {
        "--mca btl_tcp_if_include lo --mca oob_tcp_if_include lo "
    } else {
        "--mca btl_tcp_if_exclude lo --mca oob_tcp_if_exclude lo "
    };
    format!(
        "mpirun --allow-run-as-root --oversubscribe --bind-to none --mca plm_rsh_agent {} \
         --mca btl self,tcp {interfaces}\
         --mca if_base_do_not_resolve 1 -wdir /proc/self/cwd --output-filename {}",
        sh_quote(&format!("{} agent rsh", exe.display())),
        sh_quote(&ranks.display().to_string())
    )
}

/// The rank whose failure ended an `mpirun`, from mpirun's own report: `Process name:
/// [[jobid,1],N]` for a non-zero exit, `process rank N` for a signal.
fn failing_rank(mpirun_stderr: &str) -> Option<u32> {
    mpirun_stderr.lines().find_map(|line| {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("Process name:") {
            return name
                .trim()
                .trim_end_matches(']')
                .rsplit(',')
                .next()?
                .parse()
                .ok();
        }
        let (_, after) = line.split_once("process rank ")?;
        after.split_whitespace().next()?.parse().ok()
    })
}

/// The ranks that wrote to stderr, lowest first: what to quote when mpirun's report does not
/// name the failing rank (OpenMPI 4.1 prints only its "process returned a non-zero exit code"
/// summary in about half the runs).
fn ranks_with_stderr(ranks: &Path) -> Vec<u32> {
    let mut wrote: Vec<u32> = std::fs::read_dir(ranks.join("1"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| std::fs::metadata(e.path().join("stderr")).is_ok_and(|m| m.len() > 0))
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("rank.")?.parse().ok())
        .collect();
    wrote.sort_unstable();
    wrote
}

/// The last lines of several ranks' stderr, each line prefixed with its rank.
fn ranks_tail(ranks: &Path, which: &[u32], lines_each: usize) -> String {
    which
        .iter()
        .flat_map(|rank| {
            let path = ranks.join("1").join(format!("rank.{rank}")).join("stderr");
            tail_from(&path, 0, lines_each)
                .lines()
                .map(|l| format!("rank {rank}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last lines of what `path` got from byte `from` on: the current attempt's part of a log
/// that every attempt appends to.
fn tail_from(path: &Path, from: u64, lines: usize) -> String {
    use std::io::{Read as _, Seek as _};
    let mut text = Vec::new();
    if let Ok(mut f) = File::open(path)
        && f.seek(std::io::SeekFrom::Start(from)).is_ok()
    {
        let _ = f.read_to_end(&mut text);
    }
    tail(&String::from_utf8_lossy(&text), lines)
}

/// A container image the runtime would not read as an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the container image {image:?} is not an image reference; it must not be empty or start with `-`"
)]
struct ImageError {
    image: String,
}

/// The image reference the runtime pulls. One that starts with `-` would be read as a flag
/// (`--privileged`) and is refused.
fn image_reference(settings: &jobs::Container) -> Result<String, ImageError> {
    let image = match &settings.server_url {
        Some(server) => format!("{}/{}", server.trim_end_matches('/'), settings.image),
        None => settings.image.clone(),
    };
    if image.starts_with('-') || image.trim().is_empty() {
        return Err(ImageError { image });
    }
    Ok(image)
}

/// The container runtime's arguments for one process: `run` with the node's network, the
/// volumes at their own paths, the working directory, the names of the variables to pass (their
/// values travel in the runtime's environment, not on its command line), then the image and
/// `bash -c <command>`, so the job's variables in the command expand inside the container. An
/// image reference that starts with `-` would be read as a flag (`--privileged`) and is refused.
fn container_args<'k>(
    settings: &jobs::Container,
    name: &str,
    volumes: &[PathBuf],
    workdir: &Path,
    env_keys: impl Iterator<Item = &'k String>,
    command: &str,
) -> Result<Vec<String>, ImageError> {
    let image = image_reference(settings)?;
    let mut args: Vec<String> = ["run", "--rm", "--init", "--network", "host", "--name", name]
        .map(str::to_owned)
        .into();
    if let Some(shm) = &settings.shm_size {
        args.extend(["--shm-size".to_owned(), shm.clone()]);
    }
    for v in volumes {
        args.extend(["-v".to_owned(), format!("{0}:{0}", v.display())]);
    }
    args.extend(["-w".to_owned(), workdir.display().to_string()]);
    for key in env_keys {
        args.extend(["-e".to_owned(), key.clone()]);
    }
    args.extend([
        image,
        "bash".to_owned(),
        "-c".to_owned(),
        command.to_owned(),
    ]);
    Ok(args)
}

fn load<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    key: &str,
    what: &'static str,
) -> Result<Option<T>, crate::AgentError> {
    match store.get(key)? {
        Some(v) => Ok(Some(records::decode(what, &v.data)?)),
        None => Ok(None),
    }
}

fn run(
    ctx: &NodeContext,
    shared: &Arc<dyn Store>,
    assignment: &Assignment,
    stop: &AtomicU8,
) -> Result<(), crate::AgentError> {
    let store = shared.as_ref();
    let status_key = keys::job_status(&ctx.cluster, &assignment.job);
    let Some(spec) = load::<JobSpec>(
        store,
        &keys::job_spec(&ctx.cluster, &assignment.job),
        "job spec",
    )?
    else {
        return Ok(());
    };
    // The spec under this name may belong to a newer submission than the assignment.
    if spec.uid != assignment.uid {
        return Ok(());
    }
    let Some(status) = load::<JobStatus>(store, &status_key, "job status")? else {
        return Ok(());
    };
    // A node that already reported its part (and was re-handed the same assignment after a
    // store error cut its bookkeeping short) does not run it again.
    if !status.runs(&ctx.node, assignment) || status.reports.contains_key(&ctx.node) {
        return Ok(());
    }
    let index = status
        .nodes
        .iter()
        .position(|n| *n == ctx.node)
        .unwrap_or(0);
    tracing::info!(job = %spec.name, attempt = assignment.attempt, index, "running");
    let node_count = u32::try_from(status.nodes.len()).unwrap_or(u32::MAX);
    // Only MPI attempts publish rank environments (for the master's `mpirun`).
    let mpi = toolkit::uses_mpi(&spec.toolkit, node_count);
    let ranks = keys::rank_envs_prefix(&ctx.cluster, &spec.name);
    let watched: &[&str] = if mpi {
        &[&status_key, &ranks]
    } else {
        &[&status_key]
    };
    let watch = match store.watch(watched) {
        Ok(watch) => watch,
        Err(e) => {
            tracing::warn!(error = %e, "no change notifications for the job status; polling it");
            None
        }
    };

    let mut attempt = Attempt {
        ctx,
        store,
        shared,
        relay: None,
        spec: &spec,
        assignment,
        status_key: &status_key,
        stop,
        children: Vec::new(),
        owner: crate::launcher::attempt_owner(&ctx.node_dir, &spec.uid, assignment.attempt),
        secrets: Vec::new(),
        mpi: None,
        metrics: None,
        watch,
        next_status: Instant::now() + ctx.rates.poll,
        // The limit counts from when this node starts its part, not from the hand-over: a
        // node that polls its store sees its assignment up to a poll interval later, and that
        // wait is not the job's running time.
        deadline: records::now_ms()
            .max(status.start_ms.unwrap_or(0))
            .saturating_add(spec.max_wall_clock_ms),
    };
    let outcome = attempt.execute(&status, index);
    // Before the report that may end the job: whoever sees it ended finds the copies there.
    if let Some(files) = &ctx.keep_files {
        keep_own_files(ctx, files, &spec);
    }
    // Job mounts and the rank environment go before the report that may end the job, so that
    // whoever sees it ended finds them gone; background processes keep them until the end.
    let background = attempt.children.iter().any(|c| !c.required);
    if !background {
        release(store, ctx, &spec, mpi);
    }
    let result = match outcome {
        Outcome::Report(report, metrics_file) => {
            let metrics = metrics_file
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|t| jobs::parse_metrics(&t))
                .unwrap_or_default();
            crate::until_stored("report the node's part", || {
                send_report(
                    store,
                    ctx,
                    &spec,
                    assignment,
                    report.clone(),
                    metrics.clone(),
                )
            })
        }
        Outcome::Stopped(why) => crate::until_stored("hand the attempt back", || {
            let now = records::now_ms();
            records::update(store, &status_key, "job status", |s: &mut JobStatus| {
                if !s.runs(&ctx.node, assignment) {
                    return false;
                }
                match why {
                    Stop::Terminate => s.fail(
                        job_error(
                            ErrorCode::NodeDeallocated,
                            format!(
                                "node {} was removed with node_deallocation_option = terminate",
                                ctx.node
                            ),
                            &[],
                        ),
                        now,
                    ),
                    _ => s.requeue(now),
                }
                true
            })
        }),
        Outcome::Over => Ok(None),
    };
    if let Ok(status) = &result {
        forget_secrets_if_ended(store, &spec, status.as_ref());
    }
    // Background processes (parameter servers) serve until the attempt ends everywhere.
    attempt.wait_until_over();
    attempt.kill_all();
    if background {
        release(store, ctx, &spec, mpi);
    }
    result.map(|_| ()).map_err(Into::into)
}

/// Copies the attempt's files on this node's own disk to the control container; a file that
/// cannot be copied is an error in the node's log, and the attempt goes on to its report.
fn keep_own_files(ctx: &NodeContext, files: &control_blob::BlobStore, spec: &JobSpec) {
    let Ok(dirs) = JobDirs::resolve(ctx, spec) else {
        return;
    };
    let dirs = crate::keep::on_own_disk(spec, &dirs, &ctx.cluster_mounts, &ctx.node);
    if dirs.is_empty() {
        return;
    }
    let kept = crate::keep::keep(files, &dirs);
    for (path, why) in &kept.missed {
        tracing::error!(
            job = %spec.name,
            file = %path.display(),
            error = %why,
            "a job file on this node's own disk could not be copied to the control container and goes with the node"
        );
    }
    tracing::info!(job = %spec.name, files = kept.files, bytes = kept.bytes, "copied the job's files on this node's own disk to the control container");
}

/// Where an attempt keeps the credential files of its job's Azure Storage mounts.
fn job_private_dir(ctx: &NodeContext, spec: &JobSpec) -> PathBuf {
    ctx.node_dir.join("private").join("jobs").join(&spec.name)
}

/// Undoes what an attempt set up on the node: job mounts and (`mpi`) the published rank
/// environment.
fn release(store: &dyn Store, ctx: &NodeContext, spec: &JobSpec, mpi: bool) {
    if mpi {
        match store.delete_volatile(
            &keys::rank_env(&ctx.cluster, &spec.name, &ctx.node),
            control::Condition::Always,
            None,
        ) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!(error = %e, "withdraw the node's rank environment"),
        }
    }
    if let Ok(dirs) = JobDirs::resolve(ctx, spec) {
        let private_dir = job_private_dir(ctx, spec);
        let keys = crate::storage_mounts::MountKeys {
            private_dir: &private_dir,
            ..crate::storage_mounts::MountKeys::none()
        };
        setup::release_mounts(&spec.mounts, &dirs.job_mount_root, &keys);
        let _ = std::fs::remove_dir_all(&private_dir);
    }
}

/// Records this node's report for its attempt; the returned status says what followed.
fn send_report(
    store: &dyn Store,
    ctx: &NodeContext,
    spec: &JobSpec,
    assignment: &Assignment,
    report: NodeReport,
    metrics: BTreeMap<String, f64>,
) -> Result<Option<JobStatus>, records::UpdateError> {
    let now = records::now_ms();
    records::update(
        store,
        &keys::job_status(&ctx.cluster, &spec.name),
        "job status",
        |s: &mut JobStatus| {
            s.report(
                &ctx.node,
                assignment,
                report.clone(),
                &spec.retry,
                metrics.clone(),
                now,
            )
        },
    )
}

/// Secrets are needed until the last attempt; once the job has ended they go. Whoever makes
/// the report that ends the job removes them.
fn forget_secrets_if_ended(store: &dyn Store, spec: &JobSpec, status: Option<&JobStatus>) {
    if spec.has_secrets && status.is_some_and(|s| s.state.is_terminal()) {
        match store.delete(
            &keys::job_secrets(&spec.cluster, &spec.name),
            control::Condition::Always,
            None,
        ) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            // They stay until the job is destroyed; say so rather than lose track.
            Err(e) => {
                tracing::warn!(job = %spec.name, error = %e, "remove the ended job's secrets")
            }
        }
    }
}

enum Outcome {
    /// The node's part ended; report it (with the metrics file to read, if any).
    Report(NodeReport, Option<PathBuf>),
    /// The node stopped it (drain).
    Stopped(Stop),
    /// The attempt ended elsewhere (another node failed, a lost node, termination finished).
    Over,
}

struct Running {
    label: String,
    child: Child,
    required: bool,
    stdout: PathBuf,
    stderr: PathBuf,
    /// Where this attempt's part of `stderr` starts: the logs are appended to by every attempt.
    stderr_from: u64,
    container: Option<(String, String)>,
}

struct Attempt<'a> {
    ctx: &'a NodeContext,
    store: &'a dyn Store,
    /// The same store, for what outlives a call (the master's rsh relay, remote commands'
    /// output pumps).
    shared: &'a Arc<dyn Store>,
    /// On the master of an MPI attempt with nodes on other machines: the bridge `agent rsh`
    /// reaches them through.
    relay: Option<crate::relay::Relay>,
    spec: &'a JobSpec,
    assignment: &'a Assignment,
    status_key: &'a str,
    stop: &'a AtomicU8,
    children: Vec<Running>,
    /// The [`OWNER_VAR`] of every process this attempt starts.
    owner: String,
    /// The job's secret values, redacted from every log tail it reports.
    secrets: Vec<String>,
    /// The label of the `mpirun` process and the directory its ranks' output goes to.
    mpi: Option<(String, PathBuf)>,
    deadline: u64,
    /// On the master, while its processes run: the metrics file it publishes from.
    metrics: Option<MetricsFeed>,
    /// Changes of the job status and of the rank environments, on a store that tells.
    watch: Option<Box<dyn control::store::Watch>>,
    /// When the job status is read next, changed or not.
    next_status: Instant,
}

/// The master's view of its attempt's metrics file, published to the store so that the
/// provider shows a running job's metrics without reading the node.
struct MetricsFeed {
    file: PathBuf,
    /// The file's length when it was last published: unchanged metrics cost no write.
    published_len: u64,
    next: Instant,
}

/// What the attempt's status says this node should do now.
enum Watch {
    Go,
    Terminate,
    Over,
}

impl Attempt<'_> {
    fn watch(&self) -> Watch {
        let status = load::<JobStatus>(self.store, self.status_key, "job status");
        match status {
            Ok(Some(s)) if s.runs(&self.ctx.node, self.assignment) => Watch::Go,
            Ok(Some(s))
                if s.state == JobState::Terminating
                    && s.is_current(self.assignment)
                    && !s.reports.contains_key(&self.ctx.node) =>
            {
                Watch::Terminate
            }
            Ok(Some(_) | None) => Watch::Over,
            // A store hiccup is not a reason to kill a job; look again next time.
            Err(e) => {
                tracing::warn!(error = %e, "read the job status");
                Watch::Go
            }
        }
    }

    fn wait_until_over(&mut self) {
        while !self.children.iter().all(|c| c.required) {
            match self.watch() {
                Watch::Go if stop_reason(self.stop) == Stop::Keep => self.await_status(),
                _ => return,
            }
        }
    }

    /// Waits up to `nap`, and says what to look at now: the job status when it changed or
    /// its poll fell due ([`STATUS`]), the rank environments when they changed ([`RANKS`]).
    fn nap(&mut self, nap: Duration) -> control::store::Changed {
        let mut changed = match &mut self.watch {
            Some(watch) => watch.wait(nap),
            None => {
                std::thread::sleep(nap);
                control::store::Changed::NONE
            }
        };
        let now = Instant::now();
        if now >= self.next_status {
            changed.mark(STATUS);
        }
        if changed.has(STATUS) {
            self.next_status = now + self.ctx.rates.poll;
        }
        changed
    }

    /// Waits until the job status is to be read again, or the node stops the attempt.
    fn await_status(&mut self) {
        while stop_reason(self.stop) == Stop::Keep && !self.nap(POLL).has(STATUS) {}
    }

    fn execute(&mut self, status: &JobStatus, index: usize) -> Outcome {
        let dirs = match JobDirs::resolve(self.ctx, self.spec) {
            Ok(d) => d,
            Err(e) => {
                return Outcome::Report(
                    failed(job_error(ErrorCode::InvalidJobPath, e, &[]), None),
                    None,
                );
            }
        };
        if let Err(error) = self.prepare_dirs(&dirs) {
            return Outcome::Report(failed(error, None), None);
        }
        let mut env = job_environment(self.ctx, self.spec, &dirs, status, index);
        env.insert(OWNER_VAR.to_owned(), self.owner.clone());
        // Through a store outage: a job that has secrets never runs without them. Ones that
        // cannot be read (gone, or not a record) fail the attempt, saying so.
        let secrets = if self.spec.has_secrets {
            let key = keys::job_secrets(&self.ctx.cluster, &self.spec.name);
            let read =
                crate::until_stored("read the job's secrets", || Ok(self.store.get(&key)?));
            let secrets = match read {
                Ok(Some(v)) => serde_json::from_slice::<BTreeMap<String, String>>(&v.data)
                    .map_err(|e| format!("they are not a record: {e}")),
                Ok(None) => Err("they are gone (the job ended or was destroyed)".to_owned()),
                Err(e) => Err(e.to_string()),
            };
            match secrets {
                Ok(secrets) => secrets,
                Err(why) => {
                    return Outcome::Report(
                        failed(
                            job_error(
                                ErrorCode::JobFailed,
                                format!("read the job's secrets on node {}: {why}", self.ctx.node),
                                &[],
                            ),
                            None,
                        ),
                        None,
                    );
                }
            }
        } else {
            BTreeMap::new()
        };
        let node_count = u32::try_from(status.nodes.len()).unwrap_or(u32::MAX);
        if toolkit::uses_mpi(&self.spec.toolkit, node_count) {
            let ranks = toolkit::process_count(&self.spec.toolkit, node_count);
            if let Err(e) =
                std::fs::write(dirs.host_file(), toolkit::host_file(&status.nodes, ranks))
            {
                return Outcome::Report(
                    failed(
                        job_error(
                            ErrorCode::JobPreparationFailed,
                            format!("write the MPI hostfile: {e}"),
                            &[],
                        ),
                        None,
                    ),
                    None,
                );
            }
        }
        let published = RankEnvironment {
            format: records::FORMAT,
            host: Some(crate::host::identity()),
            job: self.spec.name.clone(),
            uid: self.spec.uid.clone(),
            attempt: self.assignment.attempt,
            cwd: dirs.temp.clone(),
            env: NODE_SPECIFIC
                .iter()
                .filter_map(|k| env.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect(),
        };
        // Without it the master cannot start this node's MPI ranks; the master then fails the
        // attempt with an error that names the node. Volatile: it lives as long as the
        // attempt, which a crash of the store's machine ends.
        if toolkit::uses_mpi(&self.spec.toolkit, node_count)
            && let Err(e) = self.store.put_volatile(
                &keys::rank_env(&self.ctx.cluster, &self.spec.name, &self.ctx.node),
                &records::encode(&published),
                control::Condition::Always,
                None,
            )
        {
            tracing::warn!(error = %e, "publish the node's rank environment");
        }
        self.secrets = secrets.values().cloned().collect();
        env.extend(secrets);

        if let Some(Err(e)) = self.spec.container.as_ref().map(image_reference) {
            return Outcome::Report(
                failed(job_error(ErrorCode::InvalidContainerImage, e, &[]), None),
                None,
            );
        }
        let runtime = match &self.spec.container {
            Some(_) => match container_runtime() {
                Ok(r) => Some(r),
                Err(message) => {
                    return Outcome::Report(
                        failed(
                            job_error(
                                ErrorCode::ContainerRuntimeUnavailable,
                                format!(
                                    "the job asks for container_settings but node {} cannot run containers: {message}",
                                    self.ctx.node
                                ),
                                &[],
                            ),
                            None,
                        ),
                        None,
                    );
                }
            },
            None => None,
        };

        if let Some(command) = &self.spec.job_preparation {
            let prep = Proc {
                label: format!("job_prep-{}", self.ctx.node),
                command: command.clone(),
                env: BTreeMap::new(),
            };
            if let Err(e) = self.spawn(&prep, true, &env, &dirs, runtime.as_deref()) {
                return Outcome::Report(failed(e, None), None);
            }
            match self.supervise() {
                Some(Outcome::Report(report, _)) if report.succeeded() => {
                    self.children.clear();
                }
                Some(Outcome::Report(report, _)) => {
                    let report = NodeReport {
                        exit_code: report.exit_code,
                        error: report.error.map(|mut e| {
                            e.code = ErrorCode::JobPreparationFailed;
                            e.message = format!("job preparation: {}", e.message);
                            e
                        }),
                    };
                    return Outcome::Report(report, None);
                }
                Some(other) => return other,
                None => {}
            }
        }

        let ranks_dir = dirs
            .stdouterr
            .join(format!("mpi-{}", self.assignment.attempt));
        let uses_mpi = toolkit::uses_mpi(&self.spec.toolkit, node_count);
        // The master knows, once every node published its part, whether all of them are on
        // its machine (ranks talk over loopback) or some elsewhere (over the network, their
        // daemons started through the store).
        let mut all_local = true;
        if uses_mpi && index == 0 {
            match self.gather_rank_envs(&status.nodes, &dirs) {
                Ok(local) => all_local = local,
                Err(outcome) => return outcome,
            }
            if let Some(relay) = &self.relay {
                env.insert(
                    crate::relay::SOCKET_VAR.to_owned(),
                    relay.path().display().to_string(),
                );
            }
        }
        let address = self.master_address(status);
        let layout = Layout {
            nodes: &status.nodes,
            index,
            ports: &status.ports,
            address: &address,
            host_file: &dirs.host_file().display().to_string(),
            mpirun: &mpirun(&self.ctx.exe, &ranks_dir, all_local),
        };
        let plan = toolkit::plan(&self.spec.toolkit, &layout);
        let mut plan_procs: Vec<(Proc, bool)> = Vec::new();
        for mut p in plan.required {
            if p.label == "master" {
                p.label = self.ctx.node.clone();
            } else {
                p.label = format!("{}-{}", self.ctx.node, p.label);
            }
            plan_procs.push((p, true));
        }
        for mut p in plan.background {
            p.label = format!("{}-{}", self.ctx.node, p.label);
            plan_procs.push((p, false));
        }
        if uses_mpi {
            self.mpi = Some((self.ctx.node.clone(), ranks_dir));
        }
        for (p, required) in &plan_procs {
            if let Err(e) = self.spawn(p, *required, &env, &dirs, runtime.as_deref()) {
                self.kill_all();
                return Outcome::Report(failed(e, None), None);
            }
        }
        if index == 0 {
            self.metrics = Some(MetricsFeed {
                file: dirs.metrics_file(self.assignment.attempt),
                published_len: 0,
                // The first values go out at once: a short job's metrics are worth seeing.
                next: Instant::now(),
            });
        }
        match self.supervise() {
            Some(Outcome::Report(report, _)) => {
                Outcome::Report(report, Some(dirs.metrics_file(self.assignment.attempt)))
            }
            Some(other) => other,
            // A node with nothing of its own to run (MPI ranks come from the master) holds its
            // place until the attempt ends, running the daemons a master on another machine
            // asks for.
            None => self.hold(uses_mpi.then(|| (env.clone(), dirs.temp.clone()))),
        }
    }

    /// The storage account keys of the job's Azure Storage mounts (read through a store
    /// outage); none when no mount needs one.
    fn mount_keys(&self) -> Result<control::secrets::Secrets, NodeError> {
        if !self.spec.mounts.iter().any(|m| m.source.needs_key()) {
            return Ok(control::secrets::Secrets::default());
        }
        let key = keys::job_mount_secrets(&self.ctx.cluster, &self.spec.name);
        let read = crate::until_stored("read the job's mount keys", || Ok(self.store.get(&key)?));
        let why = match read {
            Ok(Some(v)) => match serde_json::from_slice::<control::secrets::Secrets>(&v.data) {
                Ok(keys) => return Ok(keys),
                Err(e) => format!("they are not a record: {e}"),
            },
            Ok(None) => "they are gone (the job ended or was destroyed)".to_owned(),
            Err(e) => e.to_string(),
        };
        Err(job_error(
            ErrorCode::MountFailed,
            format!("read the job's mount keys on node {}: {why}", self.ctx.node),
            &[],
        ))
    }

    fn prepare_dirs(&self, dirs: &JobDirs) -> Result<(), NodeError> {
        // The node-local temp directory is wiped when the next job runs, as on Batch AI.
        let _ = std::fs::remove_dir_all(&dirs.temp_parent);
        let create = |p: &Path| {
            std::fs::create_dir_all(p).map_err(|e| {
                job_error(
                    ErrorCode::JobPreparationFailed,
                    format!("create {}: {e}", p.display()),
                    &[],
                )
            })
        };
        create(&dirs.temp)?;
        create(&dirs.shared_temp)?;
        let keys = self.mount_keys()?;
        let private_dir = job_private_dir(self.ctx, self.spec);
        setup::realise_mounts(
            &self.spec.mounts,
            &dirs.job_mount_root,
            &crate::storage_mounts::MountKeys {
                keys: &keys,
                identity: self.ctx.mount_identity.as_deref(),
                private_dir: &private_dir,
            },
        )?;
        // Paths below a mount root stay below it (or below what its mounts link to): a link
        // an earlier job planted on a share must not carry this job's output elsewhere.
        let mut roots = setup::mount_roots(&self.ctx.mount_root, &self.ctx.cluster_mounts);
        roots.extend(setup::mount_roots(&dirs.job_mount_root, &self.spec.mounts));
        let beneath = |configured: &str, resolved: &Path| match jobs::split_job_path(configured) {
            Ok((Some(_), _)) => jobs::check_beneath(resolved, &roots)
                .map_err(|e| job_error(ErrorCode::JobPreparationFailed, e, &[])),
            _ => Ok(()),
        };
        beneath(&self.spec.std_out_err_path_prefix, &dirs.stdouterr)?;
        for (d, (_, path)) in self.spec.output_directories.iter().zip(&dirs.outputs) {
            beneath(&d.path_prefix, path)?;
        }
        create(&dirs.stdouterr)?;
        for (_, path) in &dirs.outputs {
            create(path)?;
        }
        Ok(())
    }

    fn spawn(
        &mut self,
        proc: &Proc,
        required: bool,
        env: &BTreeMap<String, String>,
        dirs: &JobDirs,
        runtime: Option<&str>,
    ) -> Result<(), NodeError> {
        let stdout = dirs.stdouterr.join(format!("stdout-{}.txt", proc.label));
        let stderr = dirs.stdouterr.join(format!("stderr-{}.txt", proc.label));
        let open = |p: &Path| {
            File::options()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| {
                    job_error(
                        ErrorCode::JobFailed,
                        format!("open {}: {e}", p.display()),
                        &[],
                    )
                })
        };
        let stderr_from = std::fs::metadata(&stderr).map_or(0, |m| m.len());
        let mut all_env = env.clone();
        all_env.extend(proc.env.clone());
        let mut container = None;
        let mut cmd = match (runtime, &self.spec.container) {
            (Some(runtime), Some(settings)) => {
                let name = format!(
                    "batchai-{}-{}-{}-{}",
                    self.ctx.cluster, self.spec.name, self.assignment.attempt, proc.label
                );
                container = Some((runtime.to_owned(), name.clone()));
                let mut volumes = vec![self.ctx.node_dir.clone(), dirs.shared_temp.clone()];
                volumes.extend(self.ctx.cluster_volumes.iter().cloned());
                volumes.extend(self.spec.mounts.iter().filter_map(|m| match &m.source {
                    MountSource::Directory { path } => Some(PathBuf::from(path)),
                    MountSource::Command { .. }
                    | MountSource::Git { .. }
                    | MountSource::AzureFileShare { .. }
                    | MountSource::AzureBlob { .. } => None,
                }));
                for (_, p) in dirs.inputs.iter().chain(&dirs.outputs) {
                    volumes.push(p.clone());
                }
                // Its log directory holds the metrics file the job appends to.
                volumes.push(dirs.stdouterr.clone());
                let volumes: Vec<PathBuf> = volumes
                    .into_iter()
                    .map(|v| v.canonicalize().unwrap_or(v))
                    .collect();
                let args = container_args(
                    settings,
                    &name,
                    &volumes,
                    &dirs.temp,
                    all_env.keys(),
                    &proc.command,
                )
                .map_err(|e| job_error(ErrorCode::InvalidContainerImage, e, &[]))?;
                let mut c = Command::new(runtime);
                c.args(args);
                c
            }
            _ => {
                let mut c = Command::new("bash");
                c.arg("-c").arg(&proc.command);
                c
            }
        };
        cmd.current_dir(&dirs.temp)
            .envs(&all_env)
            .stdin(Stdio::null())
            .stdout(open(&stdout)?)
            .stderr(open(&stderr)?);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| {
            job_error(
                ErrorCode::JobFailed,
                format!("start {} on {}: {e}", proc.label, self.ctx.node),
                &[],
            )
        })?;
        self.children.push(Running {
            label: proc.label.clone(),
            child,
            required,
            stdout,
            stderr,
            stderr_from,
            container,
        });
        Ok(())
    }

    /// Watches the running processes until the node's required ones ended, the attempt ended
    /// elsewhere, the node stops it, or the wall clock runs out. `None` when there is nothing
    /// required to wait for.
    fn supervise(&mut self) -> Option<Outcome> {
        if !self.children.iter().any(|c| c.required) {
            return None;
        }
        let mut look = false;
        let started = Instant::now();
        let mut nap = Duration::from_millis(1);
        loop {
            let mut all_done = true;
            let mut failure = None;
            for c in &mut self.children {
                if !c.required {
                    continue;
                }
                match c.child.try_wait() {
                    Ok(Some(status)) if !status.success() => {
                        failure = Some((c.label.clone(), status.code()));
                        break;
                    }
                    Ok(Some(_)) => {}
                    _ => all_done = false,
                }
            }
            if let Some((label, code)) = failure {
                let report = self.failure(&label, code);
                self.kill_all();
                return Some(Outcome::Report(report, None));
            }
            if all_done {
                return Some(Outcome::Report(
                    NodeReport {
                        exit_code: Some(0),
                        error: None,
                    },
                    None,
                ));
            }
            match stop_reason(self.stop) {
                Stop::Keep => {}
                why => {
                    self.kill_all();
                    return Some(Outcome::Stopped(why));
                }
            }
            if records::now_ms() > self.deadline {
                let report = self.overrun();
                self.kill_all();
                return Some(Outcome::Report(report, None));
            }
            self.publish_metrics();
            if look {
                match self.watch() {
                    Watch::Go => {}
                    Watch::Terminate => {
                        self.kill_all();
                        return Some(Outcome::Report(
                            NodeReport {
                                exit_code: None,
                                error: None,
                            },
                            None,
                        ));
                    }
                    Watch::Over => {
                        self.kill_all();
                        return Some(Outcome::Over);
                    }
                }
            }
            // Short jobs are noticed within a millisecond, longer ones within a nap that
            // doubles up to POLL; the job status is read when it changes, or every poll.
            look = self.nap(nap).has(STATUS);
            if started.elapsed() >= QUICK {
                nap = (nap * 2).min(POLL);
            }
        }
    }

    /// The master's part before `mpirun` starts: every node of the attempt publishes its rank
    /// environment in the store, and the master copies them to files of its own, where
    /// `agent rsh` (which has no store) finds them. Waits up to [`RANKS_WAIT`] for nodes that
    /// start late, and gives up early when the attempt is stopped or ends elsewhere.
    fn gather_rank_envs(&mut self, nodes: &[String], dirs: &JobDirs) -> Result<bool, Outcome> {
        let dir = rank_envs_dir(dirs);
        let write_failed = |e: std::io::Error| {
            Outcome::Report(
                failed(
                    job_error(
                        ErrorCode::JobFailed,
                        format!("write the rank environments to {}: {e}", dir.display()),
                        &[],
                    ),
                    None,
                ),
                None,
            )
        };
        std::fs::create_dir_all(&dir).map_err(write_failed)?;
        let here = crate::host::identity();
        let mut elsewhere = false;
        let deadline = Instant::now() + RANKS_WAIT;
        let mut missing: Vec<&String> = nodes.iter().collect();
        while !missing.is_empty() {
            let mut still = Vec::new();
            for node in missing {
                let key = keys::rank_env(&self.ctx.cluster, &self.spec.name, node);
                let found = load::<RankEnvironment>(self.store, &key, "rank environment")
                    .ok()
                    .flatten()
                    .filter(|r| r.uid == self.spec.uid && r.attempt == self.assignment.attempt);
                match found {
                    // A node on another machine (or network) runs its daemon through the
                    // store, so rsh finds no file for it and asks the relay.
                    Some(r) if r.host.as_ref().is_some_and(|h| *h != here) => elsewhere = true,
                    Some(r) => std::fs::write(
                        dir.join(format!("{node}.json")),
                        serde_json::to_vec(&r).unwrap_or_default(),
                    )
                    .map_err(write_failed)?,
                    None => still.push(node),
                }
            }
            missing = still;
            if missing.is_empty() {
                break;
            }
            if stop_reason(self.stop) != Stop::Keep {
                return Err(Outcome::Stopped(stop_reason(self.stop)));
            }
            // The rank environments are read again when they change (or every RANKS_POLL on
            // a store without events), the job status when it changes or its poll falls due.
            let wait_until = Instant::now() + RANKS_POLL;
            let mut changed = control::store::Changed::NONE;
            while !changed.has(RANKS) && !changed.has(STATUS) && Instant::now() < wait_until {
                changed = self.nap(POLL);
            }
            if changed.has(STATUS)
                && let Watch::Over | Watch::Terminate = self.watch()
            {
                return Err(Outcome::Over);
            }
            if Instant::now() > deadline {
                let names: Vec<&str> = missing.iter().map(|n| n.as_str()).collect();
                return Err(Outcome::Report(
                    failed(
                        job_error(
                            ErrorCode::JobFailed,
                            format!(
                                "node {} did not take part in attempt {} within {} s; its agent log says why",
                                names.join(", node "),
                                self.assignment.attempt,
                                RANKS_WAIT.as_secs()
                            ),
                            &[],
                        ),
                        None,
                    ),
                    None,
                ));
            }
        }
        if elsewhere {
            let socket = std::env::temp_dir().join(format!(
                "batchai-rsh-{}-{}-{}.sock",
                std::process::id(),
                self.spec.uid,
                self.assignment.attempt
            ));
            let attempt = crate::relay::Attempt {
                cluster: self.ctx.cluster.clone(),
                job: self.spec.name.clone(),
                uid: self.spec.uid.clone(),
                attempt: self.assignment.attempt,
            };
            let relay =
                crate::relay::Relay::start(&socket, self.shared.clone(), attempt).map_err(|e| {
                    Outcome::Report(
                        failed(
                            job_error(
                                ErrorCode::JobFailed,
                                format!(
                                    "start the bridge to nodes on other machines at {}: {e}",
                                    socket.display()
                                ),
                                &[],
                            ),
                            None,
                        ),
                        None,
                    )
                })?;
            self.relay = Some(relay);
        }
        Ok(!elsewhere)
    }

    /// The address the attempt's processes rendezvous at: the master's, as its record says
    /// (nodes on other machines reach it there), loopback when it does not say.
    fn master_address(&self, status: &JobStatus) -> String {
        status
            .nodes
            .first()
            .and_then(|master| {
                load::<NodeRecord>(
                    self.store,
                    &keys::node(&self.ctx.cluster, master),
                    "node record",
                )
                .ok()
                .flatten()
            })
            .and_then(|r| r.address)
            .unwrap_or_else(|| LOCAL_ADDRESS.to_owned())
    }

    /// Publishes the master's metrics when they changed, at most every
    /// [`jobs::LIVE_METRICS_EVERY`]. A failed write is tried again next time: live metrics are a
    /// view, the final ones go with the report.
    fn publish_metrics(&mut self) {
        let Some(feed) = &mut self.metrics else {
            return;
        };
        if Instant::now() < feed.next {
            return;
        }
        feed.next = Instant::now() + jobs::LIVE_METRICS_EVERY;
        let len = std::fs::metadata(&feed.file).map_or(0, |m| m.len());
        if len == feed.published_len {
            return;
        }
        let Ok(text) = std::fs::read_to_string(&feed.file) else {
            return;
        };
        let live = jobs::LiveMetrics {
            format: records::FORMAT,
            uid: self.spec.uid.clone(),
            attempt: self.assignment.attempt,
            metrics: jobs::parse_metrics(&text),
        };
        // Volatile: a view of the running job; its final metrics go with the report.
        match self.store.put_volatile(
            &keys::job_metrics(&self.ctx.cluster, &self.spec.name),
            &records::encode(&live),
            control::Condition::Always,
            None,
        ) {
            Ok(_) => feed.published_len = len,
            Err(e) => tracing::warn!(error = %e, "publish the job's metrics"),
        }
    }

    /// A node without processes of its own: waits for the attempt to end (or to be stopped).
    /// With `serve` (its job environment and working directory, in an MPI attempt), it runs
    /// the daemons a master on another machine asks for through the store meanwhile.
    fn hold(&mut self, serve: Option<(BTreeMap<String, String>, PathBuf)>) -> Outcome {
        // Its part is done as soon as it is there: the attempt ends with the master's report.
        let done = NodeReport {
            exit_code: Some(0),
            error: None,
        };
        let reported = crate::until_stored("report the node's part", || {
            send_report(
                self.store,
                self.ctx,
                self.spec,
                self.assignment,
                done.clone(),
                BTreeMap::new(),
            )
        });
        match reported {
            Ok(status) => forget_secrets_if_ended(self.store, self.spec, status.as_ref()),
            Err(e) => tracing::warn!(error = %e, "report the node's part"),
        }
        let mut server = serve.map(|(env, cwd)| {
            let target = crate::remote::Target {
                cluster: &self.ctx.cluster,
                job: &self.spec.name,
                uid: &self.spec.uid,
                attempt: self.assignment.attempt,
                node: &self.ctx.node,
            };
            let mut env = env;
            env.insert(OWNER_VAR.to_owned(), self.owner.clone());
            crate::remote::Server::new(&target, env, cwd)
        });
        // Requests come as the master starts: looked for often at first, then every second
        // (a remote store charges by request, and the daemons live as long as the job).
        let serving_since = Instant::now();
        loop {
            match stop_reason(self.stop) {
                Stop::Keep => {}
                why => return Outcome::Stopped(why),
            }
            match self.watch() {
                Watch::Go => {}
                // Nothing of ours to stop; say so, so termination completes.
                Watch::Terminate => return Outcome::Report(NodeReport::default(), None),
                Watch::Over => return Outcome::Over,
            }
            match &mut server {
                Some(server) => {
                    server.poll(self.shared);
                    let nap = if serving_since.elapsed() < RANKS_WAIT {
                        POLL
                    } else {
                        Duration::from_secs(1)
                    };
                    std::thread::sleep(nap);
                }
                None => self.await_status(),
            }
        }
    }

    /// The error of a process that failed: its exit code, its log files and the last lines of
    /// what it wrote to stderr in this attempt, secrets redacted. For `mpirun`, whose own
    /// stderr only summarises, the failing rank's log files and lines.
    fn failure(&self, label: &str, code: Option<i32>) -> NodeReport {
        let Some(c) = self.children.iter().find(|c| c.label == label) else {
            return NodeReport {
                exit_code: code,
                error: None,
            };
        };
        let code_text = code.map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
        let mut stdout = c.stdout.clone();
        let mut stderr = c.stderr.clone();
        let mut stderr_tail = tail_from(&c.stderr, c.stderr_from, 10);
        let mut who = "the job".to_owned();
        let mut details = Vec::new();
        if let Some((mpi_label, ranks)) = &self.mpi
            && mpi_label == label
        {
            let wrote = ranks_with_stderr(ranks);
            let named = failing_rank(&tail_from(&c.stderr, c.stderr_from, 1000));
            let only = if wrote.len() == 1 {
                wrote.first().copied()
            } else {
                None
            };
            match named.or(only) {
                Some(rank) => {
                    let dir = ranks.join("1").join(format!("rank.{rank}"));
                    if dir.is_dir() {
                        stdout = dir.join("stdout");
                        stderr = dir.join("stderr");
                        stderr_tail = tail_from(&stderr, 0, 10);
                        who = format!("rank {rank} of the job");
                        details.push(("rank", rank.to_string()));
                        details.push(("mpirun_stderr_path", c.stderr.display().to_string()));
                    }
                }
                // Unnamed, and several ranks wrote: each one's last lines, not mpirun's summary.
                None if !wrote.is_empty() => {
                    stderr_tail = ranks_tail(ranks, &wrote[..wrote.len().min(4)], 3);
                    let listed: Vec<String> = wrote.iter().map(u32::to_string).collect();
                    details.push(("ranks_with_stderr", listed.join(",")));
                    details.push(("ranks_path", ranks.join("1").display().to_string()));
                }
                None => {}
            }
        }
        details.extend([
            ("exit_code", code.map(|c| c.to_string()).unwrap_or_default()),
            ("node", self.ctx.node.clone()),
            ("stdout_path", stdout.display().to_string()),
            ("stderr_path", stderr.display().to_string()),
            ("stderr_tail", redact(&stderr_tail, &self.secrets)),
        ]);
        NodeReport {
            exit_code: code,
            error: Some(job_error(
                ErrorCode::JobFailed,
                format!(
                    "{who} exited with {code_text} on {}; its output is in {} and {}",
                    self.ctx.node,
                    stdout.display(),
                    stderr.display()
                ),
                &details,
            )),
        }
    }

    /// The error of an attempt stopped by its wall-clock limit, naming where its output is.
    fn overrun(&self) -> NodeReport {
        let limit = control::duration::format_ms(self.spec.max_wall_clock_ms);
        let logs: Vec<String> = self
            .children
            .iter()
            .filter(|c| c.required)
            .flat_map(|c| {
                [
                    c.stdout.display().to_string(),
                    c.stderr.display().to_string(),
                ]
            })
            .collect();
        let mut details = vec![("max_wall_clock_time", limit.clone())];
        if let Some(c) = self.children.iter().find(|c| c.required) {
            details.push(("node", self.ctx.node.clone()));
            details.push(("stdout_path", c.stdout.display().to_string()));
            details.push(("stderr_path", c.stderr.display().to_string()));
            details.push((
                "stderr_tail",
                redact(&tail_from(&c.stderr, c.stderr_from, 10), &self.secrets),
            ));
        }
        failed(
            job_error(
                ErrorCode::JobWallClockTimeExceeded,
                format!(
                    "the job ran longer than its max_wall_clock_time ({limit}) and was stopped on {}; its output is in {}",
                    self.ctx.node,
                    logs.join(" and ")
                ),
                &details,
            ),
            None,
        )
    }

    /// SIGTERM to every process group, a grace period, then SIGKILL. Every group is signalled,
    /// even one whose leader already exited: a job's background processes (`tensorboard &`)
    /// live on in it.
    fn kill_all(&mut self) {
        for c in &mut self.children {
            let _ = c.child.try_wait();
        }
        let groups: Vec<u32> = self.children.iter().map(|c| c.child.id()).collect();
        let any_alive = |children: &mut Vec<Running>| {
            for c in children.iter_mut() {
                // Reaped leaders no longer count as members of their group.
                let _ = c.child.try_wait();
            }
            groups.iter().any(|g| crate::launcher::group_alive(*g))
        };
        // Whatever left the groups (`setsid`, a double fork) still carries the attempt's mark.
        let marked = || crate::launcher::marked_processes(&self.owner);
        if !any_alive(&mut self.children) && marked().is_empty() {
            self.children.clear();
            return;
        }
        for pid in marked() {
            crate::launcher::signal_process(pid, libc::SIGTERM);
        }
        let mut stoppers = Vec::new();
        let grace_secs = self.spec.termination_grace_ms.div_ceil(1000).to_string();
        for c in &mut self.children {
            crate::launcher::signal_group(c.child.id(), libc::SIGTERM);
            if let Some((runtime, name)) = &c.container
                && matches!(c.child.try_wait(), Ok(None))
                && let Ok(stopper) = Command::new(runtime)
                    .args(["stop", "-t", &grace_secs, name])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            {
                stoppers.push(stopper);
            }
        }
        let deadline = Instant::now() + Duration::from_millis(self.spec.termination_grace_ms);
        while Instant::now() < deadline && (any_alive(&mut self.children) || !marked().is_empty()) {
            std::thread::sleep(POLL);
        }
        for g in &groups {
            crate::launcher::signal_group(*g, libc::SIGKILL);
        }
        for pid in marked() {
            crate::launcher::signal_process(pid, libc::SIGKILL);
        }
        for c in &mut self.children {
            let _ = c.child.wait();
        }
        for mut stopper in stoppers {
            let _ = stopper.wait();
        }
        self.children.clear();
    }
}

/// Why this node cannot run containers.
#[derive(Debug, thiserror::Error)]
enum RuntimeError {
    #[error("neither docker nor podman is on PATH")]
    NotOnPath,
    /// Every runtime found failed, each for its own reason.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Unusable(Vec<RuntimeProblem>),
}

/// Why one container runtime on PATH cannot be used.
#[derive(Debug, thiserror::Error)]
enum RuntimeProblem {
    #[error("{} is installed but not usable: {stderr_tail}", .path.display())]
    NoDaemon { path: PathBuf, stderr_tail: String },
    #[error("{}: {source}", .path.display())]
    Start {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The container runtime on this node: `docker` or `podman` on PATH whose daemon answers.
fn container_runtime() -> Result<String, RuntimeError> {
    let mut problems = Vec::new();
    for runtime in ["docker", "podman"] {
        let Some(path) = find_on_path(runtime) else {
            continue;
        };
        let output = Command::new(&path)
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(o) if o.status.success() => return Ok(path.display().to_string()),
            Ok(o) => problems.push(RuntimeProblem::NoDaemon {
                stderr_tail: tail(String::from_utf8_lossy(&o.stderr).trim(), 3),
                path,
            }),
            Err(source) => problems.push(RuntimeProblem::Start { path, source }),
        }
    }
    if problems.is_empty() {
        Err(RuntimeError::NotOnPath)
    } else {
        Err(RuntimeError::Unusable(problems))
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Why `agent rsh` could not run its command on a node.
#[derive(Debug, thiserror::Error)]
pub enum RshError {
    #[error("node {node} did not publish its part of job {job} attempt {attempt}")]
    NotTakingPart {
        node: String,
        job: String,
        attempt: u32,
    },
    #[error("run on {node}: {source}")]
    Run {
        node: String,
        #[source]
        source: std::io::Error,
    },
}

/// `<exe> agent rsh <node> <command...>`: how `mpirun` reaches another node. It takes on the
/// environment and working directory that node published for the attempt (gathered by the
/// master into `ranks_dir` before `mpirun` started) and runs the command there.
pub fn rsh(ranks_dir: &Path, node: &str, command: &[String]) -> Result<i32, RshError> {
    let job = std::env::var("AZ_BATCHAI_JOB_NAME").unwrap_or_default();
    let uid = std::env::var("AZ_BATCHAI_JOB_UID").unwrap_or_default();
    let attempt: u32 = std::env::var("AZ_BATCHAI_JOB_ATTEMPT")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or_default();
    let published = std::fs::read(ranks_dir.join(format!("{node}.json")))
        .ok()
        .and_then(|b| serde_json::from_slice::<RankEnvironment>(&b).ok())
        .filter(|r| r.job == job && r.uid == uid && r.attempt == attempt);
    let Some(published) = published else {
        // Not on this machine: the master's relay runs it there through the store.
        if let Ok(socket) = std::env::var(crate::relay::SOCKET_VAR) {
            return crate::relay::rsh(Path::new(&socket), node, &command.join(" ")).map_err(|e| {
                RshError::Run {
                    node: node.to_owned(),
                    source: std::io::Error::other(e.to_string()),
                }
            });
        }
        return Err(RshError::NotTakingPart {
            node: node.to_owned(),
            job,
            attempt,
        });
    };
    let status = Command::new("sh")
        .arg("-c")
        .arg(command.join(" "))
        .current_dir(&published.cwd)
        .envs(&published.env)
        .status()
        .map_err(|source| RshError::Run {
            node: node.to_owned(),
            source,
        })?;
    Ok(status.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(image: &str, server: Option<&str>) -> jobs::Container {
        jobs::Container {
            image: image.to_owned(),
            server_url: server.map(str::to_owned),
            shm_size: Some("1g".to_owned()),
        }
    }

    #[test]
    fn container_commands_expand_job_paths_inside_the_container() {
        let script = toolkit::sh_path("$AZ_BATCHAI_INPUT_DATA/x y.py");
        let command = format!("python3 {script}");
        let keys = ["AZ_BATCHAI_INPUT_DATA".to_owned(), "TOKEN".to_owned()];
        let args = container_args(
            &settings("python:3.12", Some("registry.example/")),
            "batchai-c-j-1-node-1",
            &[PathBuf::from("/root")],
            Path::new("/root/tmp"),
            keys.iter(),
            &command,
        );
        let want: Vec<String> = [
            "run",
            "--rm",
            "--init",
            "--network",
            "host",
            "--name",
            "batchai-c-j-1-node-1",
            "--shm-size",
            "1g",
            "-v",
            "/root:/root",
            "-w",
            "/root/tmp",
            "-e",
            "AZ_BATCHAI_INPUT_DATA",
            "-e",
            "TOKEN",
            "registry.example/python:3.12",
            "bash",
            "-c",
            r#"python3 "${AZ_BATCHAI_INPUT_DATA}"'/x y.py'"#,
        ]
        .map(str::to_owned)
        .into();
        // The reference stays for the container's bash, which has the variable.
        assert_eq!(args, Ok(want));
    }

    #[test]
    fn images_that_read_as_flags_are_refused() {
        for (image, server) in [
            ("--privileged", None),
            ("-v/:/host", None),
            ("", None),
            ("ubuntu", Some("--privileged")),
        ] {
            let got = container_args(
                &settings(image, server),
                "n",
                &[],
                Path::new("/"),
                std::iter::empty(),
                "true",
            );
            assert!(got.is_err(), "{image:?} {server:?}: {got:?}");
        }
        assert!(image_reference(&settings("ubuntu:24.04", None)).is_ok());
        assert_eq!(
            image_reference(&settings("--privileged", None)).map_err(|e| e.to_string()),
            Err("the container image \"--privileged\" is not an image reference; it must not be empty or start with `-`".to_owned())
        );
    }

    #[test]
    fn the_failing_rank_is_read_from_mpiruns_report() {
        let exited = "err-0\n--------\nmpirun detected that one or more processes exited with non-zero status, thus causing\nthe job to be terminated. The first process to do so was:\n\n  Process name: [[24171,1],2]\n  Exit code:    5\n";
        let signalled =
            "mpirun noticed that process rank 1 with PID 0 on node n exited on signal 9 (Killed).";
        assert_eq!(failing_rank(exited), Some(2));
        assert_eq!(failing_rank(signalled), Some(1));
        assert_eq!(failing_rank("Traceback: boom"), None);
    }

    #[test]
    fn without_a_report_the_ranks_that_wrote_stderr_are_quoted() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let rank = |n: u32, err: &str| {
            let d = dir.path().join("1").join(format!("rank.{n}"));
            std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(d.join("stderr"), err).unwrap_or_else(|e| panic!("{e}"));
        };
        rank(0, "");
        rank(1, "boom\n");
        assert_eq!(ranks_with_stderr(dir.path()), [1]);
        rank(10, "also\nlast\n");
        assert_eq!(ranks_with_stderr(dir.path()), [1, 10]);
        assert_eq!(
            ranks_tail(dir.path(), &[1, 10], 3),
            "rank 1: boom\nrank 10: also\nrank 10: last"
        );
    }

    #[test]
    fn tails_start_at_the_attempts_offset() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("stderr.txt");
        std::fs::write(&log, "attempt-1 line\n").unwrap_or_else(|e| panic!("{e}"));
        let from = std::fs::metadata(&log).map_or(0, |m| m.len());
        let mut f = File::options()
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("{e}"));
        std::io::Write::write_all(&mut f, b"attempt-2 line\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tail_from(&log, from, 10), "attempt-2 line");
        assert_eq!(tail_from(&log, 0, 10), "attempt-1 line\nattempt-2 line");
    }
}
