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

    /// Writes as [`Store::put`] does, but the write need not survive a crash of the machine
    /// that holds the store: afterwards it may read as its previous value, as absent, or as
    /// undecodable (a corrupt record). A process that dies never tears it, and every reader
    /// sees it once the call returns. For records that such a crash makes moot (heartbeats,
    /// wake-up marks, what a node holds): a store that makes every write durable anyway, as a
    /// blob service does, keeps the default.
    fn put_volatile(
        &self,
        key: &str,
        data: &[u8],
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<ETag, StoreError> {
        self.put(key, data, condition, lease)
    }

    /// Deletes as [`Store::delete`] does, with the durability of [`Store::put_volatile`]: the
    /// value may come back after a crash of the store's machine.
    fn delete_volatile(
        &self,
        key: &str,
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<(), StoreError> {
        self.delete(key, condition, lease)
    }

    /// Change notifications for the keys that start with each of `prefixes` (at most
    /// [`Changed::MAX_PREFIXES`]) and add no `/` after it: a prefix names a "directory" and the
    /// start of a name in it (`clusters/c/queue/` is every mark, `clusters/c/nodes/node-1` that
    /// node's record). Changes made after this call returns wake [`Watch::wait`]. `None`
    /// (the default) when the store has none to give: callers then poll, at rates a remote store
    /// can afford.
    fn watch(&self, prefixes: &[&str]) -> Result<Option<Box<dyn Watch>>, StoreError> {
        let _ = prefixes;
        Ok(None)
    }
}

/// Which of a watch's prefixes may have changed: bit `i` for `prefixes[i]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed(u64);

impl Changed {
    /// The most prefixes one watch takes.
    pub const MAX_PREFIXES: usize = 64;
    pub const NONE: Changed = Changed(0);

    /// Every one of `count` prefixes: what a watch says when it cannot tell which (its events
    /// overflowed, say).
    pub fn all(count: usize) -> Self {
        match count {
            0 => Self::NONE,
            n if n >= Self::MAX_PREFIXES => Self(u64::MAX),
            n => Self((1u64 << n) - 1),
        }
    }

    /// Prefix `index` alone.
    pub fn only(index: usize) -> Self {
        let mut changed = Self::NONE;
        changed.mark(index);
        changed
    }

    pub fn mark(&mut self, index: usize) {
        if index < Self::MAX_PREFIXES {
            self.0 |= 1 << index;
        }
    }

    pub fn has(self, index: usize) -> bool {
        index < Self::MAX_PREFIXES && self.0 & (1 << index) != 0
    }

    pub fn any(self) -> bool {
        self.0 != 0
    }
}

impl std::ops::BitOrAssign for Changed {
    fn bitor_assign(&mut self, other: Self) {
        self.0 |= other.0;
    }
}

/// A store's change notifications (see [`Store::watch`]).
pub trait Watch: Send + std::fmt::Debug {
    /// Waits until a watched key may have changed or `timeout` passed, and says which prefixes
    /// may have: [`Changed::NONE`] when the time ran out (or a signal cut the wait short).
    /// Wake-ups may be spurious, so callers read what they need afterwards; a change is never
    /// missed, however long ago it happened, as long as no earlier `wait` reported it.
    fn wait(&mut self, timeout: Duration) -> Changed;
}

/// A view of a store whose writes and deletes are volatile (see [`Store::put_volatile`]), for
/// read-modify-write helpers that take a `&dyn Store`, such as `records::update`.
#[derive(Debug, Clone, Copy)]
pub struct Volatile<'a>(pub &'a dyn Store);

impl Store for Volatile<'_> {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.0.get(key)
    }

    fn put(
        &self,
        key: &str,
        data: &[u8],
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<ETag, StoreError> {
        self.0.put_volatile(key, data, condition, lease)
    }

    fn delete(
        &self,
        key: &str,
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<(), StoreError> {
        self.0.delete_volatile(key, condition, lease)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.0.list(prefix)
    }

    fn append(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        self.0.append(key, data)
    }

    fn read_log(&self, key: &str, offset: u64) -> Result<Vec<u8>, StoreError> {
        self.0.read_log(key, offset)
    }

    fn acquire_lease(&self, key: &str, duration: Duration) -> Result<LeaseId, StoreError> {
        self.0.acquire_lease(key, duration)
    }

    fn renew_lease(&self, key: &str, lease: &LeaseId) -> Result<(), StoreError> {
        self.0.renew_lease(key, lease)
    }

    fn release_lease(&self, key: &str, lease: &LeaseId) -> Result<(), StoreError> {
        self.0.release_lease(key, lease)
    }

    fn break_lease(&self, key: &str) -> Result<(), StoreError> {
        self.0.break_lease(key)
    }

    fn put_volatile(
        &self,
        key: &str,
        data: &[u8],
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<ETag, StoreError> {
        self.0.put_volatile(key, data, condition, lease)
    }

    fn delete_volatile(
        &self,
        key: &str,
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<(), StoreError> {
        self.0.delete_volatile(key, condition, lease)
    }

    fn watch(&self, prefixes: &[&str]) -> Result<Option<Box<dyn Watch>>, StoreError> {
        self.0.watch(prefixes)
    }
}

/// The requests one [`Counting`] store was asked for, by operation. Volatile writes count as
/// writes: a remote store charges them alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    pub get: u64,
    pub put: u64,
    pub delete: u64,
    pub list: u64,
    pub append: u64,
    pub read_log: u64,
    /// Acquire, renew, release and break.
    pub lease: u64,
}

impl Requests {
    pub fn total(&self) -> u64 {
        self.get + self.put + self.delete + self.list + self.append + self.read_log + self.lease
    }

    /// Writes of any kind (puts, deletes, appends, lease changes): what a blob service charges
    /// most for.
    pub fn writes(&self) -> u64 {
        self.put + self.delete + self.append + self.lease
    }

    /// What was asked for since `earlier`, a snapshot of the same counter.
    pub fn since(&self, earlier: &Requests) -> Requests {
        Requests {
            get: self.get.saturating_sub(earlier.get),
            put: self.put.saturating_sub(earlier.put),
            delete: self.delete.saturating_sub(earlier.delete),
            list: self.list.saturating_sub(earlier.list),
            append: self.append.saturating_sub(earlier.append),
            read_log: self.read_log.saturating_sub(earlier.read_log),
            lease: self.lease.saturating_sub(earlier.lease),
        }
    }
}

impl std::fmt::Display for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests ({} get, {} put, {} delete, {} list, {} lease, {} append, {} read_log)",
            self.total(),
            self.get,
            self.put,
            self.delete,
            self.list,
            self.lease,
            self.append,
            self.read_log
        )
    }
}

/// The counters of [`Counting`], one per kind of request.
const GET: usize = 0;
const PUT: usize = 1;
const DELETE: usize = 2;
const LIST: usize = 3;
const APPEND: usize = 4;
const READ_LOG: usize = 5;
const LEASE: usize = 6;

/// A store that counts the requests made through it and passes them on: what a node costs a
/// remote store, measured rather than estimated. With `events` false it gives no watch, so that
/// a directory store is used as a blob store would be (by polling).
#[derive(Debug)]
pub struct Counting {
    inner: std::sync::Arc<dyn Store>,
    events: bool,
    counts: [std::sync::atomic::AtomicU64; LEASE + 1],
}

impl Counting {
    pub fn new(inner: std::sync::Arc<dyn Store>, events: bool) -> Self {
        Self {
            inner,
            events,
            counts: Default::default(),
        }
    }

    /// The requests so far.
    pub fn requests(&self) -> Requests {
        let n = |i: usize| self.counts[i].load(std::sync::atomic::Ordering::Relaxed);
        Requests {
            get: n(GET),
            put: n(PUT),
            delete: n(DELETE),
            list: n(LIST),
            append: n(APPEND),
            read_log: n(READ_LOG),
            lease: n(LEASE),
        }
    }

    fn count(&self, op: usize) {
        self.counts[op].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Store for Counting {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.count(GET);
        self.inner.get(key)
    }

    fn put(
        &self,
        key: &str,
        data: &[u8],
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<ETag, StoreError> {
        self.count(PUT);
        self.inner.put(key, data, condition, lease)
    }

    fn delete(
        &self,
        key: &str,
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<(), StoreError> {
        self.count(DELETE);
        self.inner.delete(key, condition, lease)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.count(LIST);
        self.inner.list(prefix)
    }

    fn append(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        self.count(APPEND);
        self.inner.append(key, data)
    }

    fn read_log(&self, key: &str, offset: u64) -> Result<Vec<u8>, StoreError> {
        self.count(READ_LOG);
        self.inner.read_log(key, offset)
    }

    fn acquire_lease(&self, key: &str, duration: Duration) -> Result<LeaseId, StoreError> {
        self.count(LEASE);
        self.inner.acquire_lease(key, duration)
    }

    fn renew_lease(&self, key: &str, lease: &LeaseId) -> Result<(), StoreError> {
        self.count(LEASE);
        self.inner.renew_lease(key, lease)
    }

    fn release_lease(&self, key: &str, lease: &LeaseId) -> Result<(), StoreError> {
        self.count(LEASE);
        self.inner.release_lease(key, lease)
    }

    fn break_lease(&self, key: &str) -> Result<(), StoreError> {
        self.count(LEASE);
        self.inner.break_lease(key)
    }

    fn put_volatile(
        &self,
        key: &str,
        data: &[u8],
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<ETag, StoreError> {
        self.count(PUT);
        self.inner.put_volatile(key, data, condition, lease)
    }

    fn delete_volatile(
        &self,
        key: &str,
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<(), StoreError> {
        self.count(DELETE);
        self.inner.delete_volatile(key, condition, lease)
    }

    fn watch(&self, prefixes: &[&str]) -> Result<Option<Box<dyn Watch>>, StoreError> {
        if self.events {
            self.inner.watch(prefixes)
        } else {
            Ok(None)
        }
    }
}
