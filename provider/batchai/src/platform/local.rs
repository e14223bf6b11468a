//! The `local` platform's driver: nodes are agent processes of this binary on this machine,
//! with work directories under `<root>/clusters/<name>/`, and a file server is a directory
//! exported under `<root>/fileservers/<name>/export/`. The control store is the directory store
//! under `<root>/store/` unless the provider names another.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent::launcher::{LocalLauncher, is_node_process, signal_group, signal_session};
use agent::store::{OpenedStore, StoreLocation};
use control::records::{self, NodeRecord};
use tfplug::BoxFuture;

use super::{Driver, FileServerPlacement, FileServerStatus, PlatformError};
use crate::control_plane::ControlPlane;
use crate::names::Name;
use crate::resources::file_server::FileServerSpec;

/// How long stopping nodes may take before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// How often the driver looks whether stopped nodes are gone.
const POLL: Duration = Duration::from_millis(25);

/// The local platform rooted at a directory.
#[derive(Debug, Clone)]
pub struct LocalDriver {
    root: PathBuf,
    launcher: LocalLauncher,
}

/// The local platform rooted at `root`, whose nodes run this binary, with `store` as its
/// control store or, without one, the directory store under the root.
pub fn platform(root: PathBuf, store: Option<OpenedStore>) -> Result<ControlPlane, PlatformError> {
    let exe =
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from("terraform-provider-batchai"));
    platform_with_agent_binary(root, exe, store)
}

/// The local platform whose nodes run `exe agent ...` (benchmarks and tools that are not the
/// provider binary themselves).
pub fn platform_with_agent_binary(
    root: PathBuf,
    exe: PathBuf,
    store: Option<OpenedStore>,
) -> Result<ControlPlane, PlatformError> {
    // The root holds node directories, logs and the store: its creator's alone (0700).
    let shown = root.display().to_string();
    let open = |e: &dyn std::fmt::Display| PlatformError::failed("open", "local root", &shown, e);
    control::dir::private_dir_all(&root).map_err(|e| open(&e))?;
    let (root, store) = match store {
        // Names are unique per store, so each store's nodes and exports get a directory of
        // their own: two configurations on one root with different stores never share (or
        // remove) each other's directories.
        Some(store) => (root.join("stores").join(store.location.dir_name()), store),
        None => {
            let dir = LocalLauncher::store_dir(&root);
            let store = OpenedStore {
                store: Arc::new(control::DirStore::open(&dir).map_err(|e| open(&e))?),
                location: StoreLocation::dir(dir),
            };
            (root, store)
        }
    };
    control::dir::private_dir_all(&root).map_err(|e| open(&e))?;
    let driver = LocalDriver::new(root, exe, store.location);
    Ok(ControlPlane::new(store.store, Arc::new(driver)))
}

impl LocalDriver {
    pub fn new(root: PathBuf, exe: PathBuf, store: StoreLocation) -> Self {
        Self {
            launcher: LocalLauncher {
                exe,
                root: root.clone(),
                store,
            },
            root,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file_server_dir(&self, name: &str) -> PathBuf {
        self.root.join("fileservers").join(name)
    }

    fn provision_sync(&self, spec: &FileServerSpec) -> Result<FileServerPlacement, PlatformError> {
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
        // The control plane claimed the name: anything left here is a stale file server whose
        // export was removed outside Terraform.
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        std::fs::create_dir(&dir).map_err(io)?;
        let export = dir.join("export");
        std::fs::create_dir(&export).map_err(io)?;
        Ok(FileServerPlacement {
            mount_point: export.to_string_lossy().into_owned(),
            internal_ip: "127.0.0.1".to_owned(),
            public_ip: "127.0.0.1".to_owned(),
        })
    }

    fn remove_sync(&self, name: &Name) -> Result<(), PlatformError> {
        match std::fs::remove_dir_all(self.file_server_dir(name.as_str())) {
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

    /// Stops every node of a cluster: SIGTERM (the agent drains per the cluster's
    /// `node_deallocation_option`, then exits), up to [`STOP_GRACE`] to go, then SIGKILL to
    /// their sessions, and to whatever their jobs and setup tasks started; then the cluster's
    /// directories go.
    async fn stop_nodes(&self, cluster: &str, nodes: &[NodeRecord]) -> Result<(), PlatformError> {
        let pids: Vec<(u32, String)> = nodes
            .iter()
            .filter_map(|n| n.pid.map(|p| (p, n.id.clone())))
            .collect();
        for (pid, node) in &pids {
            if is_node_process(*pid, node) {
                signal_group(*pid, libc::SIGTERM);
            }
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        while pids.iter().any(|(pid, node)| is_node_process(*pid, node)) {
            if tokio::time::Instant::now() > deadline {
                for (pid, node) in &pids {
                    if is_node_process(*pid, node) {
                        tracing::warn!(node, pid, "node did not stop in time; killing it");
                        signal_session(*pid, libc::SIGKILL);
                    }
                }
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        // Processes a job or setup task detached from a node that was killed rather than
        // stopped.
        agent::launcher::stop_marked(
            &agent::launcher::cluster_owner(&self.root, cluster),
            Duration::ZERO,
        );
        let dir = LocalLauncher::cluster_dir(&self.root, cluster);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(PlatformError::failed(
                "delete",
                "cluster",
                cluster,
                format!("remove {}: {e}", dir.display()),
            )),
        }
    }
}

/// The record the local platform kept beside each export before file servers were recorded in
/// the store (`fileservers/<name>/fileserver.json`).
#[derive(Debug, serde::Deserialize)]
struct LegacyRecord {
    #[serde(default)]
    format: u32,
    #[serde(flatten)]
    status: FileServerStatus,
}

impl Driver for LocalDriver {
    fn name(&self) -> &'static str {
        "local"
    }

    fn launcher(&self) -> &dyn agent::Launcher {
        &self.launcher
    }

    fn provision_file_server<'a>(
        &'a self,
        spec: &'a FileServerSpec,
    ) -> BoxFuture<'a, Result<FileServerPlacement, PlatformError>> {
        Box::pin(async move { self.provision_sync(spec) })
    }

    fn file_server_exists<'a>(
        &'a self,
        status: &'a FileServerStatus,
    ) -> BoxFuture<'a, Result<bool, PlatformError>> {
        Box::pin(async move { Ok(Path::new(&status.mount_point).is_dir()) })
    }

    fn remove_file_server<'a>(
        &'a self,
        name: &'a Name,
    ) -> BoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(async move { self.remove_sync(name) })
    }

    fn legacy_file_server(&self, name: &Name) -> Option<FileServerStatus> {
        let bytes =
            std::fs::read(self.file_server_dir(name.as_str()).join("fileserver.json")).ok()?;
        let record: LegacyRecord = serde_json::from_slice(&bytes).ok()?;
        (record.format <= records::FORMAT).then_some(record.status)
    }

    fn mounts_file_server(&self, mount: &records::Mount, status: &FileServerStatus) -> bool {
        matches!(&mount.source, records::MountSource::Directory { path }
            if !status.mount_point.is_empty() && Path::new(path).starts_with(&status.mount_point))
    }

    fn remove_cluster_nodes<'a>(
        &'a self,
        cluster: &'a str,
        nodes: &'a [NodeRecord],
    ) -> BoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(self.stop_nodes(cluster, nodes))
    }

    fn default_job_log_prefix(&self) -> String {
        self.root.join("jobs").display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform as _;
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

    #[tokio::test]
    async fn file_server_lifecycle() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let platform = platform(dir.path().to_path_buf(), None).unwrap_or_else(|e| panic!("{e}"));
        let s = spec("data");
        let created = platform
            .create_file_server(&s)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(Path::new(&created.mount_point).is_dir());
        assert!(matches!(
            platform.create_file_server(&s).await,
            Err(PlatformError::AlreadyExists { .. })
        ));
        assert_eq!(
            platform.get_file_server(&s.name).await.ok().flatten(),
            Some(created.clone())
        );
        std::fs::remove_dir_all(&created.mount_point).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            platform.get_file_server(&s.name).await.ok().flatten(),
            None,
            "drift: export removed"
        );
        let recreated = platform
            .create_file_server(&s)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            Path::new(&recreated.mount_point).is_dir(),
            "re-created after drift"
        );
        platform
            .delete_file_server(&s.name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!dir.path().join("fileservers/data").exists());
        assert_eq!(platform.get_file_server(&s.name).await.ok().flatten(), None);
        platform
            .delete_file_server(&s.name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn newer_records_are_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let platform = platform(dir.path().to_path_buf(), None).unwrap_or_else(|e| panic!("{e}"));
        let s = spec("data");
        platform
            .create_file_server(&s)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let store = platform.store();
        let key = records::keys::file_server("data");
        let value = store
            .get(&key)
            .ok()
            .flatten()
            .map(|v| v.data)
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&value).replace("\"format\": 1", "\"format\": 99");
        store
            .put(&key, text.as_bytes(), control::Condition::Always, None)
            .unwrap_or_else(|e| panic!("{e}"));
        let err = platform
            .get_file_server(&s.name)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("upgrade the provider"), "{err}");
    }

    #[tokio::test]
    async fn file_servers_from_before_the_store_are_adopted() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let platform = platform(dir.path().to_path_buf(), None).unwrap_or_else(|e| panic!("{e}"));
        let export = dir.path().join("fileservers/old/export");
        std::fs::create_dir_all(&export).unwrap_or_else(|e| panic!("{e}"));
        let status = FileServerStatus {
            spec: spec("old"),
            mount_point: export.display().to_string(),
            internal_ip: "127.0.0.1".into(),
            public_ip: "127.0.0.1".into(),
            provisioning_state: "succeeded".into(),
            creation_time: "2026-11-01T00:00:00Z".into(),
        };
        let mut legacy = serde_json::to_value(&status).unwrap_or_default();
        legacy["format"] = 1.into();
        std::fs::write(
            dir.path().join("fileservers/old/fileserver.json"),
            serde_json::to_vec(&legacy).unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let name = Name::parse("old").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            platform.get_file_server(&name).await.ok().flatten(),
            Some(status)
        );
        assert!(
            platform
                .store()
                .get(&records::keys::file_server("old"))
                .ok()
                .flatten()
                .is_some(),
            "recorded in the store"
        );
    }
}
