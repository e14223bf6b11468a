//! Job records: the spec the provider writes once, the status the scheduler and the job's nodes
//! move through its lifecycle, and the pure transitions between states, so the agent and the
//! provider agree on what a report, a lost node or a termination does to a job.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::{ErrorCode, Mount, NodeError};

/// Scheduling priority, as Batch AI's `schedulingPriority`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

impl Priority {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "low" => Some(Self::Low),
            "normal" => Some(Self::Normal),
            "high" => Some(Self::High),
            _ => None,
        }
    }
}

/// A Python entry point: the shape most toolkits share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Script {
    pub python_script_file_path: String,
    /// `python3` when unset.
    pub python_interpreter_path: Option<String>,
    pub command_line_args: Option<String>,
}

/// What this build's agents can run beyond the first release's jobs; each node lists them in
/// its record, and the provider hands a job that uses one only to a cluster whose agents have
/// it. A new job capability that older agents would misread or ignore adds its name here.
pub const FEATURES: &[&str] = &[
    "deepspeed",
    "git_repository",
    "termination_grace_period",
    // MPI jobs across nodes: rank environments in the store (and daemons on other machines
    // started through it), where older agents used a file beside each node.
    "mpi_ranks_in_store",
    // Azure Files and blob containers, with keys from a secrets record of their own.
    "azure_storage_mounts",
];

/// What runs, and how it is spread over the job's nodes (exactly one per job).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Toolkit {
    /// A shell command on the master node only.
    CustomToolkit {
        command_line: String,
    },
    /// A shell command started by `mpirun` on every node.
    CustomMpi {
        command_line: String,
        process_count: Option<u32>,
    },
    Horovod {
        script: Script,
        process_count: Option<u32>,
    },
    Chainer {
        script: Script,
        process_count: Option<u32>,
    },
    Cntk {
        /// `brainscript` runs `cntk configFile=...`; `python` runs the script.
        language_type: String,
        config_file_path: Option<String>,
        script: Script,
        process_count: Option<u32>,
    },
    Pytorch {
        script: Script,
        process_count: Option<u32>,
        /// `gloo`, `nccl`, `tcp` or `mpi` (the last launches with `mpirun`).
        communication_backend: Option<String>,
    },
    Tensorflow {
        script: Script,
        master_command_line_args: Option<String>,
        worker_command_line_args: Option<String>,
        parameter_server_command_line_args: Option<String>,
        worker_count: Option<u32>,
        parameter_server_count: Option<u32>,
    },
    Caffe {
        config_file_path: Option<String>,
        script: Script,
        process_count: Option<u32>,
    },
    Caffe2 {
        script: Script,
    },
    /// A DeepSpeed script, launched per rank as `Pytorch` is, with
    /// `--deepspeed --deepspeed_config <path>` before the script's own arguments.
    Deepspeed {
        script: Script,
        deepspeed_config_path: String,
        process_count: Option<u32>,
    },
}

impl Toolkit {
    /// The Terraform block name, for messages.
    pub fn block(&self) -> &'static str {
        match self {
            Self::CustomToolkit { .. } => "custom_toolkit",
            Self::CustomMpi { .. } => "custom_mpi",
            Self::Horovod { .. } => "horovod",
            Self::Chainer { .. } => "chainer",
            Self::Cntk { .. } => "cntk",
            Self::Pytorch { .. } => "pytorch",
            Self::Tensorflow { .. } => "tensorflow",
            Self::Caffe { .. } => "caffe",
            Self::Caffe2 { .. } => "caffe2",
            Self::Deepspeed { .. } => "deepspeed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputDirectory {
    pub id: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputDirectory {
    pub id: String,
    pub path_prefix: String,
    pub path_suffix: Option<String>,
}

impl OutputDirectory {
    /// Where the directory lies below its resolved `path_prefix`: `<segment>[/<path_suffix>]`,
    /// with the job's [`JobSpec::path_segment`]. Nodes create it there; the `job_output_path`
    /// function names it the same way.
    pub fn below_prefix(&self, segment: &str) -> std::path::PathBuf {
        let mut path = std::path::PathBuf::from(segment);
        if let Some(suffix) = &self.path_suffix {
            path.push(suffix);
        }
        path
    }

    /// The directory's path as the job names it, before a node resolves the mount root
    /// variable its prefix may start with.
    pub fn job_path(&self, segment: &str) -> String {
        std::path::Path::new(&self.path_prefix)
            .join(self.below_prefix(segment))
            .display()
            .to_string()
    }
}

/// Application-failure retries (Batch AI had none; AWS Batch and SkyPilot users rely on them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Retry {
    pub max_retries: u32,
    /// Empty: retry on any non-zero exit.
    pub retry_on_exit_codes: Vec<i32>,
}

impl Retry {
    /// Whether a failure with `exit_code` after `used` retries runs again.
    pub fn allows(&self, used: u32, exit_code: Option<i32>) -> bool {
        if used >= self.max_retries {
            return false;
        }
        match exit_code {
            Some(code) => {
                self.retry_on_exit_codes.is_empty() || self.retry_on_exit_codes.contains(&code)
            }
            // Launch errors and killed processes are retried only when any failure is.
            None => self.retry_on_exit_codes.is_empty(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub image: String,
    pub server_url: Option<String>,
    pub shm_size: Option<String>,
}

/// A job as the provider submitted it. Jobs are immutable: the spec is written once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub format: u32,
    pub name: String,
    pub cluster: String,
    /// Unique per submission: the last part of `job_output_directory_path_segment`.
    pub uid: String,
    pub created_ms: u64,
    pub node_count: u32,
    pub priority: Priority,
    pub toolkit: Toolkit,
    pub job_preparation: Option<String>,
    pub environment_variables: BTreeMap<String, String>,
    /// Secrets live in their own record ([`crate::records::keys::job_secrets`]).
    pub has_secrets: bool,
    pub input_directories: Vec<InputDirectory>,
    pub output_directories: Vec<OutputDirectory>,
    /// May start with `$AZ_BATCHAI_MOUNT_ROOT` or `$AZ_BATCHAI_JOB_MOUNT_ROOT`.
    pub std_out_err_path_prefix: String,
    /// Job-level mounts, below `$AZ_BATCHAI_JOB_MOUNT_ROOT`, for the run only.
    pub mounts: Vec<Mount>,
    pub max_wall_clock_ms: u64,
    /// How long the job may wait in the queue while its cluster cannot run it (no usable nodes
    /// and none to be had, or fewer than `node_count` ever) before it fails.
    #[serde(default = "default_max_unschedulable_ms")]
    pub max_unschedulable_ms: u64,
    /// How long the job's processes have between SIGTERM and SIGKILL when they are stopped.
    #[serde(default = "default_termination_grace_ms")]
    pub termination_grace_ms: u64,
    pub retry: Retry,
    pub container: Option<Container>,
}

/// Five minutes: long enough for a replacement node to prepare, short enough that a cluster
/// that cannot work fails the apply while the user still watches.
pub const DEFAULT_MAX_UNSCHEDULABLE_MS: u64 = 5 * 60_000;

fn default_max_unschedulable_ms() -> u64 {
    DEFAULT_MAX_UNSCHEDULABLE_MS
}

/// Ten seconds, as every job had before the period could be set.
pub const DEFAULT_TERMINATION_GRACE_MS: u64 = 10_000;

fn default_termination_grace_ms() -> u64 {
    DEFAULT_TERMINATION_GRACE_MS
}

impl JobSpec {
    /// The generated part of every output path: `<cluster>/jobs/<job>/<uid>`.
    pub fn path_segment(&self) -> String {
        format!("{}/jobs/{}/{}", self.cluster, self.name, self.uid)
    }
}

/// Batch AI's `executionState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Terminating,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Terminating => "terminating",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// What one node says about its part of an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeReport {
    /// The exit code of the node's failing (or last) process; `None` for a launch error or a
    /// process killed by a signal.
    pub exit_code: Option<i32>,
    pub error: Option<NodeError>,
}

impl NodeReport {
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.exit_code.unwrap_or(0) == 0
    }
}

/// The job's lifecycle, written with compare-and-swap by the scheduler (dispatch, requeue),
/// the job's nodes (reports) and the provider (termination).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub format: u32,
    /// The submission this status belongs to ([`JobSpec::uid`]): a job re-created under the
    /// same name starts again at attempt 1, so attempts are only comparable within one uid.
    #[serde(default)]
    pub uid: String,
    pub state: JobState,
    /// Attempts started so far: a requeue after a lost node counts, as does a retry.
    pub attempts: u32,
    /// Application-failure retries used (bounded by `retry.max_retries`).
    pub retries: u32,
    /// The current attempt's nodes, master first.
    pub nodes: Vec<String>,
    /// Ports the current attempt's processes rendezvous on (PyTorch, TensorFlow).
    pub ports: Vec<u16>,
    pub queued_ms: u64,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub exit_code: Option<i32>,
    pub errors: Vec<NodeError>,
    pub metrics: BTreeMap<String, f64>,
    /// Reports of the current attempt, by node.
    pub reports: BTreeMap<String, NodeReport>,
    pub terminate_requested: bool,
    /// Since when the queued job's cluster cannot run it (see `JobSpec::max_unschedulable_ms`).
    #[serde(default)]
    pub unschedulable_since_ms: Option<u64>,
}

impl JobStatus {
    pub fn queued(uid: &str, now_ms: u64) -> Self {
        Self {
            format: crate::records::FORMAT,
            uid: uid.to_owned(),
            state: JobState::Queued,
            attempts: 0,
            retries: 0,
            nodes: Vec::new(),
            ports: Vec::new(),
            queued_ms: now_ms,
            start_ms: None,
            end_ms: None,
            exit_code: None,
            errors: Vec::new(),
            metrics: BTreeMap::new(),
            reports: BTreeMap::new(),
            terminate_requested: false,
            unschedulable_since_ms: None,
        }
    }

    /// What replaces a job status that cannot be read any more: the job failed, with the reason.
    /// Written by whoever meets the corrupt record first, so that one bad record fails one job
    /// and never stops the cluster's scheduling or the job's destroy.
    pub fn corrupt(uid: &str, reason: &str, now_ms: u64) -> Self {
        let mut status = Self::queued(uid, now_ms);
        status.fail(
            NodeError {
                code: ErrorCode::CorruptRecord,
                message: format!(
                    "the job's records in the control store could not be read ({reason}); the job was marked failed: run it again with terraform apply -replace, or destroy it"
                ),
                details: BTreeMap::new(),
            },
            now_ms,
        );
        status
    }

    /// Starts the next attempt on `nodes`. False when the job is not waiting.
    pub fn dispatch(&mut self, nodes: Vec<String>, ports: Vec<u16>, now_ms: u64) -> bool {
        if self.state != JobState::Queued || self.terminate_requested {
            return false;
        }
        self.state = JobState::Running;
        self.unschedulable_since_ms = None;
        self.attempts += 1;
        self.nodes = nodes;
        self.ports = ports;
        self.reports.clear();
        self.start_ms = Some(now_ms);
        self.end_ms = None;
        self.exit_code = None;
        true
    }

    /// The assignment a node of the current attempt holds.
    pub fn assignment(&self, job: &str) -> Assignment {
        Assignment {
            job: job.to_owned(),
            uid: self.uid.clone(),
            attempt: self.attempts,
        }
    }

    /// True when `assignment` names this submission's current attempt.
    pub fn is_current(&self, assignment: &Assignment) -> bool {
        self.uid == assignment.uid && self.attempts == assignment.attempt
    }

    /// True while `node` should be running `assignment`.
    pub fn runs(&self, node: &str, assignment: &Assignment) -> bool {
        matches!(self.state, JobState::Running)
            && self.is_current(assignment)
            && self.nodes.iter().any(|n| n == node)
    }

    /// Records a node's report for `attempt` and decides what follows: the attempt goes on
    /// while reports are missing, fails (or is retried) on the first failure, and succeeds once
    /// every node succeeded. False when the report is stale (another attempt, or already ended).
    pub fn report(
        &mut self,
        node: &str,
        assignment: &Assignment,
        report: NodeReport,
        retry: &Retry,
        metrics: BTreeMap<String, f64>,
        now_ms: u64,
    ) -> bool {
        let live = matches!(self.state, JobState::Running | JobState::Terminating);
        if !live
            || !self.is_current(assignment)
            || !self.nodes.iter().any(|n| n == node)
            || self.reports.contains_key(node)
        {
            return false;
        }
        let failed = !report.succeeded();
        let exit_code = report.exit_code;
        let error = report.error.clone();
        self.reports.insert(node.to_owned(), report);
        self.metrics.extend(metrics);
        if self.state == JobState::Terminating {
            self.finish(JobState::Failed, exit_code, now_ms);
            self.errors.push(NodeError {
                code: ErrorCode::JobTerminated,
                message: "the job was terminated before it finished".to_owned(),
                details: BTreeMap::new(),
            });
            return true;
        }
        if failed {
            if let Some(error) = error {
                self.errors.push(error);
            } else {
                self.errors.push(NodeError {
                    code: ErrorCode::JobFailed,
                    message: match exit_code {
                        Some(code) => format!("the job exited with code {code} on {node}"),
                        None => format!("the job was killed by a signal on {node}"),
                    },
                    details: BTreeMap::new(),
                });
            }
            if retry.allows(self.retries, exit_code) {
                self.retries += 1;
                self.requeue(now_ms);
                self.exit_code = exit_code;
            } else {
                self.finish(JobState::Failed, exit_code, now_ms);
            }
            return true;
        }
        if self.nodes.iter().all(|n| self.reports.contains_key(n)) {
            self.finish(JobState::Succeeded, Some(0), now_ms);
        }
        true
    }

    /// Sends the job back to the queue without counting an application failure (a node was lost
    /// or deallocated with `requeue`).
    pub fn requeue(&mut self, now_ms: u64) {
        self.state = JobState::Queued;
        self.nodes.clear();
        self.ports.clear();
        self.reports.clear();
        self.queued_ms = now_ms;
    }

    /// Ends the job without a node report (lost nodes with no retries, termination of a job
    /// that never started, a scheduler-side failure).
    pub fn fail(&mut self, error: NodeError, now_ms: u64) {
        self.errors.push(error);
        self.finish(JobState::Failed, None, now_ms);
    }

    fn finish(&mut self, state: JobState, exit_code: Option<i32>, now_ms: u64) {
        self.state = state;
        self.exit_code = exit_code;
        self.end_ms = Some(now_ms);
    }

    /// Asks for termination: a queued job ends at once, a running one once its nodes stopped it.
    pub fn request_termination(&mut self, now_ms: u64) {
        match self.state {
            JobState::Queued => {
                self.terminate_requested = true;
                self.fail(
                    NodeError {
                        code: ErrorCode::JobTerminated,
                        message: "the job was terminated before it started".to_owned(),
                        details: BTreeMap::new(),
                    },
                    now_ms,
                );
            }
            JobState::Running => {
                self.terminate_requested = true;
                self.state = JobState::Terminating;
            }
            JobState::Terminating | JobState::Succeeded | JobState::Failed => {}
        }
    }
}

/// The node-side view of a dispatch: which job attempt a node is part of. A job's identity is
/// its submission (`uid`), not its name: a failed job re-created under the same name starts
/// again at attempt 1, and a node that ran the old one must not take the new one for done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub job: String,
    #[serde(default)]
    pub uid: String,
    pub attempt: u32,
}

/// A running attempt's metrics so far, as its master node publishes them at
/// `keys::job_metrics`: when they changed, and at most every [`LIVE_METRICS_EVERY`]. An ended
/// job carries its final metrics in its status instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveMetrics {
    pub format: u32,
    pub uid: String,
    pub attempt: u32,
    pub metrics: BTreeMap<String, f64>,
}

/// How often a master node may publish [`LiveMetrics`].
pub const LIVE_METRICS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Parses a metrics file: JSON lines, the last numeric value of each key wins. Lines that are
/// not JSON objects are skipped (a job may print anything there).
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str(line.trim()) else {
            continue;
        };
        for (key, value) in map {
            if let Some(n) = value.as_f64()
                && n.is_finite()
            {
                out.insert(key, n);
            }
        }
    }
    out
}

/// The mount roots a job path may start with.
pub const MOUNT_ROOT_VAR: &str = "AZ_BATCHAI_MOUNT_ROOT";
pub const JOB_MOUNT_ROOT_VAR: &str = "AZ_BATCHAI_JOB_MOUNT_ROOT";

/// A job path (or setup log prefix) that is not allowed, whatever is on disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobPathError {
    #[error("{path:?} escapes ${var} with `..`")]
    Escapes { path: String, var: &'static str },
    #[error("{path:?} must be absolute or start with ${MOUNT_ROOT_VAR} or ${JOB_MOUNT_ROOT_VAR}")]
    Relative { path: String },
    #[error(
        "{path:?} starts with ${var}, which a setup task does not have; use ${MOUNT_ROOT_VAR} or an absolute path"
    )]
    NotForSetup { path: String, var: &'static str },
}

/// A path that leaves its mount root through a link, or whose links cannot be followed.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    #[error("resolve {}: {source}", .path.display())]
    Resolve {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} leads to {} through a link, outside the mount root",
        .path.display(),
        .real.display()
    )]
    Outside {
        path: std::path::PathBuf,
        real: std::path::PathBuf,
    },
}

/// Splits a job path into the mount root variable it starts with (if any) and the rest, and
/// checks it: an absolute path, or one of the two variables followed by a path that stays below
/// it. Shared by plan-time validation and by the node that resolves the path.
pub fn split_job_path(path: &str) -> Result<(Option<&'static str>, &str), JobPathError> {
    for var in [JOB_MOUNT_ROOT_VAR, MOUNT_ROOT_VAR] {
        for form in [format!("${{{var}}}"), format!("${var}")] {
            let Some(rest) = path.strip_prefix(&form) else {
                continue;
            };
            if !(rest.is_empty() || rest.starts_with('/')) {
                continue;
            }
            let mut depth = 0_i32;
            for part in rest.split('/') {
                match part {
                    "" | "." => {}
                    ".." => {
                        depth -= 1;
                        if depth < 0 {
                            return Err(JobPathError::Escapes {
                                path: path.to_owned(),
                                var,
                            });
                        }
                    }
                    _ => depth += 1,
                }
            }
            return Ok((Some(var), rest.trim_start_matches('/')));
        }
    }
    if path.starts_with('/') {
        return Ok((None, path));
    }
    Err(JobPathError::Relative {
        path: path.to_owned(),
    })
}

/// Whether a job path lies on a mounted file system rather than on the node's own disk: below
/// `$AZ_BATCHAI_MOUNT_ROOT/<relative_mount_path>` of one of the cluster's mounts, or below
/// `$AZ_BATCHAI_JOB_MOUNT_ROOT/<relative_mount_path>` of one of the job's. An absolute path is
/// the node's own: a mount command may have put a file system there, but nothing here can tell.
pub fn on_mount(path: &str, cluster_mounts: &[Mount], job_mounts: &[Mount]) -> bool {
    let Ok((Some(var), rest)) = split_job_path(path) else {
        return false;
    };
    let mounts = if var == MOUNT_ROOT_VAR {
        cluster_mounts
    } else {
        job_mounts
    };
    let parts = normalized(rest);
    mounts.iter().any(|m| {
        let mount = normalized(&m.relative_mount_path);
        !mount.is_empty() && parts.starts_with(&mount)
    })
}

/// A relative path's segments with `.` and `..` applied (a `..` above the start is dropped:
/// [`split_job_path`] has refused those).
fn normalized(path: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts
}

/// Resolves a job path on a node, given its mount roots.
pub fn resolve_job_path(
    path: &str,
    mount_root: &std::path::Path,
    job_mount_root: &std::path::Path,
) -> Result<std::path::PathBuf, JobPathError> {
    Ok(match split_job_path(path)? {
        (Some(MOUNT_ROOT_VAR), rest) => mount_root.join(rest),
        (Some(_), rest) => job_mount_root.join(rest),
        (None, absolute) => std::path::PathBuf::from(absolute),
    })
}

/// Resolves a setup task's `std_out_err_path_prefix` on a node: an absolute path, or one below
/// `$AZ_BATCHAI_MOUNT_ROOT` that stays below it (a setup task has no job mount root). True in
/// the second case: the path must then stay beneath the mount root once links are followed
/// ([`check_beneath`]). Plan-time validation calls it with any mount root.
pub fn resolve_setup_log_prefix(
    path: &str,
    mount_root: &std::path::Path,
) -> Result<(std::path::PathBuf, bool), JobPathError> {
    match split_job_path(path)? {
        (Some(MOUNT_ROOT_VAR), rest) => Ok((mount_root.join(rest), true)),
        (Some(var), _) => Err(JobPathError::NotForSetup {
            path: path.to_owned(),
            var,
        }),
        (None, absolute) => Ok((std::path::PathBuf::from(absolute), false)),
    }
}

/// Checks a setup task's `std_out_err_path_prefix` at plan time.
pub fn check_setup_log_prefix(path: &str) -> Result<(), JobPathError> {
    resolve_setup_log_prefix(path, std::path::Path::new("/")).map(|_| ())
}

/// Checks that `path` (which may not exist yet) stays beneath one of `roots` once the links
/// along its existing part are followed: a link planted on a share by an earlier job must not
/// carry a later job's output or logs out of it. The part that does not exist yet is created
/// as directories, so it holds no links.
pub fn check_beneath(
    path: &std::path::Path,
    roots: &[std::path::PathBuf],
) -> Result<(), BeneathError> {
    let mut existing = path;
    while !existing.exists() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => return Ok(()),
        }
    }
    let real = existing
        .canonicalize()
        .map_err(|source| BeneathError::Resolve {
            path: existing.to_path_buf(),
            source,
        })?;
    let inside = roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|root| real.starts_with(root));
    if inside {
        Ok(())
    } else {
        Err(BeneathError::Outside {
            path: path.to_path_buf(),
            real,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(nodes: &[&str]) -> JobStatus {
        let mut s = JobStatus::queued("u1", 0);
        assert!(s.dispatch(nodes.iter().map(|n| (*n).to_owned()).collect(), vec![], 10));
        s
    }

    fn at(attempt: u32) -> Assignment {
        Assignment {
            job: "j".into(),
            uid: "u1".into(),
            attempt,
        }
    }

    #[test]
    fn attempts_of_another_submission_are_stale() {
        // A job re-created under the same name starts at attempt 1 again: a node that ran
        // attempt 1 of the old submission must neither run nor report into the new one.
        let s = running(&["node-1"]);
        let old = Assignment {
            job: "j".into(),
            uid: "u0".into(),
            attempt: 1,
        };
        assert!(s.runs("node-1", &at(1)));
        assert!(!s.runs("node-1", &old));
        assert_ne!(s.assignment("j"), old);
        let mut s = s;
        assert!(!s.report(
            "node-1",
            &old,
            exit(0),
            &Retry::default(),
            BTreeMap::new(),
            20
        ));
        assert_eq!(s.state, JobState::Running);
        assert!(s.report(
            "node-1",
            &at(1),
            exit(0),
            &Retry::default(),
            BTreeMap::new(),
            20
        ));
        assert_eq!(s.state, JobState::Succeeded);
    }

    fn exit(code: i32) -> NodeReport {
        NodeReport {
            exit_code: Some(code),
            error: None,
        }
    }

    #[test]
    fn retry_rules() {
        let any = Retry {
            max_retries: 2,
            retry_on_exit_codes: vec![],
        };
        let listed = Retry {
            max_retries: 1,
            retry_on_exit_codes: vec![3],
        };
        let cases = [
            ("any code", &any, 0, Some(1), true),
            ("exhausted", &any, 2, Some(1), false),
            ("signal, any", &any, 0, None, true),
            ("listed", &listed, 0, Some(3), true),
            ("unlisted", &listed, 0, Some(4), false),
            ("signal, listed only", &listed, 0, None, false),
            ("none", &Retry::default(), 0, Some(3), false),
        ];
        for (name, retry, used, code, want) in cases {
            assert_eq!(retry.allows(used, code), want, "{name}");
        }
    }

    #[test]
    fn every_node_must_succeed() {
        let mut s = running(&["node-1", "node-2"]);
        let none = Retry::default();
        assert!(s.report("node-1", &at(1), exit(0), &none, BTreeMap::new(), 20));
        assert_eq!(s.state, JobState::Running);
        assert!(!s.report("node-3", &at(1), exit(0), &none, BTreeMap::new(), 20));
        assert!(!s.report("node-2", &at(2), exit(0), &none, BTreeMap::new(), 20));
        let metrics = BTreeMap::from([("accuracy".to_owned(), 0.9)]);
        assert!(s.report("node-2", &at(1), exit(0), &none, metrics, 30));
        assert_eq!(s.state, JobState::Succeeded);
        assert_eq!((s.exit_code, s.end_ms), (Some(0), Some(30)));
        assert_eq!(s.metrics.get("accuracy"), Some(&0.9));
        assert!(!s.report("node-1", &at(1), exit(0), &none, BTreeMap::new(), 40));
    }

    #[test]
    fn a_failure_retries_then_fails() {
        let retry = Retry {
            max_retries: 1,
            retry_on_exit_codes: vec![7],
        };
        let mut s = running(&["node-1"]);
        assert!(s.report("node-1", &at(1), exit(7), &retry, BTreeMap::new(), 20));
        assert_eq!((s.state, s.retries, s.attempts), (JobState::Queued, 1, 1));
        assert!(s.dispatch(vec!["node-2".into()], vec![], 30));
        assert!(s.report("node-2", &at(2), exit(7), &retry, BTreeMap::new(), 40));
        assert_eq!((s.state, s.exit_code), (JobState::Failed, Some(7)));
        assert_eq!(s.errors.len(), 2);
    }

    #[test]
    fn requeue_counts_an_attempt_but_no_retry() {
        let mut s = running(&["node-1"]);
        s.requeue(20);
        assert_eq!((s.state, s.attempts, s.retries), (JobState::Queued, 1, 0));
        assert!(s.dispatch(vec!["node-2".into()], vec![], 30));
        assert_eq!(s.attempts, 2);
        assert!(!s.runs("node-1", &at(2)));
        assert!(s.runs("node-2", &at(2)));
    }

    #[test]
    fn termination() {
        let mut queued = JobStatus::queued("u1", 0);
        queued.request_termination(5);
        assert_eq!(queued.state, JobState::Failed);
        assert!(!queued.dispatch(vec!["node-1".into()], vec![], 6));

        let mut s = running(&["node-1", "node-2"]);
        s.request_termination(20);
        assert_eq!(s.state, JobState::Terminating);
        assert!(!s.runs("node-1", &at(1)));
        assert!(s.report(
            "node-1",
            &at(1),
            exit(143),
            &Retry::default(),
            BTreeMap::new(),
            30
        ));
        assert_eq!(s.state, JobState::Failed);
        assert_eq!(
            s.errors.last().map(|e| &e.code),
            Some(&ErrorCode::JobTerminated)
        );
    }

    #[test]
    fn metrics_keep_the_last_numeric_value() {
        let text = "{\"epoch\": 1, \"loss\": 0.5}\nnot json\n{\"loss\": 0.25, \"tag\": \"x\"}\n[1]\n{\"accuracy\": 0.97}\n";
        let m = parse_metrics(text);
        assert_eq!(m.get("loss"), Some(&0.25));
        assert_eq!(m.get("epoch"), Some(&1.0));
        assert_eq!(m.get("accuracy"), Some(&0.97));
        assert!(!m.contains_key("tag"));
    }

    #[test]
    fn job_paths() {
        let mount = std::path::Path::new("/n/mounts");
        let job = std::path::Path::new("/n/jobmounts/j");
        let cases = [
            ("$AZ_BATCHAI_MOUNT_ROOT/data", Ok("/n/mounts/data")),
            ("${AZ_BATCHAI_MOUNT_ROOT}/a/../b", Ok("/n/mounts/a/../b")),
            ("$AZ_BATCHAI_JOB_MOUNT_ROOT/logs", Ok("/n/jobmounts/j/logs")),
            ("$AZ_BATCHAI_MOUNT_ROOT", Ok("/n/mounts/")),
            ("/abs/out", Ok("/abs/out")),
            ("$AZ_BATCHAI_MOUNT_ROOT/../x", Err(())),
            ("$AZ_BATCHAI_MOUNT_ROOT/a/../../x", Err(())),
            ("relative/out", Err(())),
            ("$AZ_BATCHAI_MOUNT_ROOTX/a", Err(())),
        ];
        for (path, want) in cases {
            let got = resolve_job_path(path, mount, job);
            match want {
                Ok(p) => assert_eq!(got, Ok(std::path::PathBuf::from(p)), "{path}"),
                Err(()) => assert!(got.is_err(), "{path}: {got:?}"),
            }
        }
    }

    #[test]
    fn path_errors_say_what_is_wrong() {
        let cases = [
            (
                split_job_path("$AZ_BATCHAI_MOUNT_ROOT/../x").err(),
                "\"$AZ_BATCHAI_MOUNT_ROOT/../x\" escapes $AZ_BATCHAI_MOUNT_ROOT with `..`",
            ),
            (
                split_job_path("out").err(),
                "\"out\" must be absolute or start with $AZ_BATCHAI_MOUNT_ROOT or $AZ_BATCHAI_JOB_MOUNT_ROOT",
            ),
            (
                check_setup_log_prefix("$AZ_BATCHAI_JOB_MOUNT_ROOT/x").err(),
                "\"$AZ_BATCHAI_JOB_MOUNT_ROOT/x\" starts with $AZ_BATCHAI_JOB_MOUNT_ROOT, which a setup task does not have; use $AZ_BATCHAI_MOUNT_ROOT or an absolute path",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got.map(|e| e.to_string()).as_deref(), Some(want));
        }
    }

    #[test]
    fn paths_on_mounts_and_on_the_nodes_own_disk() {
        let mount = |path: &str| Mount {
            relative_mount_path: path.to_owned(),
            source: crate::records::MountSource::Directory {
                path: "/srv".to_owned(),
            },
        };
        let cluster = [mount("data"), mount("nfs/shared/")];
        let job = [mount("scratch")];
        let cases = [
            ("$AZ_BATCHAI_MOUNT_ROOT/data", true),
            ("${AZ_BATCHAI_MOUNT_ROOT}/data/logs", true),
            ("$AZ_BATCHAI_MOUNT_ROOT/nfs/shared/x", true),
            ("$AZ_BATCHAI_MOUNT_ROOT/./data/../data/x", true),
            ("$AZ_BATCHAI_MOUNT_ROOT/nfs", false),
            ("$AZ_BATCHAI_MOUNT_ROOT/database", false),
            ("$AZ_BATCHAI_MOUNT_ROOT/data/../joblogs", false),
            ("$AZ_BATCHAI_MOUNT_ROOT/joblogs", false),
            ("$AZ_BATCHAI_MOUNT_ROOT", false),
            ("$AZ_BATCHAI_JOB_MOUNT_ROOT/scratch/out", true),
            ("$AZ_BATCHAI_JOB_MOUNT_ROOT/data", false),
            ("$AZ_BATCHAI_MOUNT_ROOT/scratch", false),
            ("/data", false),
            ("relative", false),
        ];
        for (path, expected) in cases {
            assert_eq!(on_mount(path, &cluster, &job), expected, "{path}");
        }
    }

    #[test]
    fn setup_log_prefixes() {
        let root = std::path::Path::new("/n/mounts");
        let cases = [
            ("$AZ_BATCHAI_MOUNT_ROOT/logs", Ok(("/n/mounts/logs", true))),
            ("${AZ_BATCHAI_MOUNT_ROOT}", Ok(("/n/mounts/", true))),
            ("/var/log/setup", Ok(("/var/log/setup", false))),
            ("../../..", Err(())),
            ("$AZ_BATCHAI_MOUNT_ROOT/../x", Err(())),
            ("$AZ_BATCHAI_JOB_MOUNT_ROOT/x", Err(())),
        ];
        for (path, want) in cases {
            let got = resolve_setup_log_prefix(path, root);
            match want {
                Ok((p, beneath)) => {
                    assert_eq!(got, Ok((std::path::PathBuf::from(p), beneath)), "{path}");
                }
                Err(()) => assert!(
                    got.is_err() && check_setup_log_prefix(path).is_err(),
                    "{path}"
                ),
            }
        }
    }

    #[test]
    fn paths_stay_beneath_their_roots_through_links() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().join("mounts");
        let share = dir.path().join("share");
        let outside = dir.path().join("outside");
        for d in [&root, &share, &outside] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
        }
        let link = |target: &std::path::Path, at: &std::path::Path| {
            std::os::unix::fs::symlink(target, at).unwrap_or_else(|e| panic!("{e}"));
        };
        // A mount links to its share; an earlier job planted links on the share and the root.
        link(&share, &root.join("data"));
        link(&outside, &share.join("planted"));
        link(&outside, &root.join("planted"));
        let roots = [root.clone(), share.clone()];
        let cases = [
            ("new/out", true),
            ("data/out/deeper", true),
            ("data", true),
            ("data/planted/out", false),
            ("planted/out", false),
            ("data/planted/../out", false),
        ];
        for (rel, ok) in cases {
            let got = check_beneath(&root.join(rel), &roots);
            assert_eq!(got.is_ok(), ok, "{rel}: {got:?}");
        }
        let got = check_beneath(&root.join("planted/out"), &roots).map_err(|e| e.to_string());
        let want = format!(
            "{} leads to {} through a link, outside the mount root",
            root.join("planted/out").display(),
            outside
                .canonicalize()
                .unwrap_or_else(|e| panic!("{e}"))
                .display()
        );
        assert_eq!(got, Err(want));
    }
}
