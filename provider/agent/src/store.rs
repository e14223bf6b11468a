//! Where a node's control store is: a location (a directory, or a blob container URL) given on
//! the command line and a credential given in the environment, never in arguments that any user
//! of the machine can read in `/proc/<pid>/cmdline`.
use std::path::PathBuf;
use std::sync::Arc;

use control::{DirStore, Store};

use crate::AgentError;

/// The environment variable that carries a blob store's credential to a node's agent:
/// `key:<account key>`, `sas:<SAS token>`, or `msi:<client ID>` for the user-assigned managed
/// identity of an Azure VM (`msi:` alone for its only identity).
pub const CREDENTIAL_VAR: &str = "BATCHAI_STORE_CREDENTIAL";

/// How a node authenticates to a blob control store.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A storage account key (base64), from which short-lived SAS tokens are signed.
    AccountKey(String),
    /// A SAS token (the query string, with or without its `?`).
    SasToken(String),
    /// The Azure VM's managed identity (the user-assigned one with this client ID, or its only
    /// one), whose tokens come from the instance metadata service: no secret reaches the VM.
    ManagedIdentity { client_id: Option<String> },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AccountKey(_) => f.write_str("AccountKey(***)"),
            Self::SasToken(_) => f.write_str("SasToken(***)"),
            Self::ManagedIdentity { client_id } => f
                .debug_struct("ManagedIdentity")
                .field("client_id", client_id)
                .finish(),
        }
    }
}

impl Credential {
    /// The value of [`CREDENTIAL_VAR`] that carries this credential.
    pub fn to_env(&self) -> String {
        match self {
            Self::AccountKey(key) => format!("key:{key}"),
            Self::SasToken(token) => format!("sas:{token}"),
            Self::ManagedIdentity { client_id } => {
                format!("msi:{}", client_id.as_deref().unwrap_or_default())
            }
        }
    }

    pub fn from_env(value: &str) -> Option<Self> {
        if let Some(key) = value.strip_prefix("key:") {
            return Some(Self::AccountKey(key.to_owned()));
        }
        if let Some(id) = value.strip_prefix("msi:") {
            let client_id = Some(id.trim())
                .filter(|id| !id.is_empty())
                .map(str::to_owned);
            return Some(Self::ManagedIdentity { client_id });
        }
        value
            .strip_prefix("sas:")
            .map(|token| Self::SasToken(token.to_owned()))
    }
}

/// A control store's location and the credential to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLocation {
    /// An absolute directory path, or a blob container URL (`https://…/container`).
    pub url: String,
    pub credential: Option<Credential>,
}

impl StoreLocation {
    /// A directory store.
    pub fn dir(path: impl Into<PathBuf>) -> Self {
        Self {
            url: path.into().display().to_string(),
            credential: None,
        }
    }

    /// The location a node was started with: `url` from its arguments, the credential from
    /// [`CREDENTIAL_VAR`], which is then removed from the process's environment so that no
    /// setup task or job process the node starts inherits it.
    ///
    /// Call it at start-up, before any thread exists: changing the environment is sound only
    /// while no other thread can read it.
    #[allow(unsafe_code)]
    pub fn from_args(url: String) -> Result<Self, AgentError> {
        let value = std::env::var(CREDENTIAL_VAR);
        // SAFETY: called from the agent's `main` before it starts any thread (see above), so
        // nothing reads the environment concurrently.
        unsafe { std::env::remove_var(CREDENTIAL_VAR) };
        let credential = match value {
            Ok(value) if !value.is_empty() => {
                Some(Credential::from_env(&value).ok_or_else(|| AgentError::Config {
                    reason: format!(
                        "open the control store {url}: {CREDENTIAL_VAR} must start with `key:`, `sas:` or `msi:`"
                    ),
                })?)
            }
            _ => None,
        };
        Ok(Self { url, credential })
    }

    /// A directory name for this location (its host, port and path; every other character
    /// `-`): the local platform keeps each blob store's nodes and exports apart under it.
    pub fn dir_name(&self) -> String {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, rest)| rest);
        let name: String = rest
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        name.trim_matches('-').chars().take(120).collect()
    }

    /// True for a blob container URL.
    pub fn is_blob(&self) -> bool {
        self.url.starts_with("https://") || self.url.starts_with("http://")
    }

    /// Opens the store. Sends nothing: a blob store's first request tells whether it answers.
    pub fn open(&self) -> Result<Arc<dyn Store>, AgentError> {
        if self.is_blob() {
            return Ok(Arc::new(self.open_blob().map_err(|e| {
                AgentError::Config {
                    reason: e.to_string(),
                }
            })?));
        }
        let path = self.url.strip_prefix("file://").unwrap_or(&self.url);
        if !path.starts_with('/') {
            return Err(AgentError::Config {
                reason: format!(
                    "open the control store {path}: a directory store needs an absolute path"
                ),
            });
        }
        Ok(Arc::new(DirStore::open(path)?))
    }
}

/// A store opened and checked for use, with the location nodes are started with.
#[derive(Debug, Clone)]
pub struct OpenedStore {
    pub location: StoreLocation,
    pub store: Arc<dyn Store>,
}

/// What a failed check of a store blames: where it is, or how it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// Unreachable, not a store, or a container that cannot be created.
    Endpoint,
    /// Refused: a wrong key, an expired SAS token, missing permissions.
    Credential,
}

/// Why a store could not be opened for use.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CheckError {
    pub blame: Blame,
    pub message: String,
}

impl StoreLocation {
    /// Opens the blob store at a container URL.
    pub fn open_blob(&self) -> Result<control_blob::BlobStore, control_blob::OpenError> {
        let credential = match &self.credential {
            Some(Credential::AccountKey(key)) => control_blob::Credential::AccountKey(key.clone()),
            Some(Credential::SasToken(token)) => control_blob::Credential::SasToken(token.clone()),
            Some(Credential::ManagedIdentity { client_id }) => {
                let imds = control_blob::imds::Imds::from_env().map_err(|e| {
                    control_blob::OpenError::InvalidCredential {
                        url: self.url.clone(),
                        reason: e.to_string(),
                    }
                })?;
                control_blob::Credential::Token(control_blob::imds::ManagedIdentity::new(
                    imds,
                    client_id.clone(),
                ))
            }
            None => {
                return Err(control_blob::OpenError::InvalidCredential {
                    url: self.url.clone(),
                    reason: format!(
                        "a blob control store needs a credential: set {CREDENTIAL_VAR} to key:<account key> or sas:<SAS token>"
                    ),
                });
            }
        };
        control_blob::BlobStore::open(&self.url, credential)
    }
}

/// Opens a store and proves it usable with one round trip (a blob container is created when
/// missing), so that configuration mistakes surface at once rather than in the first node.
pub fn open_checked(location: &StoreLocation) -> Result<OpenedStore, CheckError> {
    if location.is_blob() {
        let checked = location.open_blob().and_then(|store| {
            store.ensure_container()?;
            Ok(store)
        });
        return match checked {
            Ok(store) => Ok(OpenedStore {
                location: location.clone(),
                store: Arc::new(store),
            }),
            Err(e) => Err(CheckError {
                blame: if e.blames_credential() {
                    Blame::Credential
                } else {
                    Blame::Endpoint
                },
                message: e.to_string(),
            }),
        };
    }
    let store = location.open().map_err(|e| CheckError {
        blame: Blame::Endpoint,
        message: e.to_string(),
    })?;
    Ok(OpenedStore {
        location: location.clone(),
        store,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_roundtrip_through_the_environment_and_never_show() {
        for credential in [
            Credential::AccountKey("a2V5".to_owned()),
            Credential::SasToken("sv=2020&sig=secret".to_owned()),
            Credential::ManagedIdentity { client_id: None },
            Credential::ManagedIdentity {
                client_id: Some("5f0a".to_owned()),
            },
        ] {
            assert_eq!(
                Credential::from_env(&credential.to_env()),
                Some(credential.clone())
            );
            assert!(!format!("{credential:?}").contains("secret"));
            assert!(!format!("{credential:?}").contains("a2V5"));
        }
        assert_eq!(Credential::from_env("password"), None);
    }

    #[test]
    fn directory_locations_must_be_absolute() {
        assert!(StoreLocation::dir("relative/store").open().is_err());
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let at = StoreLocation::dir(dir.path().join("store"));
        assert!(at.open().is_ok());
        assert!(!at.is_blob());
    }
}
