//! The `batchai_job` model as declared: every attribute and block with its description,
//! default, validators and checks (the toolkit blocks are [`super::toolkit::Toolkits`]).
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tfplug::{AttributePath, Diagnostic, Diagnostics, Model};

use super::toolkit::{self, Toolkits};
use crate::names::Name;
use crate::resources::ErrorModel;
use crate::resources::mounts::MountVolumesModel;

/// The default of `constraints.max_wall_clock_time`.
pub(super) const DEFAULT_MAX_WALL_CLOCK: &str = "7.00:00:00";
/// The default of `constraints.max_unschedulable_time`:
/// [`control::jobs::DEFAULT_MAX_UNSCHEDULABLE_MS`].
pub(super) const DEFAULT_MAX_UNSCHEDULABLE: &str = "00:05:00";
/// The default of `constraints.termination_grace_period`:
/// [`control::jobs::DEFAULT_TERMINATION_GRACE_MS`].
pub(super) const DEFAULT_TERMINATION_GRACE: &str = "00:00:10";

/// A Batch AI job: a training run of one toolkit on `node_count` nodes of a cluster, with
/// its environment, inputs, outputs, logs and metrics. Jobs are immutable: changing an
/// argument (except `wait_for_completion` and `timeouts`) replaces the job, and the plan
/// says which. Destroying a running job terminates it (SIGTERM, its
/// `constraints.termination_grace_period`, SIGKILL); its
/// outputs and logs stay.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
#[tf(check = unique_directory_ids)]
#[tf(check(toolkit::check_against_job, known(node_count)))]
pub struct JobModel {
    /// The job's ID, `<platform>/clusters/<cluster>/jobs/<name>` (`local/...` on the local
    /// platform, `azure/...` on Azure).
    #[tf(computed)]
    pub(crate) id: Option<String>,
    /// Name of the job, unique in its cluster: 1 to 64 letters, digits, `-` or `_`.
    #[tf(required, replace, validate = Name::parse, summary = "invalid job name")]
    pub(crate) name: Option<String>,
    /// The `id` of the `batchai_cluster` that runs the job.
    #[tf(required, replace, validate = crate::resources::cluster::parse_id)]
    pub(crate) cluster_id: Option<String>,
    /// Where stdout and stderr go: `<prefix>/<job_output_directory_path_segment>/stdouterr/`.
    /// An absolute path, or one below `$AZ_BATCHAI_MOUNT_ROOT` or
    /// `$AZ_BATCHAI_JOB_MOUNT_ROOT`. Defaults to `jobs/` under the provider's root on the local
    /// platform, and to `$AZ_BATCHAI_MOUNT_ROOT/joblogs` on each node on Azure (copied into the
    /// control container: see `std_out_err_directory`).
    #[tf(optional, replace, validate = control::jobs::split_job_path)]
    pub(crate) std_out_err_path_prefix: Option<String>,
    /// Environment variables for the job and its preparation.
    #[tf(optional, replace)]
    pub(crate) environment_variables: Option<BTreeMap<String, String>>,
    /// Environment variables with secret values. Write-only: never stored in Terraform
    /// state or plans (Terraform 1.11 or later). The provider keeps them apart from the job's
    /// spec, removes them when the job ends, and never logs them. Change
    /// `secrets_wo_version` to submit new values.
    #[tf(optional, sensitive, write_only)]
    pub(crate) secrets_wo: Option<BTreeMap<String, String>>,
    /// Any number; changing it replaces the job with the current `secrets_wo`.
    #[tf(optional, replace)]
    pub(crate) secrets_wo_version: Option<i64>,
    /// Nodes the job runs on, all at once (gang scheduling): it starts only when that many
    /// nodes are free. Defaults to 1.
    #[tf(default = 1, replace, range(1, 1000))]
    pub(crate) node_count: Option<u32>,
    /// `low`, `normal` (the default) or `high`. Higher priority jobs start first; within a
    /// priority, first come first served. A large job at the head of the queue reserves
    /// nodes as they free up; smaller jobs only backfill where they cannot delay it.
    #[tf(default = "normal", replace, one_of("low", "normal", "high"))]
    pub(crate) scheduling_priority: Option<String>,
    /// Whether apply waits for the job to end (the default) or returns once it is queued.
    /// A failed job fails the apply and is replaced by the next one. Changes apply in
    /// place.
    #[tf(default = true)]
    pub(crate) wait_for_completion: Option<bool>,
    #[tf(flatten)]
    #[serde(flatten)]
    pub(crate) toolkits: Toolkits,
    #[tf(block, replace)]
    pub(crate) container_settings: Option<ContainerModel>,
    #[tf(block, replace)]
    pub(crate) job_preparation: Option<JobPreparationModel>,
    #[tf(block, replace)]
    #[serde(default)]
    pub(crate) input_directories: Vec<InputModel>,
    #[tf(block, replace)]
    #[serde(default)]
    pub(crate) output_directories: Vec<OutputModel>,
    /// Volumes mounted under `$AZ_BATCHAI_JOB_MOUNT_ROOT` on the job's nodes for the run
    /// only.
    #[tf(block, replace)]
    pub(crate) mount_volumes: Option<MountVolumesModel>,
    #[tf(block, replace)]
    pub(crate) constraints: Option<ConstraintsModel>,
    #[tf(block, replace)]
    pub(crate) retry: Option<RetryModel>,
    /// `queued`, `running`, `terminating`, `succeeded` or `failed`.
    #[tf(computed, live)]
    pub(crate) execution_state: Option<String>,
    /// The exit code of the last attempt, once it ended.
    #[tf(computed, live)]
    pub(crate) exit_code: Option<i64>,
    /// When the last attempt started (RFC 3339).
    #[tf(computed, live)]
    pub(crate) start_time: Option<String>,
    /// When the job ended (RFC 3339).
    #[tf(computed, live)]
    pub(crate) end_time: Option<String>,
    /// What went wrong, one entry per failed attempt: `code` (`JobFailed`,
    /// `JobPreparationFailed`, `JobWallClockTimeExceeded`, `MountFailed`, `JobTerminated`,
    /// `InvalidContainerImage`, `ContainerRuntimeUnavailable`, `InvalidJobPath` (a path that
    /// leaves its mount root on the node), `NodeDeallocated` (a scale-down with
    /// `node_deallocation_option = terminate`), `CorruptRecord`, or, for a job that waited in
    /// vain, `ClusterUnusable` and `NodeCountUnattainable`), `message` (what happened, on which
    /// node, and what to do) and `details`, a map that for a failed process holds
    /// `exit_code`, `node`, `stdout_path`, `stderr_path` and `stderr_tail` (its last lines
    /// of stderr, secrets shown as `***`); for an MPI rank also `rank` and
    /// `mpirun_stderr_path`, or `ranks_with_stderr` and `ranks_path` when mpirun did not
    /// name the failing rank; for `ClusterUnusable` the first failing node's `node`,
    /// `stderr_tail` and log paths with `node_count`, `usable_nodes` and `unusable_nodes`.
    #[tf(computed, live)]
    pub(crate) errors: Option<Vec<ErrorModel>>,
    /// Attempts started: a retry counts, and so does a restart after a lost node.
    #[tf(computed, live)]
    pub(crate) attempts: Option<u32>,
    /// Where the job's logs are on this machine, known once the job is queued:
    /// `<std_out_err_path_prefix>/<job_output_directory_path_segment>/stdouterr` with the
    /// prefix resolved: through the cluster's directory mounts (a file server's export) when
    /// it starts with `$AZ_BATCHAI_MOUNT_ROOT`, else as the job's first node sees it (written
    /// with the variable until a node is assigned). Each process writes `stdout-<label>.txt`
    /// and `stderr-<label>.txt`, where the label is the node ID (e.g. `node-0`) for the
    /// node's main process (the script or command line; for MPI toolkits `mpirun` on the
    /// first node, which collects every rank's output) and `<node>-rank-N` (PyTorch ranks
    /// after the first), `<node>-worker-N` or `<node>-ps-N` (TensorFlow) for the others;
    /// `job_preparation` writes `stdout-job_prep-<node>.txt` and
    /// `stderr-job_prep-<node>.txt` on each node; MPI toolkits also keep each rank's own
    /// output in `mpi-<attempt>/1/rank.<N>/stdout` and `stderr`; and
    /// `metrics-<attempt>.jsonl` holds what the job appended to `$BATCHAI_METRICS_FILE` in
    /// each attempt. Follow a running job with `tail -f`. On Azure, where a node's disk goes
    /// with it, each node copies the logs (and output directories) it wrote off the mounts
    /// into the provider's control container when an attempt ends, under
    /// `files/<job_output_directory_path_segment>/<node>/stdouterr/` (and
    /// `.../<node>/outputs/<id>/`); this is then the URL of the master node's copies.
    #[tf(computed, live)]
    pub(crate) std_out_err_directory: Option<String>,
    /// The generated part of output and log paths, `<cluster>/jobs/<name>/<unique id>`.
    #[tf(computed)]
    pub(crate) job_output_directory_path_segment: Option<String>,
    /// What the job reported: it appends JSON objects, one per line, to
    /// `$BATCHAI_METRICS_FILE`; the last numeric value of each key is kept. While the job
    /// runs, a refresh shows what it reported so far.
    #[tf(computed, live)]
    pub(crate) metrics: Option<BTreeMap<String, f64>>,
    /// When the job was submitted (RFC 3339).
    #[tf(computed)]
    pub(crate) creation_time: Option<String>,
}

/// Run the job (and its preparation) in a container with the node's runtime (`docker` or
/// `podman`), with host networking and the job's directories mounted at the same paths. On a
/// node without a usable runtime the job fails with an error that says so.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct ContainerModel {
    #[tf(block, required)]
    pub image_source_registry: Option<RegistryModel>,
    /// Shared memory for the container, e.g. `8g` (`--shm-size`).
    #[tf(optional)]
    pub shm_size: Option<String>,
}

/// Where the image comes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct RegistryModel {
    /// The image, e.g. `python:3.12`.
    #[tf(required, validate = check_image, summary = "invalid image")]
    pub image: Option<String>,
    /// The registry, when not Docker Hub.
    #[tf(optional)]
    pub server_url: Option<String>,
}

/// A command that prepares each of the job's nodes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct JobPreparationModel {
    /// Run with `bash -c` on every node of the job before the toolkit starts, with the job's
    /// environment. Its failure fails the job, with its log.
    #[tf(required)]
    pub command_line: Option<String>,
}

/// Input directories the job reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct InputModel {
    /// Letters, digits and `_`: the job sees the path as `$AZ_BATCHAI_INPUT_<id>`.
    #[tf(required, validate = check_directory_id, summary = "invalid directory id")]
    pub id: Option<String>,
    /// An absolute path, or one below `$AZ_BATCHAI_MOUNT_ROOT` or
    /// `$AZ_BATCHAI_JOB_MOUNT_ROOT`.
    #[tf(required, validate = control::jobs::split_job_path, summary = "invalid path")]
    pub path: Option<String>,
}

/// Output directories, created before the job starts at
/// `<path_prefix>/<job_output_directory_path_segment>/<path_suffix>`. They stay when the job
/// is destroyed. On Azure, one that is not on a mounted file system is on the node's own disk,
/// which goes with the node: each node copies it into the control container when an attempt
/// ends (see `std_out_err_directory`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct OutputModel {
    /// Letters, digits and `_`: the job sees the path as `$AZ_BATCHAI_OUTPUT_<id>`.
    #[tf(required, validate = check_directory_id, summary = "invalid directory id")]
    pub id: Option<String>,
    /// An absolute path, or one below `$AZ_BATCHAI_MOUNT_ROOT` or
    /// `$AZ_BATCHAI_JOB_MOUNT_ROOT`.
    #[tf(required, validate = control::jobs::split_job_path, summary = "invalid path")]
    pub path_prefix: Option<String>,
    /// A relative path appended after the job's unique segment.
    #[tf(optional, validate = agent::setup::check_relative_path)]
    pub path_suffix: Option<String>,
}

/// Limits on the job.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct ConstraintsModel {
    /// The longest the job may run, as Batch AI's `d.hh:mm:ss`, an ISO 8601 duration
    /// (`PT2H`) or `1h30m`. Defaults to 7 days. A job that runs over is stopped and fails
    /// with `JobWallClockTimeExceeded`.
    #[tf(default = DEFAULT_MAX_WALL_CLOCK, validate = control::duration::parse)]
    pub max_wall_clock_time: Option<String>,
    /// How long the job may wait in the queue while its cluster cannot run it: its nodes
    /// fail to prepare (a setup task or mount fails on every node) and no usable node is
    /// left, or it needs more nodes than the cluster can ever have. Same notations as
    /// `max_wall_clock_time`; defaults to 5 minutes. The job then fails with
    /// `ClusterUnusable` (quoting the nodes' errors and log paths) or
    /// `NodeCountUnattainable`. Waiting for busy nodes is not counted.
    #[tf(default = DEFAULT_MAX_UNSCHEDULABLE, validate = control::duration::parse)]
    pub max_unschedulable_time: Option<String>,
    /// How long the job's processes have after SIGTERM to save their work (a checkpoint)
    /// before SIGKILL, whenever they are stopped: the job is destroyed or runs over its
    /// `max_wall_clock_time`, or a node leaving sends it back to the queue. Same notations as
    /// `max_wall_clock_time`, at most 1 hour; defaults to 10 seconds. A container gets the same
    /// period (`docker stop -t`). Destroying the job waits for it within the job's
    /// `timeouts.delete` (30 minutes by default); destroying its cluster stops every node
    /// within 20 s, whatever the period.
    #[tf(default = DEFAULT_TERMINATION_GRACE, validate = check_grace_period)]
    pub termination_grace_period: Option<String>,
}

/// A grace period the provider's own waits can afford.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GracePeriodError {
    #[error(transparent)]
    Notation(#[from] control::duration::ParseError),
    #[error("{0:?} is longer than 1 hour; a job gets at most 1 hour between SIGTERM and SIGKILL")]
    TooLong(String),
}

fn check_grace_period(text: &str) -> Result<(), GracePeriodError> {
    if control::duration::parse(text)? > std::time::Duration::from_secs(3600) {
        return Err(GracePeriodError::TooLong(text.to_owned()));
    }
    Ok(())
}

/// Runs a failed job again. A node lost mid-job always sends the job back to the queue
/// without using a retry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct RetryModel {
    /// How many times a failed job runs again (0 to 100).
    #[tf(required, range(0, 100))]
    pub max_retries: Option<u32>,
    /// Only these exit codes are retried; any failure when unset.
    #[tf(optional)]
    pub retry_on_exit_codes: Option<Vec<i32>>,
}

/// Why an image reference cannot be handed to the container runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("the image is empty; name one, e.g. \"python:3.12\"")]
    Empty,
    #[error(
        "{0:?} starts with `-`, which the container runtime would take as an option; name an image, e.g. \"python:3.12\""
    )]
    LooksLikeAnOption(String),
    #[error("{0:?} contains whitespace or control characters, which no image reference has")]
    NotAReference(String),
}

/// A container image reference as the runtime receives it, as one argument: one that starts
/// with `-` would be read as an option (`--privileged`), and whitespace or control characters
/// are never part of a reference.
pub fn check_image(image: &str) -> Result<(), ImageError> {
    if image.is_empty() {
        return Err(ImageError::Empty);
    }
    if image.starts_with('-') {
        return Err(ImageError::LooksLikeAnOption(image.to_owned()));
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ImageError::NotAReference(image.to_owned()));
    }
    Ok(())
}

/// A directory ID that cannot be part of an environment variable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} must be letters, digits and `_` (it becomes part of an environment variable name)")]
pub struct DirectoryIdError(String);

/// A directory's `id`, which names its `$AZ_BATCHAI_INPUT_<id>` or `$AZ_BATCHAI_OUTPUT_<id>`.
fn check_directory_id(id: &str) -> Result<(), DirectoryIdError> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(())
    } else {
        Err(DirectoryIdError(id.to_owned()))
    }
}

/// Two input (or two output) directories with one ID would set one variable twice. IDs not
/// known yet, or invalid (reported by their validator), are skipped.
fn unique_directory_ids(job: &JobModel) -> Diagnostics {
    let mut diags = Diagnostics::new();
    let inputs = job.input_directories.iter().map(|d| d.id.as_deref());
    let outputs = job.output_directories.iter().map(|d| d.id.as_deref());
    let lists: [(&str, Vec<Option<&str>>); 2] = [
        ("input_directories", inputs.collect()),
        ("output_directories", outputs.collect()),
    ];
    for (kind, ids) in lists {
        let mut seen = BTreeSet::new();
        for (i, id) in ids.into_iter().enumerate() {
            let Some(id) = id.filter(|id| check_directory_id(id).is_ok()) else {
                continue;
            };
            if !seen.insert(id) {
                diags.push(
                    Diagnostic::error(
                        "duplicate directory id",
                        format!("{id:?} is used twice in {kind}"),
                    )
                    .at(AttributePath::attrs([kind])
                        .index(i64::try_from(i).unwrap_or(i64::MAX))
                        .attr("id")),
                );
            }
        }
    }
    diags
}
