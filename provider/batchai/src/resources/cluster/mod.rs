//! `batchai_cluster`: a set of (GPU) nodes running the node agent. On the local platform the
//! nodes are agent processes on this machine; scale settings change in place, everything else
//! forces replacement.
//!
//! `model` declares the schema, `plan` holds plan-time logic, `live` turns what the platform
//! reports into state; this module applies.
mod live;
mod model;
mod plan;
#[cfg(test)]
mod tests;

use std::time::Duration;

use control::records::{self, ClusterSpec, DeallocationOption, Scale, SetupTask};
use tfplug::{
    Apply, ApplyResult, AttributePath, BoxFuture, Context, Diagnostic, Diagnostics, Interrupted,
    ReadResult, Resource, TimeoutDefaults, Value,
};

use self::live::{platform_error, unusable_nodes, with_live};
use self::model::Model;
use crate::Client;
use crate::names::{Name, NameError};
use crate::platform::PlatformError;

pub const TYPE_NAME: &str = "batchai_cluster";

/// The `batchai_cluster` resource.
#[derive(Debug)]
pub struct ClusterResource;

/// The ID of a cluster on `platform`: `<platform>/clusters/<name>`.
pub fn cluster_id(platform: &str, name: &Name) -> String {
    cluster_id_str(platform, name.as_str())
}

pub(crate) fn cluster_id_str(platform: &str, name: &str) -> String {
    format!("{platform}/clusters/{name}")
}

/// Why a text is not a cluster ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterIdError {
    #[error(
        "{id:?} is not a cluster ID; IDs look like \"<platform>/clusters/<name>\", where the platform is local or azure"
    )]
    NotAClusterId { id: String },
    #[error(transparent)]
    Name(#[from] NameError),
}

/// Parses a cluster ID, `<platform>/clusters/<name>`, of any platform (see
/// [`super::check_platform`]).
pub fn parse_id(id: &str) -> Result<Name, ClusterIdError> {
    let (_, name) = super::split_id(id, "clusters")
        .ok_or_else(|| ClusterIdError::NotAClusterId { id: id.to_owned() })?;
    Ok(Name::parse(name)?)
}

impl Resource<Client> for ClusterResource {
    type Model = Model;

    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn timeouts(&self) -> Option<TimeoutDefaults> {
        Some(super::DEFAULT_TIMEOUTS)
    }

    fn check_plan<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        planned: &'a Value,
    ) -> BoxFuture<'a, Diagnostics> {
        Box::pin(plan::check_plan(client, planned))
    }

    fn create<'a>(
        &'a self,
        client: &'a Client,
        ctx: &'a Context,
        request: Apply<'a, Model>,
    ) -> BoxFuture<'a, ApplyResult<Model>> {
        Box::pin(async move {
            let model = request.planned;
            let spec = match spec_from(client, &model).await {
                Ok(s) => s,
                Err(d) => return ApplyResult::failed(d),
            };
            // Stop and timeout are handled here rather than by dropping the call, so a cluster
            // that is partly up is saved to state (and destroyed or replaced) instead of leaked.
            let created = ctx
                .bounded(
                    Duration::from_secs(1),
                    client.create_cluster(&spec, &secrets_of(&model), &resource_record(&model)),
                )
                .await
                .unwrap_or_else(|why| Err(interrupted(&spec.name, why)));
            match created {
                // An unusable node fails the apply; the state is kept, so Terraform taints the
                // cluster and the next apply replaces it.
                Ok(view) => ApplyResult::partial(
                    with_live(client.name(), model, &view),
                    unusable_nodes(&view),
                ),
                Err(e) => {
                    // The cluster may exist partly (nodes started); keep it in state so it is
                    // destroyed or replaced rather than leaked.
                    let existing = match Name::parse(&spec.name) {
                        Ok(name) if !matches!(e, PlatformError::AlreadyExists { .. }) => {
                            client.get_cluster(&name).await.ok().flatten()
                        }
                        _ => None,
                    };
                    ApplyResult {
                        state: existing.map(|view| with_live(client.name(), model, &view)),
                        private: Vec::new(),
                        diagnostics: platform_error(e),
                    }
                }
            }
        })
    }

    fn read<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        state: Model,
        private: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<ReadResult<Model>>, Diagnostics>> {
        Box::pin(async move {
            let name = super::stored_name(state.name.as_deref())?;
            let Some(view) = client.read_cluster(&name).await.map_err(platform_error)? else {
                return Ok(None);
            };
            Ok(Some(ReadResult {
                state: with_live(client.name(), state, &view),
                private: private.to_vec(),
            }))
        })
    }

    fn update<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        request: Apply<'a, Model>,
    ) -> BoxFuture<'a, ApplyResult<Model>> {
        Box::pin(async move {
            let model = request.planned;
            let run = async {
                let name = name_of(&model)?;
                let scale = scale_from(&model)?;
                client
                    .update_cluster_scale(&name, &scale, &resource_record(&model))
                    .await
                    .map_err(platform_error)
            };
            match run.await {
                Ok(view) => ApplyResult::partial(
                    with_live(client.name(), model, &view),
                    unusable_nodes(&view),
                ),
                Err(d) => ApplyResult::failed(d),
            }
        })
    }

    fn delete<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        state: Model,
        _private: &'a [u8],
    ) -> BoxFuture<'a, Result<(), Diagnostics>> {
        Box::pin(async move {
            let name = super::stored_name(state.name.as_deref())?;
            client.delete_cluster(&name).await.map_err(platform_error)
        })
    }

    fn import<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Model, Diagnostics>> {
        Box::pin(async move {
            let name =
                parse_id(id).map_err(|e| Diagnostic::error("invalid import ID", e.to_string()))?;
            super::check_platform(id, client.name())?;
            let view = client
                .read_cluster(&name)
                .await
                .map_err(platform_error)?
                .ok_or_else(|| super::import_not_found("cluster", id, client))?;
            let model = super::stored_configuration("cluster", id, &view.resource)?;
            Ok(with_live(client.name(), model, &view))
        })
    }
}

/// The error of a create cut short by its timeout or by Terraform.
fn interrupted(name: &str, why: Interrupted) -> PlatformError {
    let reason = match why {
        Interrupted::Deadline => {
            "its nodes did not all become idle within the create timeout; raise timeouts.create \
             or check the setup task"
        }
        Interrupted::Stopped => {
            "interrupted (Terraform asked the provider to stop); the cluster is kept in state so \
             it can be destroyed or replaced"
        }
    };
    PlatformError::failed("create", "cluster", name, reason)
}

fn name_of(model: &Model) -> Result<Name, Diagnostics> {
    Name::parse(model.name.as_deref().unwrap_or_default()).map_err(|e| {
        Diagnostic::error("invalid cluster name", e.to_string())
            .at(AttributePath::attrs(["name"]))
            .into()
    })
}

/// The scale settings as agents follow them, from a plan (whose declared defaults are set).
fn scale_from(model: &Model) -> Result<Scale, Diagnostics> {
    let bad = |what: &str| {
        Diagnostics::from(Diagnostic::internal(format!(
            "scale_settings: {what} is missing or invalid"
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
                .ok_or_else(|| bad("node_deallocation_option"))?,
        }),
        (None, Some(a)) => Ok(Scale::Auto {
            minimum_node_count: a
                .minimum_node_count
                .ok_or_else(|| bad("minimum_node_count"))?,
            maximum_node_count: a
                .maximum_node_count
                .ok_or_else(|| bad("maximum_node_count"))?,
            initial_node_count: a
                .initial_node_count
                .ok_or_else(|| bad("initial_node_count"))?,
            idle_timeout_secs: a
                .idle_timeout
                .as_deref()
                .and_then(|t| model::idle_timeout(t).ok())
                .ok_or_else(|| bad("idle_timeout"))?
                .as_secs(),
        }),
        _ => Err(Diagnostic::error(
            "invalid scale_settings",
            "set exactly one of a `manual` or an `auto_scale` block",
        )
        .at(AttributePath::attrs(["scale_settings"]))
        .into()),
    }
}

/// Builds what the agents need from a wholly known plan, resolving file server IDs.
async fn spec_from(client: &Client, model: &Model) -> Result<ClusterSpec, Diagnostics> {
    let name = name_of(model)?;
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
        vm_priority: model.vm_priority.clone().unwrap_or_default(),
        scale: scale_from(model)?,
        setup_task: model.setup_task.as_ref().map(|t| SetupTask {
            command_line: t.command_line.clone().unwrap_or_default(),
            environment_variables: t.environment_variables.clone().unwrap_or_default(),
            secrets: control::secrets::Secrets::default(),
            std_out_err_path_prefix: t.std_out_err_path_prefix.clone(),
        }),
        mounts,
        gpus_per_node,
        deleting: false,
        scale_generation: 0,
    })
}

/// The setup task's secrets: `secrets_wo` (taken from the configuration; the plan has it null)
/// over the deprecated `secrets`.
fn secrets_of(model: &Model) -> control::secrets::ClusterSecrets {
    let mut secrets = std::collections::BTreeMap::new();
    if let Some(t) = &model.setup_task {
        secrets.extend(t.secrets.clone().unwrap_or_default());
        secrets.extend(t.secrets_wo.clone().unwrap_or_default());
    }
    control::secrets::ClusterSecrets {
        format: records::FORMAT,
        setup_task: control::secrets::Secrets(secrets),
        mounts: control::secrets::Secrets(
            model
                .mount_volumes
                .as_ref()
                .map(super::mounts::MountVolumesModel::keys)
                .unwrap_or_default(),
        ),
    }
}

/// The configuration as stored for import: the configured part of the plan, without secrets
/// and passwords.
fn resource_record(model: &Model) -> serde_json::Value {
    let mut m = Model {
        id: None,
        allocation_state: None,
        current_node_count: None,
        node_state_counts: None,
        nodes: None,
        errors: None,
        creation_time: None,
        ..model.clone()
    };
    if let Some(t) = &mut m.setup_task {
        t.secrets = None;
        t.secrets_wo = None;
    }
    if let Some(u) = &mut m.user_account_settings {
        u.admin_user_password = None;
    }
    m.mount_volumes = m
        .mount_volumes
        .map(super::mounts::MountVolumesModel::without_keys);
    serde_json::to_value(&m).unwrap_or_default()
}
