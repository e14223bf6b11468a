//! The serde models of the ARM resources the driver creates and reads, named and shaped as
//! Microsoft's generated Python models (`azure-mgmt-*`, see the API versions in the crate
//! root) name them on the wire.
//!
//! **What is sent.** A request body contains only settable properties: every read-only one
//! (`visibility=["read"]` in the Python models: `id`, `name`, `type`, `etag`,
//! `provisioningState`, …) is `skip_serializing`, and `None` is left out. The simulator rejects
//! unknown and read-only keys, as strict validation should.
//!
//! **What is kept.** A model read back keeps every property it does not name in its `extra`
//! map, so nothing ARM says is lost to a caller that needs it; `extra` is never sent (so a
//! model read back and sent again carries only the named settable properties).
pub mod authorization;
pub mod compute;
pub mod msi;
pub mod network;
pub mod storage;

use serde::{Deserialize, Serialize};

/// The properties of a model this crate does not name (see the module docs).
pub type Extra = serde_json::Map<String, serde_json::Value>;

/// A reference to another resource by ID (`SubResource`, `ApiEntityReference`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubResource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub extra: Extra,
}

impl SubResource {
    pub fn new(id: impl Into<String>) -> SubResource {
        SubResource {
            id: Some(id.into()),
            extra: Extra::new(),
        }
    }
}
