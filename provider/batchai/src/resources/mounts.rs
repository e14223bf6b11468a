//! Mount volumes, shared by clusters (mounted under `$AZ_BATCHAI_MOUNT_ROOT` for the cluster's
//! life) and jobs (under `$AZ_BATCHAI_JOB_MOUNT_ROOT` for one run): schema, validation, plan-time
//! checks and resolution into the records agents mount.
use control::records::{Mount, MountSource};
use serde::{Deserialize, Serialize};
use tfplug::{
    Attribute, AttributePath, Block, Diagnostic, Diagnostics, NestedBlock, Nesting, Type, Value,
};

use crate::Client;

fn block(attributes: Vec<Attribute>, blocks: Vec<NestedBlock>, description: &str) -> Block {
    Block::new(attributes, blocks).description(description)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct MountVolumesModel {
    #[serde(default)]
    pub azure_file_share: Vec<serde_json::Value>,
    #[serde(default)]
    pub azure_blob_file_system: Vec<serde_json::Value>,
    #[serde(default)]
    pub file_server: Vec<FileServerMountModel>,
    #[serde(default)]
    pub unmanaged_file_system: Vec<UnmanagedMountModel>,
    #[serde(default)]
    pub host_directory: Vec<HostDirectoryModel>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct FileServerMountModel {
    pub file_server_id: Option<String>,
    pub relative_mount_path: Option<String>,
    pub mount_options: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct UnmanagedMountModel {
    pub mount_command: Option<String>,
    pub relative_mount_path: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct HostDirectoryModel {
    pub path: Option<String>,
    pub relative_mount_path: Option<String>,
}

/// The `mount_volumes` block; `root` names the variable paths are relative to.
pub(crate) fn mount_volumes_block(root: &str, description: &str) -> Block {
    let path_attr = || {
        Attribute::required("relative_mount_path", Type::String).description(format!(
            "Where the volume appears below `${root}`; must be relative and must not \
                 contain `..`."
        ))
    };
    let account_key = || {
        Attribute::optional("account_key", Type::String)
            .sensitive()
            .description("The storage account's key; stored in state, marked sensitive.")
    };
    let azure_only = |name: &str, mut attributes: Vec<Attribute>, what: &str| {
        attributes.push(path_attr());
        NestedBlock::new(
            name,
            Nesting::List,
            block(
                attributes,
                vec![],
                &format!("{what}. Needs the azure platform."),
            ),
        )
    };
    let file_share = azure_only(
        "azure_file_share",
        vec![
            Attribute::required("account_name", Type::String)
                .description("The storage account that holds the share."),
            Attribute::required("azure_file_url", Type::String)
                .description("The share's URL, `https://<account>.file.core.windows.net/<share>`."),
            account_key(),
            Attribute::optional("directory_mode", Type::String)
                .description("Permissions of directories in the share, in octal (default `0777`)."),
            Attribute::optional("file_mode", Type::String)
                .description("Permissions of files in the share, in octal (default `0777`)."),
        ],
        "An Azure Files share mounted over SMB",
    );
    let blob = azure_only(
        "azure_blob_file_system",
        vec![
            Attribute::required("account_name", Type::String)
                .description("The storage account that holds the container."),
            Attribute::required("container_name", Type::String)
                .description("The blob container to mount."),
            account_key(),
            Attribute::optional("mount_options", Type::String)
                .description("Extra blobfuse options, e.g. `-o attr_timeout=240`."),
        ],
        "An Azure Blob container mounted with blobfuse",
    );
    block(
        vec![],
        vec![
            file_share,
            blob,
            NestedBlock::new(
                "file_server",
                Nesting::List,
                block(
                    vec![
                        Attribute::required("file_server_id", Type::String)
                            .description("The `id` of a `batchai_file_server`."),
                        path_attr(),
                        Attribute::optional("mount_options", Type::String)
                            .description("NFS mount options (Azure)."),
                    ],
                    vec![],
                    "A `batchai_file_server`'s export.",
                ),
            ),
            NestedBlock::new(
                "unmanaged_file_system",
                Nesting::List,
                block(
                    vec![
                        Attribute::required("mount_command", Type::String).description(
                            "A command that mounts the file system; the mount path is appended \
                             to it, as Batch AI did.",
                        ),
                        path_attr(),
                    ],
                    vec![],
                    "Any file system a command can mount.",
                ),
            ),
            NestedBlock::new(
                "host_directory",
                Nesting::List,
                block(
                    vec![
                        Attribute::required("path", Type::String)
                            .description("An existing directory on this machine."),
                        path_attr(),
                    ],
                    vec![],
                    "A directory of this machine (local platform only).",
                ),
            ),
        ],
        description,
    )
}

/// Checks relative mount paths.
pub(crate) fn validate(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if let Some(mounts) = config.get_attr("mount_volumes").filter(|m| !m.is_null()) {
        for kind in [
            "file_server",
            "unmanaged_file_system",
            "host_directory",
            "azure_file_share",
            "azure_blob_file_system",
        ] {
            let Some(Value::List(items)) = mounts.get_attr(kind) else {
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                if let Some(path) = item.get_attr("relative_mount_path").and_then(Value::as_str)
                    && let Err(e) = agent::setup::check_relative_path(path)
                {
                    diags.push(
                        Diagnostic::error("invalid relative_mount_path", e.to_string()).at(
                            AttributePath::attrs(["mount_volumes", kind])
                                .index(i64::try_from(i).unwrap_or(0))
                                .attr("relative_mount_path"),
                        ),
                    );
                }
            }
        }
    }
    diags
}

/// Resolves configured volumes (file server IDs to their exports).
pub(crate) async fn resolve(
    client: &Client,
    volumes: Option<&MountVolumesModel>,
) -> Result<Vec<Mount>, Diagnostics> {
    let mut mounts = Vec::new();
    if let Some(volumes) = volumes {
        for (i, fs) in volumes.file_server.iter().enumerate() {
            let path = AttributePath::attrs(["mount_volumes", "file_server"])
                .index(i64::try_from(i).unwrap_or(0))
                .attr("file_server_id");
            let id = fs.file_server_id.clone().unwrap_or_default();
            let server = crate::resources::file_server::parse_id(&id)
                .map_err(|e| Diagnostic::error("invalid file_server_id", e).at(path.clone()))?;
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
            mounts.push(Mount {
                relative_mount_path: fs.relative_mount_path.clone().unwrap_or_default(),
                source: MountSource::Directory {
                    path: status.mount_point,
                },
            });
        }
        for m in &volumes.unmanaged_file_system {
            mounts.push(Mount {
                relative_mount_path: m.relative_mount_path.clone().unwrap_or_default(),
                source: MountSource::Command {
                    mount_command: m.mount_command.clone().unwrap_or_default(),
                },
            });
        }
        for m in &volumes.host_directory {
            mounts.push(Mount {
                relative_mount_path: m.relative_mount_path.clone().unwrap_or_default(),
                source: MountSource::Directory {
                    path: m.path.clone().unwrap_or_default(),
                },
            });
        }
    }
    Ok(mounts)
}

/// Plan-time checks that need the platform: Azure-only volume types and file servers that exist.
pub(crate) async fn check_plan(client: &Client, planned: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    let Some(mounts) = planned.get_attr("mount_volumes").filter(|m| !m.is_null()) else {
        return diags;
    };
    for kind in ["azure_file_share", "azure_blob_file_system"] {
        if let Some(Value::List(items)) = mounts.get_attr(kind) {
            for i in 0..items.len() {
                diags.push(
                            Diagnostic::error(
                                "mount type needs the azure platform",
                                format!(
                                    "{kind} volumes are Azure Storage, which the {} platform cannot mount; \
                                     use a batchai_file_server or host_directory volume, or configure the \
                                     provider's azure platform",
                                    client.name()
                                ),
                            )
                            .at(AttributePath::attrs(["mount_volumes", kind]).index(i64::try_from(i).unwrap_or(0))),
                        );
            }
        }
    }
    if let Some(Value::List(items)) = mounts.get_attr("file_server") {
        for (i, item) in items.iter().enumerate() {
            let Some(id) = item.get_attr("file_server_id").and_then(Value::as_str) else {
                continue;
            };
            let path = AttributePath::attrs(["mount_volumes", "file_server"])
                .index(i64::try_from(i).unwrap_or(0))
                .attr("file_server_id");
            match crate::resources::file_server::parse_id(id) {
                Err(e) => diags.push(Diagnostic::error("invalid file_server_id", e).at(path)),
                Ok(name) => {
                    if let Ok(None) = client.get_file_server(&name).await {
                        diags.push(
                                    Diagnostic::error(
                                        "file server not found",
                                        format!("no file server {id:?} exists; reference a batchai_file_server's id"),
                                    )
                                    .at(path),
                                );
                    }
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
        let volumes = mount_volumes_block("AZ_BATCHAI_MOUNT_ROOT", "volumes");
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
}
