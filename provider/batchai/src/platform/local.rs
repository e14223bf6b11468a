//! The `local` platform: a file server is a directory exported under the provider's root.
//!
//! Layout: `<root>/fileservers/<name>/fileserver.json` (the record, written atomically) and
//! `<root>/fileservers/<name>/export/` (the share clusters mount). Clusters and jobs live in
//! `local_cluster` and `local_job`.
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use control::jobs::JobSpec;
use tfplug::BoxFuture;

use super::{FileServerStatus, JobView, Platform, PlatformError};
use crate::names::Name;
use crate::resources::file_server::FileServerSpec;

/// Version of the on-disk record; a reader refuses records newer than it understands.
const RECORD_FORMAT: u32 = 1;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Record {
    format: u32,
    #[serde(flatten)]
    status: FileServerStatus,
}

/// The local platform rooted at a directory.
#[derive(Debug, Clone)]
pub struct LocalPlatform {
    root: PathBuf,
    /// The provider binary, started as `agent` for every node.
    exe: PathBuf,
}

impl LocalPlatform {
    pub fn new(root: PathBuf) -> Self {
        let exe =
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("terraform-provider-batchai"));
        Self { root, exe }
    }

    /// A platform whose nodes run `exe agent ...` (benchmarks and tools that are not the
    /// provider binary themselves).
    pub fn with_agent_binary(root: PathBuf, exe: PathBuf) -> Self {
        Self { root, exe }
    }

    pub(crate) fn exe(&self) -> &Path {
        &self.exe
    }

    /// The control store shared with the agents, for `operation` on the `kind` named `name`.
    pub(super) fn open_store(
        &self,
        operation: &'static str,
        kind: &'static str,
        name: &str,
    ) -> Result<control::DirStore, PlatformError> {
        // The root holds node directories, logs and the store: its creator's alone (0700).
        control::dir::private_dir_all(self.root()).map_err(|e| {
            PlatformError::failed(
                operation,
                kind,
                name,
                format!("create {}: {e}", self.root().display()),
            )
        })?;
        control::DirStore::open(agent::launcher::LocalLauncher::store_dir(self.root()))
            .map_err(|e| PlatformError::failed(operation, kind, name, e))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file_server_dir(&self, name: &str) -> PathBuf {
        self.root.join("fileservers").join(name)
    }

    fn create_sync(&self, spec: &FileServerSpec) -> Result<FileServerStatus, PlatformError> {
        let name = spec.name.to_string();
        let io = |source| PlatformError::Io {
            operation: "create",
            kind: "file server",
            name: name.clone(),
            source,
        };
        let dir = self.file_server_dir(&name);
        control::dir::private_dir_all(&self.root).map_err(io)?;
        std::fs::create_dir_all(dir.parent().unwrap_or(&self.root)).map_err(io)?;
        // create_dir (not _all) makes the name claim atomic between concurrent applies.
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if dir.join("export").is_dir() {
                    return Err(PlatformError::AlreadyExists {
                        kind: "file server",
                        name,
                    });
                }
                // The export was removed outside Terraform and Read reported the file server
                // gone; what is left is a stale record, so the name is free to claim again.
                std::fs::remove_dir_all(&dir).map_err(io)?;
                std::fs::create_dir(&dir).map_err(io)?;
            }
            Err(e) => return Err(io(e)),
        }
        let export = dir.join("export");
        std::fs::create_dir(&export).map_err(io)?;
        let mount_point = export.to_string_lossy().into_owned();
        let status = FileServerStatus {
            spec: spec.clone(),
            mount_point,
            internal_ip: "127.0.0.1".to_owned(),
            public_ip: "127.0.0.1".to_owned(),
            provisioning_state: "succeeded".to_owned(),
            creation_time: now_rfc3339(),
        };
        write_atomic(
            &dir.join("fileserver.json"),
            &serde_json::to_vec_pretty(&Record {
                format: RECORD_FORMAT,
                status: status.clone(),
            })
            .map_err(|e| io(std::io::Error::other(e)))?,
        )
        .map_err(io)?;
        Ok(status)
    }

    fn get_sync(&self, name: &Name) -> Result<Option<FileServerStatus>, PlatformError> {
        let dir = self.file_server_dir(name.as_str());
        if !dir.join("export").is_dir() {
            return Ok(None);
        }
        let bytes = match std::fs::read(dir.join("fileserver.json")) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(PlatformError::Io {
                    operation: "read",
                    kind: "file server",
                    name: name.to_string(),
                    source,
                });
            }
        };
        let corrupt = |reason: String| PlatformError::Corrupt {
            operation: "read",
            kind: "file server",
            name: name.to_string(),
            reason,
        };
        let format = serde_json::from_slice::<serde_json::Value>(&bytes)
            .map_err(|e| corrupt(e.to_string()))?
            .get("format")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if format > u64::from(RECORD_FORMAT) {
            return Err(corrupt(format!(
                "it has format {format}, newer than this provider understands ({RECORD_FORMAT}); upgrade the provider"
            )));
        }
        let record: Record = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        Ok(Some(record.status))
    }

    /// Clusters (not being deleted) with a directory mount at or below `export`.
    fn clusters_mounting(&self, name: &Name, export: &Path) -> Result<Vec<String>, PlatformError> {
        let failed = |e: &dyn std::fmt::Display| {
            PlatformError::failed("delete", "file server", name.as_str(), e)
        };
        use control::Store as _;
        let store = self.open_store("delete", "file server", name.as_str())?;
        let mut users = Vec::new();
        for key in store.list("clusters/").map_err(|e| failed(&e))? {
            // Cluster specs are `clusters/<name>/spec`; job specs lie deeper.
            let parts: Vec<&str> = key.split('/').collect();
            if !matches!(parts.as_slice(), ["clusters", _, "spec"]) {
                continue;
            }
            let Some(value) = store.get(&key).map_err(|e| failed(&e))? else {
                continue;
            };
            // A corrupt spec must not block destroy; its cluster cannot run anyway.
            let Ok(spec) = control::records::decode::<control::records::ClusterSpec>(
                "cluster spec",
                &value.data,
            ) else {
                tracing::warn!(
                    key,
                    "unreadable cluster spec skipped while checking file server use"
                );
                continue;
            };
            let mounted = spec.mounts.iter().any(|m| {
                matches!(&m.source, control::records::MountSource::Directory { path }
                    if Path::new(path).starts_with(export))
            });
            if mounted && !spec.deleting {
                users.push(spec.name);
            }
        }
        Ok(users)
    }

    fn delete_sync(&self, name: &Name) -> Result<(), PlatformError> {
        let dir = self.file_server_dir(name.as_str());
        // Clusters of any configuration sharing this root may mount the export; removing it
        // under them would delete their data without a word.
        let users = self.clusters_mounting(name, &dir.join("export"))?;
        if !users.is_empty() {
            return Err(PlatformError::InUse {
                kind: "file server",
                name: name.to_string(),
                users,
            });
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(PlatformError::Io {
                operation: "delete",
                kind: "file server",
                name: name.to_string(),
                source,
            }),
        }
    }
}

impl Platform for LocalPlatform {
    fn name(&self) -> &'static str {
        "local"
    }

    fn create_file_server<'a>(
        &'a self,
        spec: &'a FileServerSpec,
    ) -> BoxFuture<'a, Result<FileServerStatus, PlatformError>> {
        Box::pin(async move { self.create_sync(spec) })
    }

    fn get_file_server<'a>(
        &'a self,
        name: &'a Name,
    ) -> BoxFuture<'a, Result<Option<FileServerStatus>, PlatformError>> {
        Box::pin(async move { self.get_sync(name) })
    }

    fn delete_file_server<'a>(
        &'a self,
        name: &'a Name,
    ) -> BoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(async move { self.delete_sync(name) })
    }

    fn create_cluster<'a>(
        &'a self,
        spec: &'a control::records::ClusterSpec,
        resource: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<super::ClusterView, PlatformError>> {
        Box::pin(super::local_cluster::create(self, spec, resource))
    }

    fn get_cluster<'a>(
        &'a self,
        name: &'a Name,
    ) -> BoxFuture<'a, Result<Option<super::ClusterView>, PlatformError>> {
        Box::pin(async move { super::local_cluster::get(self, name, false) })
    }

    fn read_cluster<'a>(
        &'a self,
        name: &'a Name,
    ) -> BoxFuture<'a, Result<Option<super::ClusterView>, PlatformError>> {
        Box::pin(async move { super::local_cluster::get(self, name, true) })
    }

    fn update_cluster_scale<'a>(
        &'a self,
        name: &'a Name,
        scale: &'a control::records::Scale,
        resource: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<super::ClusterView, PlatformError>> {
        Box::pin(super::local_cluster::update_scale(
            self, name, scale, resource,
        ))
    }

    fn delete_cluster<'a>(&'a self, name: &'a Name) -> BoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(super::local_cluster::delete(self, name))
    }

    fn default_job_log_prefix(&self) -> String {
        super::local_job::default_log_prefix(self)
    }

    fn submit_job<'a>(
        &'a self,
        spec: &'a JobSpec,
        secrets: &'a BTreeMap<String, String>,
        resource: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<JobView, PlatformError>> {
        Box::pin(async move { super::local_job::submit(self, spec, secrets, resource) })
    }

    fn get_job<'a>(
        &'a self,
        cluster: &'a Name,
        job: &'a Name,
    ) -> BoxFuture<'a, Result<Option<JobView>, PlatformError>> {
        Box::pin(async move { super::local_job::get(self, cluster.as_str(), job.as_str()) })
    }

    fn wait_job<'a>(
        &'a self,
        cluster: &'a Name,
        job: &'a Name,
        until_terminal: bool,
    ) -> BoxFuture<'a, Result<JobView, PlatformError>> {
        Box::pin(super::local_job::wait(
            self,
            cluster.as_str(),
            job.as_str(),
            until_terminal,
        ))
    }

    fn delete_job<'a>(
        &'a self,
        cluster: &'a Name,
        job: &'a Name,
    ) -> BoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(super::local_job::delete(
            self,
            cluster.as_str(),
            job.as_str(),
        ))
    }
}

/// Writes a file so readers see the old or the new content, never a torn one.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The current time as Terraform attributes show it (RFC 3339, whole seconds, UTC).
pub(super) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::file_server::{DataDisks, FileServerSpec};

    fn spec(name: &str) -> FileServerSpec {
        FileServerSpec {
            name: Name::parse(name).unwrap_or_else(|e| panic!("{e}")),
            vm_size: "Standard_D2s_v3".into(),
            data_disks: DataDisks {
                disk_count: 2,
                disk_size_gb: 10,
                storage_account_type: "Standard_LRS".into(),
                caching_type: "none".into(),
            },
            ssh_configuration: None,
            subnet_id: None,
        }
    }

    #[test]
    fn lifecycle() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let platform = LocalPlatform::new(dir.path().to_path_buf());
        let s = spec("data");
        let created = platform.create_sync(&s).unwrap_or_else(|e| panic!("{e}"));
        assert!(Path::new(&created.mount_point).is_dir());
        assert!(matches!(
            platform.create_sync(&s),
            Err(PlatformError::AlreadyExists { .. })
        ));
        assert_eq!(
            platform.get_sync(&s.name).ok().flatten(),
            Some(created.clone())
        );
        std::fs::remove_dir_all(&created.mount_point).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            platform.get_sync(&s.name).ok().flatten(),
            None,
            "drift: export removed"
        );
        let recreated = platform.create_sync(&s).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            Path::new(&recreated.mount_point).is_dir(),
            "re-created after drift"
        );
        platform
            .delete_sync(&s.name)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!platform.file_server_dir("data").exists());
        platform
            .delete_sync(&s.name)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn newer_records_are_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let platform = LocalPlatform::new(dir.path().to_path_buf());
        let s = spec("data");
        platform.create_sync(&s).unwrap_or_else(|e| panic!("{e}"));
        let record = platform.file_server_dir("data").join("fileserver.json");
        let text = std::fs::read_to_string(&record).unwrap_or_default();
        std::fs::write(&record, text.replace("\"format\": 1", "\"format\": 99"))
            .unwrap_or_else(|e| panic!("{e}"));
        let err = platform
            .get_sync(&s.name)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("upgrade the provider"), "{err}");
    }
}
