//! The platform-neutral control plane: clusters, nodes, jobs and file servers as records in a
//! control store, shared by every platform. It implements [`Platform`] for the resources and
//! leaves to a [`Driver`] only what is platform-specific (machines, file server storage, how
//! nodes start). It reads and writes nothing but the store; the driver alone touches the
//! platform.
mod cluster;
mod file_server;
mod job;

use std::sync::Arc;

use control::Store;
use control::jobs::JobSpec;
use control::records::{ClusterSpec, Scale};
use serde::{Deserialize, Serialize};
use tfplug::BoxFuture;

use crate::names::Name;
use crate::platform::{ClusterView, Driver, FileServerStatus, JobView, Platform, PlatformError};
use crate::resources::file_server::FileServerSpec;

/// A control store with the platform driver that provisions what its records describe.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    store: Arc<dyn Store>,
    driver: Arc<dyn Driver>,
}

/// What the provider keeps beside a cluster's or a job's spec: the configuration (without
/// secrets), for import, and when it was created.
#[derive(Debug, Serialize, Deserialize)]
struct ResourceRecord {
    format: u32,
    creation_time: String,
    resource: serde_json::Value,
    /// A cluster's create has not made its machines yet (or failed to): until it has, a
    /// missing scale set is not drift.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    machines_pending: bool,
}

impl ControlPlane {
    pub fn new(store: Arc<dyn Store>, driver: Arc<dyn Driver>) -> Self {
        Self { store, driver }
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub fn driver(&self) -> &dyn Driver {
        self.driver.as_ref()
    }

    /// Runs store work on a blocking thread: the store's operations are synchronous (a blob
    /// store waits on HTTP), and the provider's async workers must stay free to answer
    /// Terraform meanwhile.
    async fn blocking<T: Send + 'static>(
        &self,
        operation: &'static str,
        kind: &'static str,
        name: &str,
        work: impl FnOnce(&ControlPlane) -> Result<T, PlatformError> + Send + 'static,
    ) -> Result<T, PlatformError> {
        let plane = self.clone();
        tokio::task::spawn_blocking(move || work(&plane))
            .await
            .unwrap_or_else(|e| {
                Err(PlatformError::failed(
                    operation,
                    kind,
                    name,
                    format!("internal error: {e}"),
                ))
            })
    }
}

/// The current time as Terraform attributes show it (RFC 3339, whole seconds, UTC).
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl Platform for ControlPlane {
    fn name(&self) -> &'static str {
        self.driver.name()
    }

    fn create_file_server<'a>(
        &'a self,
        spec: &'a FileServerSpec,
    ) -> BoxFuture<'a, Result<FileServerStatus, PlatformError>> {
        Box::pin(self.create_file_server(spec))
    }

    fn get_file_server<'a>(
        &'a self,
        name: &'a Name,
    ) -> BoxFuture<'a, Result<Option<FileServerStatus>, PlatformError>> {
        Box::pin(self.get_file_server(name))
    }

    fn delete_file_server<'a>(
        &'a self,
        name: &'a Name,
    ) -> BoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(self.delete_file_server(name))
    }

    fn create_cluster<'a>(
        &'a self,
        spec: &'a ClusterSpec,
        secrets: &'a control::secrets::ClusterSecrets,
        resource: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<ClusterView, PlatformError>> {
        Box::pin(self.create_cluster(spec, secrets, resource))
    }

    fn check_machines<'a>(
        &'a self,
        check: &'a crate::platform::MachineCheck,
    ) -> BoxFuture<'a, Vec<crate::platform::MachineFinding>> {
        self.driver.check_machines(check)
    }

    fn get_cluster<'a>(
        &'a self,
        name: &'a Name,
    ) -> BoxFuture<'a, Result<Option<ClusterView>, PlatformError>> {
        Box::pin(self.get_cluster(name, false))
    }

    fn read_cluster<'a>(
        &'a self,
        name: &'a Name,
    ) -> BoxFuture<'a, Result<Option<ClusterView>, PlatformError>> {
        Box::pin(self.get_cluster(name, true))
    }

    fn update_cluster_scale<'a>(
        &'a self,
        name: &'a Name,
        scale: &'a Scale,
        resource: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<ClusterView, PlatformError>> {
        Box::pin(self.update_cluster_scale(name, scale, resource))
    }

    fn delete_cluster<'a>(&'a self, name: &'a Name) -> BoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(self.delete_cluster(name))
    }

    fn default_job_log_prefix(&self) -> String {
        self.driver.default_job_log_prefix()
    }

    fn file_server_mount(
        &self,
        status: &FileServerStatus,
        mount_options: Option<&str>,
    ) -> control::records::MountSource {
        self.driver.file_server_mount(status, mount_options)
    }

    fn submit_job<'a>(
        &'a self,
        spec: &'a JobSpec,
        secrets: &'a crate::platform::JobSecrets,
        resource: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<JobView, PlatformError>> {
        Box::pin(self.submit_job(spec, secrets, resource))
    }

    fn storage_mount<'a>(
        &'a self,
        volume: crate::platform::StorageVolume<'a>,
    ) -> BoxFuture<'a, Result<control::records::MountSource, String>> {
        self.driver.storage_mount(volume)
    }

    fn get_job<'a>(
        &'a self,
        cluster: &'a Name,
        job: &'a Name,
    ) -> BoxFuture<'a, Result<Option<JobView>, PlatformError>> {
        Box::pin(self.get_job(cluster, job))
    }

    fn wait_job<'a>(
        &'a self,
        cluster: &'a Name,
        job: &'a Name,
        until_terminal: bool,
    ) -> BoxFuture<'a, Result<JobView, PlatformError>> {
        Box::pin(self.wait_job(cluster, job, until_terminal))
    }

    fn delete_job<'a>(
        &'a self,
        cluster: &'a Name,
        job: &'a Name,
    ) -> BoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(self.delete_job(cluster, job))
    }
}
