//! Between the model and the platform: the planned model becomes the job agents run
//! ([`JobSpec`]) and the record kept for import, and the platform's view of a job fills the
//! model's computed attributes.
use control::jobs::{Container, InputDirectory, JobSpec, OutputDirectory, Priority, Retry};
use control::records;
use tfplug::{AttributePath, Diagnostic, Diagnostics};

use super::model::{
    ContainerModel, DEFAULT_MAX_UNSCHEDULABLE, DEFAULT_MAX_WALL_CLOCK, DEFAULT_TERMINATION_GRACE,
    InputModel, JobModel, OutputModel, RetryModel,
};
use crate::Client;
use crate::names::Name;
use crate::platform::JobView;
use crate::resources::{ErrorModel, mounts};

/// A wall-clock limit in milliseconds, with the error at its attribute.
fn limit_ms(limit: &str, field: &str) -> Result<u64, Diagnostics> {
    let limit = control::duration::parse(limit).map_err(|e| {
        Diagnostic::error(format!("invalid {field}"), e.to_string())
            .at(AttributePath::attrs(["constraints", field]))
    })?;
    Ok(u64::try_from(limit.as_millis()).unwrap_or(u64::MAX))
}

/// Builds the job as agents run it from the planned model, with its cluster. Validation
/// checked the configuration; what it could not check (values unknown then) is checked here.
pub(super) async fn spec_from(
    client: &Client,
    model: &JobModel,
) -> Result<(JobSpec, Name), Diagnostics> {
    let name = Name::parse(model.name.as_deref().unwrap_or_default()).map_err(|e| {
        Diagnostic::error("invalid job name", e.to_string()).at(AttributePath::attrs(["name"]))
    })?;
    let cluster =
        crate::resources::cluster::parse_id(model.cluster_id.as_deref().unwrap_or_default())
            .map_err(|e| {
                Diagnostic::error("invalid cluster_id", e.to_string())
                    .at(AttributePath::attrs(["cluster_id"]))
            })?;
    let constraints = model.constraints.clone().unwrap_or_default();
    let max_wall_clock_ms = limit_ms(
        constraints
            .max_wall_clock_time
            .as_deref()
            .unwrap_or(DEFAULT_MAX_WALL_CLOCK),
        "max_wall_clock_time",
    )?;
    let max_unschedulable_ms = limit_ms(
        constraints
            .max_unschedulable_time
            .as_deref()
            .unwrap_or(DEFAULT_MAX_UNSCHEDULABLE),
        "max_unschedulable_time",
    )?;
    let termination_grace_ms = limit_ms(
        constraints
            .termination_grace_period
            .as_deref()
            .unwrap_or(DEFAULT_TERMINATION_GRACE),
        "termination_grace_period",
    )?;
    let spec = JobSpec {
        format: records::FORMAT,
        name: name.to_string(),
        cluster: cluster.to_string(),
        uid: crate::resources::unique_segment(),
        created_ms: records::now_ms(),
        // The plan always holds a count: the configured one or the declared default.
        node_count: model.node_count.ok_or_else(|| {
            Diagnostic::internal("node_count is missing from the plan of a new job")
        })?,
        priority: model
            .scheduling_priority
            .as_deref()
            .and_then(Priority::parse)
            .unwrap_or_default(),
        toolkit: model.toolkits.toolkit()?,
        job_preparation: model
            .job_preparation
            .as_ref()
            .and_then(|p| p.command_line.clone()),
        environment_variables: model.environment_variables.clone().unwrap_or_default(),
        has_secrets: model.secrets_wo.as_ref().is_some_and(|s| !s.is_empty()),
        input_directories: model.input_directories.iter().map(input).collect(),
        output_directories: model.output_directories.iter().map(output).collect(),
        std_out_err_path_prefix: model
            .std_out_err_path_prefix
            .clone()
            .unwrap_or_else(|| client.default_job_log_prefix()),
        mounts: mounts::resolve(client, model.mount_volumes.as_ref()).await?,
        max_wall_clock_ms,
        max_unschedulable_ms,
        termination_grace_ms,
        retry: model.retry.as_ref().map(retry).unwrap_or_default(),
        container: model.container_settings.as_ref().map(container),
    };
    Ok((spec, cluster))
}

fn input(d: &InputModel) -> InputDirectory {
    InputDirectory {
        id: d.id.clone().unwrap_or_default(),
        path: d.path.clone().unwrap_or_default(),
    }
}

fn output(d: &OutputModel) -> OutputDirectory {
    OutputDirectory {
        id: d.id.clone().unwrap_or_default(),
        path_prefix: d.path_prefix.clone().unwrap_or_default(),
        path_suffix: d.path_suffix.clone(),
    }
}

fn retry(r: &RetryModel) -> Retry {
    Retry {
        max_retries: r.max_retries.unwrap_or(0),
        retry_on_exit_codes: r.retry_on_exit_codes.clone().unwrap_or_default(),
    }
}

fn container(c: &ContainerModel) -> Container {
    let registry = c.image_source_registry.clone().unwrap_or_default();
    Container {
        image: registry.image.unwrap_or_default(),
        server_url: registry.server_url,
        shm_size: c.shm_size.clone(),
    }
}

/// The configuration as stored for import: everything but secrets.
pub(super) fn resource_record(model: &JobModel) -> serde_json::Value {
    let mut m = model.clone();
    m.secrets_wo = None;
    m.mount_volumes = m.mount_volumes.map(mounts::MountVolumesModel::without_keys);
    serde_json::to_value(&m).unwrap_or_default()
}

/// The configured part of the state plus what the platform reports now.
pub(super) fn with_live(platform: &str, mut model: JobModel, view: &JobView) -> JobModel {
    let s = &view.status;
    model.id = Some(super::job_id(platform, &view.spec.cluster, &view.spec.name));
    model.secrets_wo = None;
    model.execution_state = Some(s.state.as_str().to_owned());
    model.exit_code = if s.state.is_terminal() {
        s.exit_code.map(i64::from)
    } else {
        None
    };
    model.start_time = s.start_ms.map(crate::resources::rfc3339_ms);
    model.end_time = s
        .end_ms
        .filter(|_| s.state.is_terminal())
        .map(crate::resources::rfc3339_ms);
    model.errors = Some(
        s.errors
            .iter()
            .map(|e| ErrorModel {
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
