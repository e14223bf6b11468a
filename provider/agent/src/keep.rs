//! Copies of the job files a node wrote on its own disk, kept in the control container, for
//! platforms whose machines take their disks with them: an Azure VM's OS disk goes when its
//! scale set deletes it (a scale-in, an eviction, a node that left), and with it every log and
//! output that was not on a mounted file system.
//!
//! When an attempt ends on such a node, before its report can end the job, the node copies its
//! stdout/stderr directory and each output directory that lies on its own disk to
//! `files/<job_output_directory_path_segment>/<node>/stdouterr/...` and
//! `.../<node>/outputs/<id>/...`, beside the store's records. Each node has its own copies:
//! the nodes of a multi-node job write files of the same name on their own disks.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use control::jobs::{self, JobSpec};
use control::records::Mount;
use control_blob::BlobStore;

use crate::execute::JobDirs;

/// Where a job's copies go in the control container.
pub fn job_prefix(spec: &JobSpec) -> String {
    format!("files/{}", spec.path_segment())
}

/// How long an attempt's end may wait for a store that fails: a file not copied by then is
/// named in the node's log, and the node goes on (a Spot VM's notice will not wait longer).
const KEEP_TRYING: Duration = Duration::from_secs(120);
const NAP_MAX: Duration = Duration::from_secs(10);

/// What a copy did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Kept {
    pub files: usize,
    pub bytes: u64,
    /// Files that could not be read or uploaded, with why.
    pub missed: Vec<(PathBuf, String)>,
}

/// The attempt's directories that lie on the node's own disk, each with the blob prefix its
/// copy goes under.
pub fn on_own_disk(
    spec: &JobSpec,
    dirs: &JobDirs,
    cluster_mounts: &[Mount],
    node: &str,
) -> Vec<(PathBuf, String)> {
    let base = format!("{}/{node}", job_prefix(spec));
    let mut out = Vec::new();
    if !jobs::on_mount(&spec.std_out_err_path_prefix, cluster_mounts, &spec.mounts) {
        out.push((dirs.stdouterr.clone(), format!("{base}/stdouterr")));
    }
    for (d, (id, path)) in spec.output_directories.iter().zip(&dirs.outputs) {
        if !jobs::on_mount(&d.path_prefix, cluster_mounts, &spec.mounts) {
            out.push((path.clone(), format!("{base}/outputs/{id}")));
        }
    }
    out
}

/// Copies every file below each directory to its prefix, trying a failing upload again until
/// [`KEEP_TRYING`] has passed since the first.
pub fn keep(files: &BlobStore, dirs: &[(PathBuf, String)]) -> Kept {
    let started = Instant::now();
    let mut kept = Kept::default();
    for (dir, prefix) in dirs {
        for path in walk(dir) {
            let Ok(relative) = path.strip_prefix(dir) else {
                continue;
            };
            let name = format!("{prefix}/{}", relative.to_string_lossy());
            let data = match std::fs::read(&path) {
                Ok(data) => data,
                Err(e) => {
                    kept.missed.push((path, format!("read: {e}")));
                    continue;
                }
            };
            let size = data.len() as u64;
            let mut nap = Duration::from_millis(200);
            loop {
                match files.upload_file(&name, data.clone()) {
                    Ok(()) => {
                        kept.files += 1;
                        kept.bytes += size;
                        break;
                    }
                    Err(e) if started.elapsed() + nap < KEEP_TRYING => {
                        tracing::debug!(file = %path.display(), error = %e, "copy a job file; trying again");
                        std::thread::sleep(nap);
                        nap = (nap * 2).min(NAP_MAX);
                    }
                    Err(e) => {
                        kept.missed.push((path, e.to_string()));
                        break;
                    }
                }
            }
        }
    }
    kept
}

/// The regular files below `dir`, sorted; links are not followed (a link may lead anywhere on
/// the machine).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => out.push(entry.path()),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use control_blob::azurite::Azurite;

    #[test]
    fn a_nodes_files_are_copied_under_its_name_and_copied_again_when_they_grew() {
        let azurite = Azurite::shared().unwrap();
        let (store, _) = azurite.fresh_store().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("stdouterr");
        std::fs::create_dir_all(logs.join("mpi-1/1/rank.0")).unwrap();
        std::fs::write(logs.join("stdout-node-0.txt"), "hello\n").unwrap();
        std::fs::write(logs.join("mpi-1/1/rank.0/stdout"), "rank 0\n").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/passwd", logs.join("link")).unwrap();
        let dirs = [(logs.clone(), "files/c/jobs/j/u/node-0/stdouterr".to_owned())];

        let kept = keep(&store, &dirs);
        assert_eq!((kept.files, kept.bytes), (2, 13), "{kept:?}");
        assert!(kept.missed.is_empty(), "{kept:?}");
        assert_eq!(
            store.list_files("files/c/jobs/j/").unwrap(),
            [
                "files/c/jobs/j/u/node-0/stdouterr/mpi-1/1/rank.0/stdout",
                "files/c/jobs/j/u/node-0/stdouterr/stdout-node-0.txt",
            ]
        );
        std::fs::write(logs.join("stdout-node-0.txt"), "hello\nagain\n").unwrap();
        assert_eq!(keep(&store, &dirs).bytes, 19);
        assert_eq!(
            store
                .download_file("files/c/jobs/j/u/node-0/stdouterr/stdout-node-0.txt")
                .unwrap()
                .as_deref(),
            Some(&b"hello\nagain\n"[..])
        );
        let url = store.file_url("files/c/jobs/j/u/node-0/stdouterr/stdout-node-0.txt");
        assert!(url.ends_with("/files/c/jobs/j/u/node-0/stdouterr/stdout-node-0.txt"));
    }

    #[test]
    fn only_directories_off_the_mounts_are_copied() {
        use control::jobs::{OutputDirectory, Priority, Retry, Toolkit};
        use control::records::MountSource;
        let mount = |path: &str| Mount {
            relative_mount_path: path.to_owned(),
            source: MountSource::Directory {
                path: "/srv".to_owned(),
            },
        };
        let output = |id: &str, prefix: &str| OutputDirectory {
            id: id.to_owned(),
            path_prefix: prefix.to_owned(),
            path_suffix: None,
        };
        let spec = JobSpec {
            format: 1,
            name: "j".into(),
            cluster: "c".into(),
            uid: "u".into(),
            created_ms: 0,
            node_count: 1,
            priority: Priority::Normal,
            toolkit: Toolkit::CustomToolkit {
                command_line: "true".into(),
            },
            job_preparation: None,
            environment_variables: Default::default(),
            has_secrets: false,
            input_directories: vec![],
            output_directories: vec![
                output("MODEL", "$AZ_BATCHAI_MOUNT_ROOT/nfs/models"),
                output("LOCAL", "/tmp/out"),
                output("SCRATCH", "$AZ_BATCHAI_JOB_MOUNT_ROOT/scratch"),
            ],
            std_out_err_path_prefix: "$AZ_BATCHAI_MOUNT_ROOT/joblogs".into(),
            mounts: vec![mount("scratch")],
            max_wall_clock_ms: 60_000,
            max_unschedulable_ms: jobs::DEFAULT_MAX_UNSCHEDULABLE_MS,
            termination_grace_ms: jobs::DEFAULT_TERMINATION_GRACE_MS,
            retry: Retry::default(),
            container: None,
        };
        let node_dir = Path::new("/var/lib/batchai/node");
        let dirs = JobDirs::for_node(node_dir, &spec).unwrap();
        let got = on_own_disk(&spec, &dirs, &[mount("nfs")], "gpu-3");
        assert_eq!(
            got,
            [
                (
                    node_dir.join("mounts/joblogs/c/jobs/j/u/stdouterr"),
                    "files/c/jobs/j/u/gpu-3/stdouterr".to_owned()
                ),
                (
                    PathBuf::from("/tmp/out/c/jobs/j/u"),
                    "files/c/jobs/j/u/gpu-3/outputs/LOCAL".to_owned()
                ),
            ]
        );
    }
}
