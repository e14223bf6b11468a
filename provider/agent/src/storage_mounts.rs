//! Azure Storage mounts on a node: an Azure Files share over SMB 3 (`mount -t cifs` with a
//! credentials file) and a blob container with blobfuse2 (a config file with the account key or
//! the node's managed identity). Keys come from a secrets record, never from the mount record,
//! and reach the mount programs through files only root can read, never their arguments.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use control::records::{ErrorCode, Mount, MountSource, NodeError};
use control::secrets::Secrets;

use crate::setup::{node_error, redact, tail};

/// What Azure Storage mounts need besides their records.
#[derive(Debug, Clone, Copy)]
pub struct MountKeys<'a> {
    /// Storage account keys by `relative_mount_path`, from the cluster's or the job's secrets
    /// record.
    pub keys: &'a Secrets,
    /// The client ID of the node's managed identity (an Azure node's), for blob mounts that
    /// use it.
    pub identity: Option<&'a str>,
    /// A private directory for the files mounts read their credentials from (made 0700).
    pub private_dir: &'a Path,
}

impl MountKeys<'_> {
    /// For nodes without Azure Storage mounts (the local platform).
    pub fn none() -> MountKeys<'static> {
        static EMPTY: Secrets = Secrets(std::collections::BTreeMap::new());
        MountKeys {
            keys: &EMPTY,
            identity: None,
            private_dir: Path::new("/nonexistent"),
        }
    }
}

/// A file name for a mount's credential file: its relative path with `/` as `_`.
fn stem(mount: &Mount) -> String {
    mount
        .relative_mount_path
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn failed(mount: &Mount, what: impl std::fmt::Display) -> NodeError {
    node_error(
        ErrorCode::MountFailed,
        format!("mount {}: {what}", mount.relative_mount_path),
        &[],
    )
}

/// Writes `content` to `path`, readable by its owner only from the start.
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    }
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content.as_bytes())
}

/// Where blobfuse2 keeps a mount's configuration while it is mounted.
fn blob_config(keys: &MountKeys<'_>, mount: &Mount) -> PathBuf {
    keys.private_dir
        .join(format!("{}.blobfuse2.yaml", stem(mount)))
}

/// `//host/share[/dir]` from `https://host/share[/dir]`.
fn unc(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (host, path) = rest.split_once('/')?;
    let path = path.trim_matches('/');
    (!host.is_empty() && !path.is_empty()).then(|| format!("//{host}/{path}"))
}

/// Runs a mount program; a failure is the mount's error with the program's stderr (secrets
/// shown as `***`).
fn run(mount: &Mount, mut cmd: Command, secrets: &[String]) -> Result<(), NodeError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed(mount, format!("run {program}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(node_error(
        ErrorCode::MountFailed,
        format!(
            "mount {}: {program} failed with {}",
            mount.relative_mount_path, out.status
        ),
        &[(
            "stderr",
            redact(&tail(&String::from_utf8_lossy(&out.stderr), 10), secrets),
        )],
    ))
}

/// Mounts an Azure Storage source at `target`; `Ok(false)` for any other source.
pub fn realise(mount: &Mount, target: &Path, keys: &MountKeys<'_>) -> Result<bool, NodeError> {
    let key = || {
        keys.keys
            .0
            .get(&mount.relative_mount_path)
            .cloned()
            .ok_or_else(|| {
                failed(
                    mount,
                    "its storage account key is not in the secrets record (set account_key)",
                )
            })
    };
    match &mount.source {
        MountSource::AzureFileShare {
            url,
            account,
            directory_mode,
            file_mode,
        } => {
            let share = unc(url)
                .ok_or_else(|| failed(mount, format!("{url:?} is not a share URL (https://<account>.file.core.windows.net/<share>)")))?;
            let key = key()?;
            // The kernel reads the credentials once, at mount time.
            let credentials = keys.private_dir.join(format!("{}.cifs", stem(mount)));
            write_private(
                &credentials,
                &format!("username={account}\npassword={key}\n"),
            )
            .map_err(|e| failed(mount, format!("write its credentials: {e}")))?;
            let _ = std::fs::create_dir_all(target);
            let mut cmd = Command::new("mount");
            cmd.args(["-t", "cifs"])
                .arg(&share)
                .arg(target)
                .arg("-o")
                .arg(format!(
                    "vers=3.1.1,credentials={},dir_mode={directory_mode},file_mode={file_mode},serverino,nosharesock,actimeo=30",
                    credentials.display()
                ));
            let mounted = run(mount, cmd, &[key]);
            let _ = std::fs::remove_file(&credentials);
            mounted.map(|()| true)
        }
        MountSource::AzureBlob {
            account,
            container,
            endpoint,
            options,
            identity,
        } => {
            let (auth, secrets) = if *identity {
                let id = keys.identity.ok_or_else(|| {
                    failed(
                        mount,
                        "this node has no managed identity to mount the container with (set account_key)",
                    )
                })?;
                (format!("  mode: msi\n  appid: {id}\n"), Vec::new())
            } else {
                let key = key()?;
                (format!("  mode: key\n  account-key: {key}\n"), vec![key])
            };
            let cache = keys.private_dir.join(format!("{}.cache", stem(mount)));
            let config = format!(
                "allow-other: true\nlogging:\n  type: syslog\n  level: log_warning\ncomponents:\n  - libfuse\n  - file_cache\n  - attr_cache\n  - azstorage\nlibfuse:\n  attribute-expiration-sec: 120\n  entry-expiration-sec: 120\nfile_cache:\n  path: {cache}\n  timeout-sec: 120\nattr_cache:\n  timeout-sec: 120\nazstorage:\n  type: block\n  account-name: {account}\n  container: {container}\n  endpoint: {endpoint}\n{auth}",
                cache = cache.display(),
            );
            // blobfuse2 reads it again when it restarts as a daemon: it stays while mounted.
            let path = blob_config(keys, mount);
            write_private(&path, &config)
                .map_err(|e| failed(mount, format!("write its blobfuse2 configuration: {e}")))?;
            let _ = std::fs::create_dir_all(&cache);
            let _ = std::fs::create_dir_all(target);
            let mut cmd = Command::new("blobfuse2");
            cmd.arg("mount")
                .arg(target)
                .arg(format!("--config-file={}", path.display()))
                .args(options.split_whitespace());
            let mounted = run(mount, cmd, &secrets);
            if mounted.is_err() {
                let _ = std::fs::remove_file(&path);
            }
            mounted.map(|()| true)
        }
        MountSource::Directory { .. } | MountSource::Command { .. } | MountSource::Git { .. } => {
            Ok(false)
        }
    }
}

/// Unmounts an Azure Storage source and removes what it kept; `false` for any other source.
pub fn release(mount: &Mount, target: &Path, keys: &MountKeys<'_>) -> bool {
    if !matches!(
        mount.source,
        MountSource::AzureFileShare { .. } | MountSource::AzureBlob { .. }
    ) {
        return false;
    }
    let out = Command::new("umount")
        .arg(target)
        .stdin(Stdio::null())
        .output();
    if !out.is_ok_and(|o| o.status.success()) {
        tracing::warn!(path = %target.display(), "unmount an Azure Storage mount failed");
    }
    let _ = std::fs::remove_file(blob_config(keys, mount));
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn share_urls_become_unc_paths() {
        let cases = [
            (
                "https://acct.file.core.windows.net/share",
                Some("//acct.file.core.windows.net/share"),
            ),
            (
                "https://acct.file.core.windows.net/share/dir/",
                Some("//acct.file.core.windows.net/share/dir"),
            ),
            ("https://acct.file.core.windows.net/", None),
            ("acct.file.core.windows.net/share", None),
        ];
        for (url, expected) in cases {
            assert_eq!(unc(url).as_deref(), expected, "{url}");
        }
    }

    #[test]
    fn credential_files_are_private_and_keys_never_reach_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private");
        let path = private.join("x.cifs");
        write_private(&path, "password=k\n").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
            0o700
        );

        // A share whose key is missing fails before anything runs, saying what to set.
        let mount = Mount {
            relative_mount_path: "data/share".into(),
            source: MountSource::AzureFileShare {
                url: "https://acct.file.core.windows.net/share".into(),
                account: "acct".into(),
                directory_mode: "0777".into(),
                file_mode: "0777".into(),
            },
        };
        let empty = Secrets::default();
        let keys = MountKeys {
            keys: &empty,
            identity: None,
            private_dir: &private,
        };
        let error = realise(&mount, &dir.path().join("m"), &keys).unwrap_err();
        assert!(error.message.contains("account_key"), "{}", error.message);
        assert_eq!(stem(&mount), "data_share");
    }
}
