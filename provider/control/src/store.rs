//! The store trait: the semantics Azure Blob Storage offers (ETags, conditional writes, append
//! blobs, leases), so the directory implementation and a blob implementation map one to one.
use std::time::Duration;

/// An opaque version of a stored value; changes on every write. Maps to a blob's ETag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ETag(pub String);

/// The identifier of a held lease. Maps to a blob lease ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseId(pub String);

/// When a write may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Unconditionally (last writer wins).
    Always,
    /// Only if the current value has this ETag (`If-Match`): compare-and-swap.
    IfMatch(ETag),
    /// Only if there is no value yet (`If-None-Match: *`): create only.
    IfNoneExists,
}

/// Shortest and longest lease a store grants, as Azure Blob Storage does (15–60 s).
pub const MIN_LEASE: Duration = Duration::from_secs(15);
pub const MAX_LEASE: Duration = Duration::from_secs(60);

/// Failures of store operations. `Conflict`, `LeaseHeld` and `NotFound` are expected outcomes
/// of races that callers handle; the others are real failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {key}: the value changed or exists (condition failed)")]
    Conflict { op: &'static str, key: String },
    #[error("{op} {key}: not found")]
    NotFound { op: &'static str, key: String },
    #[error("{op} {key}: leased by another holder")]
    LeaseHeld { op: &'static str, key: String },
    #[error("{op} {key}: the lease is not held (expired, released or broken)")]
    LeaseLost { op: &'static str, key: String },
    #[error("{op} {key}: lease duration {duration:?} is outside 15 s to 60 s")]
    InvalidLease {
        op: &'static str,
        key: String,
        duration: Duration,
    },
    #[error("{op} {key}: invalid key: {reason}")]
    InvalidKey {
        op: &'static str,
        key: String,
        reason: &'static str,
    },
    #[error("{op} {key}: {source}")]
    Io {
        op: &'static str,
        key: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

/// A stored value with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub data: Vec<u8>,
    pub etag: ETag,
}

/// Keys are `/`-separated paths of `[A-Za-z0-9._-]` segments (no `.`/`..` segments), valid as
/// both file paths and blob names.
pub fn validate_key(op: &'static str, key: &str) -> Result<(), StoreError> {
    let invalid = |reason| StoreError::InvalidKey {
        op,
        key: key.to_owned(),
        reason,
    };
    if key.is_empty() || key.len() > 512 {
        return Err(invalid("keys have 1 to 512 characters"));
    }
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(invalid("empty, `.` or `..` segment"));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(invalid(
                "segments may contain only letters, digits, `.`, `_` and `-`",
            ));
        }
    }
    Ok(())
}

/// The control store. Every operation is atomic with respect to every other process using the
/// same store. Leases bound how long a holder may own a key without renewing; a holder that dies
/// loses its lease when it expires.
///
/// Operations are synchronous: the directory store does local file I/O, and callers on an async
/// runtime run them with `spawn_blocking` (the blob store will do the same around HTTP).
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The current value and its ETag, or `None`.
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Writes `data` if `condition` holds. A key leased by someone else can be written only with
    /// its lease ID (`lease`), as in Azure.
    fn put(
        &self,
        key: &str,
        data: &[u8],
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<ETag, StoreError>;

    /// Deletes the value if `condition` holds (`IfNoneExists` is not meaningful here and is
    /// treated as `Always`). Deleting a missing key is `NotFound`.
    fn delete(
        &self,
        key: &str,
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<(), StoreError>;

    /// Keys starting with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Appends to an append-only log (an append blob), creating it if needed.
    fn append(&self, key: &str, data: &[u8]) -> Result<(), StoreError>;

    /// Reads an append-only log from byte `offset`.
    fn read_log(&self, key: &str, offset: u64) -> Result<Vec<u8>, StoreError>;

    /// Acquires a lease on an existing key for `duration` (15–60 s). Fails with `LeaseHeld` while
    /// another unexpired lease exists.
    fn acquire_lease(&self, key: &str, duration: Duration) -> Result<LeaseId, StoreError>;

    /// Extends a held lease by its duration from now. `LeaseLost` if it expired and was taken,
    /// released or broken.
    fn renew_lease(&self, key: &str, lease: &LeaseId) -> Result<(), StoreError>;

    fn release_lease(&self, key: &str, lease: &LeaseId) -> Result<(), StoreError>;

    /// Ends any lease on the key at once, whoever holds it.
    fn break_lease(&self, key: &str) -> Result<(), StoreError>;
}
