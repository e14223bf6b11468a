//! Plan-time logic of `batchai_cluster` beyond what the model declares: live attributes that
//! any in-place update reads again, and the checks against the platform (mounts, the GPUs this
//! machine can give the nodes).
use tfplug::model::decode_partial;
use tfplug::{AttributePath, Diagnostic, Diagnostics, Value};

use super::model::Model;
use crate::Client;
use crate::resources::{mounts, value_at};

/// Plan-time checks that need the platform: the volumes; on the local platform, which gives
/// nodes this machine's GPUs, whether there are enough of them; on Azure, the subnet.
pub(super) async fn check_plan(client: &Client, planned: &Value) -> Diagnostics {
    let mut diags = mounts::check_plan(client, planned).await;
    if client.name() == "local"
        && let Some(warning) = gpu_warning(planned, machine_gpus())
    {
        diags.push(warning);
    }
    if client.name() == "azure"
        && let Some(error) = azure_subnet_missing(planned)
    {
        diags.push(error);
    }
    if let Some(check) = machine_check(planned) {
        for finding in client.check_machines(&check).await {
            let diagnostic = if finding.error {
                Diagnostic::error(finding.summary, finding.detail)
            } else {
                Diagnostic::warning(finding.summary, finding.detail)
            };
            diags.push(diagnostic.at(AttributePath::attrs([finding.attribute])));
        }
    }
    diags
}

/// What the platform is asked about a cluster about to be created (not one that exists, whose
/// machines are there), once every value it needs is known.
pub(super) fn machine_check(planned: &Value) -> Option<crate::platform::MachineCheck> {
    if !planned.get_attr("id").is_some_and(Value::is_unknown) {
        return None;
    }
    for attribute in ["vm_size", "vm_priority", "subnet_id", "scale_settings"] {
        if planned
            .get_attr(attribute)
            .is_some_and(|v| !v.is_wholly_known())
        {
            return None;
        }
    }
    let cluster = decode_partial::<Model>(planned)?;
    let scale = cluster.scale_settings.unwrap_or_default();
    let max_nodes = scale
        .manual
        .and_then(|m| m.target_node_count)
        .or_else(|| scale.auto_scale.and_then(|a| a.maximum_node_count))
        .unwrap_or(0);
    Some(crate::platform::MachineCheck {
        vm_size: cluster.vm_size?,
        spot: cluster.vm_priority.as_deref() == Some("lowpriority"),
        max_nodes,
        subnet_id: cluster.subnet_id,
    })
}

/// On Azure the nodes' network interfaces need a subnet; without one the scale set cannot be
/// created, so the plan says so instead of the apply.
pub(super) fn azure_subnet_missing(planned: &Value) -> Option<Diagnostic> {
    planned.get_attr("subnet_id").filter(|v| v.is_null())?;
    Some(
        Diagnostic::error(
            "no subnet for the nodes",
            "on the azure platform a cluster's nodes need a subnet: set subnet_id to the ARM ID \
             of one (/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network/\
             virtualNetworks/<network>/subnets/<subnet>) with outbound access to the storage \
             account, from which nodes download the agent",
        )
        .at(AttributePath::attrs(["subnet_id"])),
    )
}

/// GPUs this machine gives local nodes: `BATCHAI_LOCAL_GPU_COUNT` when set (as nodes read it
/// from the provider's environment), else what `nvidia-smi -L` lists.
pub(super) fn machine_gpus() -> u32 {
    std::env::var("BATCHAI_LOCAL_GPU_COUNT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(agent::gpu::detect_gpus)
}

/// A warning when nodes will get fewer GPUs than their VM size has: the local platform hands
/// out the machine's GPUs, and a node gets none (its jobs run on the CPU) when they run out.
pub(super) fn gpu_warning(planned: &Value, available: u32) -> Option<Diagnostic> {
    // Only when the nodes are (re)created: a plan with a known ID changes no node.
    if !planned.get_attr("id").is_some_and(Value::is_unknown) {
        return None;
    }
    // A GPU count not known yet (as opposed to not set) says nothing.
    if value_at(planned, &["local_settings", "gpus_per_node"]).is_some_and(Value::is_unknown) {
        return None;
    }
    let cluster = decode_partial::<Model>(planned)?;
    let vm_size = cluster.vm_size.as_deref()?;
    let per_node = cluster
        .local_settings
        .and_then(|l| l.gpus_per_node)
        .unwrap_or_else(|| agent::gpu::gpus_for_vm_size(vm_size));
    if per_node == 0 {
        return None;
    }
    let scale = cluster.scale_settings.unwrap_or_default();
    let max_nodes = scale
        .manual
        .and_then(|m| m.target_node_count)
        .or_else(|| scale.auto_scale.and_then(|a| a.maximum_node_count))
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
