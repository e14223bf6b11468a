//! The typed ARM operations the Azure driver calls, one method each, on top of the generic
//! request loop (`client`) and the long-running-operation poller (`lro`).
//!
//! Conventions: resources in the client's subscription are named by resource group and name;
//! IDs the user gives (a subnet) or ARM returns (a NIC) are [`ResourceId`]s. A GET of an absent
//! resource is `Ok(None)`; a DELETE of one is `Ok(false)`. Every mutation of a scale set or
//! VM holds that resource's lock (see [`ArmClient::lock_resource`]) from its first request to
//! its end, polls included.
use azure_core::http::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::client::{ArmClient, decode, new_correlation_id};
use crate::error::{ArmError, ArmErrorKind, Operation};
use crate::id::ResourceId;
use crate::models::authorization::RoleAssignment;
use crate::models::compute::{
    CapacityOnly, InstanceIds, ResourceSku, Usage, VirtualMachine, VirtualMachineScaleSet,
    VirtualMachineScaleSetCapacityUpdate, VirtualMachineScaleSetVm,
};
use crate::models::msi::UserAssignedIdentity;
use crate::models::network::{NetworkInterface, Subnet};
use crate::models::storage::{
    BlobContainer, StorageAccount, StorageAccountCreate, StorageAccountKey, StorageAccountKeys,
};

/// The api-version of each provider, pinned to the defaults of the Python SDKs the simulator
/// validates with (see the interfaces note).
pub mod api_version {
    /// Microsoft.Compute: scale sets, VMs, usages (azure-mgmt-compute 39.0.0).
    pub const COMPUTE: &str = "2026-04-01";
    /// Microsoft.Compute/skus.
    pub const RESOURCE_SKUS: &str = "2021-07-01";
    /// Microsoft.Network (azure-mgmt-network 33.1.0).
    pub const NETWORK: &str = "2026-03-01";
    /// Microsoft.Storage (azure-mgmt-storage 25.3.0).
    pub const STORAGE: &str = "2026-09-01";
    /// Microsoft.ManagedIdentity (azure-mgmt-msi 7.1.0).
    pub const MANAGED_IDENTITY: &str = "2024-11-30";
    /// Microsoft.Authorization (azure-mgmt-authorization 4.0.0).
    pub const AUTHORIZATION: &str = "2022-04-01";
}

/// What creating a role assignment did.
#[derive(Debug, Clone, PartialEq)]
pub enum RoleAssignmentOutcome {
    Created(Box<RoleAssignment>),
    /// ARM answered 409 `RoleAssignmentExists`: the same principal already has the role at
    /// that scope (under another assignment name, typically), which is what was wanted.
    AlreadyExists,
}

impl ArmClient {
    /// `/subscriptions/{s}/resourceGroups/{rg}/providers/{namespace}/{rest}`.
    fn path(&self, resource_group: &str, namespace: &str, rest: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{resource_group}/providers/{namespace}/{rest}",
            self.subscription_id()
        )
    }

    /// The ID of a resource in this client's subscription.
    pub fn resource_id(
        &self,
        resource_group: &str,
        namespace: &str,
        resource_type: &str,
        name: &str,
    ) -> ResourceId {
        ResourceId::new(
            self.subscription_id(),
            resource_group,
            namespace,
            resource_type,
            name,
        )
    }

    /// The full ID of a built-in or custom role definition by its GUID.
    pub fn role_definition_id(&self, role: &str) -> String {
        format!(
            "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{role}",
            self.subscription_id()
        )
    }

    fn vmss_path(&self, resource_group: &str, name: &str) -> String {
        self.path(
            resource_group,
            "Microsoft.Compute",
            &format!("virtualMachineScaleSets/{name}"),
        )
    }

    fn vm_path(&self, resource_group: &str, name: &str) -> String {
        self.path(
            resource_group,
            "Microsoft.Compute",
            &format!("virtualMachines/{name}"),
        )
    }

    /// GET `url` as `T`; `None` on 404.
    pub async fn get_optional<T: DeserializeOwned>(
        &self,
        url: Url,
        deadline: Option<Instant>,
    ) -> Result<Option<T>, ArmError> {
        let operation = Operation::new("GET", url.path());
        let response = self
            .send(
                &operation,
                Method::Get,
                &url,
                None,
                &new_correlation_id(),
                deadline,
            )
            .await?;
        match response.status {
            404 => Ok(None),
            _ if response.is_success() => decode(&operation, &response).map(Some),
            _ => Err(ArmError::from_response(operation, &response)),
        }
    }

    /// PUT, PATCH or POST `body` to `url` as a long-running operation, and read the result
    /// as `T` (GETting `url` when the operation ended without one).
    async fn mutate<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: &impl Serialize,
        deadline: Option<Instant>,
    ) -> Result<T, ArmError> {
        let operation = Operation::new(method.to_string(), url.path());
        let body = serde_json::to_vec(body).map_err(|e| {
            ArmError::new(operation.clone(), ArmErrorKind::Invalid)
                .with_note(format!("encode the request body: {e}"))
        })?;
        let response = match self
            .long_running(method, url.clone(), Some(&body), deadline)
            .await?
        {
            Some(response) if !response.body.iter().all(u8::is_ascii_whitespace) => response,
            _ => {
                self.send_ok(
                    &operation,
                    Method::Get,
                    &url,
                    None,
                    &new_correlation_id(),
                    deadline,
                )
                .await?
            }
        };
        decode(&operation, &response)
    }

    /// DELETE `url` as a long-running operation: `true` when it deleted something, `false`
    /// when the resource was already absent (404 at once).
    async fn delete(&self, url: Url, deadline: Option<Instant>) -> Result<bool, ArmError> {
        match self.long_running(Method::Delete, url, None, deadline).await {
            Ok(_) => Ok(true),
            Err(error) if error.is_not_found() && error.kind() == &ArmErrorKind::Status => {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    // ---- Microsoft.Compute: VM scale sets ----

    /// PUT a scale set (create, or replace its model) and wait until it is provisioned.
    pub async fn create_or_update_vmss(
        &self,
        resource_group: &str,
        name: &str,
        body: &VirtualMachineScaleSet,
        deadline: Option<Instant>,
    ) -> Result<VirtualMachineScaleSet, ArmError> {
        let path = self.vmss_path(resource_group, name);
        let _lock = self.lock_resource(&path, deadline).await?;
        let url = self.url(&path, api_version::COMPUTE, &[]);
        self.mutate(Method::Put, url, body, deadline).await
    }

    pub async fn get_vmss(
        &self,
        resource_group: &str,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<VirtualMachineScaleSet>, ArmError> {
        let url = self.url(
            &self.vmss_path(resource_group, name),
            api_version::COMPUTE,
            &[],
        );
        self.get_optional(url, deadline).await
    }

    /// PATCH `{"sku":{"capacity":N}}`: grows (new instances from the model) or shrinks (ARM
    /// picks the instances; use [`ArmClient::delete_vmss_instances`] to choose them).
    pub async fn update_vmss_capacity(
        &self,
        resource_group: &str,
        name: &str,
        capacity: i64,
        deadline: Option<Instant>,
    ) -> Result<VirtualMachineScaleSet, ArmError> {
        let path = self.vmss_path(resource_group, name);
        let _lock = self.lock_resource(&path, deadline).await?;
        let url = self.url(&path, api_version::COMPUTE, &[]);
        let body = VirtualMachineScaleSetCapacityUpdate {
            sku: CapacityOnly { capacity },
        };
        self.mutate(Method::Patch, url, &body, deadline).await
    }

    pub async fn delete_vmss(
        &self,
        resource_group: &str,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<bool, ArmError> {
        let path = self.vmss_path(resource_group, name);
        let _lock = self.lock_resource(&path, deadline).await?;
        self.delete(self.url(&path, api_version::COMPUTE, &[]), deadline)
            .await
    }

    /// POST `…/delete` with `{"instanceIds": […]}`: removes exactly these instances; the
    /// capacity drops by their number. `force` skips the graceful shutdown.
    pub async fn delete_vmss_instances(
        &self,
        resource_group: &str,
        name: &str,
        instance_ids: &[String],
        force: bool,
        deadline: Option<Instant>,
    ) -> Result<(), ArmError> {
        let path = self.vmss_path(resource_group, name);
        let _lock = self.lock_resource(&path, deadline).await?;
        let url = self.url(
            &format!("{path}/delete"),
            api_version::COMPUTE,
            &[("forceDeletion", if force { "true" } else { "false" })],
        );
        let operation = Operation::new("POST", url.path());
        let body = serde_json::to_vec(&InstanceIds {
            instance_ids: instance_ids.to_vec(),
        })
        .map_err(|e| {
            ArmError::new(operation, ArmErrorKind::Invalid)
                .with_note(format!("encode the request body: {e}"))
        })?;
        self.long_running(Method::Post, url, Some(&body), deadline)
            .await?;
        Ok(())
    }

    /// Sends the capacity PATCH and returns once ARM accepted it, without following the
    /// operation: new instances are listed (as `Creating`) at once, and a caller that must keep
    /// a heartbeat (a node's scheduler) cannot wait the minutes an allocation takes.
    pub async fn start_vmss_capacity_update(
        &self,
        resource_group: &str,
        name: &str,
        capacity: i64,
        deadline: Option<Instant>,
    ) -> Result<(), ArmError> {
        let path = self.vmss_path(resource_group, name);
        let _lock = self.lock_resource(&path, deadline).await?;
        let url = self.url(&path, api_version::COMPUTE, &[]);
        let body = VirtualMachineScaleSetCapacityUpdate {
            sku: CapacityOnly { capacity },
        };
        self.start(Method::Patch, url, &body, deadline).await
    }

    /// Sends the deletion of chosen instances and returns once ARM accepted it, without
    /// following the operation (see [`ArmClient::start_vmss_capacity_update`]).
    pub async fn start_vmss_instance_deletion(
        &self,
        resource_group: &str,
        name: &str,
        instance_ids: &[String],
        force: bool,
        deadline: Option<Instant>,
    ) -> Result<(), ArmError> {
        let path = self.vmss_path(resource_group, name);
        let _lock = self.lock_resource(&path, deadline).await?;
        let url = self.url(
            &format!("{path}/delete"),
            api_version::COMPUTE,
            &[("forceDeletion", if force { "true" } else { "false" })],
        );
        let body = InstanceIds {
            instance_ids: instance_ids.to_vec(),
        };
        self.start(Method::Post, url, &body, deadline).await
    }

    /// Sends a mutation and returns once ARM accepted it (any 2xx), retrying as every call does.
    async fn start(
        &self,
        method: Method,
        url: Url,
        body: &impl Serialize,
        deadline: Option<Instant>,
    ) -> Result<(), ArmError> {
        let operation = Operation::new(method.to_string(), url.path());
        let body = serde_json::to_vec(body).map_err(|e| {
            ArmError::new(operation.clone(), ArmErrorKind::Invalid)
                .with_note(format!("encode the request body: {e}"))
        })?;
        self.send_ok(
            &operation,
            method,
            &url,
            Some(&body),
            &new_correlation_id(),
            deadline,
        )
        .await?;
        Ok(())
    }

    /// Every instance with its instance view (`$expand=instanceView`), all pages.
    pub async fn list_vmss_instances(
        &self,
        resource_group: &str,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<VirtualMachineScaleSetVm>, ArmError> {
        let url = self.url(
            &format!("{}/virtualMachines", self.vmss_path(resource_group, name)),
            api_version::COMPUTE,
            &[("$expand", "instanceView")],
        );
        let operation = Operation::new("GET", url.path());
        self.list(&operation, url, deadline).await
    }

    /// POST `…/virtualMachines/{id}/simulateEviction` (Spot only; 204). The eviction happens
    /// later, announced by a `Preempt` scheduled event.
    pub async fn simulate_vmss_eviction(
        &self,
        resource_group: &str,
        name: &str,
        instance_id: &str,
        deadline: Option<Instant>,
    ) -> Result<(), ArmError> {
        let url = self.url(
            &format!(
                "{}/virtualMachines/{instance_id}/simulateEviction",
                self.vmss_path(resource_group, name)
            ),
            api_version::COMPUTE,
            &[],
        );
        let operation = Operation::new("POST", url.path());
        self.send_ok(
            &operation,
            Method::Post,
            &url,
            None,
            &new_correlation_id(),
            deadline,
        )
        .await?;
        Ok(())
    }

    // ---- Microsoft.Compute: VMs ----

    /// PUT a VM (the file server with its data disks and NIC) and wait until it is
    /// provisioned.
    pub async fn create_or_update_vm(
        &self,
        resource_group: &str,
        name: &str,
        body: &VirtualMachine,
        deadline: Option<Instant>,
    ) -> Result<VirtualMachine, ArmError> {
        let path = self.vm_path(resource_group, name);
        let _lock = self.lock_resource(&path, deadline).await?;
        let url = self.url(&path, api_version::COMPUTE, &[]);
        self.mutate(Method::Put, url, body, deadline).await
    }

    /// GET a VM with its instance view.
    pub async fn get_vm(
        &self,
        resource_group: &str,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<VirtualMachine>, ArmError> {
        let url = self.url(
            &self.vm_path(resource_group, name),
            api_version::COMPUTE,
            &[("$expand", "instanceView")],
        );
        self.get_optional(url, deadline).await
    }

    /// DELETE a VM; disks and NICs made with `deleteOption: Delete` go with it.
    pub async fn delete_vm(
        &self,
        resource_group: &str,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<bool, ArmError> {
        let path = self.vm_path(resource_group, name);
        let _lock = self.lock_resource(&path, deadline).await?;
        self.delete(self.url(&path, api_version::COMPUTE, &[]), deadline)
            .await
    }

    // ---- Microsoft.Compute: plan-time checks ----

    /// The resource SKUs offered in `location` (`$filter=location eq '…'`), all pages.
    pub async fn list_resource_skus(
        &self,
        location: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<ResourceSku>, ArmError> {
        let filter = format!("location eq '{location}'");
        let url = self.url(
            &format!(
                "/subscriptions/{}/providers/Microsoft.Compute/skus",
                self.subscription_id()
            ),
            api_version::RESOURCE_SKUS,
            &[("$filter", &filter)],
        );
        let operation = Operation::new("GET", url.path());
        self.list(&operation, url, deadline).await
    }

    /// The compute usages and quotas in `location`, all pages.
    pub async fn list_usages(
        &self,
        location: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<Usage>, ArmError> {
        let url = self.url(
            &format!(
                "/subscriptions/{}/providers/Microsoft.Compute/locations/{location}/usages",
                self.subscription_id()
            ),
            api_version::COMPUTE,
            &[],
        );
        let operation = Operation::new("GET", url.path());
        self.list(&operation, url, deadline).await
    }

    // ---- Microsoft.Network ----

    /// GET a subnet by its ID (`…/virtualNetworks/{v}/subnets/{s}`).
    pub async fn get_subnet(
        &self,
        id: &ResourceId,
        deadline: Option<Instant>,
    ) -> Result<Option<Subnet>, ArmError> {
        let url = self.url(&id.to_string(), api_version::NETWORK, &[]);
        self.get_optional(url, deadline).await
    }

    /// GET a NIC by its ID (a VM's `networkProfile.networkInterfaces[0].id`).
    pub async fn get_network_interface(
        &self,
        id: &ResourceId,
        deadline: Option<Instant>,
    ) -> Result<Option<NetworkInterface>, ArmError> {
        let url = self.url(&id.to_string(), api_version::NETWORK, &[]);
        self.get_optional(url, deadline).await
    }

    // ---- Microsoft.Storage ----

    fn storage_path(&self, resource_group: &str, account: &str) -> String {
        self.path(
            resource_group,
            "Microsoft.Storage",
            &format!("storageAccounts/{account}"),
        )
    }

    /// PUT a storage account (200, or 202 and `Location` polling) and read it back.
    pub async fn create_storage_account(
        &self,
        resource_group: &str,
        account: &str,
        body: &StorageAccountCreate,
        deadline: Option<Instant>,
    ) -> Result<StorageAccount, ArmError> {
        let url = self.url(
            &self.storage_path(resource_group, account),
            api_version::STORAGE,
            &[],
        );
        self.mutate(Method::Put, url, body, deadline).await
    }

    pub async fn get_storage_account(
        &self,
        resource_group: &str,
        account: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<StorageAccount>, ArmError> {
        let url = self.url(
            &self.storage_path(resource_group, account),
            api_version::STORAGE,
            &[],
        );
        self.get_optional(url, deadline).await
    }

    /// POST `…/listKeys`.
    pub async fn list_storage_account_keys(
        &self,
        resource_group: &str,
        account: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<StorageAccountKey>, ArmError> {
        let url = self.url(
            &format!("{}/listKeys", self.storage_path(resource_group, account)),
            api_version::STORAGE,
            &[],
        );
        let operation = Operation::new("POST", url.path());
        let response = self
            .send_ok(
                &operation,
                Method::Post,
                &url,
                None,
                &new_correlation_id(),
                deadline,
            )
            .await?;
        let keys: StorageAccountKeys = decode(&operation, &response)?;
        Ok(keys.keys)
    }

    fn container_path(&self, resource_group: &str, account: &str, container: &str) -> String {
        format!(
            "{}/blobServices/default/containers/{container}",
            self.storage_path(resource_group, account)
        )
    }

    /// PUT a blob container (synchronous: 200 or 201).
    pub async fn create_blob_container(
        &self,
        resource_group: &str,
        account: &str,
        container: &str,
        body: &BlobContainer,
        deadline: Option<Instant>,
    ) -> Result<BlobContainer, ArmError> {
        let url = self.url(
            &self.container_path(resource_group, account, container),
            api_version::STORAGE,
            &[],
        );
        self.mutate(Method::Put, url, body, deadline).await
    }

    pub async fn get_blob_container(
        &self,
        resource_group: &str,
        account: &str,
        container: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<BlobContainer>, ArmError> {
        let url = self.url(
            &self.container_path(resource_group, account, container),
            api_version::STORAGE,
            &[],
        );
        self.get_optional(url, deadline).await
    }

    // ---- Microsoft.ManagedIdentity ----

    fn identity_path(&self, resource_group: &str, name: &str) -> String {
        self.path(
            resource_group,
            "Microsoft.ManagedIdentity",
            &format!("userAssignedIdentities/{name}"),
        )
    }

    /// PUT a user-assigned identity (synchronous); the answer has its client and principal IDs.
    pub async fn create_or_update_user_assigned_identity(
        &self,
        resource_group: &str,
        name: &str,
        body: &UserAssignedIdentity,
        deadline: Option<Instant>,
    ) -> Result<UserAssignedIdentity, ArmError> {
        let url = self.url(
            &self.identity_path(resource_group, name),
            api_version::MANAGED_IDENTITY,
            &[],
        );
        self.mutate(Method::Put, url, body, deadline).await
    }

    pub async fn get_user_assigned_identity(
        &self,
        resource_group: &str,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<UserAssignedIdentity>, ArmError> {
        let url = self.url(
            &self.identity_path(resource_group, name),
            api_version::MANAGED_IDENTITY,
            &[],
        );
        self.get_optional(url, deadline).await
    }

    pub async fn delete_user_assigned_identity(
        &self,
        resource_group: &str,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<bool, ArmError> {
        let url = self.url(
            &self.identity_path(resource_group, name),
            api_version::MANAGED_IDENTITY,
            &[],
        );
        self.delete(url, deadline).await
    }

    // ---- Microsoft.Authorization ----

    /// PUT `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}` (`name` a GUID;
    /// `scope` a resource ID such as a blob container's). A 409 `RoleAssignmentExists` is
    /// [`RoleAssignmentOutcome::AlreadyExists`], not an error.
    pub async fn create_role_assignment(
        &self,
        scope: &str,
        name: &str,
        body: &RoleAssignment,
        deadline: Option<Instant>,
    ) -> Result<RoleAssignmentOutcome, ArmError> {
        let url = self.url(
            &format!(
                "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
                scope.trim_end_matches('/')
            ),
            api_version::AUTHORIZATION,
            &[],
        );
        let operation = Operation::new("PUT", url.path());
        let payload = serde_json::to_vec(body).map_err(|e| {
            ArmError::new(operation.clone(), ArmErrorKind::Invalid)
                .with_note(format!("encode the request body: {e}"))
        })?;
        let response = self
            .send(
                &operation,
                Method::Put,
                &url,
                Some(&payload),
                &new_correlation_id(),
                deadline,
            )
            .await?;
        if response.is_success() {
            return decode(&operation, &response)
                .map(|assignment| RoleAssignmentOutcome::Created(Box::new(assignment)));
        }
        let error = ArmError::from_response(operation, &response);
        if response.status == 409 && error.code() == Some("RoleAssignmentExists") {
            return Ok(RoleAssignmentOutcome::AlreadyExists);
        }
        Err(error)
    }
}
