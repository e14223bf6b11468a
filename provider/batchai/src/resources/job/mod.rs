//! `batchai_job`: a training run on a cluster, gang-scheduled on `node_count` nodes with one of
//! Batch AI's toolkits. Jobs are immutable: every argument but `wait_for_completion` and
//! `timeouts` forces replacement. Apply waits for the job by default, and a failed job is an
//! error whose state is kept, so Terraform taints it and the next apply runs it again.
//!
//! The model and its checks are declared in `model`, the toolkit blocks in `toolkit` (one
//! table), and `spec` turns the model into the job agents run and back.
mod model;
mod spec;
mod toolkit;

use std::collections::BTreeMap;
use std::time::Duration;

use control::jobs::JobState;
use control::records::{self, NodeError};
use tfplug::{
    Apply, ApplyResult, AttributePath, BoxFuture, Context, Diagnostic, Diagnostics, Interrupted,
    ReadResult, Resource, TimeoutDefaults, Value,
};

pub use self::model::JobModel;
use self::spec::{resource_record, spec_from, with_live};
use crate::Client;
use crate::names::Name;
use crate::platform::{ClusterView, JobView, PlatformError};
use crate::resources::{ErrorModel, cluster};

pub const TYPE_NAME: &str = "batchai_job";

/// The `batchai_job` resource.
#[derive(Debug)]
pub struct JobResource;

/// The ID of a job on `platform`: `<platform>/clusters/<cluster>/jobs/<job>`.
pub fn job_id(platform: &str, cluster: &str, job: &str) -> String {
    format!("{}/jobs/{job}", cluster::cluster_id_str(platform, cluster))
}

/// Why a string is not a job ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobIdError {
    /// Not `<cluster ID>/jobs/<job>`.
    #[error(
        "{0:?} is not a job ID; IDs look like \"<platform>/clusters/<cluster>/jobs/<job>\", where the platform is local or azure"
    )]
    Malformed(String),
    /// The job's part is not a valid name.
    #[error(transparent)]
    JobName(#[from] crate::names::NameError),
}

/// Parses `<platform>/clusters/<cluster>/jobs/<job>`.
pub fn parse_id(id: &str) -> Result<(Name, Name), JobIdError> {
    let malformed = || JobIdError::Malformed(id.to_owned());
    let (cluster_id, job) = id.rsplit_once("/jobs/").ok_or_else(malformed)?;
    let cluster = cluster::parse_id(cluster_id).map_err(|_| malformed())?;
    let job = Name::parse(job)?;
    Ok((cluster, job))
}

/// The job an existing state names.
fn stored_id(model: &JobModel) -> Result<(Name, Name), Diagnostics> {
    parse_id(model.id.as_deref().unwrap_or_default())
        .map_err(|e| Diagnostic::internal(format!("stored job ID is invalid: {e}")).into())
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
fn fits(cluster: &ClusterView, node_count: u32) -> Result<(), Diagnostics> {
    let launched = match cluster.spec.scale {
        records::Scale::Manual {
            target_node_count, ..
        } => target_node_count,
        records::Scale::Auto {
            maximum_node_count, ..
        } => maximum_node_count,
    };
    // Nodes that joined on their own come on top of what the scale settings launch.
    let joined = cluster.nodes.iter().filter(|n| n.joined).count();
    let most = launched.saturating_add(u32::try_from(joined).unwrap_or(u32::MAX));
    if node_count > most {
        return Err(Diagnostic::error(
            "job needs more nodes than its cluster has",
            format!(
                "the job needs {node_count} nodes at once but cluster {} has at most {most}; \
                 lower node_count or scale the cluster up",
                cluster.spec.name
            ),
        )
        .at(AttributePath::attrs(["node_count"]))
        .into());
    }
    Ok(())
}

/// The job features ([`control::jobs::FEATURES`]) a job uses, each with the attribute that
/// uses it: agents from before a feature existed would misread or ignore it.
fn features(model: &JobModel) -> Vec<(&'static str, AttributePath)> {
    let mut used = Vec::new();
    if model.toolkits.deepspeed.is_some() {
        used.push(("deepspeed", AttributePath::attrs(["deepspeed"])));
    }
    let nodes = model.node_count.unwrap_or(1);
    if nodes > 1
        && let Ok(toolkit) = model.toolkits.toolkit()
        && agent::toolkit::uses_mpi(&toolkit, nodes)
    {
        used.push(("mpi_ranks_in_store", AttributePath::attrs(["node_count"])));
    }
    if model
        .mount_volumes
        .as_ref()
        .is_some_and(|v| !v.git_repository.is_empty())
    {
        used.push((
            "git_repository",
            AttributePath::attrs(["mount_volumes", "git_repository"]),
        ));
    }
    if model
        .mount_volumes
        .as_ref()
        .is_some_and(|v| !v.azure_file_share.is_empty() || !v.azure_blob_file_system.is_empty())
    {
        used.push((
            "azure_storage_mounts",
            AttributePath::attrs(["mount_volumes"]),
        ));
    }
    if model
        .constraints
        .as_ref()
        .and_then(|c| c.termination_grace_period.as_deref())
        .is_some_and(|g| {
            // Older agents give every job the default, so only another period needs this one.
            control::duration::parse(g).ok()
                != control::duration::parse(model::DEFAULT_TERMINATION_GRACE).ok()
        })
    {
        used.push((
            "termination_grace_period",
            AttributePath::attrs(["constraints", "termination_grace_period"]),
        ));
    }
    used
}

/// Refuses a job that uses a feature some of the cluster's agents do not have: they run an
/// older provider's code, which would fail the job's records as corrupt or ignore the setting.
fn agents_can_run(cluster: &ClusterView, model: &JobModel) -> Result<(), Diagnostics> {
    let mut diags = Diagnostics::new();
    for (feature, path) in features(model) {
        let old: Vec<&str> = cluster
            .nodes
            .iter()
            .filter(|n| n.state != records::NodeState::Launching)
            .filter(|n| !n.features.iter().any(|f| f == feature))
            .map(|n| n.id.as_str())
            .collect();
        if old.is_empty() {
            continue;
        }
        diags.push(
            Diagnostic::error(
                "cluster's nodes run an older agent",
                format!(
                    "{feature} needs an agent from this provider version, but node(s) {} of \
                     cluster {} run an older one; replace the cluster (terraform apply \
                     -replace=<its address>) so its nodes run this version, or do without \
                     {feature}",
                    old.join(", "),
                    cluster.spec.name
                ),
            )
            .at(path),
        );
    }
    diags.into_result()
}

/// At apply, the cluster must exist and be able to run the job.
async fn check_fits(client: &Client, cluster: &Name, model: &JobModel) -> Result<(), Diagnostics> {
    let view = client
        .get_cluster(cluster)
        .await
        .map_err(|e| Diagnostic::error("cluster lookup failed", e.to_string()))?
        .ok_or_else(|| cluster_not_found(client, cluster))?;
    fits(&view, model.node_count.unwrap_or_default())?;
    agents_can_run(&view, model)
}

fn cluster_not_found(client: &Client, cluster: &Name) -> Diagnostic {
    Diagnostic::error(
        "cluster not found",
        format!(
            "no cluster {cluster} exists on the {} platform; create it first (a batchai_cluster's id) or fix cluster_id",
            client.name()
        ),
    )
    .at(AttributePath::attrs(["cluster_id"]))
}

/// Submits the planned job and, unless told not to, waits for it to end. A job that was
/// submitted is returned whatever happens next (a failure, a timeout, a stop), so Terraform
/// keeps it in state.
async fn create(client: &Client, ctx: &Context, model: JobModel) -> ApplyResult<JobModel> {
    let secrets = crate::platform::JobSecrets {
        env: model.secrets_wo.clone().unwrap_or_default(),
        mount_keys: model
            .mount_volumes
            .as_ref()
            .map(crate::resources::mounts::MountVolumesModel::keys)
            .unwrap_or_default(),
    };
    let (spec, cluster) = match spec_from(client, &model).await {
        Ok(s) => s,
        Err(d) => return ApplyResult::failed(d),
    };
    if let Err(d) = check_fits(client, &cluster, &model).await {
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
    // The plan holds the configured value or the declared default.
    if model.wait_for_completion == Some(false) {
        return ApplyResult::ok(with_live(client.name(), model, &submitted));
    }
    // Stop and timeout end the wait here rather than by dropping the call, so the job is saved
    // to state (and can be destroyed, which terminates it) instead of leaked.
    let waited = match ctx
        .bounded(
            Duration::from_secs(1),
            client.wait_job(&cluster, &job, true),
        )
        .await
    {
        Ok(done) => done.map_err(platform_error),
        Err(Interrupted::Deadline) => Err(Diagnostic::error(
            "job did not finish in time",
            format!(
                "job {job} did not finish within timeouts.create; it keeps running and is saved to state (tainted). Raise timeouts.create, set wait_for_completion = false, or destroy it to terminate it"
            ),
        )
        .into()),
        Err(Interrupted::Stopped) => {
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
    ApplyResult::partial(with_live(client.name(), model, &view), diagnostics)
}

/// The state of a job whose records cannot be read: it was failed on the platform, and the
/// state keeps what it knew, marked failed, so the plan replaces it (or destroys it).
fn corrupt(
    ctx: &Context,
    mut model: JobModel,
    cluster: &Name,
    job: &Name,
    reason: &str,
) -> JobModel {
    ctx.warn(Diagnostic::warning(
        "job records are corrupt",
        format!(
            "job {job} on cluster {cluster}: {reason}; the job was marked failed: run it again with terraform apply -replace, or destroy it"
        ),
    ));
    model.execution_state = Some("failed".to_owned());
    model.errors.get_or_insert_with(Vec::new).push(ErrorModel {
        code: "CorruptRecord".to_owned(),
        message: format!("the job's records could not be read: {reason}"),
        details: BTreeMap::new(),
    });
    model
}

/// Plan-time checks against the platform: the volumes, and a known cluster ID must name a
/// cluster that exists and can hold the job.
async fn check_plan(client: &Client, planned: &Value) -> Diagnostics {
    // A known ID is an in-place update (`wait_for_completion`, `timeouts`): nothing is
    // submitted, so there is nothing to check against the platform.
    if planned
        .get_attr("id")
        .is_some_and(|id| !id.is_null() && !id.is_unknown())
    {
        return Diagnostics::new();
    }
    let mut diags = crate::resources::mounts::check_plan(client, planned).await;
    // A cluster created (or replaced) in the same plan has an unknown ID here, so a known ID
    // must name a cluster that exists now.
    let Some(id) = planned.get_attr("cluster_id").and_then(Value::as_str) else {
        return diags;
    };
    let Ok(cluster) = cluster::parse_id(id) else {
        return diags;
    };
    if let Err(other) = super::check_platform(id, client.name()) {
        diags.push(other.at(AttributePath::attrs(["cluster_id"])));
        return diags;
    }
    let view = match client.get_cluster(&cluster).await {
        Ok(Some(view)) => view,
        Ok(None) => {
            diags.push(cluster_not_found(client, &cluster));
            return diags;
        }
        // A lookup that fails is reported by the apply, which repeats it.
        Err(_) => return diags,
    };
    // The cluster may be changed earlier in the same apply, so this is a warning here and an
    // error at apply.
    let node_count = planned
        .get_attr("node_count")
        .and_then(Value::as_number)
        .and_then(|n| n.as_i64());
    let mut problems = Diagnostics::new();
    if let Some(n) = node_count
        && let Err(d) = fits(&view, u32::try_from(n).unwrap_or(0))
    {
        problems.extend(d);
    }
    if let Some(model) = tfplug::model::decode_partial::<JobModel>(planned)
        && let Err(d) = agents_can_run(&view, &model)
    {
        problems.extend(d);
    }
    for mut diag in problems {
        diag.severity = tfplug::Severity::Warning;
        diags.push(diag);
    }
    diags
}

impl Resource<Client> for JobResource {
    type Model = JobModel;

    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn timeouts(&self) -> Option<TimeoutDefaults> {
        Some(TimeoutDefaults {
            // Training runs are long; the job's own max_wall_clock_time is its real limit.
            create: Duration::from_secs(24 * 3600),
            ..crate::resources::DEFAULT_TIMEOUTS
        })
    }

    fn check_plan<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        planned: &'a Value,
    ) -> BoxFuture<'a, Diagnostics> {
        Box::pin(check_plan(client, planned))
    }

    fn create<'a>(
        &'a self,
        client: &'a Client,
        ctx: &'a Context,
        request: Apply<'a, JobModel>,
    ) -> BoxFuture<'a, ApplyResult<JobModel>> {
        Box::pin(create(client, ctx, request.planned))
    }

    fn read<'a>(
        &'a self,
        client: &'a Client,
        ctx: &'a Context,
        state: JobModel,
        private: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<ReadResult<JobModel>>, Diagnostics>> {
        Box::pin(async move {
            let (cluster, job) = stored_id(&state)?;
            let state = match client.get_job(&cluster, &job).await {
                Ok(Some(view)) => with_live(client.name(), state, &view),
                Ok(None) => return Ok(None),
                Err(PlatformError::Corrupt { reason, .. }) => {
                    corrupt(ctx, state, &cluster, &job, &reason)
                }
                Err(e) => return Err(platform_error(e)),
            };
            Ok(Some(ReadResult {
                state,
                private: private.to_vec(),
            }))
        })
    }

    fn update<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        request: Apply<'a, JobModel>,
    ) -> BoxFuture<'a, ApplyResult<JobModel>> {
        // Only `wait_for_completion` and `timeouts` update in place; neither touches the job.
        Box::pin(async move {
            let run = async {
                let prior = request.prior.as_ref().unwrap_or(&request.planned);
                let (cluster, job) = stored_id(prior)?;
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
                Ok(with_live(client.name(), request.planned.clone(), &view))
            };
            ApplyResult::from_result(run.await)
        })
    }

    fn delete<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        state: JobModel,
        _private: &'a [u8],
    ) -> BoxFuture<'a, Result<(), Diagnostics>> {
        Box::pin(async move {
            let (cluster, job) = stored_id(&state)?;
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
    ) -> BoxFuture<'a, Result<JobModel, Diagnostics>> {
        Box::pin(async move {
            let (cluster, job) =
                parse_id(id).map_err(|e| Diagnostic::error("invalid import ID", e.to_string()))?;
            super::check_platform(id, client.name())?;
            let view = client
                .get_job(&cluster, &job)
                .await
                .map_err(platform_error)?
                .ok_or_else(|| super::import_not_found("job", id, client))?;
            // Write-only values are never stored; the imported job keeps running with the
            // secrets it was submitted with.
            let model = super::stored_configuration("job", id, &view.resource)?;
            Ok(with_live(client.name(), model, &view))
        })
    }
}

#[cfg(test)]
mod tests;
