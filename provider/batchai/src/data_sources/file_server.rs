//! The `batchai_file_server` data source: looks up an existing file server by name.
use serde::{Deserialize, Serialize};
use tfplug::model::encode;
use tfplug::{
    Attribute, AttributePath, Block, BoxFuture, Context, Diagnostic, Diagnostics, DynDataSource,
    Schema, Type, Value,
};

use crate::Client;
use crate::names::Name;
use crate::resources::file_server::{
    common_computed_attributes, file_server_id, mount_settings_attribute,
};

/// The `batchai_file_server` data source.
#[derive(Debug)]
pub struct FileServerDataSource;

#[derive(Debug, Serialize, Deserialize)]
struct Model {
    id: Option<String>,
    name: String,
    vm_size: Option<String>,
    subnet_id: Option<String>,
    data_disks: Option<DataDisks>,
    mount_settings: Option<crate::resources::file_server::MountSettingsModel>,
    provisioning_state: Option<String>,
    creation_time: Option<String>,
    capacity_gb: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct DataDisks {
    disk_count: u32,
    disk_size_gb: u32,
    storage_account_type: String,
    caching_type: String,
}

fn schema() -> Schema {
    let mut attributes = vec![
        Attribute::computed("id", Type::String).description("The file server's ID."),
        Attribute::required("name", Type::String)
            .description("Name of the file server to look up."),
        Attribute::computed("vm_size", Type::String)
            .description("Azure VM size of the file server."),
        Attribute::computed("subnet_id", Type::String)
            .description("ARM ID of the subnet, if the file server was put in one."),
        Attribute::computed(
            "data_disks",
            Type::object([
                ("disk_count", Type::Number),
                ("disk_size_gb", Type::Number),
                ("storage_account_type", Type::String),
                ("caching_type", Type::String),
            ]),
        )
        .description(
            "The file server's data disks: `disk_count`, `disk_size_gb`, \
             `storage_account_type` and `caching_type`.",
        ),
        mount_settings_attribute(),
    ];
    attributes.extend(common_computed_attributes());
    Schema::new(
        0,
        Block::new(attributes, vec![]).description(
            "Looks up an existing Batch AI file server by name, for configurations that mount \
             storage managed elsewhere.",
        ),
    )
}

impl DynDataSource<Client> for FileServerDataSource {
    fn type_name(&self) -> &'static str {
        crate::resources::file_server::TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = Diagnostics::new();
        if let Some(name) = config.get_attr("name").and_then(Value::as_str)
            && let Err(e) = Name::parse(name)
        {
            diags.push(
                Diagnostic::error("invalid file server name", e.to_string())
                    .at(AttributePath::attrs(["name"])),
            );
        }
        diags
    }

    fn read<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<Value, Diagnostics>> {
        Box::pin(async move {
            let ty = schema().implied_type();
            let name_text = config
                .get_attr("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let name = Name::parse(name_text).map_err(|e| {
                Diagnostic::error("invalid file server name", e.to_string())
                    .at(AttributePath::attrs(["name"]))
            })?;
            let status = client
                .get_file_server(&name)
                .await
                .map_err(|e| Diagnostic::error("file server lookup failed", e.to_string()))?
                .ok_or_else(|| {
                    Diagnostic::error(
                        "file server not found",
                        format!(
                            "no file server named {name:?} exists on the {} platform",
                            client.name()
                        ),
                    )
                    .at(AttributePath::attrs(["name"]))
                })?;
            let spec = &status.spec;
            let model = Model {
                id: Some(file_server_id(&spec.name)),
                name: spec.name.to_string(),
                vm_size: Some(spec.vm_size.clone()),
                subnet_id: spec.subnet_id.clone(),
                data_disks: Some(DataDisks {
                    disk_count: spec.data_disks.disk_count,
                    disk_size_gb: spec.data_disks.disk_size_gb,
                    storage_account_type: spec.data_disks.storage_account_type.clone(),
                    caching_type: spec.data_disks.caching_type.clone(),
                }),
                mount_settings: Some(crate::resources::file_server::MountSettingsModel {
                    mount_point: status.mount_point.clone(),
                    file_server_internal_ip: status.internal_ip.clone(),
                    file_server_public_ip: status.public_ip.clone(),
                }),
                provisioning_state: Some(status.provisioning_state.clone()),
                creation_time: Some(status.creation_time.clone()),
                capacity_gb: Some(spec.data_disks.capacity_gb()),
            };
            encode(&model, &ty)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_valid() {
        assert_eq!(schema().validate(), Ok(()));
    }
}
