//! A `batchai_file_server` on Azure: a VM with `disk_count` empty managed data disks and a NIC
//! in `subnet_id`, all deleted with it, whose custom data builds RAID 0 over the disks, formats
//! it ext4, mounts it at [`EXPORT`] and exports it over NFS to the subnet. Clusters mount
//! `<private IP>:/data` with `mount -t nfs`. The VM has no public IP and no identity: nothing
//! in its custom data is secret.
use arm::models::SubResource;
use arm::models::compute::{
    DataDisk, HardwareProfile, ImageReference, ManagedDiskParameters, NetworkProfile, OsDisk,
    OsProfile, StorageProfile, VirtualMachine, VirtualMachineNetworkInterfaceConfiguration,
    VirtualMachineNetworkInterfaceConfigurationProperties,
    VirtualMachineNetworkInterfaceIpConfiguration,
    VirtualMachineNetworkInterfaceIpConfigurationProperties, VirtualMachineProperties,
};

use super::bootstrap;
use crate::resources::file_server::FileServerSpec;

/// Where the array is mounted on the file server and what it exports.
pub const EXPORT: &str = "/data";
/// The file server's image: Ubuntu Server 24.04 LTS, which has mdadm and NFS in its archive.
pub const IMAGE: (&str, &str, &str, &str) = ("Canonical", "ubuntu-24_04-lts", "server", "latest");
/// The script's path on the VM (under `BATCHAI_ROOTFS`).
pub const SCRIPT_PATH: &str = "/usr/local/lib/batchai/fileserver.sh";
/// NFS mount options when a cluster's `file_server` volume names none: NFS 4.1, hard mounts
/// (a job waits out a file server restart rather than seeing I/O errors), and `retry=10`, so a
/// node that boots while the file server still prepares its array waits up to ten minutes.
pub const DEFAULT_MOUNT_OPTIONS: &str = "rw,hard,vers=4.1,retry=10";

/// The mount command a node runs for a file server's export (the mount path is appended).
pub fn mount_command(internal_ip: &str, mount_point: &str, options: Option<&str>) -> String {
    let options = options
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .unwrap_or(DEFAULT_MOUNT_OPTIONS);
    format!(
        "mount -t nfs -o {} {}",
        bootstrap::quote(options),
        bootstrap::quote(&format!("{internal_ip}:{mount_point}"))
    )
}

/// Azure's `caching` for the resource's `caching_type`.
fn caching(caching_type: &str) -> &'static str {
    match caching_type {
        "readonly" => "ReadOnly",
        "readwrite" => "ReadWrite",
        _ => "None",
    }
}

/// A Linux host name from a file server name (`_` is not allowed in one).
fn computer_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    clean.trim_matches('-').to_owned()
}

/// The VM's body: `subnet_id` is checked present and `subnet_prefix` is the subnet's address
/// range, which the export is limited to.
pub fn vm(
    spec: &FileServerSpec,
    location: &str,
    subnet_id: &str,
    subnet_prefix: &str,
    ssh_key: String,
) -> Result<VirtualMachine, String> {
    let name = spec.name.as_str();
    let disks = &spec.data_disks;
    let admin = spec
        .ssh_configuration
        .as_ref()
        .map_or_else(|| "batchai".to_owned(), |s| s.admin_user_name.clone());
    let data_disks = (0..disks.disk_count)
        .map(|lun| DataDisk {
            lun: i32::try_from(lun).unwrap_or(i32::MAX),
            create_option: "Empty".to_owned(),
            name: Some(format!("{name}-data-{lun}")),
            disk_size_gb: Some(i32::try_from(disks.disk_size_gb).unwrap_or(i32::MAX)),
            caching: Some(caching(&disks.caching_type).to_owned()),
            managed_disk: Some(ManagedDiskParameters {
                storage_account_type: Some(disks.storage_account_type.clone()),
                ..Default::default()
            }),
            delete_option: Some("Delete".to_owned()),
            ..Default::default()
        })
        .collect();
    let custom_data = bootstrap::encode(
        "file server bootstrap",
        &bootstrap::document(
            "file server bootstrap",
            &[(SCRIPT_PATH, "0755", script(disks.disk_count, subnet_prefix))],
            SCRIPT_PATH,
        ),
    )?;
    Ok(VirtualMachine {
        location: location.to_owned(),
        properties: Some(VirtualMachineProperties {
            hardware_profile: Some(HardwareProfile {
                vm_size: Some(spec.vm_size.clone()),
                ..Default::default()
            }),
            storage_profile: Some(StorageProfile {
                image_reference: Some(ImageReference::marketplace(
                    IMAGE.0, IMAGE.1, IMAGE.2, IMAGE.3,
                )),
                os_disk: Some(OsDisk {
                    create_option: "FromImage".to_owned(),
                    name: Some(format!("{name}-os")),
                    caching: Some("ReadWrite".to_owned()),
                    managed_disk: Some(ManagedDiskParameters {
                        storage_account_type: Some("StandardSSD_LRS".to_owned()),
                        ..Default::default()
                    }),
                    delete_option: Some("Delete".to_owned()),
                    ..Default::default()
                }),
                data_disks: Some(data_disks),
                ..Default::default()
            }),
            os_profile: Some(OsProfile {
                computer_name: Some(computer_name(name)),
                admin_username: Some(admin.clone()),
                custom_data: Some(custom_data),
                linux_configuration: Some(super::ssh_only(&admin, ssh_key)),
                ..Default::default()
            }),
            network_profile: Some(NetworkProfile {
                network_api_version: Some("2022-11-01".to_owned()),
                network_interface_configurations: Some(vec![
                    VirtualMachineNetworkInterfaceConfiguration {
                        name: format!("{name}-nic"),
                        properties: Some(VirtualMachineNetworkInterfaceConfigurationProperties {
                            primary: Some(true),
                            delete_option: Some("Delete".to_owned()),
                            ip_configurations: vec![
                                VirtualMachineNetworkInterfaceIpConfiguration {
                                    name: "ipconfig".to_owned(),
                                    properties: Some(
                                        VirtualMachineNetworkInterfaceIpConfigurationProperties {
                                            subnet: Some(SubResource {
                                                id: Some(subnet_id.to_owned()),
                                                ..SubResource::default()
                                            }),
                                            primary: Some(true),
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
    })
}

/// The file server's script: wait for the data disks (Azure's udev rules link them as
/// `/dev/disk/azure/scsi1/lun<N>`, possibly after boot began), build the array once (a reboot
/// finds it through `/etc/fstab`'s label), then export it.
fn script(disk_count: u32, subnet_prefix: &str) -> String {
    let last = disk_count.saturating_sub(1);
    format!(
        r#"#!/bin/sh
# terraform-provider-batchai file server: RAID 0 over the data disks, ext4, exported over NFS.
set -eu
R="${{BATCHAI_ROOTFS:-}}"
COUNT={disk_count}
SUBNET={subnet}
log() {{ echo "batchai-fileserver: $*"; }}
DISKS=""
for lun in $(seq 0 {last}); do
  DISK="$R/dev/disk/azure/scsi1/lun$lun"
  waited=0
  while [ ! -e "$DISK" ]; do
    waited=$((waited + 1))
    if [ "$waited" -gt 120 ]; then
      log "data disk lun$lun did not appear within 120 s"
      exit 1
    fi
    sleep 1
  done
  DISKS="$DISKS $DISK"
done
if [ ! -e "$R/etc/batchai/fileserver.done" ]; then
  export DEBIAN_FRONTEND=noninteractive
  for try in 1 2 3 4 5; do
    if apt-get update -q && apt-get install -y -q mdadm nfs-kernel-server; then
      break
    fi
    if [ "$try" -eq 5 ]; then
      log "installing mdadm and nfs-kernel-server failed"
      exit 1
    fi
    sleep 10
  done
  if [ "$COUNT" -gt 1 ]; then
    # shellcheck disable=SC2086
    mdadm --create "$R/dev/md0" --level=0 --raid-devices="$COUNT" --run $DISKS
    DEV="$R/dev/md0"
  else
    DEV="${{DISKS# }}"
  fi
  mkfs.ext4 -F -q -L batchai-data "$DEV"
  # A VM has these; a simulated one's root holds only what its custom data wrote.
  mkdir -p "$R/etc/batchai" "$R{export}"
  echo "LABEL=batchai-data {export} ext4 defaults,nofail 0 2" >> "$R/etc/fstab"
  mount "$DEV" "$R{export}"
  chmod 0777 "$R{export}"
  echo "{export} $SUBNET(rw,sync,no_root_squash,no_subtree_check)" > "$R/etc/exports"
  touch "$R/etc/batchai/fileserver.done"
  log "built {export} from $COUNT disk(s)"
fi
exportfs -ra
systemctl enable --now nfs-kernel-server
log "exporting {export} to $SUBNET"
"#,
        subnet = bootstrap::quote(subnet_prefix),
        export = EXPORT,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::resources::file_server::{DataDisks, SshConfiguration as Ssh};

    fn spec(disk_count: u32) -> FileServerSpec {
        FileServerSpec {
            name: crate::names::Name::parse("nfs_1").unwrap(),
            vm_size: "Standard_D2s_v5".into(),
            data_disks: DataDisks {
                disk_count,
                disk_size_gb: 64,
                storage_account_type: "Premium_LRS".into(),
                caching_type: "readonly".into(),
            },
            ssh_configuration: Some(Ssh {
                admin_user_name: "ops".into(),
                admin_user_ssh_public_key: Some("ssh-ed25519 AAAA ops".into()),
                public_ips_to_allow: None,
            }),
            subnet_id: Some("/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/a".into()),
        }
    }

    #[test]
    fn the_vm_has_its_disks_and_nic_deleted_with_it() {
        let vm = vm(
            &spec(3),
            "westeurope",
            "SUBNET",
            "10.1.0.0/24",
            "KEY".into(),
        )
        .unwrap();
        let props = vm.properties.unwrap();
        let storage = props.storage_profile.unwrap();
        let disks = storage.data_disks.unwrap();
        assert_eq!(disks.len(), 3);
        for (lun, d) in disks.iter().enumerate() {
            assert_eq!(d.lun, i32::try_from(lun).unwrap());
            assert_eq!(
                (
                    d.create_option.as_str(),
                    d.disk_size_gb,
                    d.caching.as_deref()
                ),
                ("Empty", Some(64), Some("ReadOnly"))
            );
            assert_eq!(d.delete_option.as_deref(), Some("Delete"));
        }
        assert_eq!(
            storage.os_disk.unwrap().delete_option.as_deref(),
            Some("Delete")
        );
        let nic = &props
            .network_profile
            .unwrap()
            .network_interface_configurations
            .unwrap()[0];
        let nic_props = nic.properties.as_ref().unwrap();
        assert_eq!(nic_props.delete_option.as_deref(), Some("Delete"));
        let ip = nic_props.ip_configurations[0].properties.as_ref().unwrap();
        assert_eq!(ip.subnet.as_ref().unwrap().id.as_deref(), Some("SUBNET"));
        let os = props.os_profile.unwrap();
        assert_eq!(os.computer_name.as_deref(), Some("nfs-1"));
        assert_eq!(os.admin_username.as_deref(), Some("ops"));
    }

    #[test]
    fn the_script_stripes_only_several_disks_and_exports_to_the_subnet() {
        let many = script(3, "10.1.0.0/24");
        assert!(many.contains("COUNT=3"), "{many}");
        assert!(many.contains("$(seq 0 2)"), "{many}");
        assert!(many.contains("SUBNET='10.1.0.0/24'"), "{many}");
        assert!(many.contains("/data $SUBNET(rw,sync,no_root_squash,no_subtree_check)"));
        let one = script(1, "10.1.0.0/24");
        assert!(one.contains("$(seq 0 0)"), "{one}");
    }

    #[test]
    fn mount_commands_quote_what_they_pass() {
        let cases = [
            (
                None,
                "mount -t nfs -o 'rw,hard,vers=4.1,retry=10' '10.0.0.4:/data'",
            ),
            (
                Some("  "),
                "mount -t nfs -o 'rw,hard,vers=4.1,retry=10' '10.0.0.4:/data'",
            ),
            (
                Some("ro,soft"),
                "mount -t nfs -o 'ro,soft' '10.0.0.4:/data'",
            ),
            (Some("a'b"), "mount -t nfs -o 'a'\\''b' '10.0.0.4:/data'"),
        ];
        for (options, expected) in cases {
            assert_eq!(mount_command("10.0.0.4", "/data", options), expected);
        }
    }
}
