//! The declared model of `batchai_cluster`: every attribute and block once, with its
//! description, how it is set, its default and its validation.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tfplug::{AttributePath, Diagnostic, Diagnostics};

use crate::names::Name;
use crate::resources::ErrorModel;
use crate::resources::mounts::MountVolumesModel;

/// A Batch AI cluster: nodes (on Azure a VM scale set of GPU VMs, on the local platform agent
/// processes on this machine) that mount shared storage, run a setup task and run jobs.
/// `scale_settings` change in place; every other argument forces replacement. Destroying the
/// cluster drains its nodes per `node_deallocation_option` and stops every node process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, tfplug::Model)]
pub struct Model {
    /// The cluster's ID, `<platform>/clusters/<name>` (`local/...` on the local platform,
    /// `azure/...` on Azure).
    #[tf(computed)]
    pub(crate) id: Option<String>,
    /// Name of the cluster: 1 to 64 letters, digits, `-` or `_`. Changing it forces
    /// replacement.
    #[tf(required, replace, validate = Name::parse, summary = "invalid cluster name")]
    pub(crate) name: Option<String>,
    /// Azure VM size of the nodes, e.g. `Standard_NC24s_v3`. On the local platform it sets how
    /// many GPUs each node gets. Changing it forces replacement.
    #[tf(required, replace)]
    pub(crate) vm_size: Option<String>,
    /// `dedicated` (the default) or `lowpriority` (spot VMs on Azure). Changing it forces
    /// replacement.
    #[tf(default = "dedicated", replace, one_of("dedicated", "lowpriority"))]
    pub(crate) vm_priority: Option<String>,
    /// ARM ID of the subnet for the nodes (Azure). Changing it forces replacement.
    #[tf(optional, replace)]
    pub(crate) subnet_id: Option<String>,
    #[tf(block, required)]
    pub(crate) scale_settings: Option<ScaleSettingsModel>,
    #[tf(block, replace)]
    pub(crate) image_reference: Option<ImageReferenceModel>,
    #[tf(block, replace)]
    pub(crate) user_account_settings: Option<UserAccountModel>,
    #[tf(block, replace)]
    pub(crate) setup_task: Option<SetupTaskModel>,
    /// Volumes mounted on every node under `$AZ_BATCHAI_MOUNT_ROOT`. Changing them forces
    /// replacement.
    #[tf(block, replace)]
    pub(crate) mount_volumes: Option<MountVolumesModel>,
    #[tf(block, replace)]
    pub(crate) local_settings: Option<LocalSettingsModel>,
    /// `steady` when the node count matches the scale settings, `resizing` while nodes are
    /// added or removed.
    #[tf(computed, live)]
    pub(crate) allocation_state: Option<String>,
    /// Nodes the cluster has now, in any state.
    #[tf(computed, live)]
    pub(crate) current_node_count: Option<u32>,
    /// Nodes per state: `idle`, `running` (busy with work), `preparing` (starting, mounting,
    /// running the setup task), `unusable` (setup failed) and `leaving`.
    #[tf(computed, live)]
    pub(crate) node_state_counts: Option<NodeStateCounts>,
    /// The cluster's nodes now: each node's `id`, `state` (as in `node_state_counts`) and
    /// `gpus`, the indices of the GPUs it was given (its `CUDA_VISIBLE_DEVICES`); empty when
    /// the machine has none to give, so the node's jobs run without a GPU.
    #[tf(computed, live)]
    pub(crate) nodes: Option<Vec<NodeModel>>,
    /// Problems on the cluster's nodes, one entry per problem: `code` (`SetupTaskFailed` or
    /// `MountFailed`), `message` (which node, and what happened) and `details`, a map that for
    /// a failed setup task holds `exit_code`, `stdout_path`, `stderr_path` and `stderr_tail`
    /// (its last lines of stderr).
    #[tf(computed, live)]
    pub(crate) errors: Option<Vec<ErrorModel>>,
    /// When the cluster was created (RFC 3339).
    #[tf(computed)]
    pub(crate) creation_time: Option<String>,
}

/// How many nodes the cluster has: exactly one of `manual` or `auto_scale`. Changes apply in
/// place, without replacing the cluster.
//
// Not `exactly_one_of`: that points at the second block when both are set, and the diagnostic
// has always pointed at `scale_settings`. Both blocks are judged as soon as they are there;
// neither only once a `dynamic` block's presence is known.
#[derive(Debug, Clone, Default, Serialize, Deserialize, tfplug::Model)]
#[tf(check = both_scales, summary = "invalid scale_settings")]
#[tf(
    check(no_scale, known(manual, auto_scale)),
    summary = "invalid scale_settings"
)]
pub(crate) struct ScaleSettingsModel {
    #[tf(block)]
    pub manual: Option<ManualModel>,
    #[tf(block)]
    pub auto_scale: Option<AutoScaleModel>,
}

/// A fixed number of nodes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, tfplug::Model)]
pub(crate) struct ManualModel {
    /// The number of nodes, 0 or more.
    #[tf(required, range(0, 1000), summary = "invalid node count")]
    pub target_node_count: Option<u32>,
    /// What happens to running work on nodes removed by a scale-down or destroy: `requeue`
    /// (the default: stop it and queue it again), `terminate` (stop it) or
    /// `waitforjobcompletion` (let it finish first).
    #[tf(
        default = "requeue",
        one_of("requeue", "terminate", "waitforjobcompletion")
    )]
    pub node_deallocation_option: Option<String>,
}

/// Nodes follow demand between the bounds. The live node count is reported in
/// `current_node_count` and never causes a plan diff.
#[derive(Debug, Clone, Default, Serialize, Deserialize, tfplug::Model)]
#[tf(
    check(bounds, known(minimum_node_count, maximum_node_count)),
    summary = "invalid auto_scale bounds"
)]
pub(crate) struct AutoScaleModel {
    /// The fewest nodes, 0 or more; the cluster shrinks to this when idle.
    #[tf(required, range(0, 1000), summary = "invalid node count")]
    pub minimum_node_count: Option<u32>,
    /// The most nodes queued and running work may grow the cluster to.
    #[tf(required, range(0, 1000), summary = "invalid node count")]
    pub maximum_node_count: Option<u32>,
    /// Nodes to start with, within the bounds. Defaults to 0 (the minimum).
    #[tf(default = 0, range(0, 1000), summary = "invalid node count")]
    pub initial_node_count: Option<u32>,
    /// How long the cluster stays at its size without queued or running work before it
    /// shrinks to `minimum_node_count`, as a duration such as `10m` (the default).
    #[tf(default = "10m", validate = idle_timeout)]
    pub idle_timeout: Option<String>,
}

/// The VM image of the nodes (Azure). Recorded on the local platform. Changing it forces
/// replacement.
#[derive(Debug, Clone, Default, Serialize, Deserialize, tfplug::Model)]
pub(crate) struct ImageReferenceModel {
    /// The image's `publisher`.
    #[tf(optional)]
    pub publisher: Option<String>,
    /// The image's `offer`.
    #[tf(optional)]
    pub offer: Option<String>,
    /// The image's `sku`.
    #[tf(optional)]
    pub sku: Option<String>,
    /// The image's `version`.
    #[tf(optional)]
    pub version: Option<String>,
    /// The image's `virtual_machine_image_id`.
    #[tf(optional)]
    pub virtual_machine_image_id: Option<String>,
}

/// The administrator account on the nodes (Azure). Recorded on the local platform. Changing
/// it forces replacement.
#[derive(Debug, Clone, Default, Serialize, Deserialize, tfplug::Model)]
pub(crate) struct UserAccountModel {
    /// Name of the administrator account on every node.
    #[tf(required)]
    pub admin_user_name: Option<String>,
    /// SSH public key (OpenSSH format) of the administrator.
    #[tf(optional)]
    pub admin_user_ssh_public_key: Option<String>,
    /// Password of the administrator; stored in state, marked sensitive.
    #[tf(optional, sensitive)]
    pub admin_user_password: Option<String>,
}

/// A command that prepares every node (installs packages, fetches data). A node whose setup
/// task fails is `unusable` and the failure, with its exit code and log paths, is in
/// `errors`. Changing it forces replacement.
#[derive(Debug, Clone, Default, Serialize, Deserialize, tfplug::Model)]
pub(crate) struct SetupTaskModel {
    /// Run with `bash -c` on every node before it takes work, and again whenever a node
    /// restarts, so it must be idempotent. Sees `AZ_BATCHAI_MOUNT_ROOT`,
    /// `AZ_BATCHAI_NUM_GPUS`, `CUDA_VISIBLE_DEVICES` and `AZ_BATCHAI_STDOUTERR_DIR`.
    #[tf(required)]
    pub command_line: Option<String>,
    /// Environment variables for the setup task.
    #[tf(optional)]
    pub environment_variables: Option<BTreeMap<String, String>>,
    /// Environment variables with secret values, stored in Terraform state (marked
    /// sensitive). Deprecated: use `secrets_wo`, which Terraform never stores.
    #[tf(optional, sensitive, deprecated)]
    pub secrets: Option<BTreeMap<String, String>>,
    /// Environment variables with secret values. Write-only: never stored in Terraform state
    /// or plans (Terraform 1.11 or later). The provider keeps them apart from the cluster's
    /// spec, where only a node preparing itself reads them, and never logs them; every stderr
    /// tail the setup task reports shows them as `***`. Change `secrets_wo_version` to
    /// replace the cluster with new values.
    #[tf(optional, sensitive, write_only)]
    pub secrets_wo: Option<BTreeMap<String, String>>,
    /// Any number; changing it replaces the cluster with the current `secrets_wo`.
    #[tf(optional)]
    pub secrets_wo_version: Option<i64>,
    /// Directory under which the setup task's `stdout.txt` and `stderr.txt` are kept, in
    /// `<prefix>/<cluster name>/<unique id>/<node id>/`. Defaults to the node's directory
    /// under the provider's root.
    #[tf(optional, validate = control::jobs::check_setup_log_prefix)]
    pub std_out_err_path_prefix: Option<String>,
}

/// Settings that only apply on the local platform. Changing them forces replacement.
#[derive(Debug, Clone, Default, Serialize, Deserialize, tfplug::Model)]
pub(crate) struct LocalSettingsModel {
    /// GPUs each node gets (disjoint, through `CUDA_VISIBLE_DEVICES`). Defaults to what
    /// `vm_size` has on Azure; nodes get fewer when the machine runs out. The machine's GPUs
    /// are counted with `nvidia-smi -L`; `BATCHAI_LOCAL_GPU_COUNT` in the provider's
    /// environment overrides the count.
    #[tf(optional)]
    pub gpus_per_node: Option<u32>,
}

/// How many of the cluster's nodes are in each state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, tfplug::Model)]
pub(crate) struct NodeStateCounts {
    #[tf(computed)]
    pub idle: u32,
    #[tf(computed)]
    pub running: u32,
    #[tf(computed)]
    pub preparing: u32,
    #[tf(computed)]
    pub unusable: u32,
    #[tf(computed)]
    pub leaving: u32,
}

/// One node of the cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, tfplug::Model)]
pub(crate) struct NodeModel {
    #[tf(computed)]
    pub id: String,
    #[tf(computed)]
    pub state: String,
    #[tf(computed)]
    pub gpus: Vec<u32>,
}

/// Why an `idle_timeout` is not a duration.
#[derive(Debug, thiserror::Error)]
#[error("{0}; write a duration such as \"10m\"")]
pub(crate) struct IdleTimeoutError(#[from] tfplug::timeouts::DurationError);

/// The idle timeout as a duration.
pub(crate) fn idle_timeout(text: &str) -> Result<std::time::Duration, IdleTimeoutError> {
    Ok(tfplug::timeouts::parse_duration(text)?)
}

const SCALE_CHOICE: &str =
    "set exactly one of a `manual { target_node_count = N }` or an `auto_scale { ... }` block";

fn both_scales(scale: &ScaleSettingsModel) -> Diagnostics {
    if scale.manual.is_some() && scale.auto_scale.is_some() {
        return Diagnostic::error("invalid scale_settings", SCALE_CHOICE).into();
    }
    Diagnostics::new()
}

fn no_scale(scale: &ScaleSettingsModel) -> Diagnostics {
    if scale.manual.is_none() && scale.auto_scale.is_none() {
        return Diagnostic::error("invalid scale_settings", SCALE_CHOICE).into();
    }
    Diagnostics::new()
}

fn bounds(auto: &AutoScaleModel) -> Diagnostics {
    let mut diags = Diagnostics::new();
    let (Some(min), Some(max)) = (auto.minimum_node_count, auto.maximum_node_count) else {
        return diags;
    };
    if min > max {
        diags.push(
            Diagnostic::error(
                "invalid auto_scale bounds",
                format!("minimum_node_count ({min}) is greater than maximum_node_count ({max})"),
            )
            .at(AttributePath::attrs(["minimum_node_count"])),
        );
    }
    if max < 1 {
        diags.push(
            Diagnostic::error(
                "invalid auto_scale bounds",
                "maximum_node_count must be at least 1",
            )
            .at(AttributePath::attrs(["maximum_node_count"])),
        );
    }
    diags
}
