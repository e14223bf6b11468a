//! File servers as records: the name is claimed in the store (`fileservers/<name>`) before the
//! driver provisions the share, the record says where clusters mount it, and destroy refuses
//! while a cluster of any configuration on the same store mounts it.
use control::Condition;
use control::records::{self, keys};
use serde::{Deserialize, Serialize};

use super::{ControlPlane, now_rfc3339};
use crate::names::Name;
use crate::platform::{FileServerStatus, PlatformError};
use crate::resources::file_server::FileServerSpec;

const KIND: &str = "file server";

/// The provisioning state of a claimed name whose share is not there yet.
const CREATING: &str = "creating";
/// How long a claim may stay `creating` before it counts as left by a provider that stopped
/// mid-create, and another create may take the name over.
const CLAIM_STALE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

fn claim_is_stale(status: &FileServerStatus) -> bool {
    let Ok(at) = time::OffsetDateTime::parse(
        &status.creation_time,
        &time::format_description::well_known::Rfc3339,
    ) else {
        return true;
    };
    time::OffsetDateTime::now_utc() - at > CLAIM_STALE
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    format: u32,
    #[serde(flatten)]
    status: FileServerStatus,
}

fn failed(operation: &'static str, name: &str, reason: impl ToString) -> PlatformError {
    PlatformError::failed(operation, KIND, name, reason)
}

fn corrupt(operation: &'static str, name: &str, e: records::RecordError) -> PlatformError {
    PlatformError::Corrupt {
        operation,
        kind: KIND,
        name: name.to_owned(),
        reason: e.to_string(),
    }
}

impl ControlPlane {
    fn read_file_server_record(
        &self,
        operation: &'static str,
        name: &str,
    ) -> Result<Option<(FileServerStatus, control::ETag)>, PlatformError> {
        let Some(value) = self
            .store()
            .get(&keys::file_server(name))
            .map_err(|e| failed(operation, name, e))?
        else {
            return Ok(None);
        };
        let record: Record = records::decode("file server record", &value.data)
            .map_err(|e| corrupt(operation, name, e))?;
        Ok(Some((record.status, value.etag)))
    }

    fn put_file_server_record(
        &self,
        status: &FileServerStatus,
        condition: Condition,
    ) -> Result<control::ETag, control::StoreError> {
        self.store().put(
            &keys::file_server(status.spec.name.as_str()),
            &records::encode(&Record {
                format: records::FORMAT,
                status: status.clone(),
            }),
            condition,
            None,
        )
    }

    /// Claims the name: a record in `creating` state, created only if none exists. A record
    /// whose share was removed outside Terraform (Read reported the file server gone) is stale
    /// and yields the name.
    async fn claim_file_server(
        &self,
        spec: &FileServerSpec,
    ) -> Result<(FileServerStatus, control::ETag), PlatformError> {
        let name = spec.name.to_string();
        // One made before the store kept file servers, not recorded yet, holds the name too.
        if let Some(legacy) = self.driver().legacy_file_server(&spec.name)
            && self.driver().file_server_exists(&legacy).await?
        {
            return Err(PlatformError::AlreadyExists { kind: KIND, name });
        }
        let claim = FileServerStatus {
            spec: spec.clone(),
            mount_point: String::new(),
            internal_ip: String::new(),
            public_ip: String::new(),
            provisioning_state: CREATING.to_owned(),
            creation_time: now_rfc3339(),
        };
        for _ in 0..2 {
            let attempt = claim.clone();
            let (n, c) = (name.clone(), claim.clone());
            let claimed = self
                .blocking("create", KIND, &name, move |plane| {
                    match plane.put_file_server_record(&attempt, Condition::IfNoneExists) {
                        Ok(etag) => Ok(Ok(etag)),
                        Err(e) if e.is_conflict() => {
                            Ok(Err(plane.read_file_server_record("create", &n)?))
                        }
                        Err(e) => Err(failed("create", &n, e)),
                    }
                })
                .await?;
            let existing = match claimed {
                Ok(etag) => return Ok((c, etag)),
                Err(existing) => existing,
            };
            let Some((status, etag)) = existing else {
                continue;
            };
            let stale_claim = status.provisioning_state == CREATING && claim_is_stale(&status);
            if (status.provisioning_state == CREATING && !stale_claim)
                || (status.provisioning_state != CREATING
                    && self.driver().file_server_exists(&status).await?)
            {
                return Err(PlatformError::AlreadyExists {
                    kind: KIND,
                    name: name.clone(),
                });
            }
            let n = name.clone();
            self.blocking("create", KIND, &name, move |plane| {
                match plane
                    .store()
                    .delete(&keys::file_server(&n), Condition::IfMatch(etag), None)
                {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_conflict() || e.is_not_found() => Ok(()),
                    Err(e) => Err(failed("create", &n, e)),
                }
            })
            .await?;
        }
        Err(PlatformError::AlreadyExists { kind: KIND, name })
    }

    pub(super) async fn create_file_server(
        &self,
        spec: &FileServerSpec,
    ) -> Result<FileServerStatus, PlatformError> {
        let (claim, etag) = self.claim_file_server(spec).await?;
        let name = spec.name.to_string();
        let placement = match self.driver().provision_file_server(spec).await {
            Ok(p) => p,
            Err(e) => {
                // The name goes back: nothing was made under it.
                let n = name.clone();
                let _ = self
                    .blocking("create", KIND, &name, move |plane| {
                        plane
                            .store()
                            .delete(&keys::file_server(&n), Condition::IfMatch(etag), None)
                            .map_err(|e| failed("create", &n, e))
                    })
                    .await;
                return Err(e);
            }
        };
        let status = FileServerStatus {
            mount_point: placement.mount_point,
            internal_ip: placement.internal_ip,
            public_ip: placement.public_ip,
            provisioning_state: "succeeded".to_owned(),
            ..claim
        };
        let done = status.clone();
        let recorded = self
            .blocking("create", KIND, &name, move |plane| {
                plane
                    .put_file_server_record(&done, Condition::IfMatch(etag))
                    .map_err(|e| failed("create", done.spec.name.as_str(), e))
            })
            .await;
        if let Err(e) = recorded {
            // Unrecorded storage would be unknown to every later read: it goes, and the claim
            // becomes stale (and is taken over) once it is old enough.
            let _ = self.driver().remove_file_server(&spec.name).await;
            return Err(e);
        }
        Ok(status)
    }

    pub(super) async fn get_file_server(
        &self,
        name: &Name,
    ) -> Result<Option<FileServerStatus>, PlatformError> {
        let n = name.to_string();
        let found = self
            .blocking("read", KIND, name.as_str(), move |plane| {
                plane.read_file_server_record("read", &n)
            })
            .await?;
        let status = match found {
            Some((status, _)) if status.provisioning_state == CREATING => return Ok(None),
            Some((status, _)) => status,
            None => match self.driver().legacy_file_server(name) {
                // Made before file servers were recorded in the store: recorded now.
                Some(status) => {
                    let legacy = status.clone();
                    self.blocking("read", KIND, name.as_str(), move |plane| {
                        match plane.put_file_server_record(&legacy, Condition::IfNoneExists) {
                            Ok(_) => Ok(()),
                            Err(e) if e.is_conflict() => Ok(()),
                            Err(e) => Err(failed("read", legacy.spec.name.as_str(), e)),
                        }
                    })
                    .await?;
                    status
                }
                None => return Ok(None),
            },
        };
        // A share removed outside Terraform is drift: the file server is gone.
        if !self.driver().file_server_exists(&status).await? {
            return Ok(None);
        }
        Ok(Some(status))
    }

    /// Clusters (not being deleted) with a mount of the file server's share.
    fn clusters_mounting(&self, status: &FileServerStatus) -> Result<Vec<String>, PlatformError> {
        let name = status.spec.name.as_str();
        let store = self.store();
        let mut users = Vec::new();
        for key in store
            .list("clusters/")
            .map_err(|e| failed("delete", name, e))?
        {
            // Cluster specs are `clusters/<name>/spec`; job specs lie deeper.
            let parts: Vec<&str> = key.split('/').collect();
            if !matches!(parts.as_slice(), ["clusters", _, "spec"]) {
                continue;
            }
            let Some(value) = store.get(&key).map_err(|e| failed("delete", name, e))? else {
                continue;
            };
            // A corrupt spec must not block destroy; its cluster cannot run anyway.
            let Ok(spec) = records::decode::<records::ClusterSpec>("cluster spec", &value.data)
            else {
                tracing::warn!(
                    key,
                    "unreadable cluster spec skipped while checking file server use"
                );
                continue;
            };
            let mounted = spec
                .mounts
                .iter()
                .any(|m| self.driver().mounts_file_server(m, status));
            if mounted && !spec.deleting {
                users.push(spec.name);
            }
        }
        Ok(users)
    }

    pub(super) async fn delete_file_server(&self, name: &Name) -> Result<(), PlatformError> {
        let n = name.to_string();
        let found = self
            .blocking("delete", KIND, name.as_str(), move |plane| {
                match plane.read_file_server_record("delete", &n) {
                    // Destroy removes what it owns, whatever its record says.
                    Err(PlatformError::Corrupt { .. }) => Ok(None),
                    other => other,
                }
            })
            .await?;
        let status = match found {
            Some((status, _)) => Some(status),
            None => self.driver().legacy_file_server(name),
        };
        if let Some(status) = status {
            // Clusters of any configuration sharing this store may mount the share; removing
            // it under them would delete their data without a word.
            let users = self
                .blocking("delete", KIND, name.as_str(), move |plane| {
                    plane.clusters_mounting(&status)
                })
                .await?;
            if !users.is_empty() {
                return Err(PlatformError::InUse {
                    kind: KIND,
                    name: name.to_string(),
                    users,
                });
            }
        }
        self.driver().remove_file_server(name).await?;
        let n = name.to_string();
        self.blocking("delete", KIND, name.as_str(), move |plane| {
            match plane
                .store()
                .delete(&keys::file_server(&n), Condition::Always, None)
            {
                Ok(()) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(failed("delete", &n, e)),
            }
        })
        .await
    }
}
