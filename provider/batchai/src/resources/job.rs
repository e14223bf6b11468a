//! `batchai_job`: a training run on a cluster, gang-scheduled on `node_count` nodes with one of
//! Batch AI's toolkits. Jobs are immutable: every argument but `wait_for_completion` and
//! `timeouts` forces replacement. Apply waits for the job by default, and a failed job is an
//! error whose state is kept, so Terraform taints it and the next apply runs it again.
use std::collections::BTreeMap;
use std::time::Duration;

use control::jobs::{
    Container, InputDirectory, JobSpec, JobState, OutputDirectory, Priority, Retry, Script, Toolkit,
};
use control::records::{self, NodeError};
use serde::{Deserialize, Serialize};
use tfplug::model::{decode, encode};
use tfplug::{
    ApplyRequest, ApplyResult, Attribute, AttributePath, Block, BoxFuture, ClientCapabilities,
    Context, Diagnostic, Diagnostics, DynResource, NestedBlock, Nesting, Plan, PlanRequest,
    ReadResult, Schema, TimeoutDefaults, Type, Value,
};

use super::mounts::MountVolumesModel;
use crate::Client;
use crate::names::Name;
use crate::platform::{JobView, PlatformError};

pub const TYPE_NAME: &str = "batchai_job";
const DEFAULT_MAX_WALL_CLOCK: &str = "7.00:00:00";
/// The default of `constraints.max_unschedulable_time`: [`control::jobs::DEFAULT_MAX_UNSCHEDULABLE_MS`].
const DEFAULT_MAX_UNSCHEDULABLE: &str = "00:05:00";
/// Toolkit blocks: a job sets exactly one.
const TOOLKITS: [&str; 9] = [
    "custom_toolkit",
    "custom_mpi",
    "horovod",
    "chainer",
    "cntk",
    "pytorch",
    "tensorflow",
    "caffe",
    "caffe2",
];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Model {
    pub id: Option<String>,
    pub name: Option<String>,
    pub cluster_id: Option<String>,
    pub node_count: Option<u32>,
    pub scheduling_priority: Option<String>,
    pub custom_toolkit: Option<CommandModel>,
    pub custom_mpi: Option<CommandModel>,
    pub horovod: Option<ScriptModel>,
    pub chainer: Option<ScriptModel>,
    pub cntk: Option<ScriptModel>,
    pub pytorch: Option<ScriptModel>,
    pub tensorflow: Option<ScriptModel>,
    pub caffe: Option<ScriptModel>,
    pub caffe2: Option<ScriptModel>,
    pub container_settings: Option<ContainerModel>,
    pub job_preparation: Option<CommandModel>,
    #[serde(default)]
    pub input_directories: Vec<InputModel>,
    #[serde(default)]
    pub output_directories: Vec<OutputModel>,
    pub std_out_err_path_prefix: Option<String>,
    pub environment_variables: Option<BTreeMap<String, String>>,
    pub secrets_wo: Option<BTreeMap<String, String>>,
    pub secrets_wo_version: Option<i64>,
    pub mount_volumes: Option<MountVolumesModel>,
    pub constraints: Option<ConstraintsModel>,
    pub retry: Option<RetryModel>,
    pub wait_for_completion: Option<bool>,
    pub execution_state: Option<String>,
    pub exit_code: Option<i64>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub errors: Option<Vec<super::ErrorModel>>,
    pub attempts: Option<u32>,
    pub job_output_directory_path_segment: Option<String>,
    pub std_out_err_directory: Option<String>,
    pub metrics: Option<BTreeMap<String, f64>>,
    pub creation_time: Option<String>,
    pub timeouts: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct CommandModel {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_count: Option<u32>,
}

/// Every script toolkit's block; each uses the fields its schema has. Unset fields are left
/// out when encoding, and the encoder makes every attribute the schema has but the model does
/// not null.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ScriptModel {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python_script_file_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python_interpreter_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_line_args: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub communication_backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_command_line_args: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_command_line_args: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter_server_command_line_args: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter_server_count: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ContainerModel {
    pub image_source_registry: Option<RegistryModel>,
    pub shm_size: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RegistryModel {
    pub image: Option<String>,
    pub server_url: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct InputModel {
    pub id: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct OutputModel {
    pub id: Option<String>,
    pub path_prefix: Option<String>,
    pub path_suffix: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ConstraintsModel {
    pub max_wall_clock_time: Option<String>,
    pub max_unschedulable_time: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RetryModel {
    pub max_retries: Option<u32>,
    pub retry_on_exit_codes: Option<Vec<i32>>,
}

fn block(attributes: Vec<Attribute>, description: &str) -> Block {
    Block::new(attributes, vec![]).description(description)
}

fn script_attr() -> Attribute {
    Attribute::required("python_script_file_path", Type::String).description(
        "The Python script to run; may use `$AZ_BATCHAI_MOUNT_ROOT` and other job variables.",
    )
}

fn interpreter_attr() -> Attribute {
    Attribute::optional("python_interpreter_path", Type::String)
        .description("The Python interpreter; `python3` on the node's PATH when unset.")
}

fn args_attr() -> Attribute {
    Attribute::optional("command_line_args", Type::String)
        .description("Arguments for the script, interpreted by `bash` on the node.")
}

fn process_count_attr() -> Attribute {
    Attribute::optional("process_count", Type::Number)
        .description("Processes (ranks) to start in all, spread evenly over the nodes. Defaults to `node_count`.")
}

fn toolkit_blocks() -> Vec<NestedBlock> {
    let single = |name: &str, b: Block| NestedBlock::optional_single(name, b).force_new();
    vec![
        single(
            "custom_toolkit",
            block(
                vec![
                    Attribute::required("command_line", Type::String).description(
                        "Run with `bash -c` on the master node (the first of the job's nodes).",
                    ),
                ],
                "A command on the master node only; the other nodes are held for it.",
            ),
        ),
        single(
            "custom_mpi",
            block(
                vec![
                    Attribute::required("command_line", Type::String).description(
                        "What `mpirun` starts on every rank, e.g. `python3 train.py`. Ranks see \
                         `OMPI_COMM_WORLD_RANK` and the job's environment.",
                    ),
                    process_count_attr(),
                ],
                "A command started by OpenMPI's `mpirun` across the job's nodes, with \
                 `$AZ_BATCHAI_MPI_HOST_FILE` as the hostfile. Needs `mpirun` (Debian \
                 `openmpi-bin`) on the nodes.",
            ),
        ),
        single(
            "horovod",
            block(
                vec![
                    script_attr(),
                    interpreter_attr(),
                    args_attr(),
                    process_count_attr(),
                ],
                "A Horovod script, started with `mpirun` on every rank.",
            ),
        ),
        single(
            "chainer",
            block(
                vec![
                    script_attr(),
                    interpreter_attr(),
                    args_attr(),
                    process_count_attr(),
                ],
                "A ChainerMN script, started with `mpirun` on every rank.",
            ),
        ),
        single(
            "cntk",
            block(
                vec![
                    Attribute::optional_computed("language_type", Type::String).description(
                        "`python` (the default) runs `python_script_file_path`; `brainscript` \
                         runs `cntk configFile=<config_file_path>`.",
                    ),
                    Attribute::optional("config_file_path", Type::String)
                        .description("The BrainScript configuration file."),
                    Attribute::optional("python_script_file_path", Type::String)
                        .description("The Python script (language `python`)."),
                    interpreter_attr(),
                    args_attr(),
                    process_count_attr(),
                ],
                "A CNTK job, started with `mpirun` on every rank.",
            ),
        ),
        single(
            "pytorch",
            block(
                vec![
                    script_attr(),
                    interpreter_attr(),
                    args_attr(),
                    process_count_attr(),
                    Attribute::optional("communication_backend", Type::String).description(
                        "`gloo` (the default), `nccl`, `tcp` or `mpi`. With `mpi` the ranks are \
                         started by `mpirun`; otherwise each node starts its share with `RANK`, \
                         `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` and `MASTER_PORT` set.",
                    ),
                ],
                "A PyTorch distributed job: one process per rank with the rendezvous variables \
                 (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`, \
                 `AZ_BATCHAI_PYTORCH_INIT_METHOD`).",
            ),
        ),
        single(
            "tensorflow",
            block(
                vec![
                    script_attr(),
                    interpreter_attr(),
                    Attribute::optional("master_command_line_args", Type::String)
                        .description("Arguments for worker 0 (the master)."),
                    Attribute::optional("worker_command_line_args", Type::String)
                        .description("Arguments for the other workers."),
                    Attribute::optional("parameter_server_command_line_args", Type::String)
                        .description("Arguments for the parameter servers."),
                    Attribute::optional("worker_count", Type::Number)
                        .description("Workers in all; defaults to `node_count`."),
                    Attribute::optional("parameter_server_count", Type::Number).description(
                        "Parameter servers in all, at most `node_count`; defaults to 1 for \
                         distributed jobs and 0 otherwise.",
                    ),
                ],
                "Distributed TensorFlow: workers and parameter servers spread over the nodes, \
                 each with `TF_CONFIG`, `AZ_BATCHAI_PS_HOSTS`, `AZ_BATCHAI_WORKER_HOSTS` and \
                 `AZ_BATCHAI_TASK_INDEX`. The job ends when every worker has; parameter servers \
                 are then stopped.",
            ),
        ),
        single(
            "caffe",
            block(
                vec![
                    Attribute::optional("config_file_path", Type::String)
                        .description("The solver: runs `caffe train --solver=<path>`."),
                    Attribute::optional("python_script_file_path", Type::String)
                        .description("A pycaffe script, instead of `config_file_path`."),
                    interpreter_attr(),
                    args_attr(),
                    process_count_attr(),
                ],
                "A Caffe job: set exactly one of `config_file_path` and \
                 `python_script_file_path`. More than one process runs under `mpirun`.",
            ),
        ),
        single(
            "caffe2",
            block(
                vec![script_attr(), interpreter_attr(), args_attr()],
                "A Caffe2 script on the master node.",
            ),
        ),
    ]
}

fn schema() -> Schema {
    let container = Block::new(
        vec![
            Attribute::optional("shm_size", Type::String)
                .description("Shared memory for the container, e.g. `8g` (`--shm-size`)."),
        ],
        vec![NestedBlock::required_single(
            "image_source_registry",
            block(
                vec![
                    Attribute::required("image", Type::String)
                        .description("The image, e.g. `python:3.12`."),
                    Attribute::optional("server_url", Type::String)
                        .description("The registry, when not Docker Hub."),
                ],
                "Where the image comes from.",
            ),
        )],
    )
    .description(
        "Run the job (and its preparation) in a container with the node's runtime (`docker` or \
         `podman`), with host networking and the job's directories mounted at the same paths. \
         On a node without a usable runtime the job fails with an error that says so.",
    );
    let mut blocks = toolkit_blocks();
    blocks.extend([
        NestedBlock::optional_single("container_settings", container).force_new(),
        NestedBlock::optional_single(
            "job_preparation",
            block(
                vec![Attribute::required("command_line", Type::String).description(
                    "Run with `bash -c` on every node of the job before the toolkit starts, with \
                     the job's environment. Its failure fails the job, with its log.",
                )],
                "A command that prepares each of the job's nodes.",
            ),
        )
        .force_new(),
        NestedBlock::new(
            "input_directories",
            Nesting::List,
            block(
                vec![
                    Attribute::required("id", Type::String).description(
                        "Letters, digits and `_`: the job sees the path as `$AZ_BATCHAI_INPUT_<id>`.",
                    ),
                    Attribute::required("path", Type::String).description(
                        "An absolute path, or one below `$AZ_BATCHAI_MOUNT_ROOT` or \
                         `$AZ_BATCHAI_JOB_MOUNT_ROOT`.",
                    ),
                ],
                "Input directories the job reads.",
            ),
        )
        .force_new(),
        NestedBlock::new(
            "output_directories",
            Nesting::List,
            block(
                vec![
                    Attribute::required("id", Type::String).description(
                        "Letters, digits and `_`: the job sees the path as `$AZ_BATCHAI_OUTPUT_<id>`.",
                    ),
                    Attribute::required("path_prefix", Type::String).description(
                        "An absolute path, or one below `$AZ_BATCHAI_MOUNT_ROOT` or \
                         `$AZ_BATCHAI_JOB_MOUNT_ROOT`.",
                    ),
                    Attribute::optional("path_suffix", Type::String)
                        .description("A relative path appended after the job's unique segment."),
                ],
                "Output directories, created before the job starts at \
                 `<path_prefix>/<job_output_directory_path_segment>/<path_suffix>`. They stay \
                 when the job is destroyed.",
            ),
        )
        .force_new(),
        NestedBlock::optional_single(
            "mount_volumes",
            Block::description(<MountVolumesModel as tfplug::Model>::block(), "Volumes mounted under `$AZ_BATCHAI_JOB_MOUNT_ROOT` on the job's nodes for the \
                 run only.",
            ),
        )
        .force_new(),
        NestedBlock::optional_single(
            "constraints",
            block(
                vec![
                    Attribute::optional_computed("max_wall_clock_time", Type::String).description(
                        "The longest the job may run, as Batch AI's `d.hh:mm:ss`, an ISO 8601 \
                         duration (`PT2H`) or `1h30m`. Defaults to 7 days. A job that runs over \
                         is stopped and fails with `JobWallClockTimeExceeded`.",
                    ),
                    Attribute::optional_computed("max_unschedulable_time", Type::String)
                        .description(
                            "How long the job may wait in the queue while its cluster cannot run \
                             it: its nodes fail to prepare (a setup task or mount fails on every \
                             node) and no usable node is left, or it needs more nodes than the \
                             cluster can ever have. Same notations as `max_wall_clock_time`; \
                             defaults to 5 minutes. The job then fails with `ClusterUnusable` \
                             (quoting the nodes' errors and log paths) or \
                             `NodeCountUnattainable`. Waiting for busy nodes is not counted.",
                        ),
                ],
                "Limits on the job.",
            ),
        )
        .force_new(),
        NestedBlock::optional_single(
            "retry",
            block(
                vec![
                    Attribute::required("max_retries", Type::Number)
                        .description("How many times a failed job runs again (0 to 100)."),
                    Attribute::optional("retry_on_exit_codes", Type::list(Type::Number)).description(
                        "Only these exit codes are retried; any failure when unset.",
                    ),
                ],
                "Runs a failed job again. A node lost mid-job always sends the job back to the \
                 queue without using a retry.",
            ),
        )
        .force_new(),
    ]);

    let mut attributes = vec![
        Attribute::computed("id", Type::String)
            .description("The job's ID, `local/clusters/<cluster>/jobs/<name>` on the local platform."),
        Attribute::required("name", Type::String).force_new().description(
            "Name of the job, unique in its cluster: 1 to 64 letters, digits, `-` or `_`.",
        ),
        Attribute::required("cluster_id", Type::String)
            .force_new()
            .description("The `id` of the `batchai_cluster` that runs the job."),
        Attribute::optional_computed("node_count", Type::Number).force_new().description(
            "Nodes the job runs on, all at once (gang scheduling): it starts only when that many \
             nodes are free. Defaults to 1.",
        ),
        Attribute::optional_computed("scheduling_priority", Type::String).force_new().description(
            "`low`, `normal` (the default) or `high`. Higher priority jobs start first; within a \
             priority, first come first served. A large job at the head of the queue reserves \
             nodes as they free up; smaller jobs only backfill where they cannot delay it.",
        ),
        Attribute::optional("std_out_err_path_prefix", Type::String).force_new().description(
            "Where stdout and stderr go: `<prefix>/<job_output_directory_path_segment>/stdouterr/`. \
             An absolute path, or one below `$AZ_BATCHAI_MOUNT_ROOT` or \
             `$AZ_BATCHAI_JOB_MOUNT_ROOT`. Defaults to `jobs/` under the provider's root.",
        ),
        Attribute::optional("environment_variables", Type::map(Type::String))
            .force_new()
            .description("Environment variables for the job and its preparation."),
        Attribute::optional("secrets_wo", Type::map(Type::String))
            .sensitive()
            .write_only()
            .description(
                "Environment variables with secret values. Write-only: never stored in Terraform \
                 state or plans (Terraform 1.11 or later). The provider keeps them apart from \
                 the job's spec, removes them when the job ends, and never logs them. Change \
                 `secrets_wo_version` to submit new values.",
            ),
        Attribute::optional("secrets_wo_version", Type::Number).force_new().description(
            "Any number; changing it replaces the job with the current `secrets_wo`.",
        ),
        Attribute::optional_computed("wait_for_completion", Type::Bool).description(
            "Whether apply waits for the job to end (the default) or returns once it is queued. \
             A failed job fails the apply and is replaced by the next one. Changes apply in \
             place.",
        ),
        Attribute::computed("execution_state", Type::String)
            .description("`queued`, `running`, `terminating`, `succeeded` or `failed`."),
        Attribute::computed("exit_code", Type::Number)
            .description("The exit code of the last attempt, once it ended."),
        Attribute::computed("start_time", Type::String)
            .description("When the last attempt started (RFC 3339)."),
        Attribute::computed("end_time", Type::String)
            .description("When the job ended (RFC 3339)."),
        Attribute::computed(
            "errors",
            Type::list(Type::object([
                ("code", Type::String),
                ("message", Type::String),
                ("details", Type::map(Type::String)),
            ])),
        )
        .description(
            "What went wrong, one entry per failed attempt: `code` (`JobFailed`, \
             `JobPreparationFailed`, `JobWallClockTimeExceeded`, `MountFailed`, \
             `JobTerminated`, `InvalidContainerImage`, `CorruptRecord`, or, for a job that \
             waited in vain, `ClusterUnusable` and `NodeCountUnattainable`), `message` (what \
             happened, on which node, and what to do) and `details`, a map that for a failed \
             process holds `exit_code`, `node`, `stdout_path`, `stderr_path` and `stderr_tail` \
             (its last lines of stderr, secrets shown as `***`); for an MPI rank also `rank` \
             and `mpirun_stderr_path`, or `ranks_with_stderr` and `ranks_path` when mpirun did \
             not name the failing rank; for `ClusterUnusable` the first failing node's \
             `node`, `stderr_tail` and log paths with `node_count`, `usable_nodes` and \
             `unusable_nodes`.",
        ),
        Attribute::computed("attempts", Type::Number).description(
            "Attempts started: a retry counts, and so does a restart after a lost node.",
        ),
        Attribute::computed("std_out_err_directory", Type::String).description(
            "Where the job's logs are on this machine, known once the job is queued: \
             `<std_out_err_path_prefix>/<job_output_directory_path_segment>/stdouterr` with the \
             prefix resolved: through the cluster's directory mounts (a file server's export) \
             when it starts with `$AZ_BATCHAI_MOUNT_ROOT`, else as the job's first node sees it \
             (written with the variable until a node is assigned). Each process writes `stdout-<label>.txt` and \
             `stderr-<label>.txt`, where the label is the node ID (e.g. `node-0`) for the \
             node's main process (the script or command line; for MPI toolkits `mpirun` on the \
             first node, which collects every rank's output) and `<node>-rank-N` (PyTorch \
             ranks after the first), `<node>-worker-N` or `<node>-ps-N` (TensorFlow) for the \
             others; `job_preparation` writes `stdout-job_prep-<node>.txt` and \
             `stderr-job_prep-<node>.txt` on each node; MPI toolkits also keep each rank's own \
             output in `mpi-<attempt>/1/rank.<N>/stdout` and `stderr`; and \
             `metrics-<attempt>.jsonl` holds what the job appended to `$BATCHAI_METRICS_FILE` \
             in each attempt. Follow a running job with `tail -f`.",
        ),
        Attribute::computed("job_output_directory_path_segment", Type::String).description(
            "The generated part of output and log paths, `<cluster>/jobs/<name>/<unique id>`.",
        ),
        Attribute::computed("metrics", Type::map(Type::Number)).description(
            "What the job reported: it appends JSON objects, one per line, to \
             `$BATCHAI_METRICS_FILE`; the last numeric value of each key is kept. While the \
             job runs, a refresh shows what it reported so far.",
        ),
        Attribute::computed("creation_time", Type::String)
            .description("When the job was submitted (RFC 3339)."),
    ];
    attributes.sort_by_key(|a| a.computed);
    Schema::new(0, Block::new(attributes, blocks).description(
        "A Batch AI job: a training run of one toolkit on `node_count` nodes of a cluster, with \
         its environment, inputs, outputs, logs and metrics. Jobs are immutable: changing an \
         argument (except `wait_for_completion` and `timeouts`) replaces the job, and the plan \
         says which. Destroying a running job terminates it (SIGTERM, 10 s, SIGKILL); its \
         outputs and logs stay.",
    ))
}

/// The `batchai_job` resource.
#[derive(Debug)]
pub struct JobResource;

fn type_of() -> Type {
    tfplug::server::resource_schema::<Client>(&JobResource).implied_type()
}

pub fn job_id(cluster: &str, job: &str) -> String {
    format!("{}/jobs/{job}", super::cluster::cluster_id_str(cluster))
}

/// Parses `local/clusters/<cluster>/jobs/<job>`.
pub fn parse_id(id: &str) -> Result<(Name, Name), String> {
    let bad =
        || format!("{id:?} is not a job ID; IDs look like \"local/clusters/<cluster>/jobs/<job>\"");
    let (cluster_id, job) = id.rsplit_once("/jobs/").ok_or_else(bad)?;
    let cluster = super::cluster::parse_id(cluster_id).map_err(|_| bad())?;
    Ok((cluster, Name::parse(job).map_err(|e| e.to_string())?))
}

fn at(path: &[&str]) -> AttributePath {
    AttributePath::attrs(path.iter().copied())
}

fn present(config: &Value, name: &str) -> bool {
    config.get_attr(name).is_some_and(|v| !v.is_null())
}

fn str_at<'a>(config: &'a Value, path: &[&str]) -> Option<&'a str> {
    super::value_at(config, path)?.as_str()
}

fn int_at(config: &Value, path: &[&str]) -> Option<i64> {
    super::value_at(config, path)?.as_number()?.as_i64()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Configuration checks without I/O; unknown values are skipped and checked again at apply.
pub(crate) fn validate_config(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    let mut error = |summary: &str, detail: String, path: AttributePath| {
        diags.push(Diagnostic::error(summary, detail).at(path));
    };
    if let Some(name) = str_at(config, &["name"])
        && let Err(e) = Name::parse(name)
    {
        error("invalid job name", e.to_string(), at(&["name"]));
    }
    if let Some(id) = str_at(config, &["cluster_id"])
        && let Err(e) = super::cluster::parse_id(id)
    {
        error("invalid cluster_id", e.to_string(), at(&["cluster_id"]));
    }
    let node_count = int_at(config, &["node_count"]);
    if let Some(n) = node_count
        && !(1..=1000).contains(&n)
    {
        error(
            "invalid node_count",
            format!("node_count is {n}; a job runs on 1 to 1000 nodes"),
            at(&["node_count"]),
        );
    }
    if let Some(p) = str_at(config, &["scheduling_priority"])
        && Priority::parse(p).is_none()
    {
        error(
            "invalid scheduling_priority",
            format!("{p:?} is not a priority; use \"low\", \"normal\" or \"high\""),
            at(&["scheduling_priority"]),
        );
    }
    // Unknown blocks (from dynamic blocks) are counted as set; exactly one must be.
    let set: Vec<&str> = TOOLKITS
        .iter()
        .copied()
        .filter(|t| present(config, t))
        .collect();
    if set.len() != 1 && !config.is_unknown() {
        let detail = if set.is_empty() {
            format!(
                "a job needs exactly one toolkit block; add one of: {}",
                TOOLKITS.join(", ")
            )
        } else {
            format!(
                "a job runs exactly one toolkit, but {} are set; keep one",
                set.join(" and ")
            )
        };
        let path = set.get(1).map_or_else(AttributePath::root, |t| at(&[t]));
        error("exactly one toolkit block", detail, path);
    }
    for toolkit in &set {
        if let Some(n) = int_at(config, &[toolkit, "process_count"])
            && !(1..=100_000).contains(&n)
        {
            error(
                "invalid process_count",
                format!("process_count is {n}; it must be at least 1"),
                at(&[toolkit, "process_count"]),
            );
        }
    }
    if let Some(b) = str_at(config, &["pytorch", "communication_backend"])
        && !["gloo", "nccl", "tcp", "mpi"].contains(&b.to_ascii_lowercase().as_str())
    {
        error(
            "invalid communication_backend",
            format!("{b:?} is not a backend; use \"gloo\", \"nccl\", \"tcp\" or \"mpi\""),
            at(&["pytorch", "communication_backend"]),
        );
    }
    if present(config, "cntk") {
        let language = str_at(config, &["cntk", "language_type"]).map(str::to_ascii_lowercase);
        match language.as_deref() {
            None | Some("python") => {
                if config
                    .get_attr("cntk")
                    .and_then(|c| c.get_attr("python_script_file_path"))
                    .is_some_and(Value::is_null)
                {
                    error(
                        "missing python_script_file_path",
                        "a cntk job in Python needs python_script_file_path".to_owned(),
                        at(&["cntk", "python_script_file_path"]),
                    );
                }
            }
            Some("brainscript") => {
                if config
                    .get_attr("cntk")
                    .and_then(|c| c.get_attr("config_file_path"))
                    .is_some_and(Value::is_null)
                {
                    error(
                        "missing config_file_path",
                        "a cntk job in BrainScript needs config_file_path".to_owned(),
                        at(&["cntk", "config_file_path"]),
                    );
                }
            }
            Some(other) => error(
                "invalid language_type",
                format!("{other:?} is not a CNTK language; use \"python\" or \"brainscript\""),
                at(&["cntk", "language_type"]),
            ),
        }
    }
    if let Some(caffe) = config
        .get_attr("caffe")
        .filter(|c| !c.is_null() && !c.is_unknown())
    {
        let config_set = caffe
            .get_attr("config_file_path")
            .is_some_and(|v| !v.is_null());
        let script_set = caffe
            .get_attr("python_script_file_path")
            .is_some_and(|v| !v.is_null());
        if config_set == script_set {
            error(
                "invalid caffe block",
                "set exactly one of config_file_path and python_script_file_path".to_owned(),
                at(&["caffe"]),
            );
        }
    }
    if let (Some(ps), Some(n)) = (
        int_at(config, &["tensorflow", "parameter_server_count"]),
        node_count.or(Some(1)),
    ) && ps > n
    {
        error(
            "invalid parameter_server_count",
            format!("parameter_server_count ({ps}) may be at most node_count ({n})"),
            at(&["tensorflow", "parameter_server_count"]),
        );
    }
    for field in ["max_wall_clock_time", "max_unschedulable_time"] {
        if let Some(limit) = str_at(config, &["constraints", field])
            && let Err(e) = control::duration::parse(limit)
        {
            // The parser's message already says which notations are accepted.
            error(
                &format!("invalid {field}"),
                e.to_string(),
                at(&["constraints", field]),
            );
        }
    }
    if let Some(n) = int_at(config, &["retry", "max_retries"])
        && !(0..=100).contains(&n)
    {
        error(
            "invalid max_retries",
            format!("max_retries is {n}; use 0 to 100"),
            at(&["retry", "max_retries"]),
        );
    }
    if let Some(image) = str_at(
        config,
        &["container_settings", "image_source_registry", "image"],
    ) && let Err(e) = check_image(image)
    {
        error(
            "invalid image",
            e,
            at(&["container_settings", "image_source_registry", "image"]),
        );
    }
    let check_path = |path: &str| control::jobs::split_job_path(path).map(|_| ());
    if let Some(p) = str_at(config, &["std_out_err_path_prefix"])
        && let Err(e) = check_path(p)
    {
        error(
            "invalid std_out_err_path_prefix",
            e.to_string(),
            at(&["std_out_err_path_prefix"]),
        );
    }
    for (kind, attr) in [
        ("input_directories", "path"),
        ("output_directories", "path_prefix"),
    ] {
        let Some(Value::List(items)) = config.get_attr(kind) else {
            continue;
        };
        let mut seen = std::collections::BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            let base = AttributePath::attrs([kind]).index(i64::try_from(i).unwrap_or(0));
            if let Some(id) = item.get_attr("id").and_then(Value::as_str) {
                if !valid_id(id) {
                    error(
                        "invalid directory id",
                        format!(
                            "{id:?} must be letters, digits and `_` (it becomes part of an environment variable name)"
                        ),
                        base.clone().attr("id"),
                    );
                } else if !seen.insert(id.to_owned()) {
                    error(
                        "duplicate directory id",
                        format!("{id:?} is used twice in {kind}"),
                        base.clone().attr("id"),
                    );
                }
            }
            if let Some(p) = item.get_attr(attr).and_then(Value::as_str)
                && let Err(e) = check_path(p)
            {
                error("invalid path", e.to_string(), base.clone().attr(attr));
            }
            if let Some(s) = item.get_attr("path_suffix").and_then(Value::as_str)
                && let Err(e) = agent::setup::check_relative_path(s)
            {
                error(
                    "invalid path_suffix",
                    e.to_string(),
                    base.attr("path_suffix"),
                );
            }
        }
    }
    diags
}

/// A container image reference as the runtime receives it, as one argument: one that starts
/// with `-` would be read as an option (`--privileged`), and whitespace or control characters
/// are never part of a reference.
fn check_image(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("the image is empty; name one, e.g. \"python:3.12\"".to_owned());
    }
    if image.starts_with('-') {
        return Err(format!(
            "{image:?} starts with `-`, which the container runtime would take as an option; name an image, e.g. \"python:3.12\""
        ));
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{image:?} contains whitespace or control characters, which no image reference has"
        ));
    }
    Ok(())
}

/// The defaults the plan shows, applied again at apply so state matches the plan.
fn apply_defaults(model: &mut Model) {
    model.node_count.get_or_insert(1);
    model
        .scheduling_priority
        .get_or_insert_with(|| "normal".to_owned());
    model.wait_for_completion.get_or_insert(true);
    if let Some(c) = &mut model.constraints {
        c.max_wall_clock_time
            .get_or_insert_with(|| DEFAULT_MAX_WALL_CLOCK.to_owned());
        c.max_unschedulable_time
            .get_or_insert_with(|| DEFAULT_MAX_UNSCHEDULABLE.to_owned());
    }
    if let Some(c) = &mut model.cntk {
        c.language_type.get_or_insert_with(|| "python".to_owned());
    }
}

fn script(m: &ScriptModel) -> Script {
    Script {
        python_script_file_path: m.python_script_file_path.clone().unwrap_or_default(),
        python_interpreter_path: m.python_interpreter_path.clone(),
        command_line_args: m.command_line_args.clone(),
    }
}

fn toolkit_from(model: &Model) -> Result<Toolkit, Diagnostics> {
    let t = if let Some(m) = &model.custom_toolkit {
        Toolkit::CustomToolkit {
            command_line: m.command_line.clone().unwrap_or_default(),
        }
    } else if let Some(m) = &model.custom_mpi {
        Toolkit::CustomMpi {
            command_line: m.command_line.clone().unwrap_or_default(),
            process_count: m.process_count,
        }
    } else if let Some(m) = &model.horovod {
        Toolkit::Horovod {
            script: script(m),
            process_count: m.process_count,
        }
    } else if let Some(m) = &model.chainer {
        Toolkit::Chainer {
            script: script(m),
            process_count: m.process_count,
        }
    } else if let Some(m) = &model.cntk {
        Toolkit::Cntk {
            language_type: m
                .language_type
                .clone()
                .unwrap_or_else(|| "python".to_owned())
                .to_ascii_lowercase(),
            config_file_path: m.config_file_path.clone(),
            script: script(m),
            process_count: m.process_count,
        }
    } else if let Some(m) = &model.pytorch {
        Toolkit::Pytorch {
            script: script(m),
            process_count: m.process_count,
            communication_backend: m.communication_backend.clone(),
        }
    } else if let Some(m) = &model.tensorflow {
        Toolkit::Tensorflow {
            script: script(m),
            master_command_line_args: m.master_command_line_args.clone(),
            worker_command_line_args: m.worker_command_line_args.clone(),
            parameter_server_command_line_args: m.parameter_server_command_line_args.clone(),
            worker_count: m.worker_count,
            parameter_server_count: m.parameter_server_count,
        }
    } else if let Some(m) = &model.caffe {
        Toolkit::Caffe {
            config_file_path: m.config_file_path.clone(),
            script: script(m),
            process_count: m.process_count,
        }
    } else if let Some(m) = &model.caffe2 {
        Toolkit::Caffe2 { script: script(m) }
    } else {
        return Err(Diagnostic::error(
            "exactly one toolkit block",
            format!(
                "a job needs exactly one toolkit block; add one of: {}",
                TOOLKITS.join(", ")
            ),
        )
        .into());
    };
    Ok(t)
}

/// Builds the job as agents run it from a wholly known configuration.
async fn spec_from(client: &Client, model: &Model) -> Result<(JobSpec, Name), Diagnostics> {
    let name = Name::parse(model.name.as_deref().unwrap_or_default())
        .map_err(|e| Diagnostic::error("invalid job name", e.to_string()).at(at(&["name"])))?;
    let cluster = super::cluster::parse_id(model.cluster_id.as_deref().unwrap_or_default())
        .map_err(|e| {
            Diagnostic::error("invalid cluster_id", e.to_string()).at(at(&["cluster_id"]))
        })?;
    let limit = model
        .constraints
        .as_ref()
        .and_then(|c| c.max_wall_clock_time.as_deref())
        .unwrap_or(DEFAULT_MAX_WALL_CLOCK);
    let max_wall_clock = control::duration::parse(limit).map_err(|e| {
        Diagnostic::error("invalid max_wall_clock_time", e.to_string())
            .at(at(&["constraints", "max_wall_clock_time"]))
    })?;
    let unschedulable = model
        .constraints
        .as_ref()
        .and_then(|c| c.max_unschedulable_time.as_deref())
        .unwrap_or(DEFAULT_MAX_UNSCHEDULABLE);
    let max_unschedulable = control::duration::parse(unschedulable).map_err(|e| {
        Diagnostic::error("invalid max_unschedulable_time", e.to_string())
            .at(at(&["constraints", "max_unschedulable_time"]))
    })?;
    let environment_variables = model.environment_variables.clone().unwrap_or_default();
    let spec = JobSpec {
        format: records::FORMAT,
        name: name.to_string(),
        cluster: cluster.to_string(),
        uid: super::unique_segment(),
        created_ms: records::now_ms(),
        node_count: model.node_count.unwrap_or(1),
        priority: model
            .scheduling_priority
            .as_deref()
            .and_then(Priority::parse)
            .unwrap_or_default(),
        toolkit: toolkit_from(model)?,
        job_preparation: model
            .job_preparation
            .as_ref()
            .and_then(|p| p.command_line.clone()),
        environment_variables,
        has_secrets: model.secrets_wo.as_ref().is_some_and(|s| !s.is_empty()),
        input_directories: model
            .input_directories
            .iter()
            .map(|d| InputDirectory {
                id: d.id.clone().unwrap_or_default(),
                path: d.path.clone().unwrap_or_default(),
            })
            .collect(),
        output_directories: model
            .output_directories
            .iter()
            .map(|d| OutputDirectory {
                id: d.id.clone().unwrap_or_default(),
                path_prefix: d.path_prefix.clone().unwrap_or_default(),
                path_suffix: d.path_suffix.clone(),
            })
            .collect(),
        std_out_err_path_prefix: model
            .std_out_err_path_prefix
            .clone()
            .unwrap_or_else(|| client.default_job_log_prefix()),
        mounts: super::mounts::resolve(client, model.mount_volumes.as_ref()).await?,
        max_wall_clock_ms: u64::try_from(max_wall_clock.as_millis()).unwrap_or(u64::MAX),
        max_unschedulable_ms: u64::try_from(max_unschedulable.as_millis()).unwrap_or(u64::MAX),
        retry: model
            .retry
            .as_ref()
            .map(|r| Retry {
                max_retries: r.max_retries.unwrap_or(0),
                retry_on_exit_codes: r.retry_on_exit_codes.clone().unwrap_or_default(),
            })
            .unwrap_or_default(),
        container: model.container_settings.as_ref().map(|c| {
            let registry = c.image_source_registry.clone().unwrap_or_default();
            Container {
                image: registry.image.unwrap_or_default(),
                server_url: registry.server_url,
                shm_size: c.shm_size.clone(),
            }
        }),
    };
    Ok((spec, cluster))
}

/// The configuration as stored for import: everything but secrets.
fn resource_record(model: &Model) -> serde_json::Value {
    let mut m = model.clone();
    m.secrets_wo = None;
    m.timeouts = None;
    serde_json::to_value(&m).unwrap_or_default()
}

/// The configured part of the state plus what the platform reports now.
fn with_live(mut model: Model, view: &JobView) -> Model {
    let s = &view.status;
    model.id = Some(job_id(&view.spec.cluster, &view.spec.name));
    model.secrets_wo = None;
    model.execution_state = Some(s.state.as_str().to_owned());
    model.exit_code = if s.state.is_terminal() {
        s.exit_code.map(i64::from)
    } else {
        None
    };
    model.start_time = s.start_ms.map(super::rfc3339_ms);
    model.end_time = s
        .end_ms
        .filter(|_| s.state.is_terminal())
        .map(super::rfc3339_ms);
    model.errors = Some(
        s.errors
            .iter()
            .map(|e| super::ErrorModel {
                code: e.code.to_string(),
                message: e.message.clone(),
                details: e.details.clone(),
            })
            .collect(),
    );
    model.attempts = Some(s.attempts);
    model.job_output_directory_path_segment = Some(view.spec.path_segment());
    model.std_out_err_directory = Some(view.std_out_err_directory.clone());
    model.metrics = Some(s.metrics.clone());
    model.creation_time = Some(view.creation_time.clone());
    model
}

fn platform_error(e: PlatformError) -> Diagnostics {
    let summary = match e {
        PlatformError::AlreadyExists { .. } => "job already exists",
        _ => "job operation failed",
    };
    Diagnostic::error(summary, e.to_string()).into()
}

/// The diagnostic for a wait that Terraform stopped (Ctrl-C): it says what the job was doing
/// then, since a queued job has not run.
fn interrupted(job: &str, state: Option<JobState>) -> Diagnostic {
    let doing = match state {
        Some(JobState::Queued) => "was still queued; it stays queued",
        _ => "was running; it keeps running",
    };
    Diagnostic::error(
        "interrupted",
        format!(
            "Terraform asked the provider to stop while job {job} {doing} and is saved to state, so destroying it terminates it"
        ),
    )
}

/// The error a failed job is reported with: its last error, with the stderr tail and log paths.
fn failure(view: &JobView) -> Diagnostics {
    let s = &view.status;
    let last = s.errors.last().cloned().unwrap_or(NodeError {
        code: records::ErrorCode::JobFailed,
        message: "the job failed".to_owned(),
        details: BTreeMap::new(),
    });
    let mut detail = format!(
        "job {} on cluster {} failed after {} attempt(s): {}",
        view.spec.name, view.spec.cluster, s.attempts, last.message
    );
    if let Some(code) = s.exit_code {
        detail.push_str(&format!("\nexit code: {code}"));
    }
    if let Some(tail) = last.details.get("stderr_tail").filter(|t| !t.is_empty()) {
        detail.push_str(&format!("\n\nLast lines of stderr:\n{tail}"));
    }
    detail.push_str(
        "\n\nThe job is kept in state and tainted: the next apply runs it again. Every attempt's \
         error is in its `errors` attribute.",
    );
    Diagnostic::error(format!("job failed ({})", last.code), detail).into()
}

/// Refuses a job no configuration of its cluster can ever run.
fn fits(cluster: &crate::platform::ClusterView, node_count: u32) -> Result<(), Diagnostics> {
    let most = match cluster.spec.scale {
        records::Scale::Manual {
            target_node_count, ..
        } => target_node_count,
        records::Scale::Auto {
            maximum_node_count, ..
        } => maximum_node_count,
    };
    if node_count > most {
        return Err(Diagnostic::error(
            "job needs more nodes than its cluster has",
            format!(
                "the job needs {node_count} nodes at once but cluster {} has at most {most}; \
                 lower node_count or scale the cluster up",
                cluster.spec.name
            ),
        )
        .at(at(&["node_count"]))
        .into());
    }
    Ok(())
}

/// At apply, the cluster must exist and be able to run the job.
async fn check_fits(client: &Client, cluster: &Name, node_count: u32) -> Result<(), Diagnostics> {
    let view = client
        .get_cluster(cluster)
        .await
        .map_err(|e| Diagnostic::error("cluster lookup failed", e.to_string()))?
        .ok_or_else(|| cluster_not_found(client, cluster))?;
    fits(&view, node_count)
}

fn cluster_not_found(client: &Client, cluster: &Name) -> Diagnostic {
    Diagnostic::error(
        "cluster not found",
        format!(
            "no cluster {cluster} exists on the {} platform; create it first (a batchai_cluster's id) or fix cluster_id",
            client.name()
        ),
    )
    .at(at(&["cluster_id"]))
}

impl DynResource<Client> for JobResource {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn timeouts(&self) -> Option<TimeoutDefaults> {
        Some(TimeoutDefaults {
            // Training runs are long; the job's own max_wall_clock_time is its real limit.
            create: Duration::from_secs(24 * 3600),
            ..super::DEFAULT_TIMEOUTS
        })
    }

    fn validate(&self, config: &Value, _capabilities: ClientCapabilities) -> Diagnostics {
        let mut diags = validate_config(config);
        diags.extend(tfplug::model::check_numbers::<Model>(config, &type_of()));
        diags
    }

    fn modify_plan(&self, request: &PlanRequest<'_>, plan: &mut Plan) -> Result<(), Diagnostics> {
        super::plan_defaults(
            request.config,
            &mut plan.planned,
            &[
                (&["node_count"], Value::number(1)),
                (&["scheduling_priority"], Value::string("normal")),
                (&["wait_for_completion"], Value::Bool(true)),
                (
                    &["constraints", "max_wall_clock_time"],
                    Value::string(DEFAULT_MAX_WALL_CLOCK),
                ),
                (
                    &["constraints", "max_unschedulable_time"],
                    Value::string(DEFAULT_MAX_UNSCHEDULABLE),
                ),
                (&["cntk", "language_type"], Value::string("python")),
            ],
        );
        Ok(())
    }

    fn check_plan<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        planned: &'a Value,
    ) -> BoxFuture<'a, Diagnostics> {
        Box::pin(async move {
            let mut diags = super::mounts::check_plan(client, planned).await;
            // A cluster created (or replaced) in the same plan has an unknown ID here, so a
            // known ID must name a cluster that exists now.
            let Some(id) = planned.get_attr("cluster_id").and_then(Value::as_str) else {
                return diags;
            };
            let Ok(cluster) = super::cluster::parse_id(id) else {
                return diags;
            };
            let view = match client.get_cluster(&cluster).await {
                Ok(Some(view)) => view,
                Ok(None) => {
                    diags.push(cluster_not_found(client, &cluster));
                    return diags;
                }
                // A lookup that fails is reported by the apply, which repeats it.
                Err(_) => return diags,
            };
            // The cluster may be changed earlier in the same apply, so this is a warning here
            // and an error at apply.
            if let Some(n) = int_at(planned, &["node_count"])
                && let Err(d) = fits(&view, u32::try_from(n).unwrap_or(0))
            {
                for mut diag in d {
                    diag.severity = tfplug::Severity::Warning;
                    diags.push(diag);
                }
            }
            diags
        })
    }

    fn create<'a>(
        &'a self,
        client: &'a Client,
        ctx: &'a Context,
        request: ApplyRequest<'a>,
    ) -> BoxFuture<'a, ApplyResult> {
        Box::pin(async move {
            let ty = type_of();
            let mut model: Model = match decode(request.config, &ty) {
                Ok(m) => m,
                Err(d) => return ApplyResult::failed(d),
            };
            apply_defaults(&mut model);
            let secrets = model.secrets_wo.clone().unwrap_or_default();
            let (spec, cluster) = match spec_from(client, &model).await {
                Ok(s) => s,
                Err(d) => return ApplyResult::failed(d),
            };
            if let Err(d) = check_fits(client, &cluster, spec.node_count).await {
                return ApplyResult::failed(d);
            }
            let submitted = match client
                .submit_job(&spec, &secrets, &resource_record(&model))
                .await
            {
                Ok(v) => v,
                Err(e) => return ApplyResult::failed(platform_error(e)),
            };
            let job = match Name::parse(&spec.name) {
                Ok(n) => n,
                Err(e) => return ApplyResult::failed(Diagnostic::internal(e.to_string())),
            };
            if !model.wait_for_completion.unwrap_or(true) {
                return match encode(&with_live(model, &submitted), &ty) {
                    Ok(state) => ApplyResult::ok(state),
                    Err(d) => ApplyResult::failed(d),
                };
            }
            // Stop and timeout end the wait here rather than by dropping the call, so the job
            // is saved to state (and can be destroyed, which terminates it) instead of leaked.
            let budget = ctx
                .timeout
                .map(|t| t.saturating_sub(Duration::from_secs(1)));
            let waited = tokio::select! {
                r = client.wait_job(&cluster, &job, true) => r.map_err(platform_error),
                () = async {
                    match budget {
                        Some(b) => tokio::time::sleep(b).await,
                        None => std::future::pending().await,
                    }
                } => Err(Diagnostic::error(
                    "job did not finish in time",
                    format!("job {job} did not finish within timeouts.create; it keeps running and is saved to state (tainted). Raise timeouts.create, set wait_for_completion = false, or destroy it to terminate it"),
                ).into()),
                () = ctx.stopped() => {
                    let state = client.get_job(&cluster, &job).await.ok().flatten();
                    Err(interrupted(job.as_str(), state.map(|v| v.status.state)).into())
                }
            };
            let (view, mut diagnostics) = match waited {
                Ok(view) => (view, Diagnostics::new()),
                Err(d) => match client.get_job(&cluster, &job).await {
                    Ok(Some(view)) => (view, d),
                    _ => (submitted, d),
                },
            };
            if view.status.state == JobState::Failed {
                diagnostics.extend(failure(&view));
            }
            match encode(&with_live(model, &view), &ty) {
                Ok(state) => ApplyResult {
                    state: Some(state),
                    private: Vec::new(),
                    diagnostics,
                },
                Err(d) => ApplyResult::failed(d),
            }
        })
    }

    fn read<'a>(
        &'a self,
        client: &'a Client,
        ctx: &'a Context,
        state: &'a Value,
        private: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<ReadResult>, Diagnostics>> {
        Box::pin(async move {
            let ty = type_of();
            let prior: Model = decode(state, &ty)?;
            let (cluster, job) = parse_id(prior.id.as_deref().unwrap_or_default())
                .map_err(|e| Diagnostic::internal(format!("stored job ID is invalid: {e}")))?;
            let view = match client.get_job(&cluster, &job).await {
                Ok(Some(view)) => view,
                Ok(None) => return Ok(None),
                // The job's records cannot be read; it was failed on the platform. State keeps
                // what it knew, marked failed, so the plan replaces it (or destroys it).
                Err(PlatformError::Corrupt { reason, .. }) => {
                    ctx.warn(Diagnostic::warning(
                        "job records are corrupt",
                        format!(
                            "job {job} on cluster {cluster}: {reason}; the job was marked failed: run it again with terraform apply -replace, or destroy it"
                        ),
                    ));
                    let mut model = prior;
                    model.execution_state = Some("failed".to_owned());
                    model
                        .errors
                        .get_or_insert_with(Vec::new)
                        .push(super::ErrorModel {
                            code: "CorruptRecord".to_owned(),
                            message: format!("the job's records could not be read: {reason}"),
                            details: BTreeMap::new(),
                        });
                    return Ok(Some(ReadResult {
                        state: encode(&model, &ty)?,
                        private: private.to_vec(),
                    }));
                }
                Err(e) => return Err(platform_error(e)),
            };
            Ok(Some(ReadResult {
                state: encode(&with_live(prior, &view), &ty)?,
                private: private.to_vec(),
            }))
        })
    }

    fn update<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        request: ApplyRequest<'a>,
    ) -> BoxFuture<'a, ApplyResult> {
        // Only `wait_for_completion` and `timeouts` update in place; neither touches the job.
        Box::pin(async move {
            let ty = type_of();
            let run = async {
                let mut model: Model = decode(request.config, &ty)?;
                apply_defaults(&mut model);
                let prior: Model = decode(request.prior, &ty)?;
                let (cluster, job) = parse_id(prior.id.as_deref().unwrap_or_default())
                    .map_err(|e| Diagnostic::internal(format!("stored job ID is invalid: {e}")))?;
                let view = client
                    .get_job(&cluster, &job)
                    .await
                    .map_err(platform_error)?
                    .ok_or_else(|| {
                        Diagnostic::error(
                            "job not found",
                            format!("job {job} on cluster {cluster} no longer exists"),
                        )
                    })?;
                encode(&with_live(model, &view), &ty)
            };
            match run.await {
                Ok(state) => ApplyResult::ok(state),
                Err(d) => ApplyResult::failed(d),
            }
        })
    }

    fn delete<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        prior: &'a Value,
        _private: &'a [u8],
    ) -> BoxFuture<'a, Result<(), Diagnostics>> {
        Box::pin(async move {
            let prior: Model = decode(prior, &type_of())?;
            let (cluster, job) = parse_id(prior.id.as_deref().unwrap_or_default())
                .map_err(|e| Diagnostic::internal(format!("stored job ID is invalid: {e}")))?;
            client
                .delete_job(&cluster, &job)
                .await
                .map_err(platform_error)
        })
    }

    fn import<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Value, Diagnostics>> {
        Box::pin(async move {
            let (cluster, job) =
                parse_id(id).map_err(|e| Diagnostic::error("invalid import ID", e))?;
            let view = client
                .get_job(&cluster, &job)
                .await
                .map_err(platform_error)?
                .ok_or_else(|| {
                    Diagnostic::error(
                        "job not found",
                        format!(
                            "import job {id}: no such job on the {} platform",
                            client.name()
                        ),
                    )
                })?;
            let mut model: Model = serde_json::from_value(view.resource.clone()).map_err(|e| {
                Diagnostic::internal(format!(
                    "import job {id}: stored configuration is unreadable: {e}"
                ))
            })?;
            if view.spec.has_secrets {
                // Write-only values are never stored; the imported job keeps running with
                // the secrets it was submitted with.
                model.secrets_wo = None;
            }
            encode(&with_live(model, &view), &type_of())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_valid() {
        assert!(schema().validate().is_ok());
    }

    #[test]
    fn an_interrupted_wait_says_whether_the_job_ran() {
        let queued = interrupted("j", Some(JobState::Queued)).detail;
        assert!(
            queued.contains("was still queued") && !queued.contains("ran"),
            "{queued}"
        );
        for state in [Some(JobState::Running), None] {
            let running = interrupted("j", state).detail;
            assert!(running.contains("was running"), "{running}");
        }
    }

    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn base(extra: Vec<(&str, Value)>) -> Value {
        let mut pairs = vec![
            ("name", Value::string("train")),
            ("cluster_id", Value::string("local/clusters/gpu")),
        ];
        pairs.extend(extra);
        obj(pairs)
    }

    fn cmd(line: &str) -> Value {
        obj(vec![("command_line", Value::string(line))])
    }

    /// The attribute paths of every error, rendered.
    fn error_paths(config: &Value) -> Vec<String> {
        crate::resources::validate_all(&JobResource, config)
            .iter()
            .map(|d| d.path.as_ref().map(ToString::to_string).unwrap_or_default())
            .collect()
    }

    #[test]
    fn validation_points_at_the_attribute() {
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            ("ok", base(vec![("custom_toolkit", cmd("true"))]), vec![]),
            ("no toolkit", base(vec![]), vec!["(root)"]),
            (
                "two toolkits",
                base(vec![("custom_toolkit", cmd("a")), ("custom_mpi", cmd("b"))]),
                vec!["custom_mpi"],
            ),
            (
                "node count",
                base(vec![
                    ("custom_toolkit", cmd("a")),
                    ("node_count", Value::number(0)),
                ]),
                vec!["node_count"],
            ),
            (
                "priority",
                base(vec![
                    ("custom_toolkit", cmd("a")),
                    ("scheduling_priority", Value::string("urgent")),
                ]),
                vec!["scheduling_priority"],
            ),
            (
                "escaping log path",
                base(vec![
                    ("custom_toolkit", cmd("a")),
                    (
                        "std_out_err_path_prefix",
                        Value::string("$AZ_BATCHAI_MOUNT_ROOT/../../etc"),
                    ),
                ]),
                vec!["std_out_err_path_prefix"],
            ),
            (
                "output id and path",
                base(vec![
                    ("custom_toolkit", cmd("a")),
                    (
                        "output_directories",
                        Value::List(vec![obj(vec![
                            ("id", Value::string("MODEL-1")),
                            ("path_prefix", Value::string("relative")),
                            ("path_suffix", Value::Null),
                        ])]),
                    ),
                ]),
                vec![
                    "output_directories[0].id",
                    "output_directories[0].path_prefix",
                ],
            ),
            (
                "wall clock",
                base(vec![
                    ("custom_toolkit", cmd("a")),
                    (
                        "constraints",
                        obj(vec![("max_wall_clock_time", Value::string("soon"))]),
                    ),
                ]),
                vec!["constraints.max_wall_clock_time"],
            ),
            (
                "caffe needs one entry point",
                base(vec![(
                    "caffe",
                    obj(vec![
                        ("config_file_path", Value::Null),
                        ("python_script_file_path", Value::Null),
                    ]),
                )]),
                vec!["caffe"],
            ),
        ];
        let image = |image: &str| {
            base(vec![
                ("custom_toolkit", cmd("a")),
                (
                    "container_settings",
                    obj(vec![(
                        "image_source_registry",
                        obj(vec![("image", Value::string(image))]),
                    )]),
                ),
            ])
        };
        let image_path = "container_settings.image_source_registry.image";
        let mut cases = cases;
        cases.extend([
            ("image", image("python:3.12"), vec![]),
            ("registry image", image("ghcr.io/a/b@sha256:0f"), vec![]),
            ("image as a flag", image("--privileged"), vec![image_path]),
            (
                "image with a space",
                image("python:3.12 -v /:/x"),
                vec![image_path],
            ),
            ("image with a newline", image("python\n"), vec![image_path]),
            ("empty image", image(""), vec![image_path]),
        ]);
        for (name, config, want) in cases {
            assert_eq!(error_paths(&config), want, "{name}");
        }
    }

    #[test]
    fn wall_clock_errors_say_what_to_write_once() {
        let config = base(vec![
            ("custom_toolkit", cmd("a")),
            (
                "constraints",
                obj(vec![("max_wall_clock_time", Value::string("soon"))]),
            ),
        ]);
        let diags = crate::resources::validate_all(&JobResource, &config);
        let detail = diags.iter().map(|d| d.detail.clone()).collect::<String>();
        assert_eq!(detail.matches("write").count(), 1, "{detail}");
    }

    #[test]
    fn check_plan_names_a_missing_cluster() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let client: Client = std::sync::Arc::new(crate::platform::local::LocalPlatform::new(
            dir.path().to_path_buf(),
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let check = |planned: Value| {
            runtime.block_on(JobResource.check_plan(&client, &Context::background(), &planned))
        };
        let missing = check(base(vec![
            ("custom_toolkit", cmd("a")),
            ("node_count", Value::number(1)),
        ]));
        let errors: Vec<_> = missing
            .iter()
            .filter(|d| d.severity == tfplug::Severity::Error)
            .collect();
        assert_eq!(errors.len(), 1, "{missing}");
        assert_eq!(errors[0].path, Some(at(&["cluster_id"])));
        assert!(errors[0].detail.contains("no cluster gpu"), "{missing}");
        // A cluster created in the same plan has no ID yet: nothing to look up.
        let mut created = base(vec![("custom_toolkit", cmd("a"))]);
        super::super::set_path(&mut created, &["cluster_id"], Value::unknown());
        assert!(check(created).is_empty());
    }

    #[test]
    fn ids_round_trip() {
        let id = job_id("gpu", "train");
        assert_eq!(id, "local/clusters/gpu/jobs/train");
        let parsed = parse_id(&id).map(|(c, j)| (c.to_string(), j.to_string()));
        assert_eq!(parsed, Ok(("gpu".to_owned(), "train".to_owned())));
        assert!(parse_id("local/clusters/gpu").is_err());
        assert!(parse_id("local/clusters/gpu/jobs/a/b").is_err());
    }
}
