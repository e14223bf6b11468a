//! The node agent: runs on every node of a cluster, prepares it (mounts, setup task), reports
//! its state by heartbeat, and (on one node, elected by lease) schedules and scales the cluster.
//! It knows nothing about Terraform; it talks to the provider only through the control store.
pub mod dispatch;
pub mod execute;
pub mod gpu;
pub mod host;
pub mod join;
pub mod launcher;
pub mod node;
pub mod placement;
pub mod relay;
pub mod remote;
pub mod scheduler;
pub mod setup;
pub mod store;
pub mod toolkit;

use std::time::Duration;

pub use launcher::{Launcher, Liveness, LocalLauncher};
pub use node::{NodeArgs, run_node};

/// How often a node looks for new work and the scheduler for queued jobs: the floor of dispatch
/// latency. Both are single small reads.
pub const TICK: Duration = Duration::from_millis(50);
/// How often a node heartbeats and the scheduler reconciles the whole cluster.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node whose last heartbeat is older than this is lost.
pub const STALE_AFTER_MS: u64 = 10_000;
/// A node whose agent is alive but has not heartbeated for this long is lost all the same (it
/// hangs): long enough to ride out a store outage of minutes.
pub const STALE_ALIVE_MS: u64 = 10 * 60_000;
/// A launched node that has not heartbeated within this is lost.
pub const LAUNCH_GRACE_MS: u64 = 30_000;
/// The scheduler lease: the shortest a store grants, so a dead scheduler is replaced quickly.
pub const SCHEDULER_LEASE: Duration = control::store::MIN_LEASE;

/// The longest a node waits between two tries of a store operation that must not be dropped.
pub const STORE_RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a node that keeps failing to reach its store says so again.
const STORE_RETRY_REPORT: Duration = Duration::from_secs(30);

/// Runs `op` until it gets through the store: a store outage (a full or read-only disk, a blob
/// service that is down) delays what the node has to say, it never drops it. Conflicts and
/// missing records are `op`'s to handle; any other error (a record that cannot be decoded, a
/// key or lease the store refuses) is returned at once, since no retry can fix it.
pub fn until_stored<T>(
    what: &str,
    mut op: impl FnMut() -> Result<T, control::records::UpdateError>,
) -> Result<T, control::records::UpdateError> {
    let started = std::time::Instant::now();
    let mut nap = Duration::from_millis(100);
    let mut said = None::<std::time::Instant>;
    loop {
        match op() {
            // Only I/O fails for a while and comes back; a refused key or lease never will.
            Err(control::records::UpdateError::Store(e @ control::StoreError::Io { .. })) => {
                if said.is_none_or(|t| t.elapsed() >= STORE_RETRY_REPORT) {
                    tracing::warn!(
                        error = %e,
                        failing_for_s = started.elapsed().as_secs(),
                        "{what}: the control store fails; trying again until it is back"
                    );
                    said = Some(std::time::Instant::now());
                }
                std::thread::sleep(nap);
                nap = (nap * 2).min(STORE_RETRY_MAX);
            }
            other => {
                if said.is_some() {
                    tracing::info!(
                        after_s = started.elapsed().as_secs(),
                        "{what}: the control store is back"
                    );
                }
                return other;
            }
        }
    }
}

/// Failures of the agent and of the scheduling functions the provider shares.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] control::StoreError),
    #[error(transparent)]
    Record(#[from] control::records::RecordError),
    #[error(transparent)]
    Update(#[from] control::records::UpdateError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("node {node}: {reason}")]
    Node { node: String, reason: String },
    #[error("{reason}")]
    Config { reason: String },
}

impl AgentError {
    /// A record that does not decode (see [`control::records::RecordError::is_corrupt`]).
    pub fn is_corrupt(&self) -> bool {
        match self {
            Self::Record(e) => e.is_corrupt(),
            Self::Update(e) => e.is_corrupt(),
            _ => false,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl AsRef<std::path::Path>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            op,
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
