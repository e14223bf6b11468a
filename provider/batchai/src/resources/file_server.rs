//! `batchai_file_server`: shared NFS storage (on Azure a VM with RAID-0 data disks; on the local
//! platform a directory exported under the provider's root).
use serde::{Deserialize, Serialize};
use tfplug::{
    Apply, ApplyResult, AttributePath, BoxFuture, Context, Diagnostic, Diagnostics, Model,
    ReadResult, Resource, TimeoutDefaults,
};

use crate::Client;
use crate::names::{Name, NameError};
use crate::platform::{FileServerStatus, PlatformError};

pub const TYPE_NAME: &str = "batchai_file_server";

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

/// A Batch AI file server: shared storage that clusters mount (`mount_volumes { file_server {
/// ... } }`). On Azure it is a VM (Ubuntu 24.04) whose empty managed data disks form a RAID 0
/// array, formatted ext4 and exported over NFS as `/data` to its subnet; its disks and network
/// interface are deleted with it, and clusters mount it with `mount -t nfs`. On the local
/// platform it is a directory under the provider's root. Every argument except `timeouts`
/// forces replacement. Destroying it deletes the export and its data.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct FileServerModel {
    /// The file server's ID, `<platform>/fileServers/<name>` (`local/...` on the local
    /// platform, `azure/...` on Azure).
    #[tf(computed)]
    pub id: Option<String>,
    /// Name of the file server: 1 to 64 letters, digits, `-` or `_`, unique per platform.
    /// Changing it forces replacement.
    #[tf(required, replace, validate = Name::parse, summary = "invalid file server name")]
    pub name: Option<String>,
    /// Azure VM size of the file server, e.g. `Standard_D2s_v3`. Recorded on the local
    /// platform. Changing it forces replacement.
    #[tf(required, replace, validate = check_vm_size, summary = "empty vm_size")]
    pub vm_size: Option<String>,
    /// ARM ID of the virtual network subnet to put the file server in; required on the azure
    /// platform, where the export is limited to this subnet's address range. Recorded on the
    /// local platform. Changing it forces replacement.
    #[tf(optional, replace)]
    pub subnet_id: Option<String>,
    /// The data disks of the file server. Changing anything here forces replacement.
    #[tf(block, required, replace)]
    pub data_disks: Option<DataDisksModel>,
    /// SSH access to the file server VM. Used on the azure platform; recorded but unused on the
    /// local platform. Changing it forces replacement.
    #[tf(block, replace)]
    pub ssh_configuration: Option<SshModel>,
    #[tf(flatten)]
    #[serde(flatten)]
    pub status: StatusModel,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct DataDisksModel {
    /// Number of data disks striped together (RAID 0), 1 to 64.
    #[tf(required, range(1, 64))]
    pub disk_count: Option<u32>,
    /// Size of each data disk in GB, 1 to 32767.
    #[tf(required, range(1, 32767))]
    pub disk_size_gb: Option<u32>,
    /// Disk type: `Standard_LRS`, `StandardSSD_LRS` or `Premium_LRS`.
    #[tf(
        required,
        one_of("Standard_LRS", "StandardSSD_LRS", "Premium_LRS"),
        summary = "invalid storage account type"
    )]
    pub storage_account_type: Option<String>,
    /// Host caching of the data disks: `none` (the default), `readonly` or `readwrite`.
    #[tf(
        default = "none",
        one_of("none", "readonly", "readwrite"),
        summary = "invalid caching type"
    )]
    pub caching_type: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct SshModel {
    /// Public IP addresses or CIDR ranges allowed to reach the file server over SSH. None by
    /// default. Not used on the azure platform, where the file server has no public IP (a plan
    /// warning says so).
    #[tf(optional)]
    pub public_ips_to_allow: Option<Vec<String>>,
    /// The administrator account on the file server VM.
    #[tf(block, required)]
    pub user_account_settings: Option<UserAccountModel>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct UserAccountModel {
    /// Name of the administrator account created on the file server VM.
    #[tf(required)]
    pub admin_user_name: Option<String>,
    /// SSH public key (OpenSSH format) of the administrator.
    #[tf(optional)]
    pub admin_user_ssh_public_key: Option<String>,
    /// Password of the administrator. Stored in Terraform state (marked sensitive); prefer
    /// `admin_user_ssh_public_key`. Refused on the azure platform, which takes SSH keys only.
    #[tf(optional, sensitive)]
    pub admin_user_password: Option<String>,
}

/// What the platform reports about a file server, shared by the resource and the data source.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct StatusModel {
    /// How clusters reach the file server's export: `mount_point` (a directory on the local
    /// platform, the NFS export path `/data` on Azure), `file_server_internal_ip` and
    /// `file_server_public_ip` (both `127.0.0.1` on the local platform; on Azure the VM's
    /// private IP, and empty, as it has no public IP).
    // An object-typed attribute rather than nested attributes: Terraform 1.0 serves nested
    // attributes in state but cannot reference their fields in expressions.
    #[tf(computed)]
    pub mount_settings: Option<MountSettingsModel>,
    /// The provisioning state: `creating`, `succeeded`, `failed` or `deleting`.
    #[tf(computed)]
    pub provisioning_state: Option<String>,
    /// When the file server was created (RFC 3339).
    #[tf(computed)]
    pub creation_time: Option<String>,
    /// Total capacity in GB: `data_disks.disk_count × data_disks.disk_size_gb`. Recorded and
    /// reported on the local platform, where it is not enforced.
    #[tf(computed)]
    pub capacity_gb: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct MountSettingsModel {
    #[tf(computed)]
    pub mount_point: String,
    #[tf(computed)]
    pub file_server_internal_ip: String,
    #[tf(computed)]
    pub file_server_public_ip: String,
}

impl StatusModel {
    pub(crate) fn of(status: &FileServerStatus) -> Self {
        Self {
            mount_settings: Some(MountSettingsModel {
                mount_point: status.mount_point.clone(),
                file_server_internal_ip: status.internal_ip.clone(),
                file_server_public_ip: status.public_ip.clone(),
            }),
            provisioning_state: Some(status.provisioning_state.clone()),
            creation_time: Some(status.creation_time.clone()),
            capacity_gb: Some(status.spec.data_disks.capacity_gb()),
        }
    }
}

/// A file server ID that is not one, as `terraform import` and mounts may receive it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "{id:?} is not a file server ID; IDs look like \"<platform>/fileServers/<name>\", where the platform is local or azure"
    )]
    Prefix { id: String },
    #[error(transparent)]
    Name(#[from] NameError),
}

/// The ID of a file server on `platform`: `<platform>/fileServers/<name>`.
pub fn file_server_id(platform: &str, name: &Name) -> String {
    format!("{platform}/fileServers/{name}")
}

/// Parses a file server ID, `<platform>/fileServers/<name>`, of any platform (see
/// [`super::check_platform`]).
pub fn parse_id(id: &str) -> Result<Name, IdError> {
    let (_, name) =
        super::split_id(id, "fileServers").ok_or_else(|| IdError::Prefix { id: id.to_owned() })?;
    Ok(Name::parse(name)?)
}

fn check_vm_size(size: &str) -> Result<(), &'static str> {
    if size.trim().is_empty() {
        return Err("set vm_size to an Azure VM size such as \"Standard_D2s_v3\"");
    }
    Ok(())
}

/// The `batchai_file_server` resource.
#[derive(Debug)]
pub struct FileServerResource;

/// Builds the validated spec from a wholly known plan.
fn spec_from(model: &FileServerModel) -> Result<FileServerSpec, Diagnostics> {
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
                .ok_or_else(|| missing("data_disks.caching_type"))?,
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

/// The state of a file server as the platform reports it. The admin password, which the
/// platform does not keep, comes from `carry`.
fn model_from(
    platform: &str,
    status: &FileServerStatus,
    carry: Option<&FileServerModel>,
) -> FileServerModel {
    let spec = &status.spec;
    let password = carry
        .and_then(|m| m.ssh_configuration.as_ref())
        .and_then(|s| s.user_account_settings.as_ref())
        .and_then(|u| u.admin_user_password.clone());
    FileServerModel {
        id: Some(file_server_id(platform, &spec.name)),
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
        status: StatusModel::of(status),
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

/// What a file server on Azure needs that the local platform does not: a subnet (its NIC's,
/// and the range its export is limited to), and SSH keys rather than a password, which would
/// have to reach the VM and be kept somewhere; a public IP for SSH is not made.
fn azure_checks(planned: &tfplug::Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if planned
        .get_attr("subnet_id")
        .is_some_and(tfplug::Value::is_null)
    {
        diags.push(
            Diagnostic::error(
                "no subnet for the file server",
                "on the azure platform a file server needs a subnet: set subnet_id to the ARM ID \
                 of the subnet its clusters' nodes are in (its NFS export is limited to that \
                 subnet's address range)",
            )
            .at(AttributePath::attrs(["subnet_id"])),
        );
    }
    let ssh = ["ssh_configuration", "user_account_settings"];
    let password = super::value_at(planned, &[ssh[0], ssh[1], "admin_user_password"]);
    if password.is_some_and(|v| !v.is_null()) {
        diags.push(
            Diagnostic::error(
                "passwords are not used on the azure platform",
                "an Azure file server accepts SSH keys only: set admin_user_ssh_public_key \
                 instead of admin_user_password",
            )
            .at(AttributePath::attrs([
                ssh[0],
                ssh[1],
                "admin_user_password",
            ])),
        );
    }
    let public = super::value_at(planned, &[ssh[0], "public_ips_to_allow"]);
    if public.is_some_and(|v| !v.is_null()) {
        diags.push(
            Diagnostic::warning(
                "the file server gets no public IP",
                "on the azure platform a file server has a private IP only, so \
                 public_ips_to_allow is not used: reach it over SSH from inside its virtual \
                 network (a bastion or a peered network)",
            )
            .at(AttributePath::attrs([ssh[0], "public_ips_to_allow"])),
        );
    }
    diags
}

impl Resource<Client> for FileServerResource {
    type Model = FileServerModel;

    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn timeouts(&self) -> Option<TimeoutDefaults> {
        Some(super::DEFAULT_TIMEOUTS)
    }

    fn check_plan<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        planned: &'a tfplug::Value,
    ) -> BoxFuture<'a, Diagnostics> {
        Box::pin(async move {
            if client.name() == "azure" {
                azure_checks(planned)
            } else {
                Diagnostics::new()
            }
        })
    }

    fn create<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        request: Apply<'a, FileServerModel>,
    ) -> BoxFuture<'a, ApplyResult<FileServerModel>> {
        Box::pin(async move {
            let run = async {
                let spec = spec_from(&request.planned)?;
                let status = client
                    .create_file_server(&spec)
                    .await
                    .map_err(platform_error)?;
                Ok(model_from(client.name(), &status, Some(&request.planned)))
            };
            ApplyResult::from_result(run.await)
        })
    }

    fn read<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        state: FileServerModel,
        private: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<ReadResult<FileServerModel>>, Diagnostics>> {
        Box::pin(async move {
            let name = super::stored_name(state.name.as_deref())?;
            let Some(status) = client
                .get_file_server(&name)
                .await
                .map_err(platform_error)?
            else {
                return Ok(None);
            };
            Ok(Some(ReadResult {
                state: model_from(client.name(), &status, Some(&state)),
                private: private.to_vec(),
            }))
        })
    }

    fn delete<'a>(
        &'a self,
        client: &'a Client,
        _ctx: &'a Context,
        state: FileServerModel,
        _private: &'a [u8],
    ) -> BoxFuture<'a, Result<(), Diagnostics>> {
        Box::pin(async move {
            let name = super::stored_name(state.name.as_deref())?;
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
    ) -> BoxFuture<'a, Result<FileServerModel, Diagnostics>> {
        Box::pin(async move {
            let name =
                parse_id(id).map_err(|e| Diagnostic::error("invalid import ID", e.to_string()))?;
            super::check_platform(id, client.name())?;
            let status = client
                .get_file_server(&name)
                .await
                .map_err(platform_error)?;
            let Some(status) = status else {
                return Err(super::import_not_found("file server", id, client));
            };
            Ok(model_from(client.name(), &status, None))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tfplug::Value;

    #[test]
    fn schema_is_valid() {
        let schema = tfplug::server::resource_schema::<Client>(&FileServerResource);
        assert_eq!(schema.validate(), Ok(()));
    }

    #[test]
    fn ids_round_trip() {
        let name = Name::parse("data").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            parse_id(&file_server_id("local", &name)).ok(),
            Some(name.clone())
        );
        assert_eq!(file_server_id("azure", &name), "azure/fileServers/data");
        assert_eq!(parse_id("azure/fileServers/data").ok(), Some(name));
        assert!(parse_id("data").is_err());
        assert!(parse_id("local/fileServers/bad name").is_err());
    }

    #[test]
    fn azure_wants_a_subnet_and_keys_and_says_there_is_no_public_ip() {
        let obj = |pairs: Vec<(&str, Value)>| {
            Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        };
        let planned = |subnet: Value, password: Value, public: Value| {
            obj(vec![
                ("subnet_id", subnet),
                (
                    "ssh_configuration",
                    obj(vec![
                        ("public_ips_to_allow", public),
                        (
                            "user_account_settings",
                            obj(vec![("admin_user_password", password)]),
                        ),
                    ]),
                ),
            ])
        };
        let subnet = || Value::string("/subscriptions/s/x/subnets/a");
        let cases = [
            (planned(subnet(), Value::Null, Value::Null), vec![]),
            (
                planned(Value::Null, Value::Null, Value::Null),
                vec![("no subnet for the file server", true)],
            ),
            (planned(Value::unknown(), Value::Null, Value::Null), vec![]),
            (
                planned(subnet(), Value::string("pw"), Value::Null),
                vec![("passwords are not used on the azure platform", true)],
            ),
            (
                planned(
                    subnet(),
                    Value::Null,
                    Value::List(vec![Value::string("1.2.3.4")]),
                ),
                vec![("the file server gets no public IP", false)],
            ),
        ];
        for (value, expected) in cases {
            let got: Vec<(String, bool)> = azure_checks(&value)
                .iter()
                .map(|d| (d.summary.clone(), d.severity == tfplug::Severity::Error))
                .collect();
            let expected: Vec<(String, bool)> = expected
                .into_iter()
                .map(|(s, e)| (s.to_owned(), e))
                .collect();
            assert_eq!(got, expected, "{value:?}");
        }
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
