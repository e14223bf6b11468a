//! Secret values as the control plane keeps them: in records of their own (never inside a spec
//! that every node and scheduling pass reads), and never in `Debug` output, so that no log line
//! or error that formats a record can show one.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Environment variables with secret values. `Debug` shows the names, never the values.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secrets(pub BTreeMap<String, String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "***")))
            .finish()
    }
}

impl Secrets {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values, for redacting them from log tails.
    pub fn values(&self) -> Vec<String> {
        self.0.values().cloned().collect()
    }
}

/// A cluster's secrets (`keys::cluster_secrets`): written when the cluster is created, read
/// only by a node preparing itself, and removed with the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSecrets {
    pub format: u32,
    /// The setup task's `secrets_wo`.
    #[serde(default)]
    pub setup_task: Secrets,
    /// Storage account keys of the cluster's Azure Storage mounts, by `relative_mount_path`.
    #[serde(default, skip_serializing_if = "Secrets::is_empty")]
    pub mounts: Secrets,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_value() {
        let secrets = ClusterSecrets {
            format: 1,
            setup_task: Secrets(BTreeMap::from([("TOKEN".into(), "hunter2".into())])),
            mounts: Secrets(BTreeMap::from([("share".into(), "c2VjcmV0".into())])),
        };
        let shown = format!("{secrets:?} {secrets:#?}");
        assert!(shown.contains("TOKEN"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        let stored = serde_json::to_string(&secrets).unwrap_or_default();
        assert!(stored.contains("\"TOKEN\":\"hunter2\""), "{stored}");
    }
}
