//! `batchai_cluster`: a set of (GPU) nodes running the node agent. On the local platform the
//! nodes are agent processes on this machine; scale settings change in place, everything else
//! forces replacement.
use std::collections::BTreeMap;
use std::time::Duration;

use control::records::{self, ClusterSpec, DeallocationOption, NodeState, Scale, SetupTask};
use serde::{Deserialize, Serialize};
use tfplug::model::{decode, encode};
use tfplug::{
    ApplyRequest, ApplyResult, Attribute, AttributePath, Block, BoxFuture, ClientCapabilities,
    Context, Diagnostic, Diagnostics, DynResource, NestedBlock, Plan, PlanRequest, ReadResult,
    Schema, TimeoutDefaults, Type, Value,
};

use super::ErrorModel;
use super::mounts::MountVolumesModel;
use crate::Client;
use crate::names::{Name, NameError};
use crate::platform::{ClusterView, PlatformError};

pub const TYPE_NAME: &str = "batchai_cluster";
const ID_PREFIX: &str = "local/clusters/";
const DEFAULT_IDLE_TIMEOUT: &str = "10m";
/// Attributes the platform changes on its own; unknown in any update plan.
const LIVE_ATTRIBUTES: [&str; 5] = [
    "allocation_state",
    "current_node_count",
    "node_state_counts",
    "nodes",
    "errors",
];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Model {
    pub id: Option<String>,
    pub name: Option<String>,
    pub vm_size: Option<String>,
    pub vm_priority: Option<String>,
    pub subnet_id: Option<String>,
    pub scale_settings: Option<ScaleSettingsModel>,
    pub image_reference: Option<ImageReferenceModel>,
    pub user_account_settings: Option<UserAccountModel>,
    pub setup_task: Option<SetupTaskModel>,
    pub mount_volumes: Option<MountVolumesModel>,
    pub local_settings: Option<LocalSettingsModel>,
    pub allocation_state: Option<String>,
    pub current_node_count: Option<u32>,
    pub node_state_counts: Option<NodeStateCounts>,
    pub nodes: Option<Vec<NodeModel>>,
    pub errors: Option<Vec<ErrorModel>>,
    pub creation_time: Option<String>,
    pub timeouts: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ScaleSettingsModel {
    pub manual: Option<ManualModel>,
    pub auto_scale: Option<AutoScaleModel>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ManualModel {
    pub target_node_count: Option<u32>,
    pub node_deallocation_option: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct AutoScaleModel {
    pub minimum_node_count: Option<u32>,
    pub maximum_node_count: Option<u32>,
    pub initial_node_count: Option<u32>,
    pub idle_timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ImageReferenceModel {
    pub publisher: Option<String>,
    pub offer: Option<String>,
    pub sku: Option<String>,
    pub version: Option<String>,
    pub virtual_machine_image_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct UserAccountModel {
    pub admin_user_name: Option<String>,
    pub admin_user_ssh_public_key: Option<String>,
    pub admin_user_password: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SetupTaskModel {
    pub command_line: Option<String>,
    pub environment_variables: Option<BTreeMap<String, String>>,
    pub secrets: Option<BTreeMap<String, String>>,
    pub std_out_err_path_prefix: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct LocalSettingsModel {
    pub gpus_per_node: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct NodeStateCounts {
    pub idle: u32,
    pub running: u32,
    pub preparing: u32,
    pub unusable: u32,
    pub leaving: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct NodeModel {
    pub id: String,
    pub state: String,
    pub gpus: Vec<u32>,
}

fn block(attributes: Vec<Attribute>, blocks: Vec<NestedBlock>, description: &str) -> Block {
    Block::new(attributes, blocks).description(description)
}

fn schema() -> Schema {
    let manual = block(
        vec![
            Attribute::required("target_node_count", Type::Number)
                .description("The number of nodes, 0 or more."),
            Attribute::optional_computed("node_deallocation_option", Type::String).description(
                "What happens to running work on nodes removed by a scale-down or destroy: \
                 `requeue` (the default: stop it and queue it again), `terminate` (stop it) or \
                 `waitforjobcompletion` (let it finish first).",
            ),
        ],
        vec![],
        "A fixed number of nodes.",
    );
    let auto_scale = block(
        vec![
            Attribute::required("minimum_node_count", Type::Number)
                .description("The fewest nodes, 0 or more; the cluster shrinks to this when idle."),
            Attribute::required("maximum_node_count", Type::Number)
                .description("The most nodes queued and running work may grow the cluster to."),
            Attribute::optional_computed("initial_node_count", Type::Number).description(
                "Nodes to start with, within the bounds. Defaults to 0 (the minimum).",
            ),
            Attribute::optional_computed("idle_timeout", Type::String).description(
                "How long the cluster stays at its size without queued or running work before \
                 it shrinks to `minimum_node_count`, as a duration such as `10m` (the default).",
            ),
        ],
        vec![],
        "Nodes follow demand between the bounds. The live node count is reported in \
         `current_node_count` and never causes a plan diff.",
    );
    let scale_settings = block(
        vec![],
        vec![
            NestedBlock::optional_single("manual", manual),
            NestedBlock::optional_single("auto_scale", auto_scale),
        ],
        "How many nodes the cluster has: exactly one of `manual` or `auto_scale`. Changes apply \
         in place, without replacing the cluster.",
    );
    let image_reference = block(
        [
            "publisher",
            "offer",
            "sku",
            "version",
            "virtual_machine_image_id",
        ]
        .into_iter()
        .map(|n| Attribute::optional(n, Type::String).description(format!("The image's `{n}`.")))
        .collect(),
        vec![],
        "The VM image of the nodes (Azure). Recorded on the local platform. Changing it forces \
         replacement.",
    );
    let user_account = block(
        vec![
            Attribute::required("admin_user_name", Type::String)
                .description("Name of the administrator account on every node."),
            Attribute::optional("admin_user_ssh_public_key", Type::String)
                .description("SSH public key (OpenSSH format) of the administrator."),
            Attribute::optional("admin_user_password", Type::String)
                .sensitive()
                .description("Password of the administrator; stored in state, marked sensitive."),
        ],
        vec![],
        "The administrator account on the nodes (Azure). Recorded on the local platform. \
         Changing it forces replacement.",
    );
    let setup_task =
        block(
            vec![
            Attribute::required("command_line", Type::String).description(
                "Run with `bash -c` on every node before it takes work, and again whenever a \
                 node restarts, so it must be idempotent. Sees `AZ_BATCHAI_MOUNT_ROOT`, \
                 `AZ_BATCHAI_NUM_GPUS`, `CUDA_VISIBLE_DEVICES` and `AZ_BATCHAI_STDOUTERR_DIR`.",
            ),
            Attribute::optional("environment_variables", Type::map(Type::String))
                .description("Environment variables for the setup task."),
            Attribute::optional("secrets", Type::map(Type::String)).sensitive().description(
                "Environment variables with secret values: marked sensitive in plans and kept \
                 out of logs.",
            ),
            Attribute::optional("std_out_err_path_prefix", Type::String).description(
                "Directory under which the setup task's `stdout.txt` and `stderr.txt` are kept, \
                 in `<prefix>/<cluster name>/<unique id>/<node id>/`. Defaults to the node's \
                 directory under the provider's root.",
            ),
        ],
            vec![],
            "A command that prepares every node (installs packages, fetches data). A node whose \
         setup task fails is `unusable` and the failure, with its exit code and log paths, is in \
         `errors`. Changing it forces replacement.",
        );
    let mount_volumes = Block::description(
        <MountVolumesModel as tfplug::Model>::block(),
        "Volumes mounted on every node under `$AZ_BATCHAI_MOUNT_ROOT`. Changing them forces \
         replacement.",
    );
    let local_settings =
        block(
            vec![Attribute::optional("gpus_per_node", Type::Number).description(
            "GPUs each node gets (disjoint, through `CUDA_VISIBLE_DEVICES`). Defaults to what \
             `vm_size` has on Azure; nodes get fewer when the machine runs out. The machine's \
             GPUs are counted with `nvidia-smi -L`; `BATCHAI_LOCAL_GPU_COUNT` in the \
             provider's environment overrides the count.",
        )],
            vec![],
            "Settings that only apply on the local platform. Changing them forces replacement.",
        );

    let mut attributes = vec![
        Attribute::computed("id", Type::String)
            .description("The cluster's ID, `local/clusters/<name>` on the local platform."),
        Attribute::required("name", Type::String).force_new().description(
            "Name of the cluster: 1 to 64 letters, digits, `-` or `_`. Changing it forces \
             replacement.",
        ),
        Attribute::required("vm_size", Type::String).force_new().description(
            "Azure VM size of the nodes, e.g. `Standard_NC24s_v3`. On the local platform it \
             sets how many GPUs each node gets. Changing it forces replacement.",
        ),
        Attribute::optional_computed("vm_priority", Type::String).force_new().description(
            "`dedicated` (the default) or `lowpriority` (spot VMs on Azure). Changing it forces \
             replacement.",
        ),
        Attribute::optional("subnet_id", Type::String).force_new().description(
            "ARM ID of the subnet for the nodes (Azure). Changing it forces replacement.",
        ),
        Attribute::computed("allocation_state", Type::String).description(
            "`steady` when the node count matches the scale settings, `resizing` while nodes \
             are added or removed.",
        ),
        Attribute::computed("current_node_count", Type::Number)
            .description("Nodes the cluster has now, in any state."),
        Attribute::computed(
            "node_state_counts",
            Type::object([
                ("idle", Type::Number),
                ("running", Type::Number),
                ("preparing", Type::Number),
                ("unusable", Type::Number),
                ("leaving", Type::Number),
            ]),
        )
        .description(
            "Nodes per state: `idle`, `running` (busy with work), `preparing` (starting, \
             mounting, running the setup task), `unusable` (setup failed) and `leaving`.",
        ),
        Attribute::computed(
            "nodes",
            Type::list(Type::object([
                ("id", Type::String),
                ("state", Type::String),
                ("gpus", Type::list(Type::Number)),
            ])),
        )
        .description(
            "The cluster's nodes now: each node's `id`, `state` (as in `node_state_counts`) and \
             `gpus`, the indices of the GPUs it was given (its `CUDA_VISIBLE_DEVICES`); empty \
             when the machine has none to give, so the node's jobs run without a GPU.",
        ),
        Attribute::computed(
            "errors",
            Type::list(Type::object([
                ("code", Type::String),
                ("message", Type::String),
                ("details", Type::map(Type::String)),
            ])),
        )
        .description(
            "Problems on the cluster's nodes, one entry per problem: `code` (`SetupTaskFailed` \
             or `MountFailed`), `message` (which node, and what happened) and `details`, a map \
             that for a failed setup task holds `exit_code`, `stdout_path`, `stderr_path` and \
             `stderr_tail` (its last lines of stderr).",
        ),
        Attribute::computed("creation_time", Type::String)
            .description("When the cluster was created (RFC 3339)."),
    ];
    attributes.sort_by_key(|a| a.computed);
    Schema::new(
        0,
        Block::new(
            attributes,
            vec![
                NestedBlock::required_single("scale_settings", scale_settings),
                NestedBlock::optional_single("image_reference", image_reference).force_new(),
                NestedBlock::optional_single("user_account_settings", user_account).force_new(),
                NestedBlock::optional_single("setup_task", setup_task).force_new(),
                NestedBlock::optional_single("mount_volumes", mount_volumes).force_new(),
                NestedBlock::optional_single("local_settings", local_settings).force_new(),
            ],
        )
        .description(
            "A Batch AI cluster: nodes (on Azure a VM scale set of GPU VMs, on the local \
             platform agent processes on this machine) that mount shared storage, run a setup \
             task and run jobs. `scale_settings` change in place; every other argument forces \
             replacement. Destroying the cluster drains its nodes per \
             `node_deallocation_option` and stops every node process.",
        ),
    )
}

/// The `batchai_cluster` resource.
#[derive(Debug)]
pub struct ClusterResource;

fn type_of() -> Type {
    tfplug::server::resource_schema::<Client>(&ClusterResource).implied_type()
}

pub fn cluster_id(name: &Name) -> String {
    cluster_id_str(name.as_str())
}

pub(crate) fn cluster_id_str(name: &str) -> String {
    format!("{ID_PREFIX}{name}")
}

/// Why a text is not a cluster ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterIdError {
    #[error("{id:?} is not a cluster ID; IDs look like \"{ID_PREFIX}<name>\"")]
    NotAClusterId { id: String },
    #[error(transparent)]
    Name(#[from] NameError),
}

/// Parses a cluster ID, `local/clusters/<name>`.
pub fn parse_id(id: &str) -> Result<Name, ClusterIdError> {
    let name = id
        .strip_prefix(ID_PREFIX)
        .ok_or_else(|| ClusterIdError::NotAClusterId { id: id.to_owned() })?;
    Ok(Name::parse(name)?)
}

fn count_at(config: &Value, path: &[&str]) -> Option<i64> {
    super::value_at(config, path)?.as_number()?.as_i64()
}

/// Configuration checks without I/O; unknown values are skipped and checked again at apply.
pub(crate) fn validate_config(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if let Some(name) = config.get_attr("name").and_then(Value::as_str)
        && let Err(e) = Name::parse(name)
    {
        diags.push(
            Diagnostic::error("invalid cluster name", e.to_string())
                .at(AttributePath::attrs(["name"])),
        );
    }
    if let Some(p) = config.get_attr("vm_priority").and_then(Value::as_str)
        && !["dedicated", "lowpriority"].contains(&p)
    {
        diags.push(
            Diagnostic::error(
                "invalid vm_priority",
                format!("{p:?} is not a VM priority; use \"dedicated\" or \"lowpriority\""),
            )
            .at(AttributePath::attrs(["vm_priority"])),
        );
    }
    if let Some(scale) = config
        .get_attr("scale_settings")
        .filter(|s| !s.is_null() && !s.is_unknown())
    {
        let manual = scale.get_attr("manual").is_some_and(|m| !m.is_null());
        let auto = scale.get_attr("auto_scale").is_some_and(|m| !m.is_null());
        if manual == auto {
            diags.push(
                Diagnostic::error(
                    "invalid scale_settings",
                    "set exactly one of a `manual { target_node_count = N }` or an `auto_scale { ... }` block",
                )
                .at(AttributePath::attrs(["scale_settings"])),
            );
        }
        let at = |p: &[&str]| AttributePath::attrs(p.iter().copied());
        for path in [
            &["scale_settings", "manual", "target_node_count"][..],
            &["scale_settings", "auto_scale", "minimum_node_count"],
            &["scale_settings", "auto_scale", "maximum_node_count"],
            &["scale_settings", "auto_scale", "initial_node_count"],
        ] {
            if let Some(n) = count_at(config, &path[1..]).or_else(|| count_at(scale, &path[1..]))
                && !(0..=1000).contains(&n)
            {
                diags.push(
                    Diagnostic::error(
                        "invalid node count",
                        format!(
                            "{} is {n}; node counts are whole numbers from 0 to 1000",
                            path[2]
                        ),
                    )
                    .at(at(path)),
                );
            }
        }
        if let (Some(min), Some(max)) = (
            count_at(scale, &["auto_scale", "minimum_node_count"]),
            count_at(scale, &["auto_scale", "maximum_node_count"]),
        ) {
            if min > max {
                diags.push(
                    Diagnostic::error(
                        "invalid auto_scale bounds",
                        format!(
                            "minimum_node_count ({min}) is greater than maximum_node_count ({max})"
                        ),
                    )
                    .at(at(&[
                        "scale_settings",
                        "auto_scale",
                        "minimum_node_count",
                    ])),
                );
            }
            if max < 1 {
                diags.push(
                    Diagnostic::error(
                        "invalid auto_scale bounds",
                        "maximum_node_count must be at least 1",
                    )
                    .at(at(&[
                        "scale_settings",
                        "auto_scale",
                        "maximum_node_count",
                    ])),
                );
            }
        }
        if let Some(option) = scale
            .get_attr("manual")
            .and_then(|m| m.get_attr("node_deallocation_option"))
            .and_then(Value::as_str)
            && DeallocationOption::parse(option).is_none()
        {
            diags.push(
                    Diagnostic::error(
                        "invalid node_deallocation_option",
                        format!("{option:?} is not a deallocation option; use \"requeue\", \"terminate\" or \"waitforjobcompletion\""),
                    )
                    .at(at(&["scale_settings", "manual", "node_deallocation_option"])),
                );
        }
        if let Some(timeout) = scale
            .get_attr("auto_scale")
            .and_then(|m| m.get_attr("idle_timeout"))
            .and_then(Value::as_str)
            && let Err(e) = tfplug::timeouts::parse_duration(timeout)
        {
            diags.push(
                Diagnostic::error(
                    "invalid idle_timeout",
                    format!("{e}; write a duration such as \"10m\""),
                )
                .at(at(&["scale_settings", "auto_scale", "idle_timeout"])),
            );
        }
    }
    if let Some(prefix) = config
        .get_attr("setup_task")
        .and_then(|t| t.get_attr("std_out_err_path_prefix"))
        .and_then(Value::as_str)
        && let Err(e) = control::jobs::check_setup_log_prefix(prefix)
    {
        diags.push(
            Diagnostic::error("invalid std_out_err_path_prefix", e.to_string()).at(
                AttributePath::attrs(["setup_task", "std_out_err_path_prefix"]),
            ),
        );
    }
    diags
}

/// GPUs this machine gives local nodes: `BATCHAI_LOCAL_GPU_COUNT` when set (as nodes read it
/// from the provider's environment), else what `nvidia-smi -L` lists.
fn machine_gpus() -> u32 {
    std::env::var("BATCHAI_LOCAL_GPU_COUNT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(agent::gpu::detect_gpus)
}

/// A warning when nodes will get fewer GPUs than their VM size has: the local platform hands
/// out the machine's GPUs, and a node gets none (its jobs run on the CPU) when they run out.
fn gpu_warning(planned: &Value, available: u32) -> Option<Diagnostic> {
    // Only when the nodes are (re)created: a plan with a known ID changes no node.
    if !planned.get_attr("id").is_some_and(Value::is_unknown) {
        return None;
    }
    let vm_size = planned.get_attr("vm_size").and_then(Value::as_str)?;
    let configured = super::value_at(planned, &["local_settings", "gpus_per_node"]);
    if configured.is_some_and(Value::is_unknown) {
        return None;
    }
    let per_node = match configured.and_then(Value::as_number) {
        Some(n) => u32::try_from(n.as_i64()?).ok()?,
        None => agent::gpu::gpus_for_vm_size(vm_size),
    };
    if per_node == 0 {
        return None;
    }
    let scale = planned.get_attr("scale_settings")?;
    let max_nodes = count_at(scale, &["manual", "target_node_count"])
        .or_else(|| count_at(scale, &["auto_scale", "maximum_node_count"]))
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1)
        .max(1);
    let wanted = per_node.saturating_mul(max_nodes);
    if available >= wanted {
        return None;
    }
    let what = if available == 0 {
        "this machine has no GPU (`nvidia-smi -L` lists none), so the nodes will have no GPU: \
         their jobs see an empty CUDA_VISIBLE_DEVICES and AZ_BATCHAI_NUM_GPUS=0"
            .to_owned()
    } else {
        format!(
            "this machine has {available} GPU(s) for up to {max_nodes} node(s) wanting \
             {per_node} each, so some nodes will get fewer GPUs or none"
        )
    };
    Some(
        Diagnostic::warning(
            "nodes will get fewer GPUs than their VM size has",
            format!(
                "{vm_size} has {per_node} GPU(s) per node on Azure, but {what}. Set \
                 BATCHAI_LOCAL_GPU_COUNT in Terraform's environment to override the machine's \
                 count, or set local_settings {{ gpus_per_node = 0 }} (or a CPU vm_size) to \
                 plan CPU nodes; each node's GPUs are shown in `nodes`"
            ),
        )
        .at(AttributePath::attrs(["vm_size"])),
    )
}

/// The defaults the plan shows, applied again at apply so state matches the plan.
fn apply_defaults(model: &mut Model) {
    model
        .vm_priority
        .get_or_insert_with(|| "dedicated".to_owned());
    if let Some(scale) = &mut model.scale_settings {
        if let Some(manual) = &mut scale.manual {
            manual
                .node_deallocation_option
                .get_or_insert_with(|| "requeue".to_owned());
        }
        if let Some(auto) = &mut scale.auto_scale {
            auto.initial_node_count.get_or_insert(0);
            auto.idle_timeout
                .get_or_insert_with(|| DEFAULT_IDLE_TIMEOUT.to_owned());
        }
    }
}

fn scale_from(model: &Model) -> Result<Scale, Diagnostics> {
    let bad = |what: &str| {
        Diagnostics::from(Diagnostic::internal(format!(
            "scale_settings: {what} is missing"
        )))
    };
    let scale = model
        .scale_settings
        .as_ref()
        .ok_or_else(|| bad("the block"))?;
    match (&scale.manual, &scale.auto_scale) {
        (Some(m), None) => Ok(Scale::Manual {
            target_node_count: m
                .target_node_count
                .ok_or_else(|| bad("target_node_count"))?,
            node_deallocation_option: m
                .node_deallocation_option
                .as_deref()
                .and_then(DeallocationOption::parse)
                .unwrap_or_default(),
        }),
        (None, Some(a)) => Ok(Scale::Auto {
            minimum_node_count: a
                .minimum_node_count
                .ok_or_else(|| bad("minimum_node_count"))?,
            maximum_node_count: a
                .maximum_node_count
                .ok_or_else(|| bad("maximum_node_count"))?,
            initial_node_count: a.initial_node_count.unwrap_or(0),
            idle_timeout_secs: tfplug::timeouts::parse_duration(
                a.idle_timeout.as_deref().unwrap_or(DEFAULT_IDLE_TIMEOUT),
            )
            .map(|d| d.as_secs())
            .unwrap_or(600),
        }),
        _ => Err(Diagnostic::error(
            "invalid scale_settings",
            "set exactly one of a `manual` or an `auto_scale` block",
        )
        .at(AttributePath::attrs(["scale_settings"]))
        .into()),
    }
}

/// Builds what the agents need from a wholly known configuration, resolving file server IDs.
async fn spec_from(client: &Client, model: &Model) -> Result<ClusterSpec, Diagnostics> {
    let name = Name::parse(model.name.as_deref().unwrap_or_default()).map_err(|e| {
        Diagnostic::error("invalid cluster name", e.to_string()).at(AttributePath::attrs(["name"]))
    })?;
    let vm_size = model.vm_size.clone().unwrap_or_default();
    let mounts = super::mounts::resolve(client, model.mount_volumes.as_ref()).await?;
    let gpus_per_node = model
        .local_settings
        .as_ref()
        .and_then(|l| l.gpus_per_node)
        .unwrap_or_else(|| agent::gpu::gpus_for_vm_size(&vm_size));
    Ok(ClusterSpec {
        format: records::FORMAT,
        name: name.to_string(),
        uid: super::unique_segment(),
        vm_size,
        vm_priority: model
            .vm_priority
            .clone()
            .unwrap_or_else(|| "dedicated".to_owned()),
        scale: scale_from(model)?,
        setup_task: model.setup_task.as_ref().map(|t| SetupTask {
            command_line: t.command_line.clone().unwrap_or_default(),
            environment_variables: t.environment_variables.clone().unwrap_or_default(),
            secrets: t.secrets.clone().unwrap_or_default(),
            std_out_err_path_prefix: t.std_out_err_path_prefix.clone(),
        }),
        mounts,
        gpus_per_node,
        deleting: false,
    })
}

/// The configuration as stored for import: everything but secrets and passwords.
fn resource_record(model: &Model) -> serde_json::Value {
    let mut m = model.clone();
    if let Some(t) = &mut m.setup_task {
        t.secrets = None;
    }
    if let Some(u) = &mut m.user_account_settings {
        u.admin_user_password = None;
    }
    m.timeouts = None;
    serde_json::to_value(&m).unwrap_or_default()
}

/// The configured part of the state plus what the platform reports now.
fn with_live(mut model: Model, view: &ClusterView) -> Model {
    let mut counts = NodeStateCounts::default();
    let mut errors = Vec::new();
    for node in &view.nodes {
        match node.state {
            NodeState::Idle => counts.idle += 1,
            NodeState::Running => counts.running += 1,
            NodeState::Launching | NodeState::Preparing => counts.preparing += 1,
            NodeState::Unusable => counts.unusable += 1,
            NodeState::Leaving => counts.leaving += 1,
        }
        for e in &node.errors {
            errors.push(ErrorModel {
                code: e.code.to_string(),
                message: format!("node {}: {}", node.id, e.message),
                details: e.details.clone(),
            });
        }
    }
    // Said once for the cluster, not only per node: no job can start here until the cause of
    // the nodes' failures is fixed.
    if let Some(since) = view.failing_since_ms
        && counts.idle + counts.running == 0
        && counts.unusable + counts.preparing > 0
    {
        errors.insert(
            0,
            ErrorModel {
                code: "ClusterUnusable".to_owned(),
                message: format!(
                    "every node of cluster {} failed to prepare since {} (see the nodes' errors); jobs cannot start until the cause is fixed: fix the setup task or mount, then apply again (a new job replaces the unusable nodes at once, otherwise they are retried with a backoff of 30 s doubling to 15 min)",
                    view.spec.name,
                    super::rfc3339_ms(since)
                ),
                details: Default::default(),
            },
        );
    }
    let count = u32::try_from(view.nodes.len()).unwrap_or(u32::MAX);
    let steady = count == view.desired_node_count
        && counts.preparing == 0
        && counts.leaving == 0
        && view.nodes.iter().all(|n| !n.drain_requested);
    model.id = Some(format!("{ID_PREFIX}{}", view.spec.name));
    model.allocation_state = Some(if steady { "steady" } else { "resizing" }.to_owned());
    model.current_node_count = Some(count);
    model.node_state_counts = Some(counts);
    model.nodes = Some(
        view.nodes
            .iter()
            .map(|n| NodeModel {
                id: n.id.clone(),
                state: match n.state {
                    NodeState::Launching | NodeState::Preparing => "preparing",
                    NodeState::Idle => "idle",
                    NodeState::Running => "running",
                    NodeState::Unusable => "unusable",
                    NodeState::Leaving => "leaving",
                }
                .to_owned(),
                gpus: n.gpus.clone(),
            })
            .collect(),
    );
    model.errors = Some(errors);
    model.creation_time = Some(view.creation_time.clone());
    model
}

fn platform_error(e: PlatformError) -> Diagnostics {
    let summary = match e {
        PlatformError::AlreadyExists { .. } => "cluster already exists",
        _ => "cluster operation failed",
    };
    Diagnostic::error(summary, e.to_string()).into()
}

/// An error for every unusable node, quoting the setup task's failure.
fn unusable_nodes(view: &ClusterView) -> Diagnostics {
    let mut diags = Diagnostics::new();
    for node in view.nodes.iter().filter(|n| n.state == NodeState::Unusable) {
        for e in &node.errors {
            let mut detail = format!(
                "cluster {}, node {}: {}",
                view.spec.name, node.id, e.message
            );
            if let Some(tail) = e.details.get("stderr_tail").filter(|t| !t.is_empty()) {
                detail.push_str(&format!("\n\nLast lines of stderr:\n{tail}"));
            }
            diags.push(Diagnostic::error(
                if e.code == records::ErrorCode::SetupTaskFailed {
                    "setup task failed"
                } else {
                    "node preparation failed"
                },
                detail,
            ));
        }
    }
    diags
}

impl DynResource<Client> for ClusterResource {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn timeouts(&self) -> Option<TimeoutDefaults> {
        Some(super::DEFAULT_TIMEOUTS)
    }

    fn validate(&self, config: &Value, _capabilities: ClientCapabilities) -> Diagnostics {
        let mut diags = validate_config(config);
        diags.extend(tfplug::model::check_numbers::<Model>(config, &type_of()));
        diags
    }

    fn modify_plan(&self, request: &PlanRequest<'_>, plan: &mut Plan) -> Result<(), Diagnostics> {
        let config = request.config;
        let planned = &mut plan.planned;
        super::plan_defaults(
            config,
            planned,
            &[
                (&["vm_priority"], Value::string("dedicated")),
                (
                    &["scale_settings", "manual", "node_deallocation_option"],
                    Value::string("requeue"),
                ),
                (
                    &["scale_settings", "auto_scale", "initial_node_count"],
                    Value::number(0),
                ),
                (
                    &["scale_settings", "auto_scale", "idle_timeout"],
                    Value::string(DEFAULT_IDLE_TIMEOUT),
                ),
            ],
        );
        // Any in-place update reads the live node state again afterwards.
        if !request.prior.is_null() && *planned != *request.prior {
            for name in LIVE_ATTRIBUTES {
                super::set_path(planned, &[name], Value::unknown());
            }
        }
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
            // Only the local platform gives nodes this machine's GPUs.
            if client.name() == "local"
                && let Some(warning) = gpu_warning(planned, machine_gpus())
            {
                diags.push(warning);
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
            let spec = match spec_from(client, &model).await {
                Ok(s) => s,
                Err(d) => return ApplyResult::failed(d),
            };
            // Stop and timeout are handled here rather than by dropping the call, so a cluster
            // that is partly up is saved to state (and destroyed or replaced) instead of leaked.
            let budget = ctx
                .timeout
                .map(|t| t.saturating_sub(Duration::from_secs(1)));
            let record = resource_record(&model);
            let created = tokio::select! {
                r = client.create_cluster(&spec, &record) => r,
                () = async {
                    match budget {
                        Some(b) => tokio::time::sleep(b).await,
                        None => std::future::pending().await,
                    }
                } => Err(PlatformError::Failed {
                    operation: "create",
                    kind: "cluster",
                    name: spec.name.clone(),
                    reason: "its nodes did not all become idle within the create timeout; raise timeouts.create or check the setup task".to_owned(),
                }),
                () = ctx.stopped() => Err(PlatformError::Failed {
                    operation: "create",
                    kind: "cluster",
                    name: spec.name.clone(),
                    reason: "interrupted (Terraform asked the provider to stop); the cluster is kept in state so it can be destroyed or replaced".to_owned(),
                }),
            };
            let view = match created {
                Ok(v) => v,
                Err(e) => {
                    // The cluster may exist partly (nodes started); keep it in state so it is
                    // destroyed or replaced rather than leaked.
                    let name = Name::parse(&spec.name).ok();
                    let existing = match &name {
                        Some(n) if !matches!(e, PlatformError::AlreadyExists { .. }) => {
                            client.get_cluster(n).await.ok().flatten()
                        }
                        _ => None,
                    };
                    let state =
                        existing.and_then(|v| encode(&with_live(model.clone(), &v), &ty).ok());
                    return ApplyResult {
                        state,
                        private: Vec::new(),
                        diagnostics: platform_error(e),
                    };
                }
            };
            let state = encode(&with_live(model, &view), &ty);
            match state {
                Ok(state) => ApplyResult {
                    state: Some(state),
                    private: Vec::new(),
                    // An unusable node fails the apply; the state is kept, so Terraform taints
                    // the cluster and the next apply replaces it.
                    diagnostics: unusable_nodes(&view),
                },
                Err(d) => ApplyResult::failed(d),
            }
        })
    }

    fn read<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        state: &'a Value,
        private: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<ReadResult>, Diagnostics>> {
        Box::pin(async move {
            let ty = type_of();
            let prior: Model = decode(state, &ty)?;
            let name = super::stored_name(prior.name.as_deref())?;
            let Some(view) = client.read_cluster(&name).await.map_err(platform_error)? else {
                return Ok(None);
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
        Box::pin(async move {
            let ty = type_of();
            let run = async {
                let mut model: Model = decode(request.config, &ty)?;
                apply_defaults(&mut model);
                let name = Name::parse(model.name.as_deref().unwrap_or_default()).map_err(|e| {
                    Diagnostic::error("invalid cluster name", e.to_string())
                        .at(AttributePath::attrs(["name"]))
                })?;
                let scale = scale_from(&model)?;
                let view = client
                    .update_cluster_scale(&name, &scale, &resource_record(&model))
                    .await
                    .map_err(platform_error)?;
                let diags = unusable_nodes(&view);
                Ok::<_, Diagnostics>((encode(&with_live(model, &view), &ty)?, diags))
            };
            match run.await {
                Ok((state, diagnostics)) => ApplyResult {
                    state: Some(state),
                    private: Vec::new(),
                    diagnostics,
                },
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
            let name = super::stored_name(prior.name.as_deref())?;
            client.delete_cluster(&name).await.map_err(platform_error)
        })
    }

    fn import<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Value, Diagnostics>> {
        Box::pin(async move {
            let name =
                parse_id(id).map_err(|e| Diagnostic::error("invalid import ID", e.to_string()))?;
            let view = client
                .read_cluster(&name)
                .await
                .map_err(platform_error)?
                .ok_or_else(|| {
                    Diagnostic::error(
                        "cluster not found",
                        format!(
                            "import cluster {id}: no such cluster on the {} platform",
                            client.name()
                        ),
                    )
                })?;
            let model: Model = serde_json::from_value(view.resource.clone()).map_err(|e| {
                Diagnostic::internal(format!(
                    "import cluster {id}: stored configuration is unreadable: {e}"
                ))
            })?;
            encode(&with_live(model, &view), &type_of())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_valid() {
        let schema = tfplug::server::resource_schema::<Client>(&ClusterResource);
        assert_eq!(schema.validate(), Ok(()));
    }

    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn config(scale: Value, mounts: Value) -> Value {
        obj(vec![
            ("name", Value::string("gpu")),
            ("vm_size", Value::string("Standard_NC6")),
            ("scale_settings", scale),
            ("mount_volumes", mounts),
        ])
    }

    fn manual(n: i64) -> Value {
        obj(vec![
            ("manual", obj(vec![("target_node_count", Value::number(n))])),
            ("auto_scale", Value::Null),
        ])
    }

    #[test]
    fn validation_points_at_the_attribute() {
        let both = obj(vec![
            ("manual", obj(vec![("target_node_count", Value::number(1))])),
            (
                "auto_scale",
                obj(vec![
                    ("minimum_node_count", Value::number(0)),
                    ("maximum_node_count", Value::number(2)),
                ]),
            ),
        ]);
        let inverted = obj(vec![
            ("manual", Value::Null),
            (
                "auto_scale",
                obj(vec![
                    ("minimum_node_count", Value::number(3)),
                    ("maximum_node_count", Value::number(2)),
                ]),
            ),
        ]);
        let escaping = obj(vec![(
            "host_directory",
            Value::List(vec![obj(vec![
                ("path", Value::string("/tmp")),
                ("relative_mount_path", Value::string("../x")),
            ])]),
        )]);
        let cases: Vec<(Value, Option<AttributePath>)> = vec![
            (config(manual(2), Value::Null), None),
            (
                config(manual(-1), Value::Null),
                Some(AttributePath::attrs([
                    "scale_settings",
                    "manual",
                    "target_node_count",
                ])),
            ),
            (
                config(both, Value::Null),
                Some(AttributePath::attrs(["scale_settings"])),
            ),
            (
                config(inverted, Value::Null),
                Some(AttributePath::attrs([
                    "scale_settings",
                    "auto_scale",
                    "minimum_node_count",
                ])),
            ),
            (
                config(manual(1), escaping),
                Some(
                    AttributePath::attrs(["mount_volumes", "host_directory"])
                        .index(0)
                        .attr("relative_mount_path"),
                ),
            ),
        ];
        let setup_logs = |prefix: &str| {
            let mut cfg = config(manual(1), Value::Null);
            if let Value::Object(fields) = &mut cfg {
                fields.insert(
                    "setup_task".to_owned(),
                    obj(vec![
                        ("command_line", Value::string("true")),
                        ("std_out_err_path_prefix", Value::string(prefix)),
                    ]),
                );
            }
            cfg
        };
        let prefix_at = AttributePath::attrs(["setup_task", "std_out_err_path_prefix"]);
        let mut cases = cases;
        cases.extend([
            (setup_logs("$AZ_BATCHAI_MOUNT_ROOT/logs"), None),
            (setup_logs("../../.."), Some(prefix_at.clone())),
            (
                setup_logs("$AZ_BATCHAI_MOUNT_ROOT/../.."),
                Some(prefix_at.clone()),
            ),
            (setup_logs("$AZ_BATCHAI_JOB_MOUNT_ROOT/x"), Some(prefix_at)),
        ]);
        for (cfg, want) in cases {
            let diags = crate::resources::validate_all(&ClusterResource, &cfg);
            assert_eq!(
                diags.0.first().and_then(|d| d.path.clone()),
                want,
                "{diags}"
            );
        }
    }

    /// A planned new cluster of `nodes` nodes of `vm_size`.
    fn new_cluster(vm_size: &str, nodes: i64, gpus_per_node: Option<i64>) -> Value {
        let mut planned = config(manual(nodes), Value::Null);
        super::super::set_path(&mut planned, &["vm_size"], Value::string(vm_size));
        super::super::set_path(&mut planned, &["id"], Value::unknown());
        let local = gpus_per_node.map_or(Value::Null, |n| {
            obj(vec![("gpus_per_node", Value::number(n))])
        });
        super::super::set_path(&mut planned, &["local_settings"], local);
        planned
    }

    #[test]
    fn gpu_sizes_without_gpus_are_warned_about() {
        let cases = [
            (
                "4-GPU size, no GPU",
                new_cluster("Standard_NC24s_v3", 2, None),
                0,
                true,
            ),
            (
                "enough GPUs",
                new_cluster("Standard_NC24s_v3", 2, None),
                8,
                false,
            ),
            (
                "too few for every node",
                new_cluster("Standard_NC24s_v3", 2, None),
                4,
                true,
            ),
            (
                "CPU size",
                new_cluster("Standard_D2s_v3", 2, None),
                0,
                false,
            ),
            (
                "GPUs turned off",
                new_cluster("Standard_NC24s_v3", 2, Some(0)),
                0,
                false,
            ),
            (
                "GPUs asked for",
                new_cluster("Standard_D2s_v3", 1, Some(2)),
                1,
                true,
            ),
        ];
        for (name, planned, available, want) in cases {
            let warning = gpu_warning(&planned, available);
            assert_eq!(warning.is_some(), want, "{name}");
            if let Some(w) = warning {
                assert_eq!(w.severity, tfplug::Severity::Warning, "{name}");
                assert_eq!(w.path, Some(AttributePath::attrs(["vm_size"])), "{name}");
                assert!(
                    w.detail.contains("BATCHAI_LOCAL_GPU_COUNT"),
                    "{name}: {w:?}"
                );
            }
        }
        // An existing cluster (known ID) starts no node, so its plans say nothing.
        let mut existing = new_cluster("Standard_NC24s_v3", 2, None);
        super::super::set_path(&mut existing, &["id"], Value::string("local/clusters/gpu"));
        assert!(gpu_warning(&existing, 0).is_none());
    }

    #[test]
    fn check_plan_returns_the_gpu_warning() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let client: Client = std::sync::Arc::new(crate::platform::local::LocalPlatform::new(
            dir.path().to_path_buf(),
        ));
        let planned = new_cluster("Standard_NC24s_v3", 2, None);
        let diags = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .block_on(ClusterResource.check_plan(&client, &Context::background(), &planned));
        let warned = diags.iter().any(|d| {
            d.severity == tfplug::Severity::Warning
                && d.path == Some(AttributePath::attrs(["vm_size"]))
        });
        assert_eq!(warned, machine_gpus() < 8, "{diags}");
        assert!(!diags.has_errors(), "{diags}");
    }

    #[test]
    fn ids_round_trip() {
        let name = Name::parse("gpu").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parse_id(&cluster_id(&name)), Ok(name));
        assert!(parse_id("local/fileServers/gpu").is_err());
    }
}
