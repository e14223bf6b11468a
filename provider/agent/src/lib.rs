//! The node agent: runs on every node of a cluster, prepares it (mounts, setup task), reports
//! its state by heartbeat, and (on one node, elected by lease) schedules and scales the cluster.
//! It knows nothing about Terraform; it talks to the provider only through the control store.
pub mod dispatch;
pub mod execute;
pub mod gpu;
pub mod host;
pub mod join;
pub mod keep;
pub mod launcher;
pub mod measure;
pub mod node;
pub mod placement;
pub mod relay;
pub mod remote;
pub mod scheduler;
pub mod setup;
pub mod storage_mounts;
pub mod store;
pub mod toolkit;

use std::time::Duration;

pub use launcher::{Launcher, Liveness, LocalLauncher};
pub use node::{NodeArgs, run_node, run_node_with};

// How often a node talks to its store. A blob container charges every request and bounds a
// container's request rate, so each node's rate is bounded and stated here; `Rates` computes
// it and `tests/request_rates.rs` counts it. A store with change notifications (a directory)
// wakes nodes and the scheduler when something changes instead of being polled, so work moves
// within milliseconds there, and the periodic passes below are only a safety net.

/// How often a node heartbeats: one write of its record (volatile where the store allows: a
/// heartbeat lost in a crash of the store's machine matters to nobody).
pub const HEARTBEAT: Duration = Duration::from_secs(6);
/// How often every node takes part in the scheduler election (the holder renews its lease,
/// the others try to acquire it: one request either way), and the scheduler reconciles the
/// whole cluster: reaps lost nodes, converges the node count, places every queued job.
pub const RECONCILE: Duration = Duration::from_secs(6);
/// How often, on a store without change notifications, an idle node reads its record for new
/// work, the scheduler lists its queue, and a running attempt reads its job status: the floor
/// of dispatch latency (and of a job's reaction to termination) on such a store.
pub const POLL: Duration = Duration::from_secs(2);
/// A node whose last heartbeat is older than this is lost: three heartbeats missed. A lost node
/// is found within `STALE_AFTER_MS` + [`RECONCILE`] (26 s); when the lost node was the
/// scheduler, its lease runs out (15 s after its last renewal) and another node takes over at
/// its next election and reaps it at once, within 21 s.
pub const STALE_AFTER_MS: u64 = 20_000;
/// A node whose agent is alive but has not heartbeated for this long is lost all the same (it
/// hangs): long enough to ride out a store outage of minutes.
pub const STALE_ALIVE_MS: u64 = 10 * 60_000;
/// A launched node that has not heartbeated within this is lost. A node heartbeats as it
/// registers, at once after its process starts, so this only has to cover the start.
pub const LAUNCH_GRACE_MS: u64 = 30_000;
/// The scheduler lease: the shortest a store grants, so a dead scheduler is replaced quickly.
pub const SCHEDULER_LEASE: Duration = control::store::MIN_LEASE;

/// The intervals that bound a node's requests to its store: [`Rates::STANDARD`] in agents, the
/// same loops sped up in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub heartbeat: Duration,
    pub reconcile: Duration,
    pub poll: Duration,
}

impl Rates {
    pub const STANDARD: Rates = Rates {
        heartbeat: HEARTBEAT,
        reconcile: RECONCILE,
        poll: POLL,
    };

    /// The most requests an idle node makes within `window` on a store without change
    /// notifications, besides the scheduler's (see [`Rates::scheduler_within`]): a read of
    /// its record every poll, a heartbeat write, an election request.
    pub fn idle_within(&self, window: Duration) -> u64 {
        times(window, self.poll) + times(window, self.heartbeat) + times(window, self.reconcile)
    }

    /// The most requests a node running an attempt makes within `window` on a store without
    /// change notifications: it reads its record only to heartbeat (a drain request can wait
    /// that long), takes part in the election, and reads its job status every poll; the
    /// attempt's master also publishes changed metrics at most every
    /// [`control::jobs::LIVE_METRICS_EVERY`]. Starting and ending an attempt cost a fixed
    /// dozen requests on top (take, spec, status, report, free the node, wake the scheduler).
    pub fn busy_within(&self, window: Duration, master: bool) -> u64 {
        let metrics = if master {
            times(window, control::jobs::LIVE_METRICS_EVERY)
        } else {
            0
        };
        2 * times(window, self.heartbeat)
            + times(window, self.reconcile)
            + times(window, self.poll)
            + metrics
    }

    /// What being the scheduler adds within `window` on a store without change notifications,
    /// for a cluster of `nodes` nodes and `jobs` job records, of which `active` have not
    /// ended: the queue listed every poll, and a full pass every reconcile (the spec, every
    /// node record, the cluster status, the queue, the jobs' statuses and active jobs' specs).
    pub fn scheduler_within(&self, window: Duration, nodes: u64, jobs: u64, active: u64) -> u64 {
        let pass = 1 + (1 + nodes) + 1 + 1 + (1 + jobs) + active;
        times(window, self.poll) + times(window, self.reconcile) * pass
    }
}

/// How many times something done every `every` happens within `window` (counting both ends).
fn times(window: Duration, every: Duration) -> u64 {
    let every = every.as_nanos().max(1);
    u64::try_from(window.as_nanos() / every + 1).unwrap_or(u64::MAX)
}

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
