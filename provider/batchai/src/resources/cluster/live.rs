//! What the platform reports about a cluster: the live attributes of its state, and the errors
//! an apply fails with.
use control::records::{self, NodeState};
use tfplug::{Diagnostic, Diagnostics};

use super::model::{Model, NodeModel, NodeStateCounts};
use crate::platform::{ClusterView, PlatformError};
use crate::resources::{ErrorModel, rfc3339_ms};

/// The configured part of the state plus what the platform reports now.
pub(super) fn with_live(platform: &str, mut model: Model, view: &ClusterView) -> Model {
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
                    rfc3339_ms(since)
                ),
                details: Default::default(),
            },
        );
    }
    if let Some(e) = &view.launch_error {
        errors.insert(
            0,
            ErrorModel {
                code: e.code.to_string(),
                message: format!(
                    "cluster {}: could not add nodes: {}",
                    view.spec.name, e.message
                ),
                details: e.details.clone(),
            },
        );
    }
    let count = u32::try_from(view.nodes.len()).unwrap_or(u32::MAX);
    let steady = count == view.desired_node_count
        && counts.preparing == 0
        && counts.leaving == 0
        && view.nodes.iter().all(|n| !n.drain_requested);
    model.id = Some(super::cluster_id_str(platform, &view.spec.name));
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

pub(super) fn platform_error(e: PlatformError) -> Diagnostics {
    let summary = match e {
        PlatformError::AlreadyExists { .. } => "cluster already exists",
        _ => "cluster operation failed",
    };
    Diagnostic::error(summary, e.to_string()).into()
}

/// An error for every unusable node, quoting the setup task's failure.
pub(super) fn unusable_nodes(view: &ClusterView) -> Diagnostics {
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
