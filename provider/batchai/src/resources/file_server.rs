//! `batchai_file_server`: shared NFS storage (on Azure a VM with RAID-0 data disks; on the local
//! platform a directory exported under the provider's root).
use serde::{Deserialize, Serialize};
use tfplug::model::{decode, encode};
use tfplug::{
    ApplyRequest, ApplyResult, Attribute, AttributePath, Block, BoxFuture, ClientCapabilities,
    Context, Diagnostic, Diagnostics, DynResource, NestedBlock, Plan, PlanRequest, ReadResult,
    Schema, TimeoutDefaults, Type, Value,
};

use crate::Client;
use crate::names::Name;
use crate::platform::{FileServerStatus, PlatformError};

pub const TYPE_NAME: &str = "batchai_file_server";
const ID_PREFIX: &str = "local/fileServers/";

const STORAGE_ACCOUNT_TYPES: [&str; 3] = ["Standard_LRS", "StandardSSD_LRS", "Premium_LRS"];
const CACHING_TYPES: [&str; 3] = ["none", "readonly", "readwrite"];

/// A validated file server definition, what platforms act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileServerSpec {
    pub name: Name,
    pub vm_size: String,
    pub data_disks: DataDisks,
    pub ssh_configuration: Option<SshConfiguration>,
    pub subnet_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDisks {
    pub disk_count: u32,
    pub disk_size_gb: u32,
    pub storage_account_type: String,
    pub caching_type: String,
}

impl DataDisks {
    /// On the local platform the capacity is recorded and reported, not enforced.
    pub fn capacity_gb(&self) -> u64 {
        u64::from(self.disk_count) * u64::from(self.disk_size_gb)
    }
}

/// SSH access to the file server VM (Azure); the password never leaves Terraform's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshConfiguration {
    pub admin_user_name: String,
    pub admin_user_ssh_public_key: Option<String>,
    pub public_ips_to_allow: Option<Vec<String>>,
}

impl Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Name::parse(&text).map_err(serde::de::Error::custom)
    }
}

// The state model: one field per schema attribute, `Option` where the value may be null.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Model {
    pub id: Option<String>,
    pub name: Option<String>,
    pub vm_size: Option<String>,
    pub subnet_id: Option<String>,
    pub data_disks: Option<DataDisksModel>,
    pub ssh_configuration: Option<SshModel>,
    pub mount_settings: Option<MountSettingsModel>,
    pub provisioning_state: Option<String>,
    pub creation_time: Option<String>,
    pub capacity_gb: Option<u64>,
    pub timeouts: Option<TimeoutsModel>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct DataDisksModel {
    pub disk_count: Option<u32>,
    pub disk_size_gb: Option<u32>,
    pub storage_account_type: Option<String>,
    pub caching_type: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SshModel {
    pub public_ips_to_allow: Option<Vec<String>>,
    pub user_account_settings: Option<UserAccountModel>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct UserAccountModel {
    pub admin_user_name: Option<String>,
    pub admin_user_ssh_public_key: Option<String>,
    pub admin_user_password: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MountSettingsModel {
    pub mount_point: String,
    pub file_server_internal_ip: String,
    pub file_server_public_ip: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct TimeoutsModel {
    pub create: Option<String>,
    pub read: Option<String>,
    pub update: Option<String>,
    pub delete: Option<String>,
}

/// The ID of a file server on the local platform.
pub fn file_server_id(name: &Name) -> String {
    format!("{ID_PREFIX}{name}")
}

/// Parses a file server ID as `terraform import` receives it.
pub fn parse_id(id: &str) -> Result<Name, String> {
    let name = id.strip_prefix(ID_PREFIX).ok_or_else(|| {
        format!("{id:?} is not a file server ID; IDs look like \"{ID_PREFIX}<name>\"")
    })?;
    Name::parse(name).map_err(|e| e.to_string())
}

/// `mount_settings` is an object-typed attribute rather than nested attributes: Terraform 1.0
/// serves nested attributes in state but cannot reference their fields in expressions.
pub(crate) fn mount_settings_attribute() -> Attribute {
    Attribute::computed(
        "mount_settings",
        Type::object([
            ("mount_point", Type::String),
            ("file_server_internal_ip", Type::String),
            ("file_server_public_ip", Type::String),
        ]),
    )
    .description(
        "How clusters reach the file server's export: `mount_point` (a directory on the local \
         platform, the NFS export path on Azure), `file_server_internal_ip` and \
         `file_server_public_ip` (both `127.0.0.1` on the local platform).",
    )
}

pub(crate) fn common_computed_attributes() -> Vec<Attribute> {
    vec![
        Attribute::computed("provisioning_state", Type::String).description(
            "The provisioning state: `creating`, `succeeded`, `failed` or `deleting`.",
        ),
        Attribute::computed("creation_time", Type::String)
            .description("When the file server was created (RFC 3339)."),
        Attribute::computed("capacity_gb", Type::Number).description(
            "Total capacity in GB: `data_disks.disk_count × data_disks.disk_size_gb`. Recorded \
             and reported on the local platform, where it is not enforced.",
        ),
    ]
}

fn schema() -> Schema {
    let data_disks = Block::new(
        vec![
            Attribute::required("disk_count", Type::Number)
                .description("Number of data disks striped together (RAID 0), 1 to 64."),
            Attribute::required("disk_size_gb", Type::Number)
                .description("Size of each data disk in GB, 1 to 32767."),
            Attribute::required("storage_account_type", Type::String)
                .description("Disk type: `Standard_LRS`, `StandardSSD_LRS` or `Premium_LRS`."),
            Attribute::optional_computed("caching_type", Type::String).description(
                "Host caching of the data disks: `none` (the default), `readonly` or `readwrite`.",
            ),
        ],
        vec![],
    )
    .description("The data disks of the file server. Changing anything here forces replacement.");
    let user_account = Block::new(
        vec![
            Attribute::required("admin_user_name", Type::String)
                .description("Name of the administrator account created on the file server VM."),
            Attribute::optional("admin_user_ssh_public_key", Type::String)
                .description("SSH public key (OpenSSH format) of the administrator."),
            Attribute::optional("admin_user_password", Type::String)
                .sensitive()
                .description(
                    "Password of the administrator. Stored in Terraform state (marked sensitive); \
                     prefer `admin_user_ssh_public_key`.",
                ),
        ],
        vec![],
    )
    .description("The administrator account on the file server VM.");
    let ssh = Block::new(
        vec![
            Attribute::optional("public_ips_to_allow", Type::list(Type::String)).description(
                "Public IP addresses or CIDR ranges allowed to reach the file server over SSH. \
             None by default.",
            ),
        ],
        vec![NestedBlock::required_single(
            "user_account_settings",
            user_account,
        )],
    )
    .description(
        "SSH access to the file server VM. Used on the azure platform; recorded but unused on \
         the local platform. Changing it forces replacement.",
    );

    let mut attributes =
        vec![
        Attribute::computed("id", Type::String)
            .description("The file server's ID, `local/fileServers/<name>` on the local platform."),
        Attribute::required("name", Type::String).force_new().description(
            "Name of the file server: 1 to 64 letters, digits, `-` or `_`, unique per \
             platform. Changing it forces replacement.",
        ),
        Attribute::required("vm_size", Type::String).force_new().description(
            "Azure VM size of the file server, e.g. `Standard_D2s_v3`. Recorded on the local \
             platform. Changing it forces replacement.",
        ),
        Attribute::optional("subnet_id", Type::String).force_new().description(
            "ARM ID of the virtual network subnet to put the file server in. Recorded on the \
             local platform. Changing it forces replacement.",
        ),
        mount_settings_attribute(),
    ];
    attributes.extend(common_computed_attributes());
    Schema::new(
        0,
        Block::new(
            attributes,
            vec![
                NestedBlock::required_single("data_disks", data_disks).force_new(),
                NestedBlock::optional_single("ssh_configuration", ssh).force_new(),
            ],
        )
        .description(
            "A Batch AI file server: shared storage that clusters mount (`mount_volumes { \
             file_server { ... } }`). On Azure it is a VM whose data disks form a RAID 0 \
             array exported over NFS; on the local platform it is a directory under the \
             provider's root. Every argument except `timeouts` forces replacement. Destroying \
             it deletes the export and its data.",
        ),
    )
}

/// The `batchai_file_server` resource.
#[derive(Debug)]
pub struct FileServerResource;

fn type_of() -> Type {
    tfplug::server::resource_schema::<Client>(&FileServerResource).implied_type()
}

fn must_be_one_of(path: AttributePath, value: &str, allowed: &[&str], what: &str) -> Diagnostic {
    Diagnostic::error(
        format!("invalid {what}"),
        format!(
            "{value:?} is not a {what}; use one of {}",
            allowed
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .at(path)
}

/// Checks what is known of a configuration; unknown parts are checked again at apply.
pub(crate) fn validate_config(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if let Some(name) = config.get_attr("name").and_then(Value::as_str)
        && let Err(e) = Name::parse(name)
    {
        diags.push(
            Diagnostic::error("invalid file server name", e.to_string())
                .at(AttributePath::attrs(["name"])),
        );
    }
    if let Some(size) = config.get_attr("vm_size").and_then(Value::as_str)
        && size.trim().is_empty()
    {
        diags.push(
            Diagnostic::error(
                "empty vm_size",
                "set vm_size to an Azure VM size such as \"Standard_D2s_v3\"",
            )
            .at(AttributePath::attrs(["vm_size"])),
        );
    }
    if let Some(disks) = config.get_attr("data_disks").filter(|d| !d.is_null()) {
        let at = |name: &str| AttributePath::attrs(["data_disks", name]);
        for (name, min, max) in [("disk_count", 1, 64), ("disk_size_gb", 1, 32767)] {
            if let Some(n) = disks.get_attr(name).and_then(Value::as_number) {
                let ok = n.as_i64().is_some_and(|v| (min..=max).contains(&v));
                if !ok {
                    diags.push(
                        Diagnostic::error(
                            format!("invalid {name}"),
                            format!("{name} is {n}; it must be a whole number from {min} to {max}"),
                        )
                        .at(at(name)),
                    );
                }
            }
        }
        if let Some(t) = disks
            .get_attr("storage_account_type")
            .and_then(Value::as_str)
            && !STORAGE_ACCOUNT_TYPES.contains(&t)
        {
            diags.push(must_be_one_of(
                at("storage_account_type"),
                t,
                &STORAGE_ACCOUNT_TYPES,
                "storage account type",
            ));
        }
        if let Some(t) = disks.get_attr("caching_type").and_then(Value::as_str)
            && !CACHING_TYPES.contains(&t)
        {
            diags.push(must_be_one_of(
                at("caching_type"),
                t,
                &CACHING_TYPES,
                "caching type",
            ));
        }
    }
    diags
}

/// Builds the validated spec from a wholly known configuration.
fn spec_from(model: &Model) -> Result<FileServerSpec, Diagnostics> {
    let missing =
        |what: &str| Diagnostics::from(Diagnostic::internal(format!("{what} is missing")));
    let name = Name::parse(model.name.as_deref().unwrap_or_default()).map_err(|e| {
        Diagnostic::error("invalid file server name", e.to_string())
            .at(AttributePath::attrs(["name"]))
    })?;
    let disks = model
        .data_disks
        .as_ref()
        .ok_or_else(|| missing("data_disks"))?;
    Ok(FileServerSpec {
        name,
        vm_size: model.vm_size.clone().unwrap_or_default(),
        data_disks: DataDisks {
            disk_count: disks
                .disk_count
                .ok_or_else(|| missing("data_disks.disk_count"))?,
            disk_size_gb: disks
                .disk_size_gb
                .ok_or_else(|| missing("data_disks.disk_size_gb"))?,
            storage_account_type: disks.storage_account_type.clone().unwrap_or_default(),
            caching_type: disks
                .caching_type
                .clone()
                .unwrap_or_else(|| "none".to_owned()),
        },
        ssh_configuration: model.ssh_configuration.as_ref().map(|ssh| {
            let user = ssh.user_account_settings.clone().unwrap_or_default();
            SshConfiguration {
                admin_user_name: user.admin_user_name.unwrap_or_default(),
                admin_user_ssh_public_key: user.admin_user_ssh_public_key,
                public_ips_to_allow: ssh.public_ips_to_allow.clone(),
            }
        }),
        subnet_id: model.subnet_id.clone(),
    })
}

/// The state of a file server as the platform reports it. What the platform cannot report
/// (the admin password, `timeouts`) comes from `carry`.
pub(crate) fn model_from(status: &FileServerStatus, carry: Option<&Model>) -> Model {
    let spec = &status.spec;
    let password = carry
        .and_then(|m| m.ssh_configuration.as_ref())
        .and_then(|s| s.user_account_settings.as_ref())
        .and_then(|u| u.admin_user_password.clone());
    Model {
        id: Some(file_server_id(&spec.name)),
        name: Some(spec.name.to_string()),
        vm_size: Some(spec.vm_size.clone()),
        subnet_id: spec.subnet_id.clone(),
        data_disks: Some(DataDisksModel {
            disk_count: Some(spec.data_disks.disk_count),
            disk_size_gb: Some(spec.data_disks.disk_size_gb),
            storage_account_type: Some(spec.data_disks.storage_account_type.clone()),
            caching_type: Some(spec.data_disks.caching_type.clone()),
        }),
        ssh_configuration: spec.ssh_configuration.as_ref().map(|ssh| SshModel {
            public_ips_to_allow: ssh.public_ips_to_allow.clone(),
            user_account_settings: Some(UserAccountModel {
                admin_user_name: Some(ssh.admin_user_name.clone()),
                admin_user_ssh_public_key: ssh.admin_user_ssh_public_key.clone(),
                admin_user_password: password,
            }),
        }),
        mount_settings: Some(MountSettingsModel {
            mount_point: status.mount_point.clone(),
            file_server_internal_ip: status.internal_ip.clone(),
            file_server_public_ip: status.public_ip.clone(),
        }),
        provisioning_state: Some(status.provisioning_state.clone()),
        creation_time: Some(status.creation_time.clone()),
        capacity_gb: Some(spec.data_disks.capacity_gb()),
        timeouts: carry.and_then(|m| m.timeouts.clone()),
    }
}

fn platform_error(e: PlatformError) -> Diagnostics {
    let summary = match e {
        PlatformError::AlreadyExists { .. } => "file server already exists",
        PlatformError::InUse { .. } => "file server in use",
        _ => "file server operation failed",
    };
    Diagnostic::error(summary, e.to_string()).into()
}

impl DynResource<Client> for FileServerResource {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn timeouts(&self) -> Option<TimeoutDefaults> {
        Some(super::DEFAULT_TIMEOUTS)
    }

    fn validate(&self, config: &Value, _capabilities: ClientCapabilities) -> Diagnostics {
        let mut diags = validate_config(config);
        diags.extend(tfplug::model::check_numbers::<Model>(config, &type_of()));
        diags
    }

    fn modify_plan(&self, request: &PlanRequest<'_>, plan: &mut Plan) -> Result<(), Diagnostics> {
        // `caching_type` defaults to "none", as in Batch AI, so the plan shows the real value.
        let configured = request
            .config
            .get_attr("data_disks")
            .and_then(|d| d.get_attr("caching_type"));
        if configured.is_some_and(Value::is_null)
            && let Value::Object(attrs) = &mut plan.planned
            && let Some(Value::Object(disks)) = attrs.get_mut("data_disks")
        {
            disks.insert("caching_type".to_owned(), Value::string("none"));
        }
        Ok(())
    }

    fn create<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        request: ApplyRequest<'a>,
    ) -> BoxFuture<'a, ApplyResult> {
        Box::pin(async move {
            let run = async {
                let ty = type_of();
                let model: Model = decode(request.config, &ty)?;
                let spec = spec_from(&model)?;
                let status = client
                    .create_file_server(&spec)
                    .await
                    .map_err(platform_error)?;
                encode(&model_from(&status, Some(&model)), &ty)
            };
            match run.await {
                Ok(state) => ApplyResult::ok(state),
                Err(d) => ApplyResult::failed(d),
            }
        })
    }

    fn read<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        state: &'a Value,
        private: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<ReadResult>, Diagnostics>> {
        Box::pin(async move {
            let ty = type_of();
            let prior: Model = decode(state, &ty)?;
            let name = super::stored_name(prior.name.as_deref())?;
            let Some(status) = client
                .get_file_server(&name)
                .await
                .map_err(platform_error)?
            else {
                return Ok(None);
            };
            Ok(Some(ReadResult {
                state: encode(&model_from(&status, Some(&prior)), &ty)?,
                private: private.to_vec(),
            }))
        })
    }

    fn delete<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        prior: &'a Value,
        _private: &'a [u8],
    ) -> BoxFuture<'a, Result<(), Diagnostics>> {
        Box::pin(async move {
            let prior: Model = decode(prior, &type_of())?;
            let name = super::stored_name(prior.name.as_deref())?;
            client
                .delete_file_server(&name)
                .await
                .map_err(platform_error)
        })
    }

    fn import<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Value, Diagnostics>> {
        Box::pin(async move {
            let name = parse_id(id).map_err(|e| Diagnostic::error("invalid import ID", e))?;
            let status = client
                .get_file_server(&name)
                .await
                .map_err(platform_error)?;
            let Some(status) = status else {
                return Err(Diagnostic::error(
                    "file server not found",
                    format!(
                        "import file server {id}: no such file server on the {} platform",
                        client.name()
                    ),
                )
                .into());
            };
            encode(&model_from(&status, None), &type_of())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_valid() {
        let schema = tfplug::server::resource_schema::<Client>(&FileServerResource);
        assert_eq!(schema.validate(), Ok(()));
    }

    #[test]
    fn ids_round_trip() {
        let name = Name::parse("data").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parse_id(&file_server_id(&name)), Ok(name));
        assert!(parse_id("data").is_err());
        assert!(parse_id("local/fileServers/bad name").is_err());
    }

    fn config(name: &str, count: i64, storage: &str, caching: Value) -> Value {
        let obj = |pairs: Vec<(&str, Value)>| {
            Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        };
        obj(vec![
            ("name", Value::string(name)),
            ("vm_size", Value::string("Standard_D2s_v3")),
            (
                "data_disks",
                obj(vec![
                    ("disk_count", Value::number(count)),
                    ("disk_size_gb", Value::number(10)),
                    ("storage_account_type", Value::string(storage)),
                    ("caching_type", caching),
                ]),
            ),
        ])
    }

    #[test]
    fn validation_points_at_the_attribute() {
        let cases: Vec<(Value, Option<Vec<&str>>)> = vec![
            (config("data", 2, "Standard_LRS", Value::Null), None),
            (
                config("bad name", 2, "Standard_LRS", Value::Null),
                Some(vec!["name"]),
            ),
            (
                config("data", 0, "Standard_LRS", Value::Null),
                Some(vec!["data_disks", "disk_count"]),
            ),
            (
                config("data", 2, "Fast", Value::Null),
                Some(vec!["data_disks", "storage_account_type"]),
            ),
            (
                config("data", 2, "Standard_LRS", Value::string("always")),
                Some(vec!["data_disks", "caching_type"]),
            ),
            (config("data", 2, "Standard_LRS", Value::unknown()), None),
        ];
        for (cfg, want) in cases {
            let diags = crate::resources::validate_all(&FileServerResource, &cfg);
            match want {
                None => assert!(!diags.has_errors(), "{diags}"),
                Some(path) => {
                    assert_eq!(
                        diags.0.first().and_then(|d| d.path.clone()),
                        Some(AttributePath::attrs(path))
                    );
                }
            }
        }
    }
}
