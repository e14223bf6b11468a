//! The master's bridge between `agent rsh` and the store: `mpirun` runs `agent rsh <node> ...`
//! inside the job, where there is no store credential (jobs never see it). For a node on
//! another machine, rsh asks the master's agent over a Unix socket in the attempt's temporary
//! directory; the agent runs the command there through the store ([`crate::remote`]) and
//! streams its output and exit code back. A closed connection (mpirun killed rsh) cancels the
//! command.
//!
//! The protocol: rsh sends one JSON line, `{"node": ..., "command": ...}`; the agent answers
//! with frames of one tag byte (`1` stdout, `2` stderr, `3` exit code, `4` error message), a
//! big-endian `u32` length and that many bytes.
use std::io::{BufRead as _, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use control::Store;
use serde::{Deserialize, Serialize};

use crate::remote::{self, Stream, Target};

/// The environment variable that tells `agent rsh` where the master's relay listens.
pub const SOCKET_VAR: &str = "BATCHAI_RSH_SOCKET";

const OUT: u8 = 1;
const ERR: u8 = 2;
const EXIT: u8 = 3;
const FAILED: u8 = 4;

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    node: String,
    command: String,
}

/// What the relay needs to know about its attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub cluster: String,
    pub job: String,
    pub uid: String,
    pub attempt: u32,
}

/// A listening relay; it stops accepting when dropped (commands in flight finish).
#[derive(Debug)]
pub struct Relay {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Listens at `path` (a socket file it creates, private to this user) for the attempt.
    pub fn start(path: &Path, store: Arc<dyn Store>, attempt: Attempt) -> std::io::Result<Relay> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let store = store.clone();
                            let attempt = attempt.clone();
                            std::thread::spawn(move || serve(conn, store.as_ref(), &attempt));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(std::time::Duration::from_millis(20));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "rsh relay: accept");
                            std::thread::sleep(std::time::Duration::from_millis(200));
                        }
                    }
                }
            });
        }
        Ok(Relay {
            path: path.to_path_buf(),
            stop,
        })
    }
}

impl Relay {
    /// Where it listens (for `agent rsh`, in [`SOCKET_VAR`]).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn frame(conn: &mut UnixStream, tag: u8, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    conn.write_all(&[tag])?;
    conn.write_all(&len.to_be_bytes())?;
    conn.write_all(&bytes[..len as usize])
}

/// One rsh connection: its request, run through the store, answered in frames.
fn serve(conn: UnixStream, store: &dyn Store, attempt: &Attempt) {
    let Ok(reader) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut conn = conn;
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            let _ = frame(
                &mut conn,
                FAILED,
                format!("bad rsh request: {e}").as_bytes(),
            );
            return;
        }
    };
    // rsh sends nothing more: end of file means it went away (mpirun stopped it).
    let gone = Arc::new(AtomicBool::new(false));
    {
        let gone = gone.clone();
        std::thread::spawn(move || {
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
            gone.store(true, Ordering::SeqCst);
        });
    }
    let target = Target {
        cluster: &attempt.cluster,
        job: &attempt.job,
        uid: &attempt.uid,
        attempt: attempt.attempt,
        node: &request.node,
    };
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let result = remote::run(
        store,
        &target,
        &request.command,
        &mut |stream, bytes| {
            let tag = match stream {
                Stream::Out => OUT,
                Stream::Err => ERR,
            };
            let _ = frame(&mut writer, tag, bytes);
        },
        &|| gone.load(Ordering::SeqCst),
    );
    let _ = match result {
        Ok(code) => frame(&mut conn, EXIT, &code.to_be_bytes()),
        Err(e) => frame(&mut conn, FAILED, e.to_string().as_bytes()),
    };
}

/// Why `agent rsh` could not run its command through the relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("reach the master's relay at {path}: {source}")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the master's relay went away before the command on node {node} ended")]
    Lost { node: String },
    #[error("{0}")]
    Failed(String),
}

/// `agent rsh`'s side: runs `command` on `node` through the relay at `socket`, passing its
/// output to this process's stdout and stderr, and returns its exit code.
pub fn rsh(socket: &Path, node: &str, command: &str) -> Result<i32, RelayError> {
    let mut conn = UnixStream::connect(socket).map_err(|source| RelayError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    let request = serde_json::to_string(&Request {
        node: node.to_owned(),
        command: command.to_owned(),
    })
    .unwrap_or_default();
    conn.write_all(format!("{request}\n").as_bytes())
        .map_err(|source| RelayError::Connect {
            path: socket.display().to_string(),
            source,
        })?;
    let lost = || RelayError::Lost {
        node: node.to_owned(),
    };
    loop {
        let mut head = [0u8; 5];
        conn.read_exact(&mut head).map_err(|_| lost())?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len];
        conn.read_exact(&mut body).map_err(|_| lost())?;
        match head[0] {
            OUT => remote::to_stdio(Stream::Out, &body),
            ERR => remote::to_stdio(Stream::Err, &body),
            EXIT => {
                let code: [u8; 4] = body.as_slice().try_into().map_err(|_| lost())?;
                return Ok(i32::from_be_bytes(code));
            }
            _ => {
                return Err(RelayError::Failed(
                    String::from_utf8_lossy(&body).into_owned(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[test]
    fn rsh_through_the_relay_runs_on_the_node() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store: Arc<dyn Store> = Arc::new(
            control::DirStore::open(dir.path().join("store")).unwrap_or_else(|e| panic!("{e}")),
        );
        let attempt = Attempt {
            cluster: "c".into(),
            job: "j".into(),
            uid: "u".into(),
            attempt: 2,
        };
        let socket = dir.path().join("rsh.sock");
        let _relay =
            Relay::start(&socket, store.clone(), attempt).unwrap_or_else(|e| panic!("{e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let node = {
            let (store, stop) = (store.clone(), stop.clone());
            let marker = dir.path().join("ran-here");
            std::thread::spawn(move || {
                let target = Target {
                    cluster: "c",
                    job: "j",
                    uid: "u",
                    attempt: 2,
                    node: "node-9",
                };
                let env = BTreeMap::from([("MARKER".to_owned(), marker.display().to_string())]);
                let mut server = remote::Server::new(&target, env, std::env::temp_dir());
                while !stop.load(Ordering::SeqCst) {
                    server.poll(&store);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        let code = rsh(&socket, "node-9", "touch \"$MARKER\"; exit 3");
        stop.store(true, Ordering::SeqCst);
        let _ = node.join();
        assert_eq!(code.ok(), Some(3));
        assert!(dir.path().join("ran-here").exists());
    }
}
