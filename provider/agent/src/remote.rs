//! Running a command on another node through the control store: how `mpirun` on a job's master
//! starts its daemons on nodes of other machines, which share nothing with it but the store.
//! The master's agent writes an exec request under the job (`exec/<node>/<id>`); the node's
//! agent, holding its part of the attempt, runs it with its rank environment, appends its output
//! to logs beside the request and records the exit code; the master streams the logs back to
//! `agent rsh` (through [`crate::relay`]) and ends with that code. Only the daemons' start goes
//! this way: MPI's own traffic flows directly between the nodes.
use std::collections::BTreeMap;
use std::io::{Read as _, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use control::records::{self, keys};
use control::{Condition, Store};
use serde::{Deserialize, Serialize};

/// How long a request waits for its node to pick it up.
pub const PICKUP_WAIT: Duration = Duration::from_secs(60);
/// How long a cancelled command has to end before the master gives up on it.
const CANCEL_WAIT: Duration = Duration::from_secs(10);
/// How often the requester looks at the store: often while the command starts and talks,
/// backing off to [`POLL_MAX`] while it runs quietly (an MPI daemon lives as long as its job,
/// and a remote store charges by request).
const POLL_MIN: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_secs(1);

/// What a remote command is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ExecState {
    Requested,
    Running,
    Exited { code: i32 },
    Failed { message: String },
}

/// A command for one node, in one attempt of one submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRecord {
    pub format: u32,
    pub uid: String,
    pub attempt: u32,
    pub command: String,
    #[serde(flatten)]
    pub state: ExecState,
    /// Set by the requester when its caller went away: the node stops the command.
    #[serde(default)]
    pub kill: bool,
}

/// The prefix of a node's exec requests for a job.
pub fn requests_prefix(cluster: &str, job: &str, node: &str) -> String {
    format!("{}{job}/exec/{node}/", keys::jobs_prefix(cluster))
}

fn output_key(request: &str, stream: Stream) -> String {
    match stream {
        Stream::Out => format!("{request}.out"),
        Stream::Err => format!("{request}.err"),
    }
}

/// Which of a command's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

/// Why a remote command could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("node {node} did not pick up the command within {} s; its agent log says why", PICKUP_WAIT.as_secs())]
    NotPickedUp { node: String },
    #[error("run on node {node}: {message}")]
    Failed { node: String, message: String },
    #[error("run on node {node}: {source}")]
    Store {
        node: String,
        #[source]
        source: crate::AgentError,
    },
}

/// Where a request runs.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub cluster: &'a str,
    pub job: &'a str,
    pub uid: &'a str,
    pub attempt: u32,
    pub node: &'a str,
}

/// Runs `command` on the target node and returns its exit code, passing its output to `output`
/// as it arrives. `cancelled` is asked while it runs; once it says yes the node is told to stop
/// the command, and the wait for it is bounded.
pub fn run(
    store: &dyn Store,
    target: &Target<'_>,
    command: &str,
    output: &mut dyn FnMut(Stream, &[u8]),
    cancelled: &dyn Fn() -> bool,
) -> Result<i32, RemoteError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let store_error = |source: crate::AgentError| RemoteError::Store {
        node: target.node.to_owned(),
        source,
    };
    let key = format!(
        "{}{}-{}-{}",
        requests_prefix(target.cluster, target.job, target.node),
        target.attempt,
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let record = ExecRecord {
        format: records::FORMAT,
        uid: target.uid.to_owned(),
        attempt: target.attempt,
        command: command.to_owned(),
        state: ExecState::Requested,
        kill: false,
    };
    store
        .put(
            &key,
            &records::encode(&record),
            Condition::IfNoneExists,
            None,
        )
        .map_err(|e| store_error(e.into()))?;
    let result = follow(store, target, &key, output, cancelled);
    for k in [
        output_key(&key, Stream::Out),
        output_key(&key, Stream::Err),
        key,
    ] {
        let _ = store.delete(&k, Condition::Always, None);
    }
    result
}

fn follow(
    store: &dyn Store,
    target: &Target<'_>,
    key: &str,
    output: &mut dyn FnMut(Stream, &[u8]),
    cancelled: &dyn Fn() -> bool,
) -> Result<i32, RemoteError> {
    let store_error = |source: crate::AgentError| RemoteError::Store {
        node: target.node.to_owned(),
        source,
    };
    let started = Instant::now();
    let mut offsets = [0u64; 2];
    let mut kill_since: Option<Instant> = None;
    let mut nap = POLL_MIN;
    loop {
        let before = offsets;
        // Output first, then the state: output appended before the exit was recorded is
        // never lost.
        let state = match store.get(key).map_err(|e| store_error(e.into()))? {
            Some(v) => records::decode::<ExecRecord>("exec request", &v.data)
                .map_err(|e| store_error(e.into()))?,
            None => {
                return Err(RemoteError::Failed {
                    node: target.node.to_owned(),
                    message: "the request was removed".to_owned(),
                });
            }
        };
        for (i, stream) in [Stream::Out, Stream::Err].into_iter().enumerate() {
            match store.read_log(&output_key(key, stream), offsets[i]) {
                Ok(bytes) => {
                    offsets[i] += bytes.len() as u64;
                    if !bytes.is_empty() {
                        output(stream, &bytes);
                    }
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(store_error(e.into())),
            }
        }
        match state.state {
            ExecState::Exited { code } => {
                // A last look: what was appended between the read and the exit record.
                for (i, stream) in [Stream::Out, Stream::Err].into_iter().enumerate() {
                    if let Ok(bytes) = store.read_log(&output_key(key, stream), offsets[i])
                        && !bytes.is_empty()
                    {
                        output(stream, &bytes);
                    }
                }
                return Ok(code);
            }
            ExecState::Failed { message } => {
                return Err(RemoteError::Failed {
                    node: target.node.to_owned(),
                    message,
                });
            }
            ExecState::Requested if started.elapsed() > PICKUP_WAIT => {
                return Err(RemoteError::NotPickedUp {
                    node: target.node.to_owned(),
                });
            }
            ExecState::Requested | ExecState::Running => {}
        }
        if kill_since.is_none() && cancelled() {
            kill_since = Some(Instant::now());
            let _ = records::update(store, key, "exec request", |r: &mut ExecRecord| {
                let ask = !r.kill;
                r.kill = true;
                ask
            });
        }
        if kill_since.is_some_and(|t| t.elapsed() > CANCEL_WAIT) {
            return Err(RemoteError::Failed {
                node: target.node.to_owned(),
                message: format!(
                    "the command did not stop within {} s of being cancelled",
                    CANCEL_WAIT.as_secs()
                ),
            });
        }
        nap = if offsets == before && state.state == ExecState::Running {
            (nap * 2).min(POLL_MAX)
        } else {
            POLL_MIN
        };
        std::thread::sleep(nap);
    }
}

/// A command this node runs for the master.
struct Running {
    key: String,
    child: Child,
    pumps: Vec<std::thread::JoinHandle<()>>,
    killed: bool,
}

/// The node's side: runs the requests of its attempt with the node's part of the attempt's
/// environment, in its working directory. Every command starts in a process group of its own
/// and carries the attempt's owner mark, so the attempt's end stops whatever it left.
pub struct Server {
    prefix: String,
    uid: String,
    attempt: u32,
    env: BTreeMap<String, String>,
    cwd: PathBuf,
    running: Vec<Running>,
    /// Requests this server has taken, so a request is never run twice.
    taken: std::collections::BTreeSet<String>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("prefix", &self.prefix)
            .field("attempt", &self.attempt)
            .field("running", &self.running.len())
            .finish()
    }
}

impl Server {
    pub fn new(target: &Target<'_>, env: BTreeMap<String, String>, cwd: PathBuf) -> Self {
        Self {
            prefix: requests_prefix(target.cluster, target.job, target.node),
            uid: target.uid.to_owned(),
            attempt: target.attempt,
            env,
            cwd,
            running: Vec::new(),
            taken: Default::default(),
        }
    }

    /// One look at the store: starts new requests, stops cancelled ones, records the exit of
    /// those that ended. Store failures are left for the next look.
    pub fn poll(&mut self, store: &std::sync::Arc<dyn Store>) {
        if let Ok(keys) = store.list(&self.prefix) {
            for key in keys {
                if key.ends_with(".out") || key.ends_with(".err") || self.taken.contains(&key) {
                    continue;
                }
                self.start(store, key);
            }
        }
        let mut still = Vec::new();
        for mut r in std::mem::take(&mut self.running) {
            let kill = store
                .get(&r.key)
                .ok()
                .flatten()
                .and_then(|v| records::decode::<ExecRecord>("exec request", &v.data).ok())
                .is_none_or(|rec| rec.kill);
            if kill && !r.killed {
                crate::launcher::signal_group(r.child.id(), libc::SIGKILL);
                r.killed = true;
            }
            match r.child.try_wait() {
                Ok(Some(status)) => {
                    for pump in r.pumps.drain(..) {
                        let _ = pump.join();
                    }
                    let code = status.code().unwrap_or(128 + 9);
                    let _ = records::update(
                        store.as_ref(),
                        &r.key,
                        "exec request",
                        |rec: &mut ExecRecord| {
                            rec.state = ExecState::Exited { code };
                            true
                        },
                    );
                }
                _ => still.push(r),
            }
        }
        self.running = still;
    }

    fn start(&mut self, store: &std::sync::Arc<dyn Store>, key: String) {
        let Ok(Some(value)) = store.get(&key) else {
            return;
        };
        let Ok(request) = records::decode::<ExecRecord>("exec request", &value.data) else {
            return;
        };
        if request.uid != self.uid
            || request.attempt != self.attempt
            || request.state != ExecState::Requested
        {
            return;
        }
        // Taken with compare-and-swap: a request runs once, whatever happens to this look.
        let mut taken = request.clone();
        taken.state = ExecState::Running;
        if store
            .put(
                &key,
                &records::encode(&taken),
                Condition::IfMatch(value.etag),
                None,
            )
            .is_err()
        {
            return;
        }
        self.taken.insert(key.clone());
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&request.command)
            .current_dir(&self.cwd)
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        match cmd.spawn() {
            Ok(mut child) => {
                let mut pumps = Vec::new();
                let out = child
                    .stdout
                    .take()
                    .map(|s| (Box::new(s) as Box<dyn std::io::Read + Send>, Stream::Out));
                let err = child
                    .stderr
                    .take()
                    .map(|s| (Box::new(s) as Box<dyn std::io::Read + Send>, Stream::Err));
                for (mut pipe, stream) in [out, err].into_iter().flatten() {
                    let store = store.clone();
                    let log = output_key(&key, stream);
                    pumps.push(std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = pipe.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            if let Err(e) = store.append(&log, &buf[..n]) {
                                tracing::warn!(error = %e, "pass a remote command's output on");
                            }
                        }
                    }));
                }
                self.running.push(Running {
                    key,
                    child,
                    pumps,
                    killed: false,
                });
            }
            Err(e) => {
                let _ = records::update(
                    store.as_ref(),
                    &key,
                    "exec request",
                    |r: &mut ExecRecord| {
                        r.state = ExecState::Failed {
                            message: format!("start the command: {e}"),
                        };
                        true
                    },
                );
            }
        }
    }

    /// Stops every command still running (the attempt ended).
    pub fn stop_all(&mut self) {
        for mut r in self.running.drain(..) {
            crate::launcher::signal_group(r.child.id(), libc::SIGKILL);
            let _ = r.child.wait();
            for pump in r.pumps.drain(..) {
                let _ = pump.join();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Passes a remote command's output to this process's stdout and stderr.
pub fn to_stdio(stream: Stream, bytes: &[u8]) {
    let _ = match stream {
        Stream::Out => std::io::stdout().write_all(bytes),
        Stream::Err => std::io::stderr().write_all(bytes),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    fn target() -> Target<'static> {
        Target {
            cluster: "c",
            job: "j",
            uid: "u1",
            attempt: 1,
            node: "node-1",
        }
    }

    /// A node serving requests on a thread until told to stop.
    fn serve(
        store: Arc<dyn Store>,
        env: BTreeMap<String, String>,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut server = Server::new(&target(), env, std::env::temp_dir());
            while !stop.load(Ordering::SeqCst) {
                server.poll(&store);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    }

    #[test]
    fn a_command_runs_on_the_node_with_its_environment_and_its_output_and_code_come_back() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store: Arc<dyn Store> =
            Arc::new(control::DirStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}")));
        let stop = Arc::new(AtomicBool::new(false));
        let env = BTreeMap::from([("WHERE".to_owned(), "node-1".to_owned())]);
        let node = serve(store.clone(), env, stop.clone());
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = run(
            store.as_ref(),
            &target(),
            "echo on $WHERE; echo oops >&2; exit 7",
            &mut |stream, bytes| match stream {
                Stream::Out => out.extend_from_slice(bytes),
                Stream::Err => err.extend_from_slice(bytes),
            },
            &|| false,
        );
        stop.store(true, Ordering::SeqCst);
        let _ = node.join();
        assert_eq!(code.ok(), Some(7));
        assert_eq!(String::from_utf8_lossy(&out), "on node-1\n");
        assert_eq!(String::from_utf8_lossy(&err), "oops\n");
        assert!(
            store
                .list(&requests_prefix("c", "j", "node-1"))
                .unwrap_or_default()
                .is_empty(),
            "the request and its logs are removed"
        );
    }

    #[test]
    fn a_cancelled_command_is_stopped_on_the_node() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store: Arc<dyn Store> =
            Arc::new(control::DirStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}")));
        let stop = Arc::new(AtomicBool::new(false));
        let node = serve(store.clone(), BTreeMap::new(), stop.clone());
        let started = Instant::now();
        let code = run(
            store.as_ref(),
            &target(),
            "sleep 300",
            &mut |_, _| {},
            &|| started.elapsed() > Duration::from_millis(300),
        );
        stop.store(true, Ordering::SeqCst);
        let _ = node.join();
        assert_eq!(code.ok(), Some(128 + 9), "killed, not waited for");
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn requests_of_another_attempt_are_left_alone() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store: Arc<dyn Store> =
            Arc::new(control::DirStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}")));
        let key = format!("{}old", requests_prefix("c", "j", "node-1"));
        let stale = ExecRecord {
            format: records::FORMAT,
            uid: "u1".to_owned(),
            attempt: 0,
            command: "touch should-not-exist".to_owned(),
            state: ExecState::Requested,
            kill: false,
        };
        store
            .put(&key, &records::encode(&stale), Condition::Always, None)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut server = Server::new(&target(), BTreeMap::new(), dir.path().to_path_buf());
        server.poll(&store);
        assert!(!dir.path().join("should-not-exist").exists());
        let still: ExecRecord = store
            .get(&key)
            .ok()
            .flatten()
            .and_then(|v| records::decode("exec request", &v.data).ok())
            .unwrap_or_else(|| panic!("gone"));
        assert_eq!(still.state, ExecState::Requested);
    }
}
