//! Microsoft.Compute models (azure-mgmt-compute 39.0.0, api-version 2026-04-01; resource SKUs
//! 2021-07-01): VM scale sets and their instances, VMs with data disks, resource SKUs, usages.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Extra, SubResource};

/// A VM scale set (`VirtualMachineScaleSet`): the PUT body and what GET returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSet {
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    #[serde(default, rename = "type", skip_serializing)]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing)]
    pub etag: Option<String>,
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ResourceIdentity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<VirtualMachineScaleSetProperties>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `Sku`: `name` is the VM size, `tier` `Standard`, `capacity` the instance count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sku {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<i64>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineScaleSetIdentity` / `VirtualMachineIdentity`: `type` `UserAssigned` with the
/// identities' resource IDs as keys of `userAssignedIdentities`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceIdentity {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub identity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_assigned_identities: Option<BTreeMap<String, UserAssignedIdentityValue>>,
    #[serde(default, skip_serializing)]
    pub principal_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub tenant_id: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

impl ResourceIdentity {
    /// `{"type": "UserAssigned", "userAssignedIdentities": {"<id>": {}}}`.
    pub fn user_assigned(identity_id: impl Into<String>) -> ResourceIdentity {
        ResourceIdentity {
            identity_type: Some("UserAssigned".into()),
            user_assigned_identities: Some(BTreeMap::from([(
                identity_id.into(),
                UserAssignedIdentityValue::default(),
            )])),
            ..ResourceIdentity::default()
        }
    }
}

/// One user-assigned identity of a resource: all read-only, so it is sent as `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAssignedIdentityValue {
    #[serde(default, skip_serializing)]
    pub principal_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub client_id: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineScaleSetProperties`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSetProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestration_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_policy: Option<UpgradePolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overprovision: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_placement_group: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_fault_domain_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_profile: Option<VirtualMachineScaleSetVmProfile>,
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
    #[serde(default, skip_serializing)]
    pub unique_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub time_created: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `UpgradePolicy`: `mode` `Manual` (nodes are replaced by the driver, never upgraded).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradePolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineScaleSetVMProfile`: the model every instance is made from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSetVmProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_profile: Option<VirtualMachineScaleSetOsProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_profile: Option<VirtualMachineScaleSetStorageProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_profile: Option<VirtualMachineScaleSetNetworkProfile>,
    /// `Regular`, `Low` or `Spot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// `Deallocate` or `Delete` (Spot only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_profile: Option<BillingProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_events_profile: Option<ScheduledEventsProfile>,
    #[serde(default, skip_serializing)]
    pub time_created: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineScaleSetOSProfile`. ARM never returns `customData`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSetOsProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_name_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_username: Option<String>,
    /// Base64 of the cloud-init document, at most 65,535 decoded bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_configuration: Option<LinuxConfiguration>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `LinuxConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_password_authentication: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshConfiguration>,
    #[serde(
        default,
        rename = "provisionVMAgent",
        skip_serializing_if = "Option::is_none"
    )]
    pub provision_vm_agent: Option<bool>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `SshConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_keys: Option<Vec<SshPublicKey>>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `SshPublicKey`: `path` is `/home/{adminUsername}/.ssh/authorized_keys`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshPublicKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_data: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineScaleSetStorageProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSetStorageProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_reference: Option<ImageReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_disk: Option<VirtualMachineScaleSetOsDisk>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `ImageReference`: a marketplace image (`publisher`, `offer`, `sku`, `version`) or an image
/// resource `id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing)]
    pub exact_version: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

impl ImageReference {
    /// A marketplace image.
    pub fn marketplace(publisher: &str, offer: &str, sku: &str, version: &str) -> ImageReference {
        ImageReference {
            publisher: Some(publisher.into()),
            offer: Some(offer.into()),
            sku: Some(sku.into()),
            version: Some(version.into()),
            ..ImageReference::default()
        }
    }
}

/// `VirtualMachineScaleSetOSDisk`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSetOsDisk {
    /// `FromImage`.
    pub create_option: String,
    /// `None`, `ReadOnly` or `ReadWrite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caching: Option<String>,
    #[serde(
        default,
        rename = "diskSizeGB",
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_size_gb: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_disk: Option<VirtualMachineScaleSetManagedDiskParameters>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineScaleSetManagedDiskParameters`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSetManagedDiskParameters {
    /// `Standard_LRS`, `Premium_LRS`, `StandardSSD_LRS`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account_type: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineScaleSetNetworkProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSetNetworkProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface_configurations: Option<Vec<VirtualMachineScaleSetNetworkConfiguration>>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineScaleSetNetworkConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSetNetworkConfiguration {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<VirtualMachineScaleSetNetworkConfigurationProperties>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineScaleSetNetworkConfigurationProperties`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSetNetworkConfigurationProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_accelerated_networking: Option<bool>,
    #[serde(default)]
    pub ip_configurations: Vec<VirtualMachineScaleSetIpConfiguration>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineScaleSetIPConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSetIpConfiguration {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<VirtualMachineScaleSetIpConfigurationProperties>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineScaleSetIPConfigurationProperties`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSetIpConfigurationProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<SubResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `BillingProfile`: `maxPrice` -1 means "up to the on-demand price" (Spot).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<f64>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `ScheduledEventsProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledEventsProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate_notification_profile: Option<TerminateNotificationProfile>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `TerminateNotificationProfile`: `notBeforeTimeout` an ISO 8601 duration (`PT5M`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminateNotificationProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_timeout: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// The PATCH body that changes only the capacity: `{"sku":{"capacity":N}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtualMachineScaleSetCapacityUpdate {
    pub sku: CapacityOnly,
}

/// The `sku` of [`VirtualMachineScaleSetCapacityUpdate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapacityOnly {
    pub capacity: i64,
}

/// `VirtualMachineScaleSetVMInstanceRequiredIDs`: the body of `…/delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceIds {
    pub instance_ids: Vec<String>,
}

/// One instance of a Uniform scale set (`VirtualMachineScaleSetVM`), as listed with
/// `$expand=instanceView`. Read only.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSetVm {
    #[serde(default)]
    pub id: Option<String>,
    /// `{scale set}_{instanceId}`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub sku: Option<Sku>,
    #[serde(default)]
    pub zones: Option<Vec<String>>,
    #[serde(default)]
    pub properties: Option<VirtualMachineScaleSetVmProperties>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `VirtualMachineScaleSetVMProperties`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSetVmProperties {
    #[serde(default)]
    pub provisioning_state: Option<String>,
    #[serde(default)]
    pub vm_id: Option<String>,
    #[serde(default)]
    pub latest_model_applied: Option<bool>,
    #[serde(default)]
    pub instance_view: Option<InstanceView>,
    #[serde(default)]
    pub os_profile: Option<OsProfile>,
    #[serde(default)]
    pub network_profile: Option<NetworkProfile>,
    #[serde(default)]
    pub time_created: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The instance view of a VM or scale set instance (`VirtualMachineScaleSetVMInstanceView`,
/// `VirtualMachineInstanceView`): the parts the driver reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    #[serde(default)]
    pub computer_name: Option<String>,
    #[serde(default)]
    pub statuses: Vec<InstanceViewStatus>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl InstanceView {
    /// The part after `PowerState/` (`running`, `deallocated`, `stopped`), if reported.
    pub fn power_state(&self) -> Option<&str> {
        self.status_with_prefix("PowerState/")
    }

    /// The part after `ProvisioningState/` (`succeeded`, `creating`, `failed/…`).
    pub fn provisioning_state(&self) -> Option<&str> {
        self.status_with_prefix("ProvisioningState/")
    }

    fn status_with_prefix(&self, prefix: &str) -> Option<&str> {
        self.statuses
            .iter()
            .filter_map(|s| s.code.as_deref())
            .find_map(|code| code.strip_prefix(prefix))
    }
}

/// `InstanceViewStatus`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceViewStatus {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub display_status: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
}

/// A VM (`VirtualMachine`): the file server's PUT body and what GET returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachine {
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    #[serde(default, rename = "type", skip_serializing)]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing)]
    pub etag: Option<String>,
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ResourceIdentity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<VirtualMachineProperties>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineProperties`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_profile: Option<HardwareProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_profile: Option<StorageProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_profile: Option<OsProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_profile: Option<NetworkProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_profile: Option<BillingProfile>,
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
    #[serde(default, skip_serializing)]
    pub instance_view: Option<InstanceView>,
    #[serde(default, skip_serializing)]
    pub vm_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub time_created: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `HardwareProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HardwareProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `StorageProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_reference: Option<ImageReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_disk: Option<OsDisk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_disks: Option<Vec<DataDisk>>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `OSDisk`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsDisk {
    pub create_option: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caching: Option<String>,
    #[serde(
        default,
        rename = "diskSizeGB",
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_size_gb: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_disk: Option<ManagedDiskParameters>,
    /// `Delete` or `Detach`: what happens to the disk when the VM is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `DataDisk`: the file server's disks are `createOption: Empty`, `deleteOption: Delete`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataDisk {
    pub lun: i32,
    pub create_option: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        rename = "diskSizeGB",
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_size_gb: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caching: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_disk: Option<ManagedDiskParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `ManagedDiskParameters` (`id` is the disk's, read back).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedDiskParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account_type: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `OSProfile` of a VM (also read back on scale set instances).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_configuration: Option<LinuxConfiguration>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `NetworkProfile`: a VM's NICs by reference (`networkInterfaces`, read back) or made with it
/// (`networkInterfaceConfigurations`, which need `networkApiVersion`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interfaces: Option<Vec<NetworkInterfaceReference>>,
    /// `2022-11-01` for `networkInterfaceConfigurations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface_configurations: Option<Vec<VirtualMachineNetworkInterfaceConfiguration>>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `NetworkInterfaceReference`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<NetworkInterfaceReferenceProperties>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `NetworkInterfaceReferenceProperties`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceReferenceProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineNetworkInterfaceConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineNetworkInterfaceConfiguration {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<VirtualMachineNetworkInterfaceConfigurationProperties>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineNetworkInterfaceConfigurationProperties`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineNetworkInterfaceConfigurationProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    /// `Delete`: the NIC goes with the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_accelerated_networking: Option<bool>,
    #[serde(default)]
    pub ip_configurations: Vec<VirtualMachineNetworkInterfaceIpConfiguration>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineNetworkInterfaceIPConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineNetworkInterfaceIpConfiguration {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<VirtualMachineNetworkInterfaceIpConfigurationProperties>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `VirtualMachineNetworkInterfaceIPConfigurationProperties`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineNetworkInterfaceIpConfigurationProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<SubResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// A resource SKU (`ResourceSku`, api-version 2021-07-01). Read only.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSku {
    /// `virtualMachines` for VM sizes.
    #[serde(default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub family: Option<String>,
    #[serde(default)]
    pub locations: Vec<String>,
    #[serde(default)]
    pub location_info: Vec<ResourceSkuLocationInfo>,
    #[serde(default)]
    pub capabilities: Vec<ResourceSkuCapability>,
    #[serde(default)]
    pub restrictions: Vec<ResourceSkuRestriction>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl ResourceSku {
    /// A capability's value (`vCPUs`, `GPUs`, `MemoryGB`, `LowPriorityCapable`, `RdmaEnabled`).
    pub fn capability(&self, name: &str) -> Option<&str> {
        self.capabilities
            .iter()
            .find(|c| {
                c.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .and_then(|c| c.value.as_deref())
    }

    /// The restriction that makes the SKU unavailable in `location` for this subscription
    /// (`type: Location` naming it), if any.
    pub fn location_restriction(&self, location: &str) -> Option<&ResourceSkuRestriction> {
        self.restrictions.iter().find(|r| {
            r.restriction_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("Location"))
                && r.values.iter().any(|v| v.eq_ignore_ascii_case(location))
        })
    }
}

/// `ResourceSkuLocationInfo`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSkuLocationInfo {
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub zones: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `ResourceSkuCapabilities`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSkuCapability {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

/// `ResourceSkuRestrictions`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSkuRestriction {
    /// `Location` or `Zone`.
    #[serde(default, rename = "type")]
    pub restriction_type: Option<String>,
    #[serde(default)]
    pub values: Vec<String>,
    /// `QuotaId` or `NotAvailableForSubscription`.
    #[serde(default)]
    pub reason_code: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A compute usage against its quota (`Usage`). Read only.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub current_value: i64,
    #[serde(default)]
    pub limit: i64,
    #[serde(default)]
    pub name: UsageName,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `UsageName`: `value` is the quota's ID (`standardNCADSA100v4Family`, `cores`,
/// `lowPriorityCores`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageName {
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub localized_value: Option<String>,
}
