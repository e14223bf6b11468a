//! What resources run on: the [`Platform`] trait resources call, which the platform-neutral
//! control plane ([`crate::control_plane::ControlPlane`]) implements over a store, and the
//! [`Driver`] trait, the little each platform does itself (`local` now, `azure` later).
pub mod azure;
pub mod local;

use serde::{Deserialize, Serialize};
use tfplug::BoxFuture;

use std::collections::BTreeMap;

use control::jobs::{JobSpec, JobStatus};
use control::records::{self, ClusterSpec, NodeRecord, Scale};

use crate::names::Name;
use crate::resources::file_server::FileServerSpec;

/// A platform failure, naming the operation, the kind of object and its name.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(
        "create {kind} {name}: a {kind} with this name already exists (import it with `terraform import` or choose another name)"
    )]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{operation} {kind} {name}: {source}")]
    Io {
        operation: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{operation} {kind} {name}: its record is unreadable: {reason}")]
    Corrupt {
        operation: &'static str,
        kind: &'static str,
        name: String,
        reason: String,
    },
    #[error(
        "delete {kind} {name}: it is mounted by cluster {}; destroying it would delete data they use. Destroy those clusters first (in whichever configuration manages them), then destroy the {kind} again",
        .users.join(", cluster ")
    )]
    InUse {
        kind: &'static str,
        name: String,
        users: Vec<String>,
    },
    #[error("{operation} {kind} {name}: {reason}")]
    Failed {
        operation: &'static str,
        kind: &'static str,
        name: String,
        reason: String,
    },
}

impl PlatformError {
    pub(crate) fn failed(
        operation: &'static str,
        kind: &'static str,
        name: &str,
        reason: impl ToString,
    ) -> Self {
        Self::Failed {
            operation,
            kind,
            name: name.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// What a platform reports about a file server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileServerStatus {
    pub spec: FileServerSpec,
    /// Absolute path of the export, where clusters mount it from.
    pub mount_point: String,
    pub internal_ip: String,
    pub public_ip: String,
    pub provisioning_state: String,
    /// RFC 3339.
    pub creation_time: String,
}

/// Where a file server's share is, as a platform provisioned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileServerPlacement {
    /// Where clusters mount the share from.
    pub mount_point: String,
    pub internal_ip: String,
    pub public_ip: String,
}

/// A job's secrets, kept apart from its spec: `env`, its `secrets_wo` (environment variables of
/// its processes), and `mount_keys`, the storage account keys of its Azure Storage mounts by
/// `relative_mount_path` (read only by the mount).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct JobSecrets {
    pub env: BTreeMap<String, String>,
    pub mount_keys: BTreeMap<String, String>,
}

impl std::fmt::Debug for JobSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSecrets")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("mount_keys", &self.mount_keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// An Azure Storage volume as configured, for the platform to turn into a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageVolume<'a> {
    /// `azure_file_share`: SMB with the account key.
    FileShare {
        url: &'a str,
        account: &'a str,
        directory_mode: Option<&'a str>,
        file_mode: Option<&'a str>,
        has_key: bool,
    },
    /// `azure_blob_file_system`: blobfuse2 with the account key, or without one with the
    /// nodes' managed identity.
    Blob {
        account: &'a str,
        container: &'a str,
        options: Option<&'a str>,
        has_key: bool,
    },
}

/// What a plan-time check of a new cluster's machines looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineCheck {
    pub vm_size: String,
    /// Spot (`lowpriority`) machines draw on their own quota.
    pub spot: bool,
    /// The most nodes the scale settings can ask for.
    pub max_nodes: u32,
    pub subnet_id: Option<String>,
}

/// A problem a plan-time check found, on one attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineFinding {
    /// An error fails the plan; otherwise it is a warning.
    pub error: bool,
    pub attribute: &'static str,
    pub summary: String,
    pub detail: String,
}

/// What a platform does itself; everything about clusters, nodes and jobs as records is the
/// control plane's, shared by every platform. A driver provisions and removes machines (node
/// processes here, VM scale set instances on Azure) and file servers, and says how nodes start
/// (its [`agent::Launcher`], which schedulers on nodes use as well).
pub trait Driver: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;

    /// How nodes are added and reaped, and whether their agents live.
    fn launcher(&self) -> &dyn agent::Launcher;

    /// Provisions what a new cluster's nodes need before the first one starts (on Azure its
    /// scale set, empty, and the nodes' identity). The control plane has written the cluster's
    /// records already; `resource` is the configuration (without secrets), where the settings
    /// only some platforms use are.
    fn create_cluster_machines<'a>(
        &'a self,
        spec: &'a ClusterSpec,
        resource: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), PlatformError>> {
        let _ = (spec, resource);
        Box::pin(async { Ok(()) })
    }

    /// Whether what the platform made for a cluster's nodes is still there: on Azure its scale
    /// set, which may be deleted outside Terraform (drift: Read then says the cluster is gone);
    /// a platform that makes nothing for a cluster says yes.
    fn cluster_machines_exist<'a>(
        &'a self,
        cluster: &'a str,
    ) -> BoxFuture<'a, Result<bool, PlatformError>> {
        let _ = cluster;
        Box::pin(async { Ok(true) })
    }

    /// Plan-time checks of a new cluster's machines that the platform answers cheaply and
    /// without changing anything (on Azure: the size is offered in the location, the quota
    /// covers the nodes, the subnet reaches out). A check that cannot be made says nothing.
    fn check_machines<'a>(&'a self, check: &'a MachineCheck) -> BoxFuture<'a, Vec<MachineFinding>> {
        let _ = check;
        Box::pin(async { Vec::new() })
    }

    /// How nodes mount an Azure Storage volume; an error (what to set, or that the platform
    /// cannot) otherwise. The local platform has no Azure Storage.
    fn storage_mount<'a>(
        &'a self,
        volume: StorageVolume<'a>,
    ) -> BoxFuture<'a, Result<records::MountSource, String>> {
        let _ = volume;
        let name = self.name();
        Box::pin(async move {
            Err(format!(
                "Azure Storage volumes need the azure platform, which the {name} platform is not; use a batchai_file_server or host_directory volume, or configure the provider's azure platform"
            ))
        })
    }

    /// Gives a cluster's nodes what `mounts` need besides keys (on Azure: data access for
    /// their managed identity to the blob containers they mount without a key). Called when
    /// the cluster's machines are made, and for a job's mounts when it is submitted.
    fn grant_mounts<'a>(
        &'a self,
        cluster: &'a str,
        mounts: &'a [records::Mount],
    ) -> BoxFuture<'a, Result<(), PlatformError>> {
        let _ = (cluster, mounts);
        Box::pin(async { Ok(()) })
    }

    /// Provisions a file server's storage. The control plane has claimed the name in the store
    /// already, so whatever is left under it on the platform is stale and may be replaced.
    fn provision_file_server<'a>(
        &'a self,
        spec: &'a FileServerSpec,
    ) -> BoxFuture<'a, Result<FileServerPlacement, PlatformError>>;

    /// Whether a recorded file server's storage is still there (it may be removed outside
    /// Terraform).
    fn file_server_exists<'a>(
        &'a self,
        status: &'a FileServerStatus,
    ) -> BoxFuture<'a, Result<bool, PlatformError>>;

    /// Removes a file server's storage; one that is gone already is removed.
    fn remove_file_server<'a>(&'a self, name: &'a Name)
    -> BoxFuture<'a, Result<(), PlatformError>>;

    /// A file server this platform made before file servers were recorded in the store, to be
    /// recorded now; `None` when there is none.
    fn legacy_file_server(&self, name: &Name) -> Option<FileServerStatus> {
        let _ = name;
        None
    }

    /// Whether a cluster mount uses the file server's share (destroy refuses while one does).
    fn mounts_file_server(&self, mount: &records::Mount, status: &FileServerStatus) -> bool;

    /// How nodes mount a file server's share: its directory, where nodes share this machine's
    /// file system; an NFS mount command on Azure.
    fn file_server_mount(
        &self,
        status: &FileServerStatus,
        mount_options: Option<&str>,
    ) -> records::MountSource {
        let _ = mount_options;
        records::MountSource::Directory {
            path: status.mount_point.clone(),
        }
    }

    /// Stops the nodes of a cluster that is being destroyed (its spec says `deleting`, so no
    /// scheduler replaces them): each may drain per the cluster's deallocation option for a
    /// grace period, then whatever is left is stopped, and what the platform made for the
    /// cluster goes.
    fn remove_cluster_nodes<'a>(
        &'a self,
        cluster: &'a str,
        nodes: &'a [NodeRecord],
    ) -> BoxFuture<'a, Result<(), PlatformError>>;

    /// Where job logs go when a job names no `std_out_err_path_prefix`.
    fn default_job_log_prefix(&self) -> String;

    /// Where nodes keep copies of the job files they wrote on their own disks (the control
    /// container's URL), on a platform whose machines take their disks with them; `None`
    /// where a node's disk stays.
    fn kept_files_url(&self) -> Option<String> {
        None
    }
}

/// Where resources are realised.
pub trait Platform: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;

    fn create_file_server<'a>(
        &'a self,
        spec: &'a FileServerSpec,
    ) -> BoxFuture<'a, Result<FileServerStatus, PlatformError>>;

    /// `Ok(None)` when the file server does not exist (or was removed outside Terraform).
    fn get_file_server<'a>(
        &'a self,
        name: &'a Name,
    ) -> BoxFuture<'a, Result<Option<FileServerStatus>, PlatformError>>;

    /// Deleting a file server that is already gone succeeds.
    fn delete_file_server<'a>(&'a self, name: &'a Name)
    -> BoxFuture<'a, Result<(), PlatformError>>;

    /// Creates a cluster and returns once every node is idle or unusable. `secrets` are kept
    /// apart from the spec (only a node preparing itself reads them) and never returned;
    /// `resource` is the resource's configuration without secrets, kept for import.
    fn create_cluster<'a>(
        &'a self,
        spec: &'a ClusterSpec,
        secrets: &'a control::secrets::ClusterSecrets,
        resource: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<ClusterView, PlatformError>>;

    /// See [`Driver::check_machines`].
    fn check_machines<'a>(&'a self, check: &'a MachineCheck) -> BoxFuture<'a, Vec<MachineFinding>>;

    /// `Ok(None)` when the cluster does not exist (or was removed outside Terraform). Changes
    /// nothing: plan-time checks use it.
    fn get_cluster<'a>(
        &'a self,
        name: &'a Name,
    ) -> BoxFuture<'a, Result<Option<ClusterView>, PlatformError>>;

    /// What Read reports: the cluster after a scheduling pass when nobody else schedules it, so
    /// that lost nodes are reaped (their attempts requeued) and replaced before it is shown.
    fn read_cluster<'a>(
        &'a self,
        name: &'a Name,
    ) -> BoxFuture<'a, Result<Option<ClusterView>, PlatformError>>;

    /// Changes the scale settings in place and returns once the node count has converged.
    fn update_cluster_scale<'a>(
        &'a self,
        name: &'a Name,
        scale: &'a Scale,
        resource: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<ClusterView, PlatformError>>;

    /// Drains and stops every node and removes the cluster. Deleting a missing cluster succeeds.
    fn delete_cluster<'a>(&'a self, name: &'a Name) -> BoxFuture<'a, Result<(), PlatformError>>;

    /// Where job logs go when a job names no `std_out_err_path_prefix`.
    fn default_job_log_prefix(&self) -> String;

    /// See [`Driver::file_server_mount`].
    fn file_server_mount(
        &self,
        status: &FileServerStatus,
        mount_options: Option<&str>,
    ) -> records::MountSource;

    /// Queues a job on its cluster. `secrets` are kept apart from the spec and never returned;
    /// `resource` is the configuration without them, kept for import.
    fn submit_job<'a>(
        &'a self,
        spec: &'a JobSpec,
        secrets: &'a JobSecrets,
        resource: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<JobView, PlatformError>>;

    /// See [`Driver::storage_mount`].
    fn storage_mount<'a>(
        &'a self,
        volume: StorageVolume<'a>,
    ) -> BoxFuture<'a, Result<records::MountSource, String>>;

    /// `Ok(None)` when the job does not exist (or was removed outside Terraform).
    fn get_job<'a>(
        &'a self,
        cluster: &'a Name,
        job: &'a Name,
    ) -> BoxFuture<'a, Result<Option<JobView>, PlatformError>>;

    /// Returns once the job has ended (`until_terminal`) or at least left the queue. Callers
    /// bound the wait.
    fn wait_job<'a>(
        &'a self,
        cluster: &'a Name,
        job: &'a Name,
        until_terminal: bool,
    ) -> BoxFuture<'a, Result<JobView, PlatformError>>;

    /// Terminates a running job and removes it; outputs and logs stay. Deleting a missing job
    /// succeeds.
    fn delete_job<'a>(
        &'a self,
        cluster: &'a Name,
        job: &'a Name,
    ) -> BoxFuture<'a, Result<(), PlatformError>>;
}

/// A job as the platform sees it.
#[derive(Debug, Clone)]
pub struct JobView {
    pub spec: JobSpec,
    pub status: JobStatus,
    /// The resource configuration stored at creation (without secrets).
    pub resource: serde_json::Value,
    /// RFC 3339.
    pub creation_time: String,
    /// Where the job's stdout and stderr files are, on the machine the provider runs on.
    pub std_out_err_directory: String,
}

/// A cluster as the platform sees it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub spec: ClusterSpec,
    pub nodes: Vec<NodeRecord>,
    /// The resource configuration stored at creation (without secrets).
    pub resource: serde_json::Value,
    /// RFC 3339.
    pub creation_time: String,
    /// The node count the cluster is converging to.
    pub desired_node_count: u32,
    /// Since when nodes fail to prepare (see `ClusterStatus::failing_since_ms`).
    pub failing_since_ms: Option<u64>,
    /// Why the platform could not add nodes, while it cannot (see
    /// `ClusterStatus::launch_error`).
    pub launch_error: Option<records::NodeError>,
}
