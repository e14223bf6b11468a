//! The serde models on the wire: the scale set and VM bodies the driver sends are exactly the
//! expected JSON (settable properties only, names as Microsoft's Python models spell them),
//! and models read back keep what they do not name.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use arm::models::SubResource;
use arm::models::compute::*;
use arm::models::msi::UserAssignedIdentity;
use arm::models::network::NetworkInterface;
use arm::models::storage::{
    BlobContainer, ContainerProperties, StorageAccount, StorageAccountCreate,
    StorageAccountCreateProperties, StorageAccountKeys, StorageSku,
};
use serde_json::json;

const IDENTITY: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nodes";
const SUBNET: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/default";

fn spot_gpu_scale_set() -> VirtualMachineScaleSet {
    VirtualMachineScaleSet {
        location: "westeurope".into(),
        tags: Some(BTreeMap::from([("batchai-cluster".into(), "gpu".into())])),
        sku: Some(Sku {
            name: Some("Standard_NC24ads_A100_v4".into()),
            tier: Some("Standard".into()),
            capacity: Some(2),
            ..Sku::default()
        }),
        identity: Some(ResourceIdentity::user_assigned(IDENTITY)),
        properties: Some(VirtualMachineScaleSetProperties {
            orchestration_mode: Some("Uniform".into()),
            upgrade_policy: Some(UpgradePolicy {
                mode: Some("Manual".into()),
                ..UpgradePolicy::default()
            }),
            overprovision: Some(false),
            single_placement_group: Some(false),
            platform_fault_domain_count: Some(1),
            virtual_machine_profile: Some(VirtualMachineScaleSetVmProfile {
                os_profile: Some(VirtualMachineScaleSetOsProfile {
                    computer_name_prefix: Some("gpu".into()),
                    admin_username: Some("batchai".into()),
                    custom_data: Some("I2Nsb3VkLWNvbmZpZw==".into()),
                    linux_configuration: Some(LinuxConfiguration {
                        disable_password_authentication: Some(true),
                        ssh: Some(SshConfiguration {
                            public_keys: Some(vec![SshPublicKey {
                                path: Some("/home/batchai/.ssh/authorized_keys".into()),
                                key_data: Some("ssh-ed25519 AAAA test".into()),
                                ..SshPublicKey::default()
                            }]),
                            ..SshConfiguration::default()
                        }),
                        ..LinuxConfiguration::default()
                    }),
                    ..VirtualMachineScaleSetOsProfile::default()
                }),
                storage_profile: Some(VirtualMachineScaleSetStorageProfile {
                    image_reference: Some(ImageReference::marketplace(
                        "microsoft-dsvm",
                        "ubuntu-hpc",
                        "2204",
                        "latest",
                    )),
                    os_disk: Some(VirtualMachineScaleSetOsDisk {
                        create_option: "FromImage".into(),
                        caching: Some("ReadWrite".into()),
                        managed_disk: Some(VirtualMachineScaleSetManagedDiskParameters {
                            storage_account_type: Some("Premium_LRS".into()),
                            ..Default::default()
                        }),
                        ..VirtualMachineScaleSetOsDisk::default()
                    }),
                    ..VirtualMachineScaleSetStorageProfile::default()
                }),
                network_profile: Some(VirtualMachineScaleSetNetworkProfile {
                    network_interface_configurations: Some(vec![
                        VirtualMachineScaleSetNetworkConfiguration {
                            name: "nic".into(),
                            properties: Some(
                                VirtualMachineScaleSetNetworkConfigurationProperties {
                                    primary: Some(true),
                                    enable_accelerated_networking: Some(true),
                                    ip_configurations: vec![
                                        VirtualMachineScaleSetIpConfiguration {
                                            name: "ip".into(),
                                            properties: Some(
                                                VirtualMachineScaleSetIpConfigurationProperties {
                                                    subnet: Some(SubResource::new(SUBNET)),
                                                    ..Default::default()
                                                },
                                            ),
                                            ..Default::default()
                                        },
                                    ],
                                    ..Default::default()
                                },
                            ),
                            ..Default::default()
                        },
                    ]),
                    ..VirtualMachineScaleSetNetworkProfile::default()
                }),
                priority: Some("Spot".into()),
                eviction_policy: Some("Delete".into()),
                billing_profile: Some(BillingProfile {
                    max_price: Some(-1.0),
                    ..BillingProfile::default()
                }),
                scheduled_events_profile: Some(ScheduledEventsProfile {
                    terminate_notification_profile: Some(TerminateNotificationProfile {
                        enable: Some(true),
                        not_before_timeout: Some("PT5M".into()),
                        ..TerminateNotificationProfile::default()
                    }),
                    ..ScheduledEventsProfile::default()
                }),
                ..VirtualMachineScaleSetVmProfile::default()
            }),
            ..VirtualMachineScaleSetProperties::default()
        }),
        ..VirtualMachineScaleSet::default()
    }
}

#[test]
fn the_scale_set_body_is_exactly_the_expected_json() {
    let expected = json!({
        "location": "westeurope",
        "tags": {"batchai-cluster": "gpu"},
        "sku": {"name": "Standard_NC24ads_A100_v4", "tier": "Standard", "capacity": 2},
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {IDENTITY: {}}},
        "properties": {
            "orchestrationMode": "Uniform",
            "upgradePolicy": {"mode": "Manual"},
            "overprovision": false,
            "singlePlacementGroup": false,
            "platformFaultDomainCount": 1,
            "virtualMachineProfile": {
                "osProfile": {
                    "computerNamePrefix": "gpu",
                    "adminUsername": "batchai",
                    "customData": "I2Nsb3VkLWNvbmZpZw==",
                    "linuxConfiguration": {
                        "disablePasswordAuthentication": true,
                        "ssh": {"publicKeys": [{"path": "/home/batchai/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAA test"}]}
                    }
                },
                "storageProfile": {
                    "imageReference": {"publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204", "version": "latest"},
                    "osDisk": {"createOption": "FromImage", "caching": "ReadWrite", "managedDisk": {"storageAccountType": "Premium_LRS"}}
                },
                "networkProfile": {
                    "networkInterfaceConfigurations": [{
                        "name": "nic",
                        "properties": {
                            "primary": true,
                            "enableAcceleratedNetworking": true,
                            "ipConfigurations": [{"name": "ip", "properties": {"subnet": {"id": SUBNET}}}]
                        }
                    }]
                },
                "priority": "Spot",
                "evictionPolicy": "Delete",
                "billingProfile": {"maxPrice": -1.0},
                "scheduledEventsProfile": {"terminateNotificationProfile": {"enable": true, "notBeforeTimeout": "PT5M"}}
            }
        }
    });
    let sent = serde_json::to_value(spot_gpu_scale_set()).unwrap();
    assert_eq!(
        sent,
        expected,
        "{}",
        serde_json::to_string_pretty(&sent).unwrap()
    );
}

#[test]
fn a_scale_set_read_back_keeps_unknown_fields_and_sends_only_settable_ones() {
    let mut answer = serde_json::to_value(spot_gpu_scale_set()).unwrap();
    // What ARM adds on GET: read-only properties and ones this crate does not name.
    answer["id"] = json!(
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/gpu"
    );
    answer["name"] = json!("gpu");
    answer["type"] = json!("Microsoft.Compute/virtualMachineScaleSets");
    answer["etag"] = json!("\"3\"");
    answer["systemData"] = json!({"createdBy": "someone"});
    answer["identity"]["principalId"] = json!("p-1");
    answer["identity"]["userAssignedIdentities"][IDENTITY] =
        json!({"principalId": "p-2", "clientId": "c-2"});
    let properties = &mut answer["properties"];
    properties["provisioningState"] = json!("Succeeded");
    properties["uniqueId"] = json!("u-1");
    properties["timeCreated"] = json!("2026-11-30T00:00:00Z");
    properties["zoneBalance"] = json!(false);
    properties["virtualMachineProfile"]["storageProfile"]["imageReference"]["exactVersion"] =
        json!("22.04.1");
    properties["virtualMachineProfile"]["securityProfile"] = json!({"securityType": "Standard"});

    let read: VirtualMachineScaleSet = serde_json::from_value(answer).unwrap();
    assert_eq!(read.etag.as_deref(), Some("\"3\""));
    assert_eq!(read.extra["systemData"], json!({"createdBy": "someone"}));
    let props = read.properties.as_ref().unwrap();
    assert_eq!(props.provisioning_state.as_deref(), Some("Succeeded"));
    assert_eq!(props.extra["zoneBalance"], json!(false));
    let profile = props.virtual_machine_profile.as_ref().unwrap();
    assert_eq!(
        profile.extra["securityProfile"],
        json!({"securityType": "Standard"})
    );
    let identity = read.identity.as_ref().unwrap();
    let value = &identity.user_assigned_identities.as_ref().unwrap()[IDENTITY];
    assert_eq!(value.client_id.as_deref(), Some("c-2"));

    // Sent again, none of the read-only or unknown properties go back.
    let resent = serde_json::to_value(&read).unwrap();
    assert_eq!(resent, serde_json::to_value(spot_gpu_scale_set()).unwrap());
}

#[test]
fn the_file_server_vm_body_is_exactly_the_expected_json() {
    let vm = VirtualMachine {
        location: "westeurope".into(),
        properties: Some(VirtualMachineProperties {
            hardware_profile: Some(HardwareProfile {
                vm_size: Some("Standard_D4s_v5".into()),
                ..Default::default()
            }),
            storage_profile: Some(StorageProfile {
                image_reference: Some(ImageReference::marketplace(
                    "Canonical",
                    "ubuntu-24_04-lts",
                    "server",
                    "latest",
                )),
                os_disk: Some(OsDisk {
                    create_option: "FromImage".into(),
                    delete_option: Some("Delete".into()),
                    managed_disk: Some(ManagedDiskParameters {
                        storage_account_type: Some("Premium_LRS".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                data_disks: Some(
                    (0..2)
                        .map(|lun| DataDisk {
                            lun,
                            create_option: "Empty".into(),
                            disk_size_gb: Some(1024),
                            caching: Some("None".into()),
                            managed_disk: Some(ManagedDiskParameters {
                                storage_account_type: Some("Premium_LRS".into()),
                                ..Default::default()
                            }),
                            delete_option: Some("Delete".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            os_profile: Some(OsProfile {
                computer_name: Some("nfs".into()),
                admin_username: Some("batchai".into()),
                custom_data: Some("e30=".into()),
                linux_configuration: Some(LinuxConfiguration {
                    disable_password_authentication: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            network_profile: Some(NetworkProfile {
                network_api_version: Some("2022-11-01".into()),
                network_interface_configurations: Some(vec![
                    VirtualMachineNetworkInterfaceConfiguration {
                        name: "nfs-nic".into(),
                        properties: Some(VirtualMachineNetworkInterfaceConfigurationProperties {
                            primary: Some(true),
                            delete_option: Some("Delete".into()),
                            ip_configurations: vec![
                                VirtualMachineNetworkInterfaceIpConfiguration {
                                    name: "ip".into(),
                                    properties: Some(
                                        VirtualMachineNetworkInterfaceIpConfigurationProperties {
                                            subnet: Some(SubResource::new(SUBNET)),
                                            ..Default::default()
                                        },
                                    ),
                                    ..Default::default()
                                },
                            ],
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let disk = |lun: i32| {
        json!({"lun": lun, "createOption": "Empty", "diskSizeGB": 1024, "caching": "None",
               "managedDisk": {"storageAccountType": "Premium_LRS"}, "deleteOption": "Delete"})
    };
    let expected = json!({
        "location": "westeurope",
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_D4s_v5"},
            "storageProfile": {
                "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
                "osDisk": {"createOption": "FromImage", "managedDisk": {"storageAccountType": "Premium_LRS"}, "deleteOption": "Delete"},
                "dataDisks": [disk(0), disk(1)]
            },
            "osProfile": {
                "computerName": "nfs",
                "adminUsername": "batchai",
                "customData": "e30=",
                "linuxConfiguration": {"disablePasswordAuthentication": true}
            },
            "networkProfile": {
                "networkApiVersion": "2022-11-01",
                "networkInterfaceConfigurations": [{
                    "name": "nfs-nic",
                    "properties": {
                        "primary": true,
                        "deleteOption": "Delete",
                        "ipConfigurations": [{"name": "ip", "properties": {"subnet": {"id": SUBNET}}}]
                    }
                }]
            }
        }
    });
    let sent = serde_json::to_value(&vm).unwrap();
    assert_eq!(
        sent,
        expected,
        "{}",
        serde_json::to_string_pretty(&sent).unwrap()
    );
}

#[test]
fn a_vm_read_back_with_instance_view_exposes_power_state_and_nic() {
    let read: VirtualMachine = serde_json::from_value(json!({
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/nfs",
        "name": "nfs",
        "location": "westeurope",
        "properties": {
            "vmId": "vm-1",
            "provisioningState": "Succeeded",
            "hardwareProfile": {"vmSize": "Standard_D4s_v5"},
            "networkProfile": {"networkInterfaces": [{"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/nfs-nic", "properties": {"primary": true}}]},
            "instanceView": {"computerName": "nfs", "statuses": [
                {"code": "ProvisioningState/succeeded", "level": "Info", "time": "2026-11-30T00:00:00Z"},
                {"code": "PowerState/running", "displayStatus": "VM running"}
            ], "vmAgent": {"vmAgentVersion": "2.0"}}
        }
    }))
    .unwrap();
    let props = read.properties.as_ref().unwrap();
    let view = props.instance_view.as_ref().unwrap();
    assert_eq!(view.power_state(), Some("running"));
    assert_eq!(view.extra["vmAgent"], json!({"vmAgentVersion": "2.0"}));
    let nic = &props
        .network_profile
        .as_ref()
        .unwrap()
        .network_interfaces
        .as_ref()
        .unwrap()[0];
    let nic_id: arm::ResourceId = nic.id.as_deref().unwrap().parse().unwrap();
    assert_eq!(nic_id.name(), "nfs-nic");
    // Read-only properties never go back.
    let resent = serde_json::to_value(&read).unwrap();
    assert!(resent.get("id").is_none());
    assert!(resent["properties"].get("instanceView").is_none());
    assert!(resent["properties"].get("vmId").is_none());
}

#[test]
fn a_nic_gives_its_primary_private_ip() {
    let nic: NetworkInterface = serde_json::from_value(json!({
        "id": "/x/nic",
        "properties": {"ipConfigurations": [
            {"name": "secondary", "properties": {"privateIPAddress": "10.0.0.9", "primary": false}},
            {"name": "ip", "properties": {"privateIPAddress": "10.0.0.4", "primary": true, "subnet": {"id": SUBNET}}}
        ]}
    }))
    .unwrap();
    assert_eq!(nic.primary_private_ip(), Some("10.0.0.4"));
}

#[test]
fn resource_skus_and_usages_read_their_capabilities_and_restrictions() {
    let sku: ResourceSku = serde_json::from_value(json!({
        "resourceType": "virtualMachines",
        "name": "Standard_NC24ads_A100_v4",
        "tier": "Standard",
        "family": "StandardNCADSA100v4Family",
        "locations": ["westeurope"],
        "locationInfo": [{"location": "westeurope", "zones": ["1", "2"]}],
        "capabilities": [{"name": "GPUs", "value": "1"}, {"name": "vCPUs", "value": "24"}],
        "restrictions": [{"type": "Location", "values": ["westeurope"], "reasonCode": "NotAvailableForSubscription", "restrictionInfo": {"locations": ["westeurope"]}}]
    }))
    .unwrap();
    assert_eq!(sku.capability("gpus"), Some("1"));
    assert_eq!(sku.capability("MemoryGB"), None);
    assert_eq!(
        sku.location_restriction("WestEurope")
            .and_then(|r| r.reason_code.as_deref()),
        Some("NotAvailableForSubscription")
    );
    assert!(sku.location_restriction("eastus").is_none());
    let usage: Usage = serde_json::from_value(json!({
        "unit": "Count", "currentValue": 24, "limit": 96,
        "name": {"value": "standardNCADSA100v4Family", "localizedValue": "Standard NCADS_A100_v4 Family vCPUs"}
    }))
    .unwrap();
    assert_eq!((usage.current_value, usage.limit), (24, 96));
    assert_eq!(
        usage.name.value.as_deref(),
        Some("standardNCADSA100v4Family")
    );
}

#[test]
fn storage_identity_and_small_bodies_send_only_settable_properties() {
    let account = StorageAccountCreate {
        sku: StorageSku {
            name: "Standard_LRS".into(),
            tier: Some("Standard".into()),
        },
        kind: "StorageV2".into(),
        location: "westeurope".into(),
        tags: None,
        properties: Some(StorageAccountCreateProperties {
            supports_https_traffic_only: Some(true),
            minimum_tls_version: Some("TLS1_2".into()),
            allow_blob_public_access: Some(false),
            ..Default::default()
        }),
    };
    assert_eq!(
        serde_json::to_value(&account).unwrap(),
        json!({"sku": {"name": "Standard_LRS"}, "kind": "StorageV2", "location": "westeurope",
               "properties": {"supportsHttpsTrafficOnly": true, "minimumTlsVersion": "TLS1_2", "allowBlobPublicAccess": false}})
    );
    let container = BlobContainer {
        properties: Some(ContainerProperties {
            public_access: Some("None".into()),
            lease_state: Some("Available".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&container).unwrap(),
        json!({"properties": {"publicAccess": "None"}})
    );
    let identity: UserAssignedIdentity = serde_json::from_value(json!({
        "id": IDENTITY, "name": "nodes", "location": "westeurope",
        "properties": {"tenantId": "t", "principalId": "p", "clientId": "c", "isolationScope": "None"}
    }))
    .unwrap();
    assert_eq!(
        (identity.client_id(), identity.principal_id()),
        (Some("c"), Some("p"))
    );
    assert_eq!(
        identity.properties.as_ref().unwrap().extra["isolationScope"],
        json!("None")
    );
    assert_eq!(
        serde_json::to_value(&identity).unwrap(),
        json!({"location": "westeurope"})
    );
    assert_eq!(
        serde_json::to_value(VirtualMachineScaleSetCapacityUpdate {
            sku: CapacityOnly { capacity: 4 }
        })
        .unwrap(),
        json!({"sku": {"capacity": 4}})
    );
    assert_eq!(
        serde_json::to_value(InstanceIds {
            instance_ids: vec!["3".into(), "5".into()]
        })
        .unwrap(),
        json!({"instanceIds": ["3", "5"]})
    );
}

#[test]
fn storage_reads_give_the_blob_endpoint_and_keys_without_showing_them() {
    let account: StorageAccount = serde_json::from_value(json!({
        "name": "mlctrl", "kind": "StorageV2", "sku": {"name": "Standard_LRS", "tier": "Standard"},
        "properties": {"provisioningState": "Succeeded", "primaryEndpoints": {"blob": "https://10.0.0.1:10000/mlctrl/", "dfs": "https://x"}, "creationTime": "t"}
    }))
    .unwrap();
    assert_eq!(
        account.blob_endpoint(),
        Some("https://10.0.0.1:10000/mlctrl/")
    );
    assert_eq!(
        account.properties.unwrap().extra["creationTime"],
        json!("t")
    );
    let keys: StorageAccountKeys = serde_json::from_value(json!({"keys": [
        {"keyName": "key1", "value": "c2VjcmV0LWtleQ==", "permissions": "FULL"}
    ]}))
    .unwrap();
    assert_eq!(keys.keys[0].value.as_deref(), Some("c2VjcmV0LWtleQ=="));
    let shown = format!("{:?}", keys.keys[0]);
    assert!(
        !shown.contains("c2VjcmV0") && shown.contains("redacted"),
        "{shown}"
    );
}
