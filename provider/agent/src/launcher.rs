//! Starting and stopping node processes. On the local platform a node is an agent process of
//! this same binary, in its own session with its output in files under the node's directory, so
//! it outlives the Terraform command that started it and never holds Terraform's pipes open.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use control::records::{self, ClusterSpec, NodeRecord, keys};
use control::{Condition, Store};
use serde::{Deserialize, Serialize};

use crate::AgentError;

/// How a platform adds nodes to a cluster and reaps lost ones.
pub trait Launcher: Send + Sync + std::fmt::Debug {
    /// Starts `count` new nodes: their records first (so no scheduler launches them twice),
    /// then their processes. Returns the new node IDs.
    fn launch(
        &self,
        store: &dyn Store,
        spec: &ClusterSpec,
        count: u32,
    ) -> Result<Vec<String>, AgentError>;

    /// Makes sure a node that is gone from the store is gone from the machine too.
    fn reap(&self, record: &NodeRecord);

    /// What the platform knows of the node's machine, apart from its heartbeat.
    fn liveness(&self, record: &NodeRecord) -> Liveness {
        let _ = record;
        Liveness::Unknown
    }
}

/// Whether a node's agent still exists, as its platform sees it. A heartbeat goes stale both
/// when an agent died and when the store was out of reach; this tells the two apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The agent's process (or machine) is there: a stale heartbeat means it cannot reach the
    /// store, not that it is gone.
    Alive,
    /// The agent is gone: its node is lost, however fresh its last heartbeat.
    Dead,
    /// The platform cannot tell (not started yet); the heartbeat decides.
    Unknown,
}

/// Sends `signal` to a process group (a node and everything it started).
#[allow(unsafe_code)]
pub fn signal_group(pgid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and has no memory-safety preconditions.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// True while any process of group `pgid` exists (a zombie counts until it is reaped).
#[allow(unsafe_code)]
pub fn group_alive(pgid: u32) -> bool {
    let Ok(pgid) = i32::try_from(pgid) else {
        return false;
    };
    if pgid <= 1 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 only checks for existence; no memory is involved.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

/// Sends `signal` to one process.
#[allow(unsafe_code)]
pub fn signal_process(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Sends `signal` to every process in session `sid`: a node agent leads its own session, so
/// this reaches the agent and everything it started, including setup tasks and work that run
/// in process groups of their own.
pub fn signal_session(sid: u32, signal: i32) {
    if sid <= 1 {
        return;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Fields after the command: state, ppid, pgrp, session.
        let session = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(3))
            .and_then(|s| s.parse::<u32>().ok());
        if session == Some(sid) {
            signal_process(pid, signal);
        }
    }
}

/// The environment variable that marks every process a node starts for a job or a setup task,
/// however it detaches (`setsid`, a double fork): process groups and sessions can be left, an
/// inherited environment stays. Its value is a path-like owner below the node's directory, so
/// one prefix finds an attempt's processes, a node's, or a whole cluster's
/// ([`attempt_owner`], [`node_owner`], [`cluster_owner`]). Only a process that clears its
/// environment on purpose (`env -i`) escapes it.
pub const OWNER_VAR: &str = "BATCHAI_OWNER";

/// The owner of everything one attempt of a job starts on a node.
/// Every owner ends in `/`, so that one is never the prefix of another (attempt 1 of attempt 10).
pub fn attempt_owner(node_dir: &Path, job_uid: &str, attempt: u32) -> String {
    format!("{}/job/{job_uid}/{attempt}/", node_dir.display())
}

/// The owner of a node's setup task.
pub fn setup_owner(node_dir: &Path) -> String {
    format!("{}/setup/", node_dir.display())
}

/// The prefix of every owner on a node.
pub fn node_owner(node_dir: &Path) -> String {
    format!("{}/", node_dir.display())
}

/// The prefix of every owner on every node of a cluster.
pub fn cluster_owner(root: &Path, cluster: &str) -> String {
    format!("{}/", LocalLauncher::cluster_dir(root, cluster).display())
}

/// Live processes (of this user: others' environments are unreadable) whose [`OWNER_VAR`]
/// starts with `prefix`. Zombies have exited already and are left out.
pub fn marked_processes(prefix: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut want = format!("{OWNER_VAR}=").into_bytes();
    want.extend_from_slice(prefix.as_bytes());
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && is_other_live_process(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var.starts_with(&want)))
        })
        .collect()
}

/// Stops every process marked with an owner starting with `prefix`: SIGTERM, up to `grace` for
/// them to go, then SIGKILL to what is left.
pub fn stop_marked(prefix: &str, grace: std::time::Duration) {
    let marked = marked_processes(prefix);
    if marked.is_empty() {
        return;
    }
    for pid in &marked {
        signal_process(*pid, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline && !marked_processes(prefix).is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Processes started during the grace period are marked too, so they are found here.
    for pid in marked_processes(prefix) {
        signal_process(pid, libc::SIGKILL);
    }
}

/// True when `pid` is held by a running (not zombie) process.
fn is_other_live_process(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// True while `pid` is a live agent process for `node` (checked by command line, so a reused
/// PID is never mistaken for the node).
pub fn is_node_process(pid: u32, node: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // A zombie has exited; only its parent's wait is missing.
    let zombie = stat
        .rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('Z'));
    !zombie && cmdline.split(|b| *b == 0).any(|arg| arg == node.as_bytes())
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    format: u32,
    next: u64,
}

/// Reserves `count` node numbers for a cluster with compare-and-swap.
pub(crate) fn reserve_ids(
    store: &dyn Store,
    cluster: &str,
    count: u32,
) -> Result<Vec<String>, AgentError> {
    let key = format!("clusters/{cluster}/counter");
    loop {
        let current = store.get(&key)?;
        let (mut counter, condition) = match &current {
            Some(v) => (
                records::decode::<Counter>("node counter", &v.data)?,
                Condition::IfMatch(v.etag.clone()),
            ),
            None => (Counter::default(), Condition::IfNoneExists),
        };
        let first = counter.next;
        counter.next += u64::from(count);
        counter.format = records::FORMAT;
        match store.put(&key, &records::encode(&counter), condition, None) {
            Ok(_) => {
                return Ok((first..counter.next).map(|n| format!("node-{n}")).collect());
            }
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The local platform's launcher: nodes are `<exe> agent` processes on this machine, with their
/// work directories under `<root>/clusters/`, started against `store` (the directory store
/// under the root, or a blob container).
#[derive(Debug, Clone)]
pub struct LocalLauncher {
    /// The provider binary, which doubles as the agent.
    pub exe: PathBuf,
    /// The local platform root: `clusters/` (and the directory store, `store/`) live below it.
    pub root: PathBuf,
    /// The control store the nodes use.
    pub store: crate::store::StoreLocation,
}

impl LocalLauncher {
    pub fn store_dir(root: &Path) -> PathBuf {
        root.join("store")
    }

    pub fn node_dir(root: &Path, cluster: &str, node: &str) -> PathBuf {
        root.join("clusters").join(cluster).join(node)
    }

    pub fn cluster_dir(root: &Path, cluster: &str) -> PathBuf {
        root.join("clusters").join(cluster)
    }

    fn spawn(&self, cluster: &str, node: &str) -> Result<u32, AgentError> {
        let dir = Self::node_dir(&self.root, cluster, node);
        std::fs::create_dir_all(&dir)
            .map_err(|e| AgentError::io("create node directory", &dir, e))?;
        let log_path = dir.join("agent.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| AgentError::io("open agent log", &log_path, e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| AgentError::io("open agent log", &log_path, e))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("agent")
            .arg("--store")
            .arg(&self.store.url)
            .arg("--cluster")
            .arg(cluster)
            .arg("--node")
            .arg(node)
            .arg("--work-dir")
            .arg(&dir)
            .arg("--local-root")
            .arg(&self.root)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Terraform's environment must not leak into nodes: they are not plugins.
            .env_remove("TF_PLUGIN_MAGIC_COOKIE")
            .env_remove("PLUGIN_CLIENT_CERT")
            .env_remove(crate::store::CREDENTIAL_VAR);
        // The store's credential goes in the environment, which only this user can read.
        if let Some(credential) = &self.store.credential {
            cmd.env(crate::store::CREDENTIAL_VAR, credential.to_env());
        }
        detach(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| AgentError::io("start node agent", &self.exe, e))?;
        let pid = child.id();
        // Whoever launched the node reaps it when it exits, so long-lived schedulers do not
        // collect zombies. The node itself is independent of this process.
        let _ = std::thread::Builder::new()
            .name(format!("reap-{node}"))
            .spawn(move || child.wait());
        Ok(pid)
    }
}

/// Starts the child in a new session: no controlling terminal, its own process group, so
/// Ctrl-C in Terraform's terminal never reaches nodes and a node's group can be signalled whole.
///
/// It also makes every inherited descriptor above stderr close on exec. Terraform hands its plugins
/// descriptors without close-on-exec (Terraform 1.0's panicwrap pipes, for one); a node that
/// kept them would hold Terraform's pipes open and make it wait for EOF forever.
#[allow(unsafe_code)]
fn detach(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // Descriptors are marked close-on-exec rather than closed: std reports a failed exec (a
    // missing binary) through a pipe of its own above 2, and closing that pipe turns the error
    // into an abort in the child and a silent hang in the parent.
    // SAFETY: only async-signal-safe calls (setsid, close_range, fcntl) run between fork and
    // exec, and they touch no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) != 0 {
                // Kernels before 5.11 lack the flag.
                for fd in 3..4096 {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            Ok(())
        });
    }
}

impl Launcher for LocalLauncher {
    fn launch(
        &self,
        store: &dyn Store,
        spec: &ClusterSpec,
        count: u32,
    ) -> Result<Vec<String>, AgentError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let ids = reserve_ids(store, &spec.name, count)?;
        let now = records::now_ms();
        for id in &ids {
            // Its host from the start, so another machine sharing the store never takes
            // this node's PID for one of its own.
            let record = NodeRecord {
                host: Some(crate::host::identity()),
                ..NodeRecord::launching(&spec.name, id, now)
            };
            store.put(
                &keys::node(&spec.name, id),
                &records::encode(&record),
                Condition::IfNoneExists,
                None,
            )?;
        }
        for id in &ids {
            let pid = self.spawn(&spec.name, id)?;
            record_pid(store, &spec.name, id, pid)?;
        }
        Ok(ids)
    }

    fn reap(&self, record: &NodeRecord) {
        // A node that joined on its own, or that another machine launched (the store is
        // shared), runs elsewhere: its PID means nothing here.
        if !on_this_host(record) {
            return;
        }
        if let Some(pid) = record.pid {
            // A dead agent's session can outlive it (a setup task in its own process group).
            // Its ID still names that session unless another live process has taken the PID.
            if is_node_process(pid, &record.id) || !is_other_live_process(pid) {
                signal_session(pid, libc::SIGKILL);
            }
        }
        // What its jobs and setup task started in sessions of their own.
        let node_dir = Self::node_dir(&self.root, &record.cluster, &record.id);
        stop_marked(&node_owner(&node_dir), std::time::Duration::ZERO);
        // The node's directory stays: its agent log and setup logs explain why it was lost.
        // Destroying the cluster removes it.
    }

    fn liveness(&self, record: &NodeRecord) -> Liveness {
        if !on_this_host(record) {
            return Liveness::Unknown;
        }
        match record.pid {
            Some(pid) if is_node_process(pid, &record.id) => Liveness::Alive,
            Some(_) => Liveness::Dead,
            None => Liveness::Unknown,
        }
    }
}

/// The launcher of a node that joined on its own (`agent join`): when it schedules, it cannot
/// start nodes on the platform's machines, and it knows nothing of other nodes' processes.
#[derive(Debug, Clone, Default)]
pub struct JoinedLauncher;

impl Launcher for JoinedLauncher {
    fn launch(
        &self,
        _store: &dyn Store,
        spec: &ClusterSpec,
        count: u32,
    ) -> Result<Vec<String>, AgentError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        Err(AgentError::Node {
            node: spec.name.clone(),
            reason: format!(
                "cannot start {count} node(s): this scheduler runs on a node that joined on its own; \
                 the cluster's scale settings should ask for 0 nodes when its nodes join"
            ),
        })
    }

    fn reap(&self, _record: &NodeRecord) {}
}

/// Whether the node's agent runs on this machine, where its PID can be checked: launched by
/// this platform and registered from this host (a node launched here that has not registered
/// yet is ours too).
fn on_this_host(record: &NodeRecord) -> bool {
    !record.joined
        && record
            .host
            .as_ref()
            .is_none_or(|h| *h == crate::host::identity())
}

/// Records the PID of a just-started node unless its agent already did.
fn record_pid(store: &dyn Store, cluster: &str, node: &str, pid: u32) -> Result<(), AgentError> {
    records::update(
        store,
        &keys::node(cluster, node),
        "node record",
        |r: &mut NodeRecord| {
            let unset = r.pid.is_none();
            r.pid.get_or_insert(pid);
            unset
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        is_other_live_process(pid)
    }

    #[test]
    fn a_dead_leaders_session_is_still_reachable() {
        // A session leader that started a child in its own process group, then died.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("sleep 300 & echo $!; exec sleep 300")
            .stdout(Stdio::piped());
        detach(&mut cmd);
        let mut leader = cmd.spawn().unwrap_or_else(|e| panic!("{e}"));
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(
                leader.stdout.take().unwrap_or_else(|| panic!("no stdout")),
            ),
            &mut line,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let child: u32 = line
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let sid = leader.id();
        signal_process(sid, libc::SIGKILL);
        let _ = leader.wait();
        assert!(alive(child), "the child should outlive its leader");
        signal_session(sid, libc::SIGKILL);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while alive(child) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            !alive(child),
            "signal_session did not reach the orphaned child"
        );
    }

    #[test]
    fn marked_processes_are_found_however_they_detach() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let node_dir = dir.path().join("clusters/c/node-1");
        let other = dir.path().join("clusters/c/node-10");
        let pids = dir.path().join("pids");
        // A setsid child and a double-forked one; the starter exits at once.
        let start = |owner: String, file: &str| {
            let status = Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "setsid sleep 300 & echo $! >> {f}; (setsid sh -c 'sleep 300 & echo $! >> {f}' &)",
                    f = pids.join(file).display()
                ))
                .env(OWNER_VAR, owner)
                .status()
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(status.success());
        };
        std::fs::create_dir_all(&pids).unwrap_or_else(|e| panic!("{e}"));
        start(attempt_owner(&node_dir, "u1", 1), "mine");
        start(attempt_owner(&other, "u1", 1), "other");
        let read = |file: &str| -> Vec<u32> {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let text = std::fs::read_to_string(pids.join(file)).unwrap_or_default();
                let found: Vec<u32> = text.lines().filter_map(|l| l.parse().ok()).collect();
                if found.len() == 2 || std::time::Instant::now() > deadline {
                    return found;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        };
        let (mine, others) = (read("mine"), read("other"));
        assert_eq!((mine.len(), others.len()), (2, 2));
        let mut found = marked_processes(&attempt_owner(&node_dir, "u1", 1));
        found.sort_unstable();
        let mut want = mine.clone();
        want.sort_unstable();
        assert_eq!(found, want, "an attempt's processes, and only those");
        stop_marked(&node_owner(&node_dir), std::time::Duration::from_secs(5));
        assert!(
            mine.iter().all(|p| !alive(*p)),
            "the node's processes are gone"
        );
        assert!(others.iter().all(|p| alive(*p)), "node-10 is not node-1");
        stop_marked(
            &cluster_owner(dir.path(), "c"),
            std::time::Duration::from_secs(5),
        );
        assert!(
            others.iter().all(|p| !alive(*p)),
            "the cluster's processes are gone"
        );
    }
}
