//! The platforms resources run on, behind one trait: `local` (this machine) now, `azure` later.
pub mod local;

use serde::{Deserialize, Serialize};
use tfplug::BoxFuture;

use crate::names::Name;
use crate::resources::file_server::FileServerSpec;

/// A platform failure, naming the operation and the resource.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(
        "create file server {name}: a file server with this name already exists (import it with `terraform import` or choose another name)"
    )]
    AlreadyExists { name: String },
    #[error("{operation} file server {name}: {source}")]
    Io {
        operation: &'static str,
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{operation} file server {name}: its record is unreadable: {reason}")]
    Corrupt {
        operation: &'static str,
        name: String,
        reason: String,
    },
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
}
