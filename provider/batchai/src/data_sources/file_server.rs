//! The `batchai_file_server` data source: looks up an existing file server by name.
use serde::{Deserialize, Serialize};
use tfplug::{AttributePath, BoxFuture, Context, DataSource, Diagnostic, Diagnostics, Model};

use crate::Client;
use crate::names::Name;
use crate::resources::file_server::{StatusModel, file_server_id};

/// The `batchai_file_server` data source.
#[derive(Debug)]
pub struct FileServerDataSource;

/// Looks up an existing Batch AI file server by name, for configurations that mount storage
/// managed elsewhere.
#[derive(Debug, Serialize, Deserialize, Model)]
pub struct FileServerLookup {
    /// The file server's ID.
    #[tf(computed)]
    id: Option<String>,
    /// Name of the file server to look up.
    #[tf(required, validate = Name::parse, summary = "invalid file server name")]
    name: String,
    /// Azure VM size of the file server.
    #[tf(computed)]
    vm_size: Option<String>,
    /// ARM ID of the subnet, if the file server was put in one.
    #[tf(computed)]
    subnet_id: Option<String>,
    /// The file server's data disks: `disk_count`, `disk_size_gb`, `storage_account_type` and
    /// `caching_type`.
    #[tf(computed)]
    data_disks: Option<DataDisks>,
    #[tf(flatten)]
    #[serde(flatten)]
    status: StatusModel,
}

#[derive(Debug, Serialize, Deserialize, Model)]
struct DataDisks {
    #[tf(computed)]
    disk_count: u32,
    #[tf(computed)]
    disk_size_gb: u32,
    #[tf(computed)]
    storage_account_type: String,
    #[tf(computed)]
    caching_type: String,
}

impl DataSource<Client> for FileServerDataSource {
    type Model = FileServerLookup;

    fn type_name(&self) -> &'static str {
        crate::resources::file_server::TYPE_NAME
    }

    fn read<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        config: FileServerLookup,
    ) -> BoxFuture<'a, Result<FileServerLookup, Diagnostics>> {
        Box::pin(async move {
            let at_name = || AttributePath::attrs(["name"]);
            let name = Name::parse(&config.name).map_err(|e| {
                Diagnostic::error("invalid file server name", e.to_string()).at(at_name())
            })?;
            let status = client
                .get_file_server(&name)
                .await
                .map_err(|e| Diagnostic::error("file server lookup failed", e.to_string()))?
                .ok_or_else(|| {
                    Diagnostic::error(
                        "file server not found",
                        format!(
                            "no file server named {:?} exists on the {} platform",
                            config.name,
                            client.name()
                        ),
                    )
                    .at(at_name())
                })?;
            let spec = &status.spec;
            Ok(FileServerLookup {
                id: Some(file_server_id(client.name(), &spec.name)),
                name: spec.name.to_string(),
                vm_size: Some(spec.vm_size.clone()),
                subnet_id: spec.subnet_id.clone(),
                data_disks: Some(DataDisks {
                    disk_count: spec.data_disks.disk_count,
                    disk_size_gb: spec.data_disks.disk_size_gb,
                    storage_account_type: spec.data_disks.storage_account_type.clone(),
                    caching_type: spec.data_disks.caching_type.clone(),
                }),
                status: StatusModel::of(&status),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tfplug::DynDataSource;

    #[test]
    fn schema_is_valid() {
        assert_eq!(FileServerDataSource.schema().validate(), Ok(()));
    }
}
