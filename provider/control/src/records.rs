//! The records provider and agents exchange through the store, their keys, and the versioned
//! envelope that lets an old agent tell a record is newer than it understands.
use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The record format this build writes and the newest it reads.
pub const FORMAT: u32 = 1;

/// A record could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("decode {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "decode {what}: format {found} is newer than this build understands ({FORMAT}); upgrade the provider"
    )]
    TooNew { what: &'static str, found: u32 },
}

impl RecordError {
    /// The bytes are not a record at all (truncated, garbage): the record can be written off.
    /// A record from a newer version is not corrupt and must be left alone.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Self::Json { .. })
    }
}

impl UpdateError {
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Self::Record(e) if e.is_corrupt())
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    format: u32,
}

/// Decodes a record, refusing formats newer than [`FORMAT`].
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, RecordError> {
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|source| RecordError::Json { what, source })?;
    if envelope.format > FORMAT {
        return Err(RecordError::TooNew {
            what,
            found: envelope.format,
        });
    }
    serde_json::from_slice(bytes).map_err(|source| RecordError::Json { what, source })
}

/// Encodes a record; records carry their own `format` field.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(record).unwrap_or_default()
}

/// Reading or rewriting a record failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Store(#[from] crate::StoreError),
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Applies `change` to the record at `key` with compare-and-swap, retrying when another writer
/// got there first. `change` returns false to leave the record as it is. `Ok(None)` when there
/// is no record (or it disappears meanwhile); otherwise the record as it now stands.
pub fn update<T: Serialize + DeserializeOwned>(
    store: &dyn crate::Store,
    key: &str,
    what: &'static str,
    mut change: impl FnMut(&mut T) -> bool,
) -> Result<Option<T>, UpdateError> {
    loop {
        let Some(current) = store.get(key)? else {
            return Ok(None);
        };
        let mut record: T = decode(what, &current.data)?;
        if !change(&mut record) {
            return Ok(Some(record));
        }
        match store.put(
            key,
            &encode(&record),
            crate::Condition::IfMatch(current.etag),
            None,
        ) {
            Ok(_) => return Ok(Some(record)),
            Err(e) if e.is_conflict() => continue,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Milliseconds since the Unix epoch: the clock every process on a platform shares.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Store keys. All cluster state lives under `clusters/<name>/`.
pub mod keys {
    pub fn cluster_prefix(cluster: &str) -> String {
        format!("clusters/{cluster}/")
    }
    pub fn spec(cluster: &str) -> String {
        format!("clusters/{cluster}/spec")
    }
    pub fn status(cluster: &str) -> String {
        format!("clusters/{cluster}/status")
    }
    /// The key whose lease elects the cluster's scheduler.
    pub fn scheduler(cluster: &str) -> String {
        format!("clusters/{cluster}/scheduler")
    }
    pub fn nodes_prefix(cluster: &str) -> String {
        format!("clusters/{cluster}/nodes/")
    }
    pub fn node(cluster: &str, node: &str) -> String {
        format!("clusters/{cluster}/nodes/{node}")
    }
    pub fn jobs_prefix(cluster: &str) -> String {
        format!("clusters/{cluster}/jobs/")
    }
    pub fn job_spec(cluster: &str, job: &str) -> String {
        format!("clusters/{cluster}/jobs/{job}/spec")
    }
    pub fn job_status(cluster: &str, job: &str) -> String {
        format!("clusters/{cluster}/jobs/{job}/status")
    }
    /// A job's secrets, apart from its spec so that listing or reading specs never sees them.
    pub fn job_secrets(cluster: &str, job: &str) -> String {
        format!("clusters/{cluster}/jobs/{job}/secrets")
    }
    /// The storage account keys of a job's Azure Storage mounts, by `relative_mount_path`
    /// (apart from its secrets, which become environment variables).
    pub fn job_mount_secrets(cluster: &str, job: &str) -> String {
        format!("clusters/{cluster}/jobs/{job}/mount-secrets")
    }
    /// Wake-up marks for the scheduler: one per job that has just become queued. The queue
    /// itself is the job statuses; a lost mark only delays dispatch to the next full pass.
    pub fn queue_prefix(cluster: &str) -> String {
        format!("clusters/{cluster}/queue/")
    }
    pub fn queue_mark(cluster: &str, job: &str) -> String {
        format!("clusters/{cluster}/queue/{job}")
    }
    /// What the provider keeps beside a cluster's spec: its configuration, for import.
    pub fn cluster_resource(cluster: &str) -> String {
        format!("clusters/{cluster}/resource")
    }
    /// A cluster's setup-task secrets, apart from its spec, which every node and every
    /// scheduling pass reads: only a node preparing itself reads them.
    pub fn cluster_secrets(cluster: &str) -> String {
        format!("clusters/{cluster}/secrets")
    }
    /// What the provider keeps beside a job's spec: its configuration (without secrets).
    pub fn job_resource(cluster: &str, job: &str) -> String {
        format!("clusters/{cluster}/jobs/{job}/resource")
    }
    /// A running job's metrics so far, as its master node publishes them.
    pub fn job_metrics(cluster: &str, job: &str) -> String {
        format!("clusters/{cluster}/jobs/{job}/metrics")
    }
    /// The prefix of the rank environments a job's nodes publish for the master's `mpirun`.
    pub fn rank_envs_prefix(cluster: &str, job: &str) -> String {
        format!("clusters/{cluster}/jobs/{job}/ranks/")
    }
    pub fn rank_env(cluster: &str, job: &str, node: &str) -> String {
        format!("clusters/{cluster}/jobs/{job}/ranks/{node}")
    }
    pub fn file_servers_prefix() -> &'static str {
        "fileservers/"
    }
    pub fn file_server(name: &str) -> String {
        format!("fileservers/{name}")
    }
    /// The machine-wide GPU allocation of the local platform.
    pub const GPU_ALLOCATIONS: &str = "local/gpus";
}

/// What happens to work on a node that is removed (Batch AI's `nodeDeallocationOption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeallocationOption {
    /// Stop running work and give it back to the queue.
    #[default]
    Requeue,
    /// Stop running work and mark it terminated.
    Terminate,
    /// Let running work finish; accept nothing new.
    Waitforjobcompletion,
}

impl DeallocationOption {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "requeue" => Some(Self::Requeue),
            "terminate" => Some(Self::Terminate),
            "waitforjobcompletion" => Some(Self::Waitforjobcompletion),
            _ => None,
        }
    }
}

/// How many nodes a cluster has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    Manual {
        target_node_count: u32,
        node_deallocation_option: DeallocationOption,
    },
    Auto {
        minimum_node_count: u32,
        maximum_node_count: u32,
        initial_node_count: u32,
        /// Seconds without queued or running work before the cluster shrinks to its minimum.
        idle_timeout_secs: u64,
    },
}

impl Scale {
    /// The node count these settings start with.
    pub fn initial_count(&self) -> u32 {
        match self {
            Self::Manual {
                target_node_count, ..
            } => *target_node_count,
            Self::Auto {
                minimum_node_count,
                maximum_node_count,
                initial_node_count,
                ..
            } => (*initial_node_count).clamp(*minimum_node_count, *maximum_node_count),
        }
    }

    pub fn deallocation(&self) -> DeallocationOption {
        match self {
            Self::Manual {
                node_deallocation_option,
                ..
            } => *node_deallocation_option,
            Self::Auto { .. } => DeallocationOption::Requeue,
        }
    }
}

/// The cluster's setup task, run on every node before it becomes idle (and again after the node
/// restarts, so it must be idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupTask {
    pub command_line: String,
    pub environment_variables: BTreeMap<String, String>,
    /// Secrets in the spec itself, as providers before `keys::cluster_secrets` wrote them;
    /// read for clusters they created, never filled now. Always written (empty), since agents
    /// of those versions require the field.
    #[serde(default)]
    pub secrets: crate::secrets::Secrets,
    /// Where stdout/stderr go; a per-cluster unique segment is added below it.
    pub std_out_err_path_prefix: Option<String>,
}

/// Where a mount's content comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum MountSource {
    /// A directory on this machine (a file server's export or a host directory).
    Directory { path: String },
    /// A command that mounts at the path appended to it (`unmanaged_file_system`, and a file
    /// server's NFS export on Azure).
    Command { mount_command: String },
    /// One revision (branch, tag, commit or `HEAD`) of a Git repository, fetched without its
    /// history into the mount path (`git_repository`).
    Git { url: String, revision: String },
    /// An Azure Files share over SMB 3 (`azure_file_share`, Azure only). The account key is
    /// not here: it is in the cluster's (or the job's) secrets record, under the mount's
    /// `relative_mount_path`.
    AzureFileShare {
        /// `https://<account>.file.core.windows.net/<share>[/<directory>]`.
        url: String,
        account: String,
        directory_mode: String,
        file_mode: String,
    },
    /// A blob container mounted with blobfuse2 (`azure_blob_file_system`, Azure only), with
    /// the account key from the secrets record (as for a file share) or, when `identity`, the
    /// node's managed identity, which the platform gave data access to the container.
    AzureBlob {
        account: String,
        container: String,
        /// The account's blob endpoint, `https://<account>.blob.core.windows.net/`.
        endpoint: String,
        /// Extra blobfuse2 command-line options.
        options: String,
        identity: bool,
    },
}

impl MountSource {
    /// Whether the mount needs a key from a secrets record.
    pub fn needs_key(&self) -> bool {
        matches!(
            self,
            Self::AzureFileShare { .. }
                | Self::AzureBlob {
                    identity: false,
                    ..
                }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Below `$AZ_BATCHAI_MOUNT_ROOT`; validated not to escape it.
    pub relative_mount_path: String,
    pub source: MountSource,
}

/// The cluster as its agents need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    pub format: u32,
    pub name: String,
    /// Unique per creation: separates the logs of a re-created cluster from the old one's.
    pub uid: String,
    pub vm_size: String,
    pub vm_priority: String,
    pub scale: Scale,
    pub setup_task: Option<SetupTask>,
    pub mounts: Vec<Mount>,
    pub gpus_per_node: u32,
    /// Set first when the cluster is destroyed: schedulers stop launching nodes.
    #[serde(default)]
    pub deleting: bool,
    /// Counts changes of `scale`: a scheduler that sees a status of an older generation starts
    /// over from the new settings' initial size, so a pass between the spec's change and the
    /// status's never acts on new settings with the old status.
    #[serde(default)]
    pub scale_generation: u64,
}

/// The lifecycle of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Its process is being started; no heartbeat yet.
    Launching,
    /// Mounting and running the setup task.
    Preparing,
    Idle,
    Running,
    /// Setup failed (see `errors`); it takes no work.
    Unusable,
    /// Draining before it goes away.
    Leaving,
}

/// A problem on a node, surfaced in the cluster's `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeError {
    pub code: ErrorCode,
    pub message: String,
    pub details: BTreeMap<String, String>,
}

/// Declares [`ErrorCode`] from one list, so that a variant, its stored name and its parsing
/// cannot disagree.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// What kind of problem a [`NodeError`] is, stored (and shown to users) as the variant's
        /// name.
        ///
        /// A code this build does not know, written by a newer agent or provider, reads as
        /// [`ErrorCode::Other`] and is written back unchanged. New codes do not bump the record
        /// `format`, and a record that does not decode is written off as corrupt, so an unknown
        /// code must not fail its record; `#[serde(other)]` would keep the record but lose the
        /// code's text.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $name,)*
            /// A code from a newer writer, kept as written.
            Other(String),
        }

        impl ErrorCode {
            /// The code as stored and shown to users.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$name => stringify!($name),)*
                    Self::Other(code) => code,
                }
            }

            fn from_name(name: &str) -> Self {
                match name {
                    $(stringify!($name) => Self::$name,)*
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        #[cfg(test)]
        const KNOWN_CODES: &[ErrorCode] = &[$(ErrorCode::$name,)*];
    };
}

error_codes! {
    /// A job process exited with a non-zero code or a signal, or could not be started.
    JobFailed,
    /// The job preparation task, a job directory or a job mount failed.
    JobPreparationFailed,
    /// The job ran past its `max_wall_clock_time`.
    JobWallClockTimeExceeded,
    /// A cluster or job mount could not be made.
    MountFailed,
    /// The job was terminated on request (destroy, or a node drained with `terminate`).
    JobTerminated,
    /// The job's container image reference is not valid.
    InvalidContainerImage,
    /// A job's records could not be read and the job was written off.
    CorruptRecord,
    /// No node of the job's cluster could prepare for longer than `max_unschedulable_time`.
    ClusterUnusable,
    /// The job needs more nodes than its cluster can ever have.
    NodeCountUnattainable,
    /// A node's setup task failed.
    SetupTaskFailed,
    /// A job path leaves its mount root.
    InvalidJobPath,
    /// The job asks for a container and the node has no container runtime.
    ContainerRuntimeUnavailable,
    /// The node running the job was deallocated with `terminate`.
    NodeDeallocated,
    /// The platform could not add the nodes the scale settings ask for (on Azure an ARM error
    /// such as `AllocationFailed`, `SkuNotAvailable` or a quota); tried again every pass.
    LaunchFailed,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(Self::from_name(&name))
    }
}

/// A node, written by its agent (heartbeats, state) and by schedulers (drain requests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub format: u32,
    pub id: String,
    pub cluster: String,
    pub state: NodeState,
    /// The agent's process on the local platform.
    pub pid: Option<u32>,
    pub gpus: Vec<u32>,
    pub launched_at_ms: u64,
    /// Zero until the agent's first heartbeat.
    pub last_heartbeat_ms: u64,
    pub errors: Vec<NodeError>,
    /// Set by the scheduler to remove the node; the agent drains and deletes its record.
    #[serde(default)]
    pub drain_requested: bool,
    /// The job attempt this node is part of, set by the scheduler, cleared by the node.
    #[serde(default)]
    pub job: Option<crate::jobs::Assignment>,
    /// What the node's agent can run beyond the first release's jobs
    /// ([`crate::jobs::FEATURES`] of its build), written when it registers. Empty for an agent
    /// from before features were listed, which must not be handed a job that uses one.
    #[serde(default)]
    pub features: Vec<String>,
    /// The node's work directory as its agent sees it (jobs' default directories, logs), written
    /// when it registers; the provider derives log locations from it without reading the node.
    #[serde(default)]
    pub work_dir: Option<String>,
    /// Started on its own (`agent join`) rather than by the platform: the scheduler never
    /// launches, replaces or scales it in, and only its heartbeat says whether it lives.
    #[serde(default)]
    pub joined: bool,
    /// The machine and network it runs on (`agent::host::identity`): nodes with the same host
    /// reach each other locally.
    #[serde(default)]
    pub host: Option<String>,
    /// The address its peers reach it at (a job's master address, MPI daemons).
    #[serde(default)]
    pub address: Option<String>,
}

impl NodeRecord {
    /// A node as its launcher records it, before its agent registers.
    pub fn launching(cluster: &str, id: &str, now_ms: u64) -> Self {
        Self {
            format: FORMAT,
            id: id.to_owned(),
            cluster: cluster.to_owned(),
            state: NodeState::Launching,
            pid: None,
            gpus: Vec::new(),
            launched_at_ms: now_ms,
            last_heartbeat_ms: 0,
            errors: Vec::new(),
            drain_requested: false,
            job: None,
            features: Vec::new(),
            work_dir: None,
            joined: false,
            host: None,
            address: None,
        }
    }

    /// A node is lost when its agent stopped heartbeating (or never started).
    pub fn is_lost(&self, now_ms: u64, stale_after_ms: u64, launch_grace_ms: u64) -> bool {
        if self.last_heartbeat_ms == 0 {
            now_ms.saturating_sub(self.launched_at_ms) > launch_grace_ms
        } else {
            now_ms.saturating_sub(self.last_heartbeat_ms) > stale_after_ms
        }
    }
}

/// What the scheduler decided, for the provider to report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClusterStatus {
    pub format: u32,
    /// The node count the scheduler is converging to.
    pub desired_node_count: u32,
    /// When work was last queued or running (auto-scale idle timeout starts here).
    pub last_active_ms: u64,
    /// Set by the first node that fails to prepare (setup task, mounts) after the last one
    /// that prepared well, cleared by the next that prepares well. While set, nodes still
    /// preparing are not counted on: they are likely to fail the same way.
    #[serde(default)]
    pub failing_since_ms: Option<u64>,
    /// The last preparation failure, with its node, for jobs that cannot start because of it.
    #[serde(default)]
    pub last_node_error: Option<NodeError>,
    /// Unusable nodes are replaced (their cause may be gone) no earlier than this; a new job or
    /// changed scale settings set it to zero, since the user may have fixed the cause.
    #[serde(default)]
    pub next_replacement_ms: u64,
    /// Replacements since the last node that prepared well: the backoff's exponent.
    #[serde(default)]
    pub replacements: u32,
    /// The spec's `scale_generation` this status converges on; a newer one in the spec is a
    /// fresh start ([`ClusterStatus::start`]).
    #[serde(default)]
    pub scale_generation: u64,
    /// Why the last attempt to add nodes failed (`LaunchFailed`, with `since_ms` in its
    /// details: when the failures began); cleared once nodes are added or none are needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_error: Option<NodeError>,
}

/// The wait before the next replacement of unusable nodes: 30 s, doubling with every round of
/// replacements that failed again, at most 15 minutes.
pub fn replacement_backoff_ms(replacements: u32) -> u64 {
    (30_000u64 << replacements.min(5)).min(15 * 60_000)
}

impl ClusterStatus {
    /// A fresh start on the spec's scale settings: their initial size, activity from now, and
    /// unusable nodes replaced at once. Whoever first sees new settings (the provider that
    /// wrote them, or a scheduler between the spec and the status) starts over the same way.
    pub fn start(spec: &ClusterSpec, now_ms: u64) -> Self {
        Self {
            format: FORMAT,
            desired_node_count: spec.scale.initial_count(),
            last_active_ms: now_ms,
            scale_generation: spec.scale_generation,
            ..Self::default()
        }
    }

    /// What a node's preparation says about the cluster's health.
    pub fn record_preparation(&mut self, node: &str, error: Option<&NodeError>, now_ms: u64) {
        match error {
            Some(e) => {
                if self.failing_since_ms.is_none() {
                    self.failing_since_ms = Some(now_ms);
                    self.next_replacement_ms = now_ms + replacement_backoff_ms(self.replacements);
                }
                let mut e = e.clone();
                e.details.insert("node".to_owned(), node.to_owned());
                self.last_node_error = Some(e);
            }
            None => {
                self.failing_since_ms = None;
                self.replacements = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_stored_by_name_and_unknown_ones_kept() {
        for code in KNOWN_CODES {
            let json = serde_json::to_string(code).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(json, format!("\"{code}\""));
            let back: ErrorCode = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&back, code);
        }
        assert_eq!(
            ErrorCode::JobWallClockTimeExceeded.as_str(),
            "JobWallClockTimeExceeded"
        );
        let newer: NodeError =
            serde_json::from_str(r#"{"code": "QuotaExceeded", "message": "m", "details": {}}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(newer.code, ErrorCode::Other("QuotaExceeded".to_owned()));
        assert_eq!(newer.code.to_string(), "QuotaExceeded");
        let json = serde_json::to_string(&newer).unwrap_or_else(|e| panic!("{e}"));
        assert!(json.contains(r#""code":"QuotaExceeded""#), "{json}");
    }

    /// The setup task as agents before the secrets record read it: every field required.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct SetupTaskBeforeSecretsRecord {
        command_line: String,
        environment_variables: BTreeMap<String, String>,
        secrets: BTreeMap<String, String>,
        std_out_err_path_prefix: Option<String>,
    }

    #[test]
    fn older_agents_read_the_setup_tasks_this_version_writes() {
        let task = SetupTask {
            command_line: "true".to_owned(),
            environment_variables: BTreeMap::new(),
            secrets: crate::secrets::Secrets::default(),
            std_out_err_path_prefix: None,
        };
        let written = encode(&task);
        let old: Result<SetupTaskBeforeSecretsRecord, _> = serde_json::from_slice(&written);
        assert!(old.is_ok(), "{old:?}");
    }

    #[test]
    fn newer_formats_are_refused() {
        let bytes = br#"{"format": 99, "desired_node_count": 1, "last_active_ms": 0}"#;
        let err = decode::<ClusterStatus>("cluster status", bytes).err();
        assert!(matches!(err, Some(RecordError::TooNew { found: 99, .. })));
        let ok = br#"{"format": 1, "desired_node_count": 3, "last_active_ms": 0}"#;
        let status: Option<ClusterStatus> = decode("cluster status", ok).ok();
        assert_eq!(status.map(|s| s.desired_node_count), Some(3));
    }

    #[test]
    fn update_retries_and_reports_missing_records() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = crate::DirStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let missing = update::<ClusterStatus>(&store, "status", "status", |_| true);
        assert!(matches!(missing, Ok(None)));
        let start = ClusterStatus {
            format: FORMAT,
            desired_node_count: 1,
            ..ClusterStatus::default()
        };
        crate::Store::put(
            &store,
            "status",
            &encode(&start),
            crate::Condition::Always,
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut calls = 0;
        let updated = update::<ClusterStatus>(&store, "status", "status", |s| {
            calls += 1;
            if calls == 1 {
                // Another writer changes the record between this read and its write.
                let other = ClusterStatus {
                    desired_node_count: 7,
                    ..start.clone()
                };
                crate::Store::put(
                    &store,
                    "status",
                    &encode(&other),
                    crate::Condition::Always,
                    None,
                )
                .unwrap_or_else(|e| panic!("{e}"));
            }
            s.desired_node_count += 1;
            true
        });
        assert_eq!(calls, 2, "a conflict must be retried on the new value");
        assert_eq!(
            updated.ok().flatten().map(|s| s.desired_node_count),
            Some(8)
        );
    }

    #[test]
    fn lost_nodes() {
        let mut node = NodeRecord {
            format: FORMAT,
            id: "n".into(),
            cluster: "c".into(),
            state: NodeState::Launching,
            pid: None,
            gpus: vec![],
            launched_at_ms: 1_000,
            last_heartbeat_ms: 0,
            errors: vec![],
            drain_requested: false,
            job: None,
            features: Vec::new(),
            work_dir: None,
            joined: false,
            host: None,
            address: None,
        };
        let cases = [
            (0, 5_000, false),
            (0, 40_000, true),
            (30_000, 35_000, false),
            (30_000, 45_000, true),
        ];
        for (heartbeat, now, lost) in cases {
            node.last_heartbeat_ms = heartbeat;
            assert_eq!(node.is_lost(now, 10_000, 30_000), lost, "{heartbeat} {now}");
        }
    }
}
