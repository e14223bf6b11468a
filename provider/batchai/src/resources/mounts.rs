//! Mount volumes, shared by clusters (mounted under `$AZ_BATCHAI_MOUNT_ROOT` for the cluster's
//! life) and jobs (under `$AZ_BATCHAI_JOB_MOUNT_ROOT` for one run): one model per volume type,
//! each saying what it needs to become a mount, and the plan-time checks and resolution into
//! the records agents mount, driven by that one list.
use control::records::{Mount, MountSource};
use serde::{Deserialize, Serialize};
use tfplug::model::{Model, decode_partial};
use tfplug::{AttributePath, Diagnostic, Diagnostics, Value};

use crate::Client;

/// Volumes mounted below the mount root of a cluster's nodes or a job's run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct MountVolumesModel {
    /// An Azure Files share mounted over SMB 3 with its account key (`mount -t cifs`, the key in
    /// a credentials file only root reads). Needs the azure platform, and `cifs-utils` on the
    /// nodes.
    #[tf(block)]
    #[serde(default)]
    pub azure_file_share: Vec<AzureFileShareModel>,
    /// An Azure Blob container mounted with blobfuse2, with the account key or, without one,
    /// the nodes' managed identity. Needs the azure platform, and `blobfuse2` on the nodes.
    #[tf(block)]
    #[serde(default)]
    pub azure_blob_file_system: Vec<AzureBlobFileSystemModel>,
    /// A `batchai_file_server`'s export.
    #[tf(block)]
    #[serde(default)]
    pub file_server: Vec<FileServerMountModel>,
    /// Any file system a command can mount.
    #[tf(block)]
    #[serde(default)]
    pub unmanaged_file_system: Vec<UnmanagedMountModel>,
    /// A directory of this machine (local platform only).
    #[tf(block)]
    #[serde(default)]
    pub host_directory: Vec<HostDirectoryModel>,
    /// One revision of a Git repository, fetched without history when the node (or the job)
    /// starts and again when a node restarts. A job's checkout is removed when the job ends.
    /// Needs `git` on the nodes. Git never prompts (nodes have no terminal, and askpass
    /// programs are off): credential helpers, SSH keys and `~/.netrc` may authenticate, and a
    /// repository that needs more fails the mount, as does a transfer that stalls. Keep credentials out of `url`, which is stored in
    /// state (errors mask them). Each node fetches `revision` when it prepares: pin a tag or a
    /// full commit hash to run the same code on every node.
    #[tf(block)]
    #[serde(default)]
    pub git_repository: Vec<GitRepositoryModel>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct AzureFileShareModel {
    /// The storage account that holds the share.
    #[tf(required)]
    pub account_name: Option<String>,
    /// The share's URL, `https://<account>.file.core.windows.net/<share>`.
    #[tf(required)]
    pub azure_file_url: Option<String>,
    /// The storage account's key, required for a share; stored in state, marked sensitive. On
    /// the platform it is kept in a secrets record of its own, never in the mount's record, in
    /// a log or on a command line.
    #[tf(optional, sensitive)]
    pub account_key: Option<String>,
    /// Permissions of directories in the share, in octal (default `0777`).
    #[tf(optional)]
    pub directory_mode: Option<String>,
    /// Permissions of files in the share, in octal (default `0777`).
    #[tf(optional)]
    pub file_mode: Option<String>,
    /// Where the volume appears below the mount root (`$AZ_BATCHAI_MOUNT_ROOT` for a
    /// cluster's volumes, `$AZ_BATCHAI_JOB_MOUNT_ROOT` for a job's); must be relative and must
    /// not contain `..`.
    #[tf(required, validate = agent::setup::check_relative_path)]
    pub relative_mount_path: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct AzureBlobFileSystemModel {
    /// The storage account that holds the container.
    #[tf(required)]
    pub account_name: Option<String>,
    /// The blob container to mount.
    #[tf(required)]
    pub container_name: Option<String>,
    /// The storage account's key; stored in state, marked sensitive, and kept on the platform
    /// as a share's is. Without it the nodes mount the container with their managed identity,
    /// which the provider gives Storage Blob Data Contributor on the container: the account
    /// must then be in the provider's `resource_group_name`.
    #[tf(optional, sensitive)]
    pub account_key: Option<String>,
    /// Extra blobfuse2 command-line options, e.g. `-o attr_timeout=240`.
    #[tf(optional)]
    pub mount_options: Option<String>,
    /// Where the volume appears below the mount root (`$AZ_BATCHAI_MOUNT_ROOT` for a
    /// cluster's volumes, `$AZ_BATCHAI_JOB_MOUNT_ROOT` for a job's); must be relative and must
    /// not contain `..`.
    #[tf(required, validate = agent::setup::check_relative_path)]
    pub relative_mount_path: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct FileServerMountModel {
    /// The `id` of a `batchai_file_server`.
    #[tf(required, validate = super::file_server::parse_id)]
    pub file_server_id: Option<String>,
    /// Where the volume appears below the mount root (`$AZ_BATCHAI_MOUNT_ROOT` for a
    /// cluster's volumes, `$AZ_BATCHAI_JOB_MOUNT_ROOT` for a job's); must be relative and must
    /// not contain `..`.
    #[tf(required, validate = agent::setup::check_relative_path)]
    pub relative_mount_path: Option<String>,
    /// NFS mount options on the azure platform (`mount -t nfs -o <options>`); defaults to
    /// `rw,hard,vers=4.1,retry=10`. Not used on the local platform.
    #[tf(optional)]
    pub mount_options: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct UnmanagedMountModel {
    /// A command that mounts the file system; the mount path is appended to it, as Batch AI
    /// did.
    #[tf(required)]
    pub mount_command: Option<String>,
    /// Where the volume appears below the mount root (`$AZ_BATCHAI_MOUNT_ROOT` for a
    /// cluster's volumes, `$AZ_BATCHAI_JOB_MOUNT_ROOT` for a job's); must be relative and must
    /// not contain `..`.
    #[tf(required, validate = agent::setup::check_relative_path)]
    pub relative_mount_path: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct HostDirectoryModel {
    /// An existing directory on this machine.
    #[tf(required)]
    pub path: Option<String>,
    /// Where the volume appears below the mount root (`$AZ_BATCHAI_MOUNT_ROOT` for a
    /// cluster's volumes, `$AZ_BATCHAI_JOB_MOUNT_ROOT` for a job's); must be relative and must
    /// not contain `..`.
    #[tf(required, validate = agent::setup::check_relative_path)]
    pub relative_mount_path: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct GitRepositoryModel {
    /// The repository as `git fetch` takes it: `https://...`, `ssh://...`, `git@host:path` or
    /// `file:///...`.
    #[tf(required, validate = check_git_word)]
    pub url: Option<String>,
    /// The branch, tag or commit (its full hash) to check out. Defaults to `HEAD`, the
    /// repository's default branch.
    #[tf(default = "HEAD", validate = check_git_word)]
    pub revision: Option<String>,
    /// Where the volume appears below the mount root (`$AZ_BATCHAI_MOUNT_ROOT` for a
    /// cluster's volumes, `$AZ_BATCHAI_JOB_MOUNT_ROOT` for a job's); must be relative and must
    /// not contain `..`.
    #[tf(required, validate = agent::setup::check_relative_path)]
    pub relative_mount_path: Option<String>,
}

/// A URL or revision that git receives as one argument.
#[derive(Debug, thiserror::Error)]
enum GitWordError {
    #[error("it is empty")]
    Empty,
    #[error("{0:?} contains whitespace or a control character, which git never accepts here")]
    Blank(String),
    #[error("{0:?} starts with `-`, which git would take as an option")]
    Option(String),
}

fn check_git_word(word: &str) -> Result<(), GitWordError> {
    if word.is_empty() {
        return Err(GitWordError::Empty);
    }
    if word.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(GitWordError::Blank(word.to_owned()));
    }
    if word.starts_with('-') {
        return Err(GitWordError::Option(word.to_owned()));
    }
    Ok(())
}

/// What a configured volume needs to become a mount on a node.
enum Needs<'a> {
    /// Azure Storage, which the platform turns into a mount (or refuses).
    Storage(crate::platform::StorageVolume<'a>),
    /// Nothing more.
    Mount(MountSource),
    /// The export of the file server with this ID, looked up on the platform, mounted with
    /// these options (NFS, on Azure).
    FileServer(&'a str, Option<&'a str>),
}

impl MountVolumesModel {
    /// The volumes without their storage account keys: what is kept in the control store for
    /// import, which every holder of the store's credential can read. Import leaves the keys
    /// null; the configuration sets them again.
    pub(crate) fn without_keys(mut self) -> Self {
        for v in &mut self.azure_file_share {
            v.account_key = None;
        }
        for v in &mut self.azure_blob_file_system {
            v.account_key = None;
        }
        self
    }

    /// The storage account keys of the Azure Storage volumes, by `relative_mount_path`.
    pub(crate) fn keys(&self) -> std::collections::BTreeMap<String, String> {
        self.volumes()
            .iter()
            .filter_map(|v| {
                v.volume
                    .key()
                    .map(|k| (v.volume.relative_mount_path().to_owned(), k.to_owned()))
            })
            .collect()
    }
}

/// A volume type: its model is its block inside `mount_volumes`.
trait Volume: Sync {
    fn relative_mount_path(&self) -> &str;
    fn needs(&self) -> Needs<'_>;
    /// A storage account key, which goes to a secrets record, never into the mount's.
    fn key(&self) -> Option<&str> {
        None
    }
}

impl Volume for AzureFileShareModel {
    fn relative_mount_path(&self) -> &str {
        self.relative_mount_path.as_deref().unwrap_or_default()
    }

    fn needs(&self) -> Needs<'_> {
        Needs::Storage(crate::platform::StorageVolume::FileShare {
            url: self.azure_file_url.as_deref().unwrap_or_default(),
            account: self.account_name.as_deref().unwrap_or_default(),
            directory_mode: self.directory_mode.as_deref(),
            file_mode: self.file_mode.as_deref(),
            has_key: self.account_key.is_some(),
        })
    }

    fn key(&self) -> Option<&str> {
        self.account_key.as_deref()
    }
}

impl Volume for AzureBlobFileSystemModel {
    fn relative_mount_path(&self) -> &str {
        self.relative_mount_path.as_deref().unwrap_or_default()
    }

    fn needs(&self) -> Needs<'_> {
        Needs::Storage(crate::platform::StorageVolume::Blob {
            account: self.account_name.as_deref().unwrap_or_default(),
            container: self.container_name.as_deref().unwrap_or_default(),
            options: self.mount_options.as_deref(),
            has_key: self.account_key.is_some(),
        })
    }

    fn key(&self) -> Option<&str> {
        self.account_key.as_deref()
    }
}

impl Volume for FileServerMountModel {
    fn relative_mount_path(&self) -> &str {
        self.relative_mount_path.as_deref().unwrap_or_default()
    }

    fn needs(&self) -> Needs<'_> {
        Needs::FileServer(
            self.file_server_id.as_deref().unwrap_or_default(),
            self.mount_options.as_deref(),
        )
    }
}

impl Volume for UnmanagedMountModel {
    fn relative_mount_path(&self) -> &str {
        self.relative_mount_path.as_deref().unwrap_or_default()
    }

    fn needs(&self) -> Needs<'_> {
        Needs::Mount(MountSource::Command {
            mount_command: self.mount_command.clone().unwrap_or_default(),
        })
    }
}

impl Volume for HostDirectoryModel {
    fn relative_mount_path(&self) -> &str {
        self.relative_mount_path.as_deref().unwrap_or_default()
    }

    fn needs(&self) -> Needs<'_> {
        Needs::Mount(MountSource::Directory {
            path: self.path.clone().unwrap_or_default(),
        })
    }
}

impl Volume for GitRepositoryModel {
    fn relative_mount_path(&self) -> &str {
        self.relative_mount_path.as_deref().unwrap_or_default()
    }

    fn needs(&self) -> Needs<'_> {
        Needs::Mount(MountSource::Git {
            url: self.url.clone().unwrap_or_default(),
            revision: self.revision.clone().unwrap_or_default(),
        })
    }
}

/// One configured volume, with the path of its block item.
struct Configured<'a> {
    kind: &'static str,
    index: usize,
    volume: &'a dyn Volume,
}

impl Configured<'_> {
    fn path(&self) -> AttributePath {
        AttributePath::attrs(["mount_volumes", self.kind])
            .index(i64::try_from(self.index).unwrap_or(i64::MAX))
    }
}

impl MountVolumesModel {
    /// Every configured volume in block order: the one list resolution and plan checks use.
    fn volumes(&self) -> Vec<Configured<'_>> {
        fn each<'a, V: Volume>(kind: &'static str, items: &'a [V], out: &mut Vec<Configured<'a>>) {
            out.extend(items.iter().enumerate().map(|(index, v)| Configured {
                kind,
                index,
                volume: v,
            }));
        }
        let mut out = Vec::new();
        each("azure_file_share", &self.azure_file_share, &mut out);
        each(
            "azure_blob_file_system",
            &self.azure_blob_file_system,
            &mut out,
        );
        each("file_server", &self.file_server, &mut out);
        each(
            "unmanaged_file_system",
            &self.unmanaged_file_system,
            &mut out,
        );
        each("host_directory", &self.host_directory, &mut out);
        each("git_repository", &self.git_repository, &mut out);
        out
    }
}

fn needs_azure(client: &Client, v: &Configured<'_>) -> Diagnostic {
    Diagnostic::error(
        "mount type needs the azure platform",
        format!(
            "{} volumes are Azure Storage, which the {} platform cannot mount; use a \
             batchai_file_server or host_directory volume, or configure the provider's azure \
             platform",
            v.kind,
            client.name()
        ),
    )
    .at(v.path())
}

/// An Azure Files share is mounted over SMB with its account key: identity-based SMB needs a
/// domain the nodes are not joined to.
fn share_without_key(v: &Configured<'_>) -> Diagnostic {
    Diagnostic::error(
        "no account key for the share",
        "an Azure Files share is mounted over SMB with its storage account key: set \
         account_key (for example from azurerm_storage_account's primary_access_key)",
    )
    .at(v.path().attr("account_key"))
}

/// Resolves configured volumes into what agents mount (file server IDs to their exports).
pub(crate) async fn resolve(
    client: &Client,
    volumes: Option<&MountVolumesModel>,
) -> Result<Vec<Mount>, Diagnostics> {
    let mut mounts = Vec::new();
    let Some(volumes) = volumes else {
        return Ok(mounts);
    };
    for v in volumes.volumes() {
        let source = match v.volume.needs() {
            Needs::Mount(source) => source,
            Needs::Storage(_) if client.name() != "azure" => {
                return Err(needs_azure(client, &v).into());
            }
            Needs::Storage(crate::platform::StorageVolume::FileShare {
                has_key: false, ..
            }) => {
                return Err(share_without_key(&v).into());
            }
            Needs::Storage(volume) => client
                .storage_mount(volume)
                .await
                .map_err(|e| Diagnostic::error("cannot mount the volume", e).at(v.path()))?,
            Needs::FileServer(id, options) => {
                let path = v.path().attr("file_server_id");
                let server = super::file_server::parse_id(id).map_err(|e| {
                    Diagnostic::error("invalid file_server_id", e.to_string()).at(path.clone())
                })?;
                let status = client
                    .get_file_server(&server)
                    .await
                    .map_err(|e| Diagnostic::error("file server lookup failed", e.to_string()))?
                    .ok_or_else(|| {
                        Diagnostic::error(
                            "file server not found",
                            format!("no file server {id:?} exists; create it first or fix the ID"),
                        )
                        .at(path)
                    })?;
                client.file_server_mount(&status, options)
            }
        };
        mounts.push(Mount {
            relative_mount_path: v.volume.relative_mount_path().to_owned(),
            source,
        });
    }
    Ok(mounts)
}

/// Whether the volume's `account_key` is known in the plan (null counts as known).
fn v_key_known(planned: &Value, v: &Configured<'_>) -> bool {
    let index = v.index;
    planned
        .get_attr("mount_volumes")
        .and_then(|m| m.get_attr(v.kind))
        .and_then(|list| match list {
            Value::List(items) | Value::Set(items) => items.get(index).cloned(),
            _ => None,
        })
        .and_then(|item| item.get_attr("account_key").cloned())
        .is_none_or(|key| !key.is_unknown())
}

/// Plan-time checks that need the platform: Azure-only volume types and file servers that
/// exist. Values not known yet are checked at apply.
pub(crate) async fn check_plan(client: &Client, planned: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    let Some(volumes) = planned
        .get_attr("mount_volumes")
        .filter(|m| !m.is_null())
        .and_then(decode_partial::<MountVolumesModel>)
    else {
        return diags;
    };
    for v in volumes.volumes() {
        match v.volume.needs() {
            Needs::Mount(_) => {}
            Needs::Storage(_) if client.name() != "azure" => diags.push(needs_azure(client, &v)),
            // A key not known yet (from another resource) arrives as not set here; the apply
            // checks again.
            Needs::Storage(crate::platform::StorageVolume::FileShare {
                has_key: false, ..
            }) if v_key_known(planned, &v) => diags.push(share_without_key(&v)),
            Needs::Storage(_) => {}
            // An unknown ID arrives empty; a malformed one was reported by validation.
            Needs::FileServer(id, _) => {
                let Ok(name) = super::file_server::parse_id(id) else {
                    continue;
                };
                if let Err(other) = super::check_platform(id, client.name()) {
                    diags.push(other.at(v.path().attr("file_server_id")));
                    continue;
                }
                if let Ok(None) = client.get_file_server(&name).await {
                    diags.push(
                        Diagnostic::error(
                            "file server not found",
                            format!(
                                "no file server {id:?} exists; reference a batchai_file_server's id"
                            ),
                        )
                        .at(v.path().attr("file_server_id")),
                    );
                }
            }
        }
    }
    diags
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attribute names of the `kind` block.
    fn fields(kind: &str) -> Vec<String> {
        let volumes = MountVolumesModel::block();
        let block = volumes
            .blocks
            .iter()
            .find(|b| b.type_name == kind)
            .unwrap_or_else(|| panic!("no {kind} block"));
        block
            .block
            .attributes
            .iter()
            .map(|a| a.name.clone())
            .collect()
    }

    #[test]
    fn azure_blocks_have_their_own_fields() {
        let share = fields("azure_file_share");
        let blob = fields("azure_blob_file_system");
        assert!(share.contains(&"azure_file_url".to_owned()), "{share:?}");
        assert!(!share.contains(&"container_name".to_owned()), "{share:?}");
        assert!(blob.contains(&"container_name".to_owned()), "{blob:?}");
        assert!(!blob.contains(&"azure_file_url".to_owned()), "{blob:?}");
    }

    #[test]
    fn every_volume_block_is_listed_once() {
        let all = MountVolumesModel {
            azure_file_share: vec![AzureFileShareModel::default()],
            azure_blob_file_system: vec![AzureBlobFileSystemModel::default()],
            file_server: vec![FileServerMountModel::default()],
            unmanaged_file_system: vec![UnmanagedMountModel::default()],
            host_directory: vec![HostDirectoryModel::default()],
            git_repository: vec![GitRepositoryModel::default()],
        };
        let listed: Vec<&str> = all.volumes().iter().map(|v| v.kind).collect();
        let blocks: Vec<String> = MountVolumesModel::block()
            .blocks
            .iter()
            .map(|b| b.type_name.clone())
            .collect();
        assert_eq!(listed, blocks);
    }
}
