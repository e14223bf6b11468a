//! Microsoft.Authorization models (azure-mgmt-authorization 4.0.0, api-version 2022-04-01):
//! the role assignment that gives the nodes' identity data access to the control container.
use serde::{Deserialize, Serialize};

use super::Extra;

/// The built-in role "Storage Blob Data Contributor".
pub const STORAGE_BLOB_DATA_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";
/// The built-in role "Storage Blob Data Reader".
pub const STORAGE_BLOB_DATA_READER: &str = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";

/// `RoleAssignmentCreateParameters` (the PUT body) and `RoleAssignment` (what comes back).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignment {
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    #[serde(default, rename = "type", skip_serializing)]
    pub resource_type: Option<String>,
    pub properties: RoleAssignmentProperties,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

/// The role assignment's properties.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentProperties {
    /// `/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{role}`.
    pub role_definition_id: String,
    pub principal_id: String,
    /// `ServicePrincipal` for a managed identity (it lets ARM skip a directory lookup that
    /// fails for a principal made seconds ago).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing)]
    pub scope: Option<String>,
    #[serde(default, skip_serializing)]
    pub created_on: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}
