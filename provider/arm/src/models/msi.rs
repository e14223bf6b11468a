//! Microsoft.ManagedIdentity models (azure-mgmt-msi 7.1.0, api-version 2024-11-30): the nodes'
//! user-assigned identity.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Extra;

/// `Identity`: the PUT body (`location`, `tags`) and what GET returns (synchronous).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAssignedIdentity {
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    #[serde(default, rename = "type", skip_serializing)]
    pub resource_type: Option<String>,
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Read only but for `isolationScope`, which the driver leaves unset: never sent.
    #[serde(default, skip_serializing)]
    pub properties: Option<UserAssignedIdentityProperties>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

impl UserAssignedIdentity {
    /// `properties.clientId`: what a node asks IMDS for tokens with.
    pub fn client_id(&self) -> Option<&str> {
        self.properties.as_ref()?.client_id.as_deref()
    }

    /// `properties.principalId`: what role assignments name.
    pub fn principal_id(&self) -> Option<&str> {
        self.properties.as_ref()?.principal_id.as_deref()
    }
}

/// The identity's properties (all read only here).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAssignedIdentityProperties {
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub principal_id: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}
