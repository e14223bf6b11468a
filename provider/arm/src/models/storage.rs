//! Microsoft.Storage models (azure-mgmt-storage 25.3.0, api-version 2026-09-01): the control
//! store's account, its keys and its blob container.
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Extra;

/// `StorageAccountCreateParameters`: the PUT body of an account. Request only.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageAccountCreate {
    pub sku: StorageSku,
    /// `StorageV2`.
    pub kind: String,
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<StorageAccountCreateProperties>,
}

/// The storage `Sku`: only `name` is settable (`tier` is read only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageSku {
    /// `Standard_LRS`, `Standard_ZRS`, `Premium_LRS`, …
    pub name: String,
    #[serde(default, skip_serializing)]
    pub tier: Option<String>,
}

/// `StorageAccountPropertiesCreateParameters`: the settings the provider sets.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageAccountCreateProperties {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supports_https_traffic_only: Option<bool>,
    /// `TLS1_2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_tls_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_blob_public_access: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_shared_key_access: Option<bool>,
}

/// `StorageAccount` as GET returns it. Read only.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageAccount {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub sku: Option<StorageSku>,
    #[serde(default)]
    pub properties: Option<StorageAccountProperties>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl StorageAccount {
    /// `properties.primaryEndpoints.blob`: the data-plane URL, used as given (the simulator
    /// points it at Azurite).
    pub fn blob_endpoint(&self) -> Option<&str> {
        self.properties
            .as_ref()?
            .primary_endpoints
            .as_ref()?
            .blob
            .as_deref()
    }
}

/// `StorageAccountProperties`: the parts the driver reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageAccountProperties {
    #[serde(default)]
    pub provisioning_state: Option<String>,
    #[serde(default)]
    pub primary_endpoints: Option<Endpoints>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `Endpoints`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    #[serde(default)]
    pub blob: Option<String>,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub dfs: Option<String>,
    #[serde(default)]
    pub web: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `StorageAccountListKeysResult`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageAccountKeys {
    #[serde(default)]
    pub keys: Vec<StorageAccountKey>,
}

/// `StorageAccountKey`. Its `Debug` leaves the key out.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageAccountKey {
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    /// `FULL` or `READ`.
    #[serde(default)]
    pub permissions: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl fmt::Debug for StorageAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageAccountKey")
            .field("key_name", &self.key_name)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

/// `BlobContainer`: the PUT body and what GET returns (synchronous, 200 or 201).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobContainer {
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    #[serde(default, rename = "type", skip_serializing)]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing)]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<ContainerProperties>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// `ContainerProperties`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerProperties {
    /// `None`, `Blob` or `Container`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_access: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing)]
    pub last_modified_time: Option<String>,
    #[serde(default, skip_serializing)]
    pub lease_state: Option<String>,
    #[serde(default, skip_serializing)]
    pub deleted: Option<bool>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}
