//! Preparing a node: realising mounts under `AZ_BATCHAI_MOUNT_ROOT` and running the cluster's
//! setup task with the Batch AI environment, logs kept where users look for them.
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use control::jobs;
use control::records::{ClusterSpec, ErrorCode, Mount, MountSource, NodeError};

/// A relative mount path (or path suffix) that would not stay below its root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelativePathError {
    #[error("the path is empty")]
    Empty,
    #[error("{path:?} is absolute; give a path relative to the mount root")]
    Absolute { path: String },
    #[error("{path:?} contains `..` or `.`; it must stay below the mount root")]
    NotNormal { path: String },
}

/// Checks that a relative mount path stays below the mount root.
pub fn check_relative_path(path: &str) -> Result<(), RelativePathError> {
    let p = Path::new(path);
    if path.is_empty() {
        return Err(RelativePathError::Empty);
    }
    if p.is_absolute() {
        return Err(RelativePathError::Absolute {
            path: path.to_owned(),
        });
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(RelativePathError::NotNormal {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// A setup task's `std_out_err_path_prefix` that cannot be used on this node.
#[derive(Debug, thiserror::Error)]
pub enum SetupLogError {
    #[error(transparent)]
    Path(#[from] jobs::JobPathError),
    #[error("std_out_err_path_prefix {prefix:?}: {source}")]
    Beneath {
        prefix: String,
        #[source]
        source: jobs::BeneathError,
    },
}

/// Where a node's setup task writes stdout and stderr: below the configured prefix (absolute, or
/// below `$AZ_BATCHAI_MOUNT_ROOT`, expanded here), a segment unique to this cluster incarnation,
/// then the node. A prefix below the mount root must stay there once links are followed.
pub fn setup_log_dir(
    spec: &ClusterSpec,
    node_dir: &Path,
    mount_root: &Path,
    node: &str,
) -> Result<PathBuf, SetupLogError> {
    match spec
        .setup_task
        .as_ref()
        .and_then(|t| t.std_out_err_path_prefix.as_deref())
    {
        Some(prefix) => {
            let (resolved, beneath) = jobs::resolve_setup_log_prefix(prefix, mount_root)?;
            if beneath {
                jobs::check_beneath(&resolved, &mount_roots(mount_root, &spec.mounts)).map_err(
                    |source| SetupLogError::Beneath {
                        prefix: prefix.to_owned(),
                        source,
                    },
                )?;
            }
            Ok(resolved.join(&spec.name).join(&spec.uid).join(node))
        }
        None => Ok(node_dir.join("setup")),
    }
}

/// The directories a path below `mount_root` may lead to once links are followed: the mount
/// root and what its directory mounts link to.
pub fn mount_roots(mount_root: &Path, mounts: &[Mount]) -> Vec<PathBuf> {
    let mut roots = vec![mount_root.to_path_buf()];
    roots.extend(mounts.iter().filter_map(|m| match &m.source {
        MountSource::Directory { path } => Some(PathBuf::from(path)),
        MountSource::Command { .. }
        | MountSource::Git { .. }
        | MountSource::AzureFileShare { .. }
        | MountSource::AzureBlob { .. } => None,
    }));
    roots
}

/// `text` with every secret value replaced by `***`, longest first so that a value containing
/// another is hidden whole. Every non-empty value counts, however short: a tail with a few more
/// stars is better than a secret in state. Each line of a multi-line value (a PEM key, JSON
/// credentials) counts on its own too, since a tail may hold only some of its lines.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut values: Vec<&str> = secrets
        .iter()
        .flat_map(|v| std::iter::once(v.as_str()).chain(v.lines().map(str::trim)))
        .filter(|v| !v.is_empty())
        .collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values.dedup();
    values
        .into_iter()
        .fold(text.to_owned(), |text, v| text.replace(v, "***"))
}

/// A node or job error with its code, message and details.
pub(crate) fn node_error(
    code: ErrorCode,
    message: impl std::fmt::Display,
    details: &[(&str, String)],
) -> NodeError {
    NodeError {
        code,
        message: message.to_string(),
        details: details
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }
}

/// Creates every mount below `mount_root`. Directory sources become symlinks; command sources
/// run `mount_command <path>` as Batch AI did; Azure Storage sources use `keys`
/// ([`crate::storage_mounts`]).
pub fn realise_mounts(
    mounts: &[Mount],
    mount_root: &Path,
    keys: &crate::storage_mounts::MountKeys<'_>,
) -> Result<(), NodeError> {
    std::fs::create_dir_all(mount_root).map_err(|e| {
        node_error(
            ErrorCode::MountFailed,
            format!("create mount root {}: {e}", mount_root.display()),
            &[],
        )
    })?;
    for mount in mounts {
        check_relative_path(&mount.relative_mount_path)
            .map_err(|e| node_error(ErrorCode::MountFailed, e, &[]))?;
        let target = mount_root.join(&mount.relative_mount_path);
        if let Some(parent) = target.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if crate::storage_mounts::realise(mount, &target, keys)? {
            continue;
        }
        match &mount.source {
            MountSource::Directory { path } => {
                if !Path::new(path).is_dir() {
                    return Err(node_error(
                        ErrorCode::MountFailed,
                        format!(
                            "mount {}: source directory {path} does not exist",
                            mount.relative_mount_path
                        ),
                        &[],
                    ));
                }
                // Re-running after a node restart finds the link already there.
                let _ = std::fs::remove_file(&target);
                std::os::unix::fs::symlink(path, &target).map_err(|e| {
                    node_error(
                        ErrorCode::MountFailed,
                        format!(
                            "mount {}: link {} to {path}: {e}",
                            mount.relative_mount_path,
                            target.display()
                        ),
                        &[],
                    )
                })?;
            }
            MountSource::Command { mount_command } => {
                let _ = std::fs::create_dir_all(&target);
                let out = Command::new("sh")
                    .arg("-c")
                    .arg(format!("{mount_command} \"$1\""))
                    .arg("mount")
                    .arg(&target)
                    .stdin(Stdio::null())
                    .output()
                    .map_err(|e| {
                        node_error(
                            ErrorCode::MountFailed,
                            format!("run mount command: {e}"),
                            &[],
                        )
                    })?;
                if !out.status.success() {
                    return Err(node_error(
                        ErrorCode::MountFailed,
                        format!(
                            "mount {}: `{mount_command}` failed with {}",
                            mount.relative_mount_path, out.status
                        ),
                        &[("stderr", tail(&String::from_utf8_lossy(&out.stderr), 10))],
                    ));
                }
            }
            MountSource::Git { url, revision } => {
                checkout(url, revision, &target).map_err(|e| {
                    let stderr = e.stderr.clone();
                    node_error(
                        ErrorCode::MountFailed,
                        format!("mount {}: {e}", mount.relative_mount_path),
                        &[("stderr", stderr)],
                    )
                })?;
            }
            MountSource::AzureFileShare { .. } | MountSource::AzureBlob { .. } => {}
        }
    }
    Ok(())
}

/// A `git` step of a repository mount that failed.
#[derive(Debug, thiserror::Error)]
#[error("git {step} of {} at {revision} failed: {status}", redact_url(.url))]
pub struct GitError {
    step: &'static str,
    url: String,
    revision: String,
    status: String,
    /// The last lines git wrote to stderr.
    stderr: String,
}

/// The longest one git step of a repository mount may take before it is killed: a shallow fetch
/// of one revision, generous for a large repository over a slow link, bounded so that a stalled
/// server cannot keep a node preparing for ever.
const GIT_STEP_LIMIT: Duration = Duration::from_secs(20 * 60);

/// `url` with the user information of `scheme://user:secret@host/...` masked, for messages.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// Fetches one revision of `url` into `target` without history and checks it out. A node that
/// restarts runs it again over the existing checkout, which it resets to the revision.
///
/// Git never asks anyone anything: no terminal prompt and no askpass program, and SSH, which
/// has no terminal in a node's session, may not use one either; credential helpers, SSH keys
/// (with the user's SSH and git configuration) and `~/.netrc` still authenticate, and a
/// repository that needs more fails the mount. A transfer slower than 1 KB/s for a minute, or a
/// step longer than [`GIT_STEP_LIMIT`], fails it too.
fn checkout(url: &str, revision: &str, target: &Path) -> Result<(), GitError> {
    // A link left by an earlier job's mount at this path must not take the checkout elsewhere.
    if std::fs::symlink_metadata(target).is_ok_and(|m| !m.is_dir()) {
        let _ = std::fs::remove_file(target);
    }
    // A missing directory shows up as the init step's failure.
    let _ = std::fs::create_dir_all(target);
    let run = |step: &'static str, args: &[&str]| {
        let failed = |status: String, stderr: String| GitError {
            step,
            url: url.to_owned(),
            revision: revision.to_owned(),
            status,
            stderr,
        };
        let mut cmd = Command::new("git");
        cmd.arg("-C")
            .arg(target)
            .args([
                "-c",
                "http.lowSpeedLimit=1000",
                "-c",
                "http.lowSpeedTime=60",
            ])
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            // Empty, git skips askpass programs (core.askPass, SSH_ASKPASS) altogether.
            .env("GIT_ASKPASS", "")
            .env("SSH_ASKPASS_REQUIRE", "never")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Its own process group, so a step that runs out of time ends with everything it
        // started (ssh, remote helpers), not only git.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .map_err(|e| failed(format!("could not start git: {e}"), String::new()))?;
        let (status, stderr) = wait_bounded(child, GIT_STEP_LIMIT)
            .map_err(|e| failed(format!("could not wait for git: {e}"), String::new()))?;
        let stderr = tail(&String::from_utf8_lossy(&stderr), 10).replace(url, &redact_url(url));
        match status {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(failed(status.to_string(), stderr)),
            None => Err(failed(
                format!(
                    "it ran longer than {} minutes and was killed",
                    GIT_STEP_LIMIT.as_secs() / 60
                ),
                stderr,
            )),
        }
    };
    run("init", &["init", "--quiet"])?;
    // `--` keeps a URL or revision that starts with `-` from being read as an option.
    run(
        "fetch",
        &["fetch", "--quiet", "--depth", "1", "--", url, revision],
    )?;
    run(
        "checkout",
        &["checkout", "--quiet", "--force", "FETCH_HEAD"],
    )
}

/// Waits for `child`, the leader of its own process group, at most `limit`, then kills the
/// group: its exit status (`None` when killed) and what it wrote to stderr. Whatever still
/// holds the stderr pipe after that (a process that left the group) is not waited for.
fn wait_bounded(
    mut child: std::process::Child,
    limit: Duration,
) -> std::io::Result<(Option<std::process::ExitStatus>, Vec<u8>)> {
    use std::io::Read as _;
    // Read stderr on a thread so a chatty child never blocks on a full pipe.
    let (sender, received) = std::sync::mpsc::channel();
    if let Some(mut pipe) = child.stderr.take() {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = sender.send(bytes);
        });
    }
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            crate::launcher::signal_group(child.id(), libc::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = received
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    Ok((status, stderr))
}

/// Undoes job-level mounts after a run: links are removed, command mounts unmounted (best
/// effort: a busy mount stays and is reported in the agent log).
pub fn release_mounts(
    mounts: &[Mount],
    mount_root: &Path,
    keys: &crate::storage_mounts::MountKeys<'_>,
) {
    for mount in mounts {
        let target = mount_root.join(&mount.relative_mount_path);
        if crate::storage_mounts::release(mount, &target, keys) {
            continue;
        }
        match &mount.source {
            MountSource::Directory { .. } => {
                let _ = std::fs::remove_file(&target);
            }
            // A job's checkout is its own copy.
            MountSource::Git { .. } => {
                let _ = std::fs::remove_dir_all(&target);
            }
            MountSource::Command { .. } => {
                let out = Command::new("umount")
                    .arg(&target)
                    .stdin(Stdio::null())
                    .output();
                if let Ok(out) = out
                    && !out.status.success()
                {
                    tracing::warn!(path = %target.display(), "unmount a job mount failed");
                }
            }
            MountSource::AzureFileShare { .. } | MountSource::AzureBlob { .. } => {}
        }
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The environment every process on a node sees (setup task and, later, jobs).
pub fn node_environment(
    spec: &ClusterSpec,
    node: &str,
    mount_root: &Path,
    gpus: &[u32],
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "AZ_BATCHAI_MOUNT_ROOT".to_owned(),
        mount_root.display().to_string(),
    );
    env.insert("AZ_BATCHAI_CLUSTER_NAME".to_owned(), spec.name.clone());
    env.insert("AZ_BATCHAI_NODE_ID".to_owned(), node.to_owned());
    env.insert("AZ_BATCHAI_NUM_GPUS".to_owned(), gpus.len().to_string());
    let devices: Vec<String> = gpus.iter().map(u32::to_string).collect();
    // An empty list hides every GPU, which is right for a node that was given none.
    env.insert("CUDA_VISIBLE_DEVICES".to_owned(), devices.join(","));
    env
}

/// Runs the setup task with the cluster's `secrets` in its environment; on failure the error
/// names the exit code, the log files and the last lines of stderr (secrets redacted).
pub fn run_setup_task(
    spec: &ClusterSpec,
    node: &str,
    node_dir: &Path,
    env: &BTreeMap<String, String>,
    secrets: &control::secrets::Secrets,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(), NodeError> {
    let Some(task) = &spec.setup_task else {
        return Ok(());
    };
    let mount_root = node_dir.join("mounts");
    let log_dir = setup_log_dir(spec, node_dir, &mount_root, node)
        .map_err(|e| node_error(ErrorCode::SetupTaskFailed, e, &[]))?;
    std::fs::create_dir_all(&log_dir).map_err(|e| {
        node_error(
            ErrorCode::SetupTaskFailed,
            format!("create log directory {}: {e}", log_dir.display()),
            &[],
        )
    })?;
    let stdout_path = log_dir.join("stdout.txt");
    let stderr_path = log_dir.join("stderr.txt");
    let open = |p: &Path| {
        std::fs::File::create(p).map_err(|e| {
            node_error(
                ErrorCode::SetupTaskFailed,
                format!("create {}: {e}", p.display()),
                &[],
            )
        })
    };
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&task.command_line)
        .current_dir(node_dir)
        .envs(env)
        .envs(&task.environment_variables)
        .envs(&secrets.0)
        .env("AZ_BATCHAI_STDOUTERR_DIR", &log_dir)
        // What it leaves running is stopped with the node, however it detached.
        .env(
            crate::launcher::OWNER_VAR,
            crate::launcher::setup_owner(node_dir),
        )
        .stdin(Stdio::null())
        .stdout(open(&stdout_path)?)
        .stderr(open(&stderr_path)?);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| {
        node_error(
            ErrorCode::SetupTaskFailed,
            format!("start the setup task: {e}"),
            &[],
        )
    })?;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            crate::launcher::signal_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
            return Err(node_error(
                ErrorCode::SetupTaskFailed,
                "the node was stopped during its setup task".to_owned(),
                &[],
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let code = status
        .code()
        .map_or_else(|| format!("signal {status}"), |c| c.to_string());
    Err(node_error(
        ErrorCode::SetupTaskFailed,
        format!(
            "the setup task failed with exit code {code}; its output is in {} and {}",
            stdout_path.display(),
            stderr_path.display()
        ),
        &[
            ("exit_code", code.clone()),
            ("stdout_path", stdout_path.display().to_string()),
            ("stderr_path", stderr_path.display().to_string()),
            ("stderr_tail", redact(&tail(&stderr, 10), &secrets.values())),
        ],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_spec() -> ClusterSpec {
        ClusterSpec {
            format: control::records::FORMAT,
            name: "c".to_owned(),
            uid: "u".to_owned(),
            vm_size: "Standard_D2s_v3".to_owned(),
            vm_priority: "dedicated".to_owned(),
            scale: control::records::Scale::Manual {
                target_node_count: 1,
                node_deallocation_option: control::records::DeallocationOption::Requeue,
            },
            setup_task: None,
            mounts: Vec::new(),
            gpus_per_node: 0,
            deleting: false,
            scale_generation: 0,
        }
    }

    #[test]
    fn relative_paths_must_stay_below_the_root() {
        let cases = [
            ("data", true),
            ("a/b", true),
            ("", false),
            ("/abs", false),
            ("../up", false),
            ("a/../../b", false),
            ("./a", false),
        ];
        for (path, ok) in cases {
            assert_eq!(check_relative_path(path).is_ok(), ok, "{path:?}");
        }
        for (path, message) in [
            ("", "the path is empty"),
            (
                "/abs",
                "\"/abs\" is absolute; give a path relative to the mount root",
            ),
            (
                "../up",
                "\"../up\" contains `..` or `.`; it must stay below the mount root",
            ),
        ] {
            assert_eq!(
                check_relative_path(path).map_err(|e| e.to_string()),
                Err(message.to_owned())
            );
        }
    }

    #[test]
    fn secrets_are_redacted_from_tails() {
        let secrets = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let cases = [
            ("token=hunter2\nok", secrets(&["hunter2"]), "token=***\nok"),
            ("ab abc", secrets(&["ab", "abc"]), "*** ***"),
            ("x1y", secrets(&["1", ""]), "x***y"),
            ("nothing", secrets(&[]), "nothing"),
            (
                "...\nMIIB-line-2\n-----END KEY-----\nexit 1",
                secrets(&["-----BEGIN KEY-----\nMIIB-line-1\nMIIB-line-2\n-----END KEY-----"]),
                "...\n***\n***\nexit 1",
            ),
        ];
        for (text, values, want) in cases {
            assert_eq!(redact(text, &values), want, "{text:?}");
        }
    }

    #[test]
    fn setup_logs_expand_the_mount_root_and_stay_beneath_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let node_dir = dir.path().join("node-1");
        let mount_root = node_dir.join("mounts");
        let outside = dir.path().join("outside");
        for d in [&mount_root, &outside] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
        }
        std::os::unix::fs::symlink(&outside, mount_root.join("planted"))
            .unwrap_or_else(|e| panic!("{e}"));
        let spec = |prefix: &str| ClusterSpec {
            setup_task: Some(control::records::SetupTask {
                command_line: "true".to_owned(),
                environment_variables: BTreeMap::new(),
                secrets: control::secrets::Secrets::default(),
                std_out_err_path_prefix: Some(prefix.to_owned()),
            }),
            ..test_spec()
        };
        let got = |prefix: &str| setup_log_dir(&spec(prefix), &node_dir, &mount_root, "node-1");
        assert_eq!(
            got("$AZ_BATCHAI_MOUNT_ROOT/logs").map_err(|e| e.to_string()),
            Ok(mount_root.join("logs/c/u/node-1"))
        );
        assert_eq!(
            got("/abs").map_err(|e| e.to_string()),
            Ok(PathBuf::from("/abs/c/u/node-1"))
        );
        for bad in [
            "../../..",
            "$AZ_BATCHAI_MOUNT_ROOT/../..",
            "$AZ_BATCHAI_JOB_MOUNT_ROOT/x",
            "$AZ_BATCHAI_MOUNT_ROOT/planted/logs",
        ] {
            assert!(got(bad).is_err(), "{bad}: {:?}", got(bad));
        }
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }

    /// A repository with two commits of `file.txt`: "one" (returned) then "two".
    fn two_commit_repository(dir: &Path) -> String {
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("git: {e}"));
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        git(&["init", "--quiet"]);
        std::fs::write(dir.join("file.txt"), "one").unwrap_or_else(|e| panic!("{e}"));
        git(&["add", "file.txt"]);
        git(&["commit", "--quiet", "-m", "one"]);
        let first = git(&["rev-parse", "HEAD"]);
        std::fs::write(dir.join("file.txt"), "two").unwrap_or_else(|e| panic!("{e}"));
        git(&["commit", "--quiet", "-am", "two"]);
        first
    }

    #[test]
    fn repository_mounts_check_out_a_revision_again_and_again() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let repo = dir.path().join("repo");
        let first = two_commit_repository(&repo);
        let root = dir.path().join("mounts");
        let url = format!("file://{}", repo.display());
        let mount = |revision: &str| Mount {
            relative_mount_path: "code".to_owned(),
            source: MountSource::Git {
                url: url.clone(),
                revision: revision.to_owned(),
            },
        };
        // A link an earlier job left at the mount path is replaced, not checked out into.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(&elsewhere, root.join("code")).unwrap_or_else(|e| panic!("{e}"));
        let read = || std::fs::read_to_string(root.join("code/file.txt")).unwrap_or_default();
        for (revision, want) in [("HEAD", "two"), (first.as_str(), "one"), ("HEAD", "two")] {
            realise_mounts(
                &[mount(revision)],
                &root,
                &crate::storage_mounts::MountKeys::none(),
            )
            .unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(read(), want, "at {revision}");
        }
        assert!(
            std::fs::read_dir(&elsewhere).is_ok_and(|mut d| d.next().is_none()),
            "the linked directory is untouched"
        );
        release_mounts(
            &[mount("HEAD")],
            &root,
            &crate::storage_mounts::MountKeys::none(),
        );
        assert!(!root.join("code").exists(), "a job's checkout is removed");

        let missing = Mount {
            relative_mount_path: "gone".to_owned(),
            source: MountSource::Git {
                url: format!("file://{}", dir.path().join("nowhere").display()),
                revision: "HEAD".to_owned(),
            },
        };
        let err =
            realise_mounts(&[missing], &root, &crate::storage_mounts::MountKeys::none()).err();
        let err = err.unwrap_or_else(|| panic!("a missing repository mounts"));
        assert_eq!(err.code, ErrorCode::MountFailed);
        assert!(err.message.contains("git fetch of file://"), "{err:?}");
        assert!(
            err.details.get("stderr").is_some_and(|s| !s.is_empty()),
            "git's stderr is kept: {err:?}"
        );
    }

    #[test]
    fn credentials_in_repository_urls_are_masked() {
        for (url, shown) in [
            ("https://github.com/o/r.git", "https://github.com/o/r.git"),
            ("https://user:tok@host/o/r.git", "https://***@host/o/r.git"),
            ("https://tok@host", "https://***@host"),
            ("ssh://git@host:22/r", "ssh://***@host:22/r"),
            ("git@host:o/r.git", "git@host:o/r.git"),
            ("file:///srv/r@1", "file:///srv/r@1"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn a_bounded_wait_ends_with_everything_the_child_started() {
        let mut cmd = Command::new("sh");
        // The background sleep would hold the stderr pipe after its shell is killed.
        cmd.args(["-c", "sleep 600 & echo $! >&2; wait"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{e}"));
        let (status, stderr) =
            wait_bounded(child, Duration::from_millis(500)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, None, "killed at its limit");
        let sleeper = String::from_utf8_lossy(&stderr).trim().to_owned();
        assert!(
            sleeper.parse::<u32>().is_ok(),
            "stderr is kept: {sleeper:?}"
        );
        // SIGKILL takes effect asynchronously: the sleeper must end (or be a zombie until init
        // reaps it) soon, long before its 600 s.
        let running = || {
            std::fs::read_to_string(format!("/proc/{sleeper}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
                .unwrap_or(false)
        };
        let mut polls = 0;
        while running() && polls < 200 {
            std::thread::sleep(Duration::from_millis(50));
            polls += 1;
        }
        assert!(!running(), "the group's other processes were killed");
    }
}
