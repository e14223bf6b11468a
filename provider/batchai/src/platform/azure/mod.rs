//! The `azure` platform's driver: a cluster is a Uniform VM scale set whose instances boot the
//! node agent from the control container ([`bootstrap`]) with a user-assigned identity of
//! their own, and the control store is a blob container in the configured storage account.
//! Everything here reaches Azure through the `arm` client or the blob store; the control plane
//! above it reads and writes records only.
//!
//! A scale set's nodes are named after their instances (`<cluster>_<instance ID>`), so the
//! scheduler's choices map onto ARM calls one to one: growing is a capacity change, and a node
//! the scheduler let go (scale-in, a lost or unusable node) is deleted by its instance ID.
pub mod bootstrap;
pub mod checks;
pub mod file_server;
pub mod node;

use std::sync::Arc;

use agent::AgentError;
use arm::ArmClient;
use arm::models::SubResource;
use arm::models::authorization::{RoleAssignment, RoleAssignmentProperties};
use arm::models::compute::{
    BillingProfile, ImageReference, LinuxConfiguration, ResourceIdentity, ScheduledEventsProfile,
    Sku, SshConfiguration, SshPublicKey, TerminateNotificationProfile, UpgradePolicy,
    VirtualMachineScaleSet, VirtualMachineScaleSetIpConfiguration,
    VirtualMachineScaleSetIpConfigurationProperties, VirtualMachineScaleSetManagedDiskParameters,
    VirtualMachineScaleSetNetworkConfiguration,
    VirtualMachineScaleSetNetworkConfigurationProperties, VirtualMachineScaleSetNetworkProfile,
    VirtualMachineScaleSetOsDisk, VirtualMachineScaleSetOsProfile,
    VirtualMachineScaleSetProperties, VirtualMachineScaleSetStorageProfile,
    VirtualMachineScaleSetVmProfile,
};
use arm::models::msi::UserAssignedIdentity;
use control::records::{self, ClusterSpec, NodeRecord, keys};
use control::{Condition, Store};
use serde::Deserialize;
use tfplug::BoxFuture;

use super::{Driver, FileServerPlacement, FileServerStatus, PlatformError};
use crate::control_plane::ControlPlane;
use crate::names::Name;
use crate::resources::file_server::FileServerSpec;

/// Built-in role: Virtual Machine Contributor, which lets a node's scheduler grow and shrink its
/// own scale set (given on that scale set only).
pub const VIRTUAL_MACHINE_CONTRIBUTOR: &str = "9980e02c-c2be-4d73-94e8-173b1dc7cf3c";
/// The nodes' image when the cluster names none: Microsoft's HPC image with NVIDIA drivers,
/// CUDA, NCCL, MPI and InfiniBand drivers.
pub const DEFAULT_IMAGE: (&str, &str, &str, &str) =
    ("microsoft-dsvm", "ubuntu-hpc", "2204", "latest");
/// The administrator when the cluster names none.
const DEFAULT_ADMIN: &str = "batchai";
/// Where nodes keep mounts, job directories and logs.
const WORK_DIR: &str = "/mnt/batchai";

/// Where the platform lives and how it is reached.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    pub resource_group: String,
    pub location: String,
    pub storage_account: String,
    pub container: String,
    /// The agent nodes download: this binary unless `BATCHAI_AGENT_BINARY` names another (a
    /// statically linked Linux build when the provider runs elsewhere).
    pub agent_binary: std::path::PathBuf,
    /// The resource manager endpoint and the scope of its tokens, which nodes use too.
    pub resource_manager: String,
    pub arm_scope: String,
    /// The test-only CA (`BATCHAI_TEST_CA_CERTIFICATE`), passed on to nodes.
    pub test_ca_pem: Option<String>,
    /// The cloud's storage DNS suffix (`core.windows.net`), for the blob endpoint of an
    /// account outside the resource group.
    pub storage_suffix: String,
}

/// What the driver and its launcher share.
#[derive(Debug)]
struct Azure {
    arm: ArmClient,
    settings: AzureSettings,
    blobs: control_blob::BlobStore,
}

/// The azure platform's driver.
#[derive(Debug, Clone)]
pub struct AzureDriver {
    azure: Arc<Azure>,
    launcher: ScaleSetLauncher,
}

/// Launches nodes by growing a cluster's scale set, and deletes the instances of nodes the
/// scheduler let go. Used by the provider and by the scheduler on nodes (with the node's
/// identity, which has Virtual Machine Contributor on its own scale set).
#[derive(Debug, Clone)]
pub struct ScaleSetLauncher {
    arm: ArmClient,
    resource_group: String,
    /// How long one launcher call may take (see [`ScaleSetLauncher::deadline`]).
    budget: std::time::Duration,
    /// Each cluster's instances as last listed, for [`agent::Launcher::liveness`]: one list per
    /// cluster per [`INSTANCES_TTL`], however many nodes a pass asks about.
    instances: Arc<std::sync::Mutex<std::collections::HashMap<String, Listed>>>,
}

/// How long a listing of a scale set's instances answers liveness questions.
const INSTANCES_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// A scale set's instances (instance ID and provisioning state) and when they were listed.
#[derive(Debug, Clone)]
struct Listed {
    at: std::time::Instant,
    states: std::collections::HashMap<String, String>,
}

fn arm_failed(
    operation: &'static str,
    kind: &'static str,
    name: &str,
    e: impl ToString,
) -> PlatformError {
    PlatformError::failed(operation, kind, name, e)
}

/// The node name of a scale set's instance: `<cluster>-<instance ID>`, with the cluster's `_`
/// as `-`, because MPI takes node names for host names (Azure names the VM
/// `<cluster>_<instance ID>`).
pub fn node_name(cluster: &str, instance_id: &str) -> String {
    format!("{}-{instance_id}", cluster.replace('_', "-"))
}

/// The instance ID in a node's or a VM's name (`<cluster>-<ID>` or `<cluster>_<ID>`).
pub fn instance_id(node: &str) -> Option<&str> {
    node.rsplit_once(['-', '_'])
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether an instance failed to provision.
fn provisioning_failed(instance: &arm::models::compute::VirtualMachineScaleSetVm) -> bool {
    instance
        .properties
        .as_ref()
        .and_then(|p| p.provisioning_state.as_deref())
        .is_some_and(|s| s.eq_ignore_ascii_case("failed"))
}

/// What the instance view says of a failed instance: ARM's code and message.
fn failure_of(instance: &arm::models::compute::VirtualMachineScaleSetVm) -> String {
    instance
        .properties
        .as_ref()
        .and_then(|p| p.instance_view.as_ref())
        .and_then(|v| {
            v.statuses.iter().find(|s| {
                s.code
                    .as_deref()
                    .is_some_and(|c| c.starts_with("ProvisioningState/failed"))
            })
        })
        .map(|s| {
            let code = s
                .code
                .as_deref()
                .and_then(|c| c.rsplit('/').next())
                .unwrap_or("ProvisioningFailed");
            format!(
                "{code}: {}",
                s.message.as_deref().unwrap_or("provisioning failed")
            )
        })
        .unwrap_or_else(|| "provisioning failed".to_owned())
}

/// Whether an instance is on its way out.
fn deleting(instance: &arm::models::compute::VirtualMachineScaleSetVm) -> bool {
    instance
        .properties
        .as_ref()
        .and_then(|p| p.provisioning_state.as_deref())
        .is_some_and(|s| s.eq_ignore_ascii_case("deleting"))
}

impl ScaleSetLauncher {
    pub fn new(arm: ArmClient, resource_group: String, budget: std::time::Duration) -> Self {
        Self {
            arm,
            resource_group,
            budget,
            instances: Arc::default(),
        }
    }

    fn forget_instances(&self, cluster: &str) {
        self.instances
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(cluster);
    }

    /// The provisioning state of each of `cluster`'s instances, listed at most every
    /// [`INSTANCES_TTL`]; `None` when ARM cannot say now.
    fn instance_states(&self, cluster: &str) -> Option<std::collections::HashMap<String, String>> {
        let cached = self
            .instances
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(cluster)
            .filter(|l| l.at.elapsed() < INSTANCES_TTL)
            .map(|l| l.states.clone());
        if cached.is_some() {
            return cached;
        }
        let (arm, rg, name, deadline) = (
            self.arm.clone(),
            self.resource_group.clone(),
            cluster.to_owned(),
            self.deadline(),
        );
        let listed =
            arm::blocking::block_on(
                async move { arm.list_vmss_instances(&rg, &name, deadline).await },
            );
        let instances = match listed {
            Ok(Ok(instances)) => instances,
            Ok(Err(e)) if e.is_not_found() => Vec::new(),
            Ok(Err(e)) => {
                tracing::warn!(cluster, error = %e, "list the scale set's instances");
                return None;
            }
            Err(e) => {
                tracing::warn!(cluster, error = %e, "list the scale set's instances");
                return None;
            }
        };
        let states: std::collections::HashMap<String, String> = instances
            .iter()
            .filter_map(|i| {
                let state = i
                    .properties
                    .as_ref()
                    .and_then(|p| p.provisioning_state.clone())
                    .unwrap_or_default();
                Some((i.instance_id.clone()?, state))
            })
            .collect();
        self.instances
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                cluster.to_owned(),
                Listed {
                    at: std::time::Instant::now(),
                    states: states.clone(),
                },
            );
        Some(states)
    }

    /// The deadline of one launcher call: a node's scheduler calls it inside its loop, whose
    /// heartbeat must not go stale meanwhile; a call that runs out is tried again next pass.
    fn deadline(&self) -> Option<arm::Instant> {
        Some(arm::Instant::now() + self.budget)
    }

    /// Starts the deletion of a node's instance (forced: the node drained already, or is
    /// lost). One that is gone already is deleted.
    pub fn delete_instance(&self, cluster: &str, node: &str) -> Result<(), String> {
        let Some(id) = instance_id(node) else {
            return Ok(());
        };
        let (arm, rg, name, ids, deadline) = (
            self.arm.clone(),
            self.resource_group.clone(),
            cluster.to_owned(),
            vec![id.to_owned()],
            self.deadline(),
        );
        tracing::info!(node, "deleting the node's instance");
        let deleted = arm::blocking::block_on(async move {
            arm.start_vmss_instance_deletion(&rg, &name, &ids, true, deadline)
                .await
        })
        .map_err(|e| format!("delete instance {id} of scale set {cluster}: {e}"))?;
        match deleted {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map_err(|e| e.to_string()),
        }
    }

    /// Grows the scale set by `count` and records the instances that growth made, and only
    /// those: an instance that was there before (one whose deletion is under way, say) is
    /// never taken for a new node.
    fn grow(
        &self,
        store: &dyn Store,
        spec: &ClusterSpec,
        count: u32,
    ) -> Result<Vec<String>, AgentError> {
        let failed = |e: &dyn std::fmt::Display| AgentError::Node {
            node: spec.name.clone(),
            reason: format!("grow scale set {}: {e}", spec.name),
        };
        let (arm, rg, name, deadline) = (
            self.arm.clone(),
            self.resource_group.clone(),
            spec.name.clone(),
            self.deadline(),
        );
        let started = std::time::Instant::now();
        let grown = arm::blocking::block_on(async move {
            if arm.get_vmss(&rg, &name, deadline).await?.is_none() {
                return Ok(Ok(None));
            }
            let listed = arm.list_vmss_instances(&rg, &name, deadline).await?;
            // Instances that failed to provision (no capacity, a quota) are deleted and said:
            // growing again before they are gone would only fail the same way.
            let failed: Vec<(String, String)> = listed
                .iter()
                .filter(|i| provisioning_failed(i))
                .filter_map(|i| Some((i.instance_id.clone()?, failure_of(i))))
                .collect();
            if !failed.is_empty() {
                let ids: Vec<String> = failed.iter().map(|(id, _)| id.clone()).collect();
                arm.start_vmss_instance_deletion(&rg, &name, &ids, true, deadline)
                    .await?;
                return Ok(Err(failed));
            }
            // The new capacity counts the instances that stay, not the old capacity: a Spot
            // instance evicted with policy Delete may still count in it, and growing from
            // there would make one instance too many.
            let staying = listed.iter().filter(|i| !deleting(i)).count();
            let before: std::collections::BTreeSet<String> =
                listed.into_iter().filter_map(|i| i.instance_id).collect();
            let capacity = i64::try_from(staying).unwrap_or(i64::MAX) + i64::from(count);
            arm.start_vmss_capacity_update(&rg, &name, capacity, deadline)
                .await?;
            let after = arm.list_vmss_instances(&rg, &name, deadline).await?;
            Ok::<_, arm::ArmError>(Ok(Some(
                after
                    .into_iter()
                    .filter_map(|i| i.instance_id)
                    .filter(|id| !before.contains(id))
                    .collect::<Vec<_>>(),
            )))
        })
        .map_err(|e| failed(&e))?
        .map_err(|e| failed(&e))?;
        let grown = match grown {
            Ok(grown) => grown,
            Err(instances) => {
                for (id, _) in &instances {
                    let node = node_name(&spec.name, id);
                    if let Err(e) =
                        store.delete(&keys::node(&spec.name, &node), Condition::Always, None)
                        && !e.is_not_found()
                    {
                        return Err(e.into());
                    }
                }
                let said: Vec<String> = instances
                    .iter()
                    .map(|(id, why)| format!("instance {id}: {why}"))
                    .collect();
                return Err(failed(&format!(
                    "instances failed to provision and were deleted: {}",
                    said.join("; ")
                )));
            }
        };
        // New instances are missing from an earlier listing: liveness lists again.
        self.forget_instances(&spec.name);
        let Some(new) = grown else {
            return Err(failed(&"the scale set does not exist"));
        };
        tracing::info!(cluster = %spec.name, count, new = ?new, took_ms = started.elapsed().as_millis() as u64, "grew the scale set");
        let mut launched = Vec::new();
        let now = records::now_ms();
        for id in new {
            let node = node_name(&spec.name, &id);
            // Records first: a node that boots finds its own, and no second pass launches it
            // again.
            let record = NodeRecord::launching(&spec.name, &node, now);
            match store.put(
                &keys::node(&spec.name, &node),
                &records::encode(&record),
                Condition::IfNoneExists,
                None,
            ) {
                Ok(_) | Err(control::StoreError::Conflict { .. }) => launched.push(node),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(launched)
    }
}

impl agent::Launcher for ScaleSetLauncher {
    fn launch(
        &self,
        store: &dyn Store,
        spec: &ClusterSpec,
        count: u32,
    ) -> Result<Vec<String>, AgentError> {
        self.grow(store, spec, count)
    }

    fn reap(&self, record: &NodeRecord) {
        // A failed instance is left to the next growth, which deletes it and says why it
        // failed (the cluster's `LaunchFailed` error).
        let failed = instance_id(&record.id).is_some_and(|id| {
            self.instance_states(&record.cluster)
                .and_then(|states| states.get(id).cloned())
                .is_some_and(|s| s.eq_ignore_ascii_case("failed"))
        });
        if failed {
            return;
        }
        if let Err(e) = self.delete_instance(&record.cluster, &record.id) {
            tracing::warn!(node = %record.id, error = %e, "delete the node's instance");
        }
    }

    /// From the scale set: an instance that is there and not failed or leaving is alive
    /// (booting takes minutes on Azure, longer than a heartbeat's grace); one that failed, is
    /// being deleted or is gone is dead; when ARM cannot say, the heartbeat decides.
    fn liveness(&self, record: &NodeRecord) -> agent::Liveness {
        let Some(id) = instance_id(&record.id) else {
            return agent::Liveness::Unknown;
        };
        let Some(states) = self.instance_states(&record.cluster) else {
            return agent::Liveness::Unknown;
        };
        match states.get(id).map(|s| s.to_ascii_lowercase()) {
            Some(s) if s == "failed" || s == "deleting" => agent::Liveness::Dead,
            Some(_) => agent::Liveness::Alive,
            None => agent::Liveness::Dead,
        }
    }
}

/// The azure platform: the control plane over the container `settings.container` in the
/// storage account, with this driver.
pub async fn platform(
    arm: ArmClient,
    settings: AzureSettings,
) -> Result<ControlPlane, PlatformError> {
    let account = &settings.storage_account;
    let rg = &settings.resource_group;
    let failed = |e: &dyn std::fmt::Display| arm_failed("open", "control store", account, e);
    let found = arm
        .get_storage_account(rg, account, None)
        .await
        .map_err(|e| failed(&e))?
        .ok_or_else(|| {
            failed(&format!(
                "there is no storage account {account} in resource group {rg}; create it (azurerm_storage_account) or name an existing one"
            ))
        })?;
    let endpoint = found
        .blob_endpoint()
        .ok_or_else(|| failed(&"the storage account has no blob endpoint"))?
        .to_owned();
    let keys = arm
        .list_storage_account_keys(rg, account, None)
        .await
        .map_err(|e| failed(&e))?;
    let key = keys
        .into_iter()
        .find_map(|k| k.value)
        .ok_or_else(|| failed(&"the storage account has no keys (listKeys answered none)"))?;
    arm.create_blob_container(rg, account, &settings.container, &Default::default(), None)
        .await
        .map_err(|e| failed(&e))?;
    let url = format!("{}/{}", endpoint.trim_end_matches('/'), settings.container);
    let location = agent::store::StoreLocation {
        url,
        credential: Some(agent::store::Credential::AccountKey(key.clone())),
    };
    let opened = tokio::task::spawn_blocking(move || agent::store::open_checked(&location))
        .await
        .map_err(|e| failed(&e))?
        .map_err(|e| failed(&e))?;
    let blobs = control_blob::BlobStore::open(
        &opened.location.url,
        control_blob::Credential::AccountKey(key),
    )
    .map_err(|e| failed(&e))?;
    // The provider's scheduling passes hold the cluster's lease while they run; a launcher
    // call that outlasts it is tried again by the next pass.
    let launcher = ScaleSetLauncher::new(
        arm.clone(),
        settings.resource_group.clone(),
        std::time::Duration::from_secs(10),
    );
    let driver = AzureDriver {
        azure: Arc::new(Azure {
            arm,
            settings,
            blobs,
        }),
        launcher,
    };
    Ok(ControlPlane::new(opened.store, Arc::new(driver)))
}

/// The cluster settings only the azure platform uses, as the resource records them.
#[derive(Debug, Default, Deserialize)]
struct Machines {
    subnet_id: Option<String>,
    image_reference: Option<Image>,
    user_account_settings: Option<Account>,
}

#[derive(Debug, Default, Deserialize)]
struct Image {
    publisher: Option<String>,
    offer: Option<String>,
    sku: Option<String>,
    version: Option<String>,
    virtual_machine_image_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Account {
    admin_user_name: Option<String>,
    admin_user_ssh_public_key: Option<String>,
}

/// The newest glibc minor version the nodes' images have: Ubuntu 22.04's 2.35 (the HPC images
/// are 22.04 or 24.04).
pub const NODE_GLIBC: u32 = 35;

/// The dynamic string table (`.dynstr`) of a 64-bit little-endian ELF binary, where the symbol
/// versions it needs are named; `None` for a binary without one (statically linked) or one
/// that is not such an ELF file.
fn dynamic_strings(elf: &[u8]) -> Option<&[u8]> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at =
        |at: usize| usize::try_from(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?)).ok();
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let (table, entry) = (u64_at(0x28)?, usize::from(u16_at(0x3a)?));
    let (count, names) = (usize::from(u16_at(0x3c)?), usize::from(u16_at(0x3e)?));
    let section = |i: usize| {
        let at = table.checked_add(i.checked_mul(entry)?)?;
        let (offset, size) = (u64_at(at + 0x18)?, u64_at(at + 0x20)?);
        Some((u32_at(at)?, elf.get(offset..offset.checked_add(size)?)?))
    };
    let (_, section_names) = section(names)?;
    (0..count).find_map(|i| {
        let (name, data) = section(i)?;
        let name = section_names.get(usize::try_from(name).ok()?..)?;
        name.starts_with(b".dynstr\0").then_some(data)
    })
}

/// The newest `GLIBC_2.N` symbol version an ELF binary asks for (the minor `N`); `None` for a
/// binary that names none (statically linked).
pub fn newest_glibc(elf: &[u8]) -> Option<u32> {
    let binary = dynamic_strings(elf)?;
    const TAG: &[u8] = b"GLIBC_2.";
    let mut newest = None;
    let mut at = 0;
    while let Some(found) = binary[at..].windows(TAG.len()).position(|w| w == TAG) {
        let start = at + found + TAG.len();
        let digits = binary[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if let Some(minor) = std::str::from_utf8(&binary[start..start + digits])
            .ok()
            .and_then(|d| d.parse::<u32>().ok())
        {
            newest = newest.max(Some(minor));
        }
        at = start;
    }
    newest
}

/// A deterministic GUID for a role assignment (its name), so that a retried create finds the
/// one it made.
fn assignment_name(parts: &[&str]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, parts.join("|").as_bytes());
    let h: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A Linux VM's login: `admin` with the SSH key `key` only, no password.
fn ssh_only(admin: &str, key: String) -> LinuxConfiguration {
    LinuxConfiguration {
        disable_password_authentication: Some(true),
        ssh: Some(SshConfiguration {
            public_keys: Some(vec![SshPublicKey {
                path: Some(format!("/home/{admin}/.ssh/authorized_keys")),
                key_data: Some(key),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An SSH public key nobody holds the private half of: Azure needs one for a Linux VM, and a
/// cluster that names no administrator key gets no way in.
fn unusable_ssh_key() -> String {
    use base64::Engine as _;
    let random = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{:?}{}", std::time::SystemTime::now(), std::process::id()).as_bytes(),
    );
    let mut blob = Vec::new();
    for part in [b"ssh-ed25519".as_slice(), random.as_ref()] {
        blob.extend_from_slice(&u32::try_from(part.len()).unwrap_or(0).to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!(
        "ssh-ed25519 {} batchai-no-login",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

impl Azure {
    fn identity_name(cluster: &str) -> String {
        format!("batchai-{cluster}-nodes")
    }

    fn scale_set_id(&self, cluster: &str) -> String {
        self.arm
            .resource_id(
                &self.settings.resource_group,
                "Microsoft.Compute",
                "virtualMachineScaleSets",
                cluster,
            )
            .to_string()
    }

    /// Uploads the agent nodes run, named by its version and SHA-256, unless it is there.
    async fn agent_blob(&self) -> Result<(String, String), String> {
        let path = self.settings.agent_binary.clone();
        let data = tokio::fs::read(&path)
            .await
            .map_err(|e| format!("read the agent binary {}: {e}", path.display()))?;
        if let Some(needed) = newest_glibc(&data)
            && needed > NODE_GLIBC
        {
            return Err(format!(
                "the agent binary {} needs glibc 2.{}, newer than the node images' (Ubuntu 22.04 has 2.{}): use the statically linked release build (`cargo xtask release` or `cargo xtask install --release`), or set BATCHAI_AGENT_BINARY to a statically linked one",
                path.display(),
                needed,
                NODE_GLIBC
            ));
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data);
        let sha: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("agent/{}/{sha}", env!("CARGO_PKG_VERSION"));
        let blobs = self.blobs.clone();
        let upload = name.clone();
        tokio::task::spawn_blocking(move || blobs.upload_file_once(&upload, data))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("upload the agent binary: {e}"))?;
        Ok((self.blobs.file_url(&name), sha))
    }

    /// The scale set body: capacity 0 (the scheduler grows it), the nodes' identity, and custom
    /// data that boots the agent.
    fn scale_set(
        &self,
        spec: &ClusterSpec,
        machines: &Machines,
        identity_id: &str,
        custom_data: String,
    ) -> VirtualMachineScaleSet {
        let image = match &machines.image_reference {
            Some(Image {
                virtual_machine_image_id: Some(id),
                ..
            }) => ImageReference {
                id: Some(id.clone()),
                ..ImageReference::default()
            },
            Some(i) => ImageReference::marketplace(
                i.publisher.as_deref().unwrap_or(DEFAULT_IMAGE.0),
                i.offer.as_deref().unwrap_or(DEFAULT_IMAGE.1),
                i.sku.as_deref().unwrap_or(DEFAULT_IMAGE.2),
                i.version.as_deref().unwrap_or(DEFAULT_IMAGE.3),
            ),
            None => ImageReference::marketplace(
                DEFAULT_IMAGE.0,
                DEFAULT_IMAGE.1,
                DEFAULT_IMAGE.2,
                DEFAULT_IMAGE.3,
            ),
        };
        let account = machines.user_account_settings.as_ref();
        let admin = account
            .and_then(|a| a.admin_user_name.clone())
            .unwrap_or_else(|| DEFAULT_ADMIN.to_owned());
        let key = account
            .and_then(|a| a.admin_user_ssh_public_key.clone())
            .unwrap_or_else(unusable_ssh_key);
        let spot = spec.vm_priority == "lowpriority";
        let ip = VirtualMachineScaleSetIpConfiguration {
            name: "ipconfig".to_owned(),
            properties: Some(VirtualMachineScaleSetIpConfigurationProperties {
                subnet: machines.subnet_id.clone().map(|id| SubResource {
                    id: Some(id),
                    ..SubResource::default()
                }),
                primary: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        VirtualMachineScaleSet {
            location: self.settings.location.clone(),
            sku: Some(Sku {
                name: Some(spec.vm_size.clone()),
                tier: Some("Standard".to_owned()),
                capacity: Some(0),
                ..Sku::default()
            }),
            identity: Some(ResourceIdentity::user_assigned(identity_id)),
            properties: Some(VirtualMachineScaleSetProperties {
                orchestration_mode: Some("Uniform".to_owned()),
                upgrade_policy: Some(UpgradePolicy {
                    mode: Some("Manual".to_owned()),
                    ..Default::default()
                }),
                // Extra VMs would boot agents that the scheduler never asked for.
                overprovision: Some(false),
                single_placement_group: Some(false),
                platform_fault_domain_count: Some(1),
                virtual_machine_profile: Some(VirtualMachineScaleSetVmProfile {
                    os_profile: Some(VirtualMachineScaleSetOsProfile {
                        computer_name_prefix: Some(computer_name_prefix(&spec.name)),
                        admin_username: Some(admin.clone()),
                        custom_data: Some(custom_data),
                        linux_configuration: Some(ssh_only(&admin, key)),
                        ..Default::default()
                    }),
                    storage_profile: Some(VirtualMachineScaleSetStorageProfile {
                        image_reference: Some(image),
                        os_disk: Some(VirtualMachineScaleSetOsDisk {
                            create_option: "FromImage".to_owned(),
                            caching: Some("ReadWrite".to_owned()),
                            managed_disk: Some(VirtualMachineScaleSetManagedDiskParameters {
                                storage_account_type: Some("Premium_LRS".to_owned()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    network_profile: Some(VirtualMachineScaleSetNetworkProfile {
                        network_interface_configurations: Some(vec![
                            VirtualMachineScaleSetNetworkConfiguration {
                                name: "nic".to_owned(),
                                properties: Some(
                                    VirtualMachineScaleSetNetworkConfigurationProperties {
                                        primary: Some(true),
                                        ip_configurations: vec![ip],
                                        ..Default::default()
                                    },
                                ),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }),
                    priority: Some(if spot { "Spot" } else { "Regular" }.to_owned()),
                    eviction_policy: spot.then(|| "Delete".to_owned()),
                    billing_profile: spot.then(|| BillingProfile {
                        max_price: Some(-1.0),
                        ..Default::default()
                    }),
                    scheduled_events_profile: Some(ScheduledEventsProfile {
                        terminate_notification_profile: Some(TerminateNotificationProfile {
                            enable: Some(true),
                            not_before_timeout: Some("PT5M".to_owned()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn assign(&self, scope: &str, role: &str, principal: &str) -> Result<(), arm::ArmError> {
        let body = RoleAssignment {
            properties: RoleAssignmentProperties {
                role_definition_id: self.arm.role_definition_id(role),
                principal_id: principal.to_owned(),
                principal_type: Some("ServicePrincipal".to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        self.arm
            .create_role_assignment(
                scope,
                &assignment_name(&[scope, role, principal]),
                &body,
                None,
            )
            .await
            .map(|_| ())
    }

    async fn create_machines(
        &self,
        spec: &ClusterSpec,
        resource: &serde_json::Value,
    ) -> Result<(), PlatformError> {
        let name = spec.name.as_str();
        let failed = |e: &dyn std::fmt::Display| arm_failed("create", "cluster", name, e);
        let machines: Machines = serde_json::from_value(resource.clone()).unwrap_or_default();
        let rg = &self.settings.resource_group;
        let identity = self
            .arm
            .create_or_update_user_assigned_identity(
                rg,
                &Self::identity_name(name),
                &UserAssignedIdentity {
                    location: self.settings.location.clone(),
                    ..Default::default()
                },
                None,
            )
            .await
            .map_err(|e| failed(&e))?;
        let (Some(identity_id), Some(client_id), Some(principal)) = (
            identity.id.clone(),
            identity.client_id().map(str::to_owned),
            identity.principal_id().map(str::to_owned),
        ) else {
            return Err(failed(&"the nodes' identity came back without its IDs"));
        };
        let container_scope = format!(
            "{}/blobServices/default/containers/{}",
            self.arm.resource_id(
                rg,
                "Microsoft.Storage",
                "storageAccounts",
                &self.settings.storage_account
            ),
            self.settings.container
        );
        self.assign(
            &container_scope,
            arm::models::authorization::STORAGE_BLOB_DATA_CONTRIBUTOR,
            &principal,
        )
        .await
        .map_err(|e| failed(&e))?;
        let (agent_url, agent_sha256) = self.agent_blob().await.map_err(|e| failed(&e))?;
        let config = bootstrap::NodeConfig {
            store_url: self.blobs.container_url().to_owned(),
            cluster: name.to_owned(),
            identity_client_id: client_id,
            agent_url,
            agent_sha256,
            resource_manager: self.settings.resource_manager.clone(),
            arm_scope: self.settings.arm_scope.clone(),
            subscription_id: self.arm.subscription_id().to_owned(),
            resource_group: rg.clone(),
            work_dir: WORK_DIR.to_owned(),
        };
        let custom_data = bootstrap::custom_data(&config, self.settings.test_ca_pem.as_deref())
            .map_err(|e| failed(&e))?;
        let body = self.scale_set(spec, &machines, &identity_id, custom_data);
        self.arm
            .create_or_update_vmss(rg, name, &body, None)
            .await
            .map_err(|e| failed(&e))?;
        self.assign(
            &self.scale_set_id(name),
            VIRTUAL_MACHINE_CONTRIBUTOR,
            &principal,
        )
        .await
        .map_err(|e| failed(&e))?;
        self.grant_blob_access(&principal, &spec.mounts)
            .await
            .map_err(|e| failed(&e))?;
        Ok(())
    }

    /// The container scopes of the blob mounts that use the nodes' identity (their accounts
    /// are in the resource group: [`Self::storage_mount`] refuses others).
    fn identity_blob_scopes(&self, mounts: &[records::Mount]) -> Vec<String> {
        mounts
            .iter()
            .filter_map(|m| match &m.source {
                records::MountSource::AzureBlob {
                    account,
                    container,
                    identity: true,
                    ..
                } => Some(format!(
                    "{}/blobServices/default/containers/{container}",
                    self.arm.resource_id(
                        &self.settings.resource_group,
                        "Microsoft.Storage",
                        "storageAccounts",
                        account
                    )
                )),
                _ => None,
            })
            .collect()
    }

    /// Gives `principal` (a cluster's nodes) Storage Blob Data Contributor on the containers
    /// its mounts use without a key.
    async fn grant_blob_access(
        &self,
        principal: &str,
        mounts: &[records::Mount],
    ) -> Result<(), arm::ArmError> {
        for scope in self.identity_blob_scopes(mounts) {
            self.assign(
                &scope,
                arm::models::authorization::STORAGE_BLOB_DATA_CONTRIBUTOR,
                principal,
            )
            .await?;
        }
        Ok(())
    }

    /// [`Self::grant_blob_access`] for a cluster's existing identity (a job's mounts).
    async fn grant_mounts(
        &self,
        cluster: &str,
        mounts: &[records::Mount],
    ) -> Result<(), PlatformError> {
        if self.identity_blob_scopes(mounts).is_empty() {
            return Ok(());
        }
        let failed =
            |e: &dyn std::fmt::Display| arm_failed("create", "job mounts of cluster", cluster, e);
        let identity = self
            .arm
            .get_user_assigned_identity(
                &self.settings.resource_group,
                &Self::identity_name(cluster),
                None,
            )
            .await
            .map_err(|e| failed(&e))?
            .ok_or_else(|| {
                failed(&"the cluster's nodes have no identity (was it made outside this provider?)")
            })?;
        let principal = identity
            .principal_id()
            .ok_or_else(|| failed(&"the nodes' identity has no principal ID"))?
            .to_owned();
        self.grant_blob_access(&principal, mounts)
            .await
            .map_err(|e| failed(&e))
    }

    /// How nodes mount an Azure Storage volume. A blob container without a key is mounted
    /// with the nodes' identity, which can be given access only to an account the provider
    /// can find: one in the resource group.
    async fn storage_mount(
        &self,
        volume: super::StorageVolume<'_>,
    ) -> Result<records::MountSource, String> {
        match volume {
            super::StorageVolume::FileShare {
                url,
                account,
                directory_mode,
                file_mode,
                ..
            } => Ok(records::MountSource::AzureFileShare {
                url: url.to_owned(),
                account: account.to_owned(),
                directory_mode: directory_mode.unwrap_or("0777").to_owned(),
                file_mode: file_mode.unwrap_or("0777").to_owned(),
            }),
            super::StorageVolume::Blob {
                account,
                container,
                options,
                has_key,
            } => {
                let rg = &self.settings.resource_group;
                let found = self
                    .arm
                    .get_storage_account(rg, account, None)
                    .await
                    .map_err(|e| format!("look up the storage account {account}: {e}"))?;
                let endpoint = match found.as_ref().and_then(|a| a.blob_endpoint()) {
                    Some(endpoint) => endpoint.to_owned(),
                    None if has_key => {
                        format!("https://{account}.blob.{}/", self.settings.storage_suffix)
                    }
                    None => {
                        return Err(format!(
                            "the storage account {account} is not in resource group {rg}, so the nodes' identity cannot be given access to container {container}: set account_key, or use an account in {rg}"
                        ));
                    }
                };
                Ok(records::MountSource::AzureBlob {
                    account: account.to_owned(),
                    container: container.to_owned(),
                    endpoint,
                    options: options.unwrap_or_default().to_owned(),
                    identity: !has_key,
                })
            }
        }
    }

    /// Reads what the plan-time checks need (bounded: a plan does not wait on a slow ARM) and
    /// decides; a read that fails skips its check.
    async fn check_machines(&self, check: &super::MachineCheck) -> Vec<super::MachineFinding> {
        let deadline = Some(arm::Instant::now() + std::time::Duration::from_secs(20));
        let location = &self.settings.location;
        let (skus, usages) = tokio::join!(
            self.arm.list_resource_skus(location, deadline),
            self.arm.list_usages(location, deadline)
        );
        let subnet = match check
            .subnet_id
            .as_deref()
            .map(str::parse::<arm::ResourceId>)
        {
            Some(Ok(id)) => self.arm.get_subnet(&id, deadline).await.ok().flatten(),
            _ => None,
        };
        let skus = match skus {
            Ok(skus) => skus,
            Err(e) => {
                tracing::warn!(error = %e, "list the resource SKUs for the plan-time checks");
                return Vec::new();
            }
        };
        let usages = usages.unwrap_or_default();
        checks::findings(check, location, &skus, &usages, subnet.as_ref())
    }

    /// Creates the file server's VM and returns where its export is. A VM whose create failed
    /// is deleted again (with its disks and NIC), so that the name is free for the next try.
    async fn provision_file_server(
        &self,
        spec: &FileServerSpec,
    ) -> Result<FileServerPlacement, PlatformError> {
        let name = spec.name.as_str();
        let failed = |e: &dyn std::fmt::Display| arm_failed("create", "file server", name, e);
        let rg = &self.settings.resource_group;
        let subnet_id = spec.subnet_id.as_deref().ok_or_else(|| {
            failed(&"a file server on the azure platform needs subnet_id, the subnet its clusters are in")
        })?;
        let id: arm::ResourceId = subnet_id
            .parse()
            .map_err(|e| failed(&format!("subnet_id {subnet_id:?}: {e}")))?;
        let subnet = self
            .arm
            .get_subnet(&id, None)
            .await
            .map_err(|e| failed(&e))?
            .ok_or_else(|| failed(&format!("the subnet {subnet_id} does not exist")))?;
        let props = subnet.properties.unwrap_or_default();
        let prefix = props
            .address_prefix
            .or_else(|| props.address_prefixes.and_then(|p| p.into_iter().next()))
            .ok_or_else(|| failed(&format!("the subnet {subnet_id} has no address prefix")))?;
        let key = spec
            .ssh_configuration
            .as_ref()
            .and_then(|s| s.admin_user_ssh_public_key.clone())
            .unwrap_or_else(unusable_ssh_key);
        let body = file_server::vm(spec, &self.settings.location, subnet_id, &prefix, key)
            .map_err(|e| failed(&e))?;
        let created = match self.arm.create_or_update_vm(rg, name, &body, None).await {
            Ok(vm) => vm,
            Err(e) => {
                if let Err(cleanup) = self.arm.delete_vm(rg, name, None).await {
                    tracing::warn!(file_server = name, error = %cleanup, "delete the file server VM whose create failed");
                }
                return Err(failed(&e));
            }
        };
        let internal_ip = self.private_ip(&created).await.map_err(|e| failed(&e))?;
        Ok(FileServerPlacement {
            mount_point: file_server::EXPORT.to_owned(),
            internal_ip,
            public_ip: String::new(),
        })
    }

    /// The private IP of a VM's primary NIC.
    async fn private_ip(
        &self,
        vm: &arm::models::compute::VirtualMachine,
    ) -> Result<String, String> {
        let nic = vm
            .properties
            .as_ref()
            .and_then(|p| p.network_profile.as_ref())
            .and_then(|n| n.network_interfaces.as_ref())
            .and_then(|nics| {
                nics.iter()
                    .find(|n| n.properties.as_ref().and_then(|p| p.primary) == Some(true))
                    .or_else(|| nics.first())
            })
            .and_then(|n| n.id.clone())
            .ok_or("the VM came back without a network interface")?;
        let id: arm::ResourceId = nic.parse().map_err(|e| format!("NIC ID {nic:?}: {e}"))?;
        self.arm
            .get_network_interface(&id, None)
            .await
            .map_err(|e| e.to_string())?
            .as_ref()
            .and_then(|n| n.primary_private_ip().map(str::to_owned))
            .ok_or_else(|| format!("the network interface {nic} has no private IP"))
    }

    /// Whether the cluster's scale set is there and not being deleted.
    async fn machines_exist(&self, cluster: &str) -> Result<bool, PlatformError> {
        let found = self
            .arm
            .get_vmss(&self.settings.resource_group, cluster, None)
            .await
            .map_err(|e| arm_failed("read", "cluster", cluster, e))?;
        Ok(found.is_some_and(|s| {
            !s.properties
                .and_then(|p| p.provisioning_state)
                .is_some_and(|state| state.eq_ignore_ascii_case("deleting"))
        }))
    }

    async fn remove_machines(&self, cluster: &str) -> Result<(), PlatformError> {
        let failed = |e: &dyn std::fmt::Display| arm_failed("delete", "cluster", cluster, e);
        let rg = &self.settings.resource_group;
        self.arm
            .delete_vmss(rg, cluster, None)
            .await
            .map_err(|e| failed(&e))?;
        self.arm
            .delete_user_assigned_identity(rg, &Self::identity_name(cluster), None)
            .await
            .map_err(|e| failed(&e))?;
        Ok(())
    }
}

/// A scale set's computer name prefix: at most 9 letters or digits for Linux (Azure appends a
/// 6-character instance suffix within the 15 it allows).
fn computer_name_prefix(cluster: &str) -> String {
    let clean: String = cluster
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(9)
        .collect();
    if clean.is_empty() {
        "node".to_owned()
    } else {
        clean
    }
}

impl Driver for AzureDriver {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn launcher(&self) -> &dyn agent::Launcher {
        &self.launcher
    }

    fn create_cluster_machines<'a>(
        &'a self,
        spec: &'a ClusterSpec,
        resource: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(self.azure.create_machines(spec, resource))
    }

    fn check_machines<'a>(
        &'a self,
        check: &'a super::MachineCheck,
    ) -> BoxFuture<'a, Vec<super::MachineFinding>> {
        Box::pin(self.azure.check_machines(check))
    }

    fn cluster_machines_exist<'a>(
        &'a self,
        cluster: &'a str,
    ) -> BoxFuture<'a, Result<bool, PlatformError>> {
        Box::pin(self.azure.machines_exist(cluster))
    }

    fn storage_mount<'a>(
        &'a self,
        volume: super::StorageVolume<'a>,
    ) -> BoxFuture<'a, Result<records::MountSource, String>> {
        Box::pin(self.azure.storage_mount(volume))
    }

    fn grant_mounts<'a>(
        &'a self,
        cluster: &'a str,
        mounts: &'a [records::Mount],
    ) -> BoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(self.azure.grant_mounts(cluster, mounts))
    }

    fn provision_file_server<'a>(
        &'a self,
        spec: &'a FileServerSpec,
    ) -> BoxFuture<'a, Result<FileServerPlacement, PlatformError>> {
        Box::pin(self.azure.provision_file_server(spec))
    }

    /// The VM is there and not being deleted.
    fn file_server_exists<'a>(
        &'a self,
        status: &'a FileServerStatus,
    ) -> BoxFuture<'a, Result<bool, PlatformError>> {
        Box::pin(async move {
            let name = status.spec.name.as_str();
            let vm = self
                .azure
                .arm
                .get_vm(&self.azure.settings.resource_group, name, None)
                .await
                .map_err(|e| arm_failed("read", "file server", name, &e))?;
            Ok(vm.is_some_and(|vm| {
                vm.properties
                    .and_then(|p| p.provisioning_state)
                    .is_none_or(|s| s != "Deleting")
            }))
        })
    }

    /// Deletes the VM; its disks and NIC go with it (`deleteOption: Delete`).
    fn remove_file_server<'a>(
        &'a self,
        name: &'a Name,
    ) -> BoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(async move {
            self.azure
                .arm
                .delete_vm(&self.azure.settings.resource_group, name.as_str(), None)
                .await
                .map(drop)
                .map_err(|e| arm_failed("delete", "file server", name.as_str(), &e))
        })
    }

    fn file_server_mount(
        &self,
        status: &FileServerStatus,
        mount_options: Option<&str>,
    ) -> records::MountSource {
        records::MountSource::Command {
            mount_command: file_server::mount_command(
                &status.internal_ip,
                &status.mount_point,
                mount_options,
            ),
        }
    }

    fn mounts_file_server(&self, mount: &records::Mount, status: &FileServerStatus) -> bool {
        let export = format!("{}:{}", status.internal_ip, status.mount_point);
        matches!(&mount.source, records::MountSource::Command { mount_command }
            if !status.internal_ip.is_empty() && mount_command.contains(&format!("'{export}'")))
    }

    fn remove_cluster_nodes<'a>(
        &'a self,
        cluster: &'a str,
        _nodes: &'a [NodeRecord],
    ) -> BoxFuture<'a, Result<(), PlatformError>> {
        // Deleting the scale set stops every instance; the nodes' records go with the cluster's.
        Box::pin(self.azure.remove_machines(cluster))
    }

    /// On each node's own disk, below its mount root; each node copies them into the control
    /// container when an attempt ends ([`Self::kept_files_url`]).
    fn default_job_log_prefix(&self) -> String {
        "$AZ_BATCHAI_MOUNT_ROOT/joblogs".to_owned()
    }

    /// A scale set instance's OS disk goes with it: its nodes copy what they wrote there into
    /// the control container ([`agent::keep`]).
    fn kept_files_url(&self) -> Option<String> {
        Some(self.azure.blobs.container_url().to_owned())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nodes_are_named_after_their_instances() {
        let cases = [
            ("gpu-3", Some("3")),
            ("gpu_3", Some("3")),
            ("my-cluster-12", Some("12")),
            ("gpu", None),
            ("gpu-", None),
            ("gpu-x1", None),
        ];
        for (node, id) in cases {
            assert_eq!(instance_id(node), id, "{node}");
        }
        assert_eq!(node_name("my_cluster", "12"), "my-cluster-12");
        assert_eq!(instance_id(&node_name("my_cluster", "12")), Some("12"));
    }

    /// A minimal ELF64 file whose only sections are a `.dynstr` holding `strings` and the
    /// section name table.
    fn elf_with_dynstr(strings: &[u8]) -> Vec<u8> {
        let names = b"\0.dynstr\0.shstrtab\0";
        let mut elf = vec![0_u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let strings_at = elf.len();
        elf.extend_from_slice(strings);
        let names_at = elf.len();
        elf.extend_from_slice(names);
        let table = elf.len();
        elf[0x28..0x30].copy_from_slice(&(table as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64_u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3_u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&2_u16.to_le_bytes());
        for (name, at, size) in [
            (0_u32, 0, 0),
            (1, strings_at, strings.len()),
            (9, names_at, names.len()),
        ] {
            let mut header = vec![0_u8; 64];
            header[..4].copy_from_slice(&name.to_le_bytes());
            header[0x18..0x20].copy_from_slice(&(at as u64).to_le_bytes());
            header[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&header);
        }
        elf
    }

    #[test]
    fn the_agents_glibc_needs_are_read_from_its_version_names() {
        let cases: [(&[u8], Option<u32>); 3] = [
            (b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0", Some(34)),
            (b"\0GLIBC_2.36\0GLIBC_2.3\0", Some(36)),
            (b"\0no versions\0", None),
        ];
        for (strings, expected) in cases {
            assert_eq!(newest_glibc(&elf_with_dynstr(strings)), expected);
        }
        // Only the dynamic string table counts, and a file that is no ELF names nothing.
        assert_eq!(newest_glibc(b"GLIBC_2.99 in some text"), None);
        // This build runs on the nodes' images (or the provider could not upload itself).
        let this = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let needed = newest_glibc(&this);
        assert!(needed.is_some(), "the test binary is dynamically linked");
        assert!(needed.is_some_and(|n| n <= NODE_GLIBC), "{needed:?}");
    }

    #[test]
    fn computer_name_prefixes_fit_linux_names() {
        let cases = [
            ("gpu", "gpu"),
            ("train-a100_cluster", "traina100"),
            ("___", "node"),
        ];
        for (cluster, prefix) in cases {
            assert_eq!(computer_name_prefix(cluster), prefix);
        }
    }

    #[test]
    fn role_assignment_names_are_stable_guids() {
        let a = assignment_name(&["/scope", "role", "principal"]);
        assert_eq!(a, assignment_name(&["/scope", "role", "principal"]));
        assert_ne!(a, assignment_name(&["/scope", "role", "other"]));
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
    }

    #[test]
    fn an_unusable_key_is_a_well_formed_openssh_key() {
        use base64::Engine as _;
        let key = unusable_ssh_key();
        let parts: Vec<&str> = key.split(' ').collect();
        assert_eq!(parts[0], "ssh-ed25519");
        let blob = base64::engine::general_purpose::STANDARD
            .decode(parts[1])
            .unwrap();
        assert_eq!(&blob[..4], &11u32.to_be_bytes());
        assert_eq!(&blob[4..15], b"ssh-ed25519");
        assert_eq!(&blob[15..19], &32u32.to_be_bytes());
        assert_eq!(blob.len(), 19 + 32);
    }
}
