//! The directory store: the control store on a local directory that every process on the machine
//! shares, crash-safe through write-then-rename and serialised across processes by file locks.
//!
//! Layout under the root:
//!
//! - `values/<a>/<b>/<c>~v` holds the value of key `a/b/c`. The `~v` suffix (`~` cannot occur in a
//!   key) lets key `a/b` and key `a/b/c` coexist: one is a file, the other a directory.
//! - `logs/<a>/<b>/<c>~log` is the append-only log of key `a/b/c`, a namespace apart from values.
//! - `.locks/<stripe>` are lock files; a key's writers lock the stripe its name hashes to. A fixed
//!   number of stripes bounds the files that can never be deleted (deleting a lock file races with
//!   a process about to lock it); keys sharing a stripe only wait for each other a little.
//! - `…~v~tmp-<pid>-<random>` are writes in progress, or left behind by a process that crashed
//!   mid-write; readers and `list` ignore them.
//!
//! A value file is `DSV1`, a little-endian `u32` header length, a JSON header
//! (`{"etag":…,"lease":{"id":…,"expires_ms":…,"duration_ms":…}}`) and the raw data. Value,
//! ETag and lease live in one file so that one rename replaces all three at once.
//!
//! Lease expiry is absolute wall-clock milliseconds since the Unix epoch, which every process on
//! the machine shares. Segments longer than the file system allows (255 bytes on most) fail with
//! an I/O error although `validate_key` accepts them.
//!
//! Writes are synced (the file before its rename, the directory after) except volatile ones
//! (`Store::put_volatile`, `Store::delete_volatile`), which other processes see as atomically
//! but a crash of the machine may lose. Change notifications (`Store::watch`) come from
//! inotify on the directories of the watched prefixes (see `watch.rs`).
//!
//! Logs are weaker than Azure append blobs in two ways: a reader may see part of an append still
//! in progress (bytes once visible never change, so reading on from its offset yields the rest),
//! and a process killed mid-append may leave part of its data behind.
use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::store::{
    Condition, ETag, LeaseId, MAX_LEASE, MIN_LEASE, Store, StoreError, Versioned, Watch,
    validate_key,
};

mod watch;

const MAGIC: &[u8; 4] = b"DSV1";
const VALUE_SUFFIX: &str = "~v";
const LOG_SUFFIX: &str = "~log";
const TEMP_MARK: &str = "~tmp-";
const LOCK_STRIPES: u64 = 1024;
/// Headers are a few hundred bytes; a larger length means the file is not a value file.
const MAX_HEADER: usize = 64 * 1024;

/// Whether a write must be on stable storage before it returns (see `Store::put_volatile`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Synced: the file before its rename, the directory after.
    Durable,
    /// Renamed into place unsynced: atomic for every process, lost or damaged only if the
    /// machine crashes before the kernel writes it back.
    Volatile,
}

/// Which namespace a locked key is in: a log and a value of the same name are different keys.
#[derive(Clone, Copy)]
enum Space {
    Value = 0,
    Log = 1,
}

/// The control store on a local directory. Cheap to clone; clones and other processes opening
/// the same root see and exclude each other.
#[derive(Debug, Clone)]
pub struct DirStore {
    values: PathBuf,
    logs: PathBuf,
    locks: PathBuf,
    /// Shared by clones: inotify instances that dropped watches left for new ones.
    watches: std::sync::Arc<watch::Instances>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease: Option<Lease>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lease {
    id: String,
    expires_ms: u64,
    /// Kept so that a renewal extends by the duration the lease was taken for, as in Azure.
    duration_ms: u64,
}

impl Lease {
    fn active(&self, now_ms: u64) -> bool {
        self.expires_ms > now_ms
    }
}

#[derive(Debug)]
struct Record {
    header: Header,
    data: Vec<u8>,
}

impl DirStore {
    /// Opens the store at `root`, creating its directories if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<DirStore, StoreError> {
        let root = root.into();
        let store = DirStore {
            values: root.join("values"),
            logs: root.join("logs"),
            locks: root.join(".locks"),
            watches: Default::default(),
        };
        // Records hold secrets (job and setup-task secrets): the store is its creator's alone,
        // whatever the umask, and a store made by an older version is made private here.
        for dir in [&root, &store.values, &store.logs, &store.locks] {
            private_dir_all(dir).map_err(io_error("open", &root.display().to_string()))?;
        }
        Ok(store)
    }

    fn value_path(&self, key: &str) -> PathBuf {
        nested(&self.values, key, VALUE_SUFFIX)
    }

    fn log_path(&self, key: &str) -> PathBuf {
        nested(&self.logs, key, LOG_SUFFIX)
    }

    /// Holds the key's lock until the returned file is dropped (closing it releases the lock, even
    /// when the process is killed).
    fn lock(&self, op: &'static str, space: Space, key: &str) -> Result<File, StoreError> {
        let stripe = fnv1a(space as u8, key) % LOCK_STRIPES;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_FILE)
            .open(self.locks.join(format!("{stripe:03x}")))
            .map_err(io_error(op, key))?;
        file.lock().map_err(io_error(op, key))?;
        Ok(file)
    }

    /// Reads the value under the key's lock for a lease operation; `NotFound` if there is none.
    fn locked_record(
        &self,
        op: &'static str,
        key: &str,
    ) -> Result<(File, PathBuf, Record), StoreError> {
        validate_key(op, key)?;
        let lock = self.lock(op, Space::Value, key)?;
        let path = self.value_path(key);
        match read_record(&path).map_err(io_error(op, key))? {
            Some(record) => Ok((lock, path, record)),
            None => Err(StoreError::NotFound {
                op,
                key: key.to_owned(),
            }),
        }
    }

    /// Rewrites a value with a changed lease. The ETag stays: a lease does not change the value,
    /// and Azure leaves the ETag alone too.
    fn rewrite(
        &self,
        op: &'static str,
        key: &str,
        path: &Path,
        record: &Record,
    ) -> Result<(), StoreError> {
        let bytes = encode(&record.header, &record.data).map_err(io_error(op, key))?;
        write_atomic(&self.values, path, &bytes, Durability::Durable).map_err(io_error(op, key))
    }

    /// `put` and `put_volatile`.
    fn write(
        &self,
        op: &'static str,
        key: &str,
        data: &[u8],
        condition: Condition,
        lease: Option<&LeaseId>,
        durability: Durability,
    ) -> Result<ETag, StoreError> {
        validate_key(op, key)?;
        let _lock = self.lock(op, Space::Value, key)?;
        let path = self.value_path(key);
        let current = read_header_or_corrupt(&path).map_err(io_error(op, key))?;
        let current_lease = current.as_ref().and_then(|header| header.lease.as_ref());
        check_lease(op, key, current_lease, lease)?;
        let holds = match (&condition, &current) {
            (Condition::Always, _) | (Condition::IfNoneExists, None) => true,
            (Condition::IfMatch(etag), Some(header)) => header.etag == etag.0,
            (Condition::IfNoneExists, Some(_)) | (Condition::IfMatch(_), None) => false,
        };
        if !holds {
            return Err(StoreError::Conflict {
                op,
                key: key.to_owned(),
            });
        }
        let etag = new_etag();
        // Azure keeps a lease across writes. An expired one is kept as well: its holder may still
        // renew it until someone else acquires the key.
        let header = Header {
            etag: etag.0.clone(),
            lease: current.and_then(|header| header.lease),
        };
        let bytes = encode(&header, data).map_err(io_error(op, key))?;
        write_atomic(&self.values, &path, &bytes, durability).map_err(io_error(op, key))?;
        Ok(etag)
    }

    /// `delete` and `delete_volatile`.
    fn remove(
        &self,
        op: &'static str,
        key: &str,
        condition: Condition,
        lease: Option<&LeaseId>,
        durability: Durability,
    ) -> Result<(), StoreError> {
        validate_key(op, key)?;
        let _lock = self.lock(op, Space::Value, key)?;
        let path = self.value_path(key);
        let Some(current) = read_header_or_corrupt(&path).map_err(io_error(op, key))? else {
            return Err(StoreError::NotFound {
                op,
                key: key.to_owned(),
            });
        };
        check_lease(op, key, current.lease.as_ref(), lease)?;
        if let Condition::IfMatch(etag) = &condition
            && current.etag != etag.0
        {
            return Err(StoreError::Conflict {
                op,
                key: key.to_owned(),
            });
        }
        fs::remove_file(&path).map_err(io_error(op, key))?;
        match durability {
            Durability::Durable => sync_parent(&path).map_err(io_error(op, key)),
            Durability::Volatile => Ok(()),
        }
    }
}

impl Store for DirStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        validate_key("get", key)?;
        let path = self.value_path(key);
        let record = match read_record(&path) {
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                // A damaged file reads as what a blob service would return for damaged content:
                // bytes no reader can decode, under an ETag of their own, so that readers meet
                // a corrupt record (and write it off) and writers can replace it.
                let data = fs::read(&path).map_err(io_error("get", key))?;
                return Ok(Some(Versioned {
                    data,
                    etag: ETag(CORRUPT_ETAG.to_owned()),
                }));
            }
            other => other.map_err(io_error("get", key))?,
        };
        Ok(record.map(|record| Versioned {
            data: record.data,
            etag: ETag(record.header.etag),
        }))
    }

    fn put(
        &self,
        key: &str,
        data: &[u8],
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<ETag, StoreError> {
        self.write("put", key, data, condition, lease, Durability::Durable)
    }

    fn delete(
        &self,
        key: &str,
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<(), StoreError> {
        self.remove("delete", key, condition, lease, Durability::Durable)
    }

    fn put_volatile(
        &self,
        key: &str,
        data: &[u8],
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<ETag, StoreError> {
        self.write("put", key, data, condition, lease, Durability::Volatile)
    }

    fn delete_volatile(
        &self,
        key: &str,
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<(), StoreError> {
        self.remove("delete", key, condition, lease, Durability::Volatile)
    }

    fn watch(&self, prefixes: &[&str]) -> Result<Option<Box<dyn Watch>>, StoreError> {
        watch::DirWatch::new(&self.values, prefixes, &self.watches)
            .map(|w| Some(Box::new(w) as Box<dyn Watch>))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        walk(&self.values, "", prefix, &mut keys).map_err(io_error("list", prefix))?;
        keys.sort();
        Ok(keys)
    }

    fn append(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        const OP: &str = "append";
        validate_key(OP, key)?;
        // O_APPEND alone keeps small appends whole; the lock also keeps large ones (past PIPE_BUF,
        // or split by a short write) from interleaving with another process's.
        let _lock = self.lock(OP, Space::Log, key)?;
        let path = self.log_path(key);
        if let Some(dir) = path.parent() {
            ensure_dir(&self.logs, dir).map_err(io_error(OP, key))?;
        }
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(PRIVATE_FILE)
            .open(&path)
            .map_err(io_error(OP, key))?;
        make_private(&file, PRIVATE_FILE).map_err(io_error(OP, key))?;
        file.write_all(data).map_err(io_error(OP, key))?;
        file.sync_data().map_err(io_error(OP, key))
    }

    fn read_log(&self, key: &str, offset: u64) -> Result<Vec<u8>, StoreError> {
        const OP: &str = "read_log";
        validate_key(OP, key)?;
        let mut file = match File::open(self.log_path(key)) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound {
                    op: OP,
                    key: key.to_owned(),
                });
            }
            Err(error) => return Err(io_error(OP, key)(error)),
        };
        // Seeking past the end is allowed and the read then returns nothing.
        file.seek(SeekFrom::Start(offset))
            .map_err(io_error(OP, key))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io_error(OP, key))?;
        Ok(data)
    }

    fn acquire_lease(&self, key: &str, duration: Duration) -> Result<LeaseId, StoreError> {
        const OP: &str = "acquire_lease";
        validate_key(OP, key)?;
        if !(MIN_LEASE..=MAX_LEASE).contains(&duration) {
            return Err(StoreError::InvalidLease {
                op: OP,
                key: key.to_owned(),
                duration,
            });
        }
        let (_lock, path, mut record) = self.locked_record(OP, key)?;
        let now = now_ms();
        if record
            .header
            .lease
            .as_ref()
            .is_some_and(|lease| lease.active(now))
        {
            return Err(StoreError::LeaseHeld {
                op: OP,
                key: key.to_owned(),
            });
        }
        let id = new_lease_id();
        let duration_ms = millis(duration);
        record.header.lease = Some(Lease {
            id: id.0.clone(),
            expires_ms: now.saturating_add(duration_ms),
            duration_ms,
        });
        self.rewrite(OP, key, &path, &record)?;
        Ok(id)
    }

    fn renew_lease(&self, key: &str, lease: &LeaseId) -> Result<(), StoreError> {
        const OP: &str = "renew_lease";
        let (_lock, path, mut record) = self.locked_record(OP, key)?;
        // A matching lease is renewed even when it has expired: nobody has taken the key since,
        // or the lease would carry another id. Azure allows the same.
        match &mut record.header.lease {
            Some(current) if current.id == lease.0 => {
                current.expires_ms = now_ms().saturating_add(current.duration_ms);
            }
            _ => {
                return Err(StoreError::LeaseLost {
                    op: OP,
                    key: key.to_owned(),
                });
            }
        }
        self.rewrite(OP, key, &path, &record)
    }

    fn release_lease(&self, key: &str, lease: &LeaseId) -> Result<(), StoreError> {
        const OP: &str = "release_lease";
        let (_lock, path, mut record) = self.locked_record(OP, key)?;
        if record
            .header
            .lease
            .as_ref()
            .is_none_or(|current| current.id != lease.0)
        {
            return Err(StoreError::LeaseLost {
                op: OP,
                key: key.to_owned(),
            });
        }
        record.header.lease = None;
        self.rewrite(OP, key, &path, &record)
    }

    fn break_lease(&self, key: &str) -> Result<(), StoreError> {
        const OP: &str = "break_lease";
        let (_lock, path, mut record) = self.locked_record(OP, key)?;
        if record.header.lease.take().is_none() {
            return Ok(());
        }
        self.rewrite(OP, key, &path, &record)
    }
}

/// Whether a write or delete that carries `given` may touch a value leased as `current`: only
/// with the id of an active lease, and without an id while there is none. An id that no longer
/// holds is `LeaseLost`, so a holder whose lease expired learns it instead of writing blindly.
fn check_lease(
    op: &'static str,
    key: &str,
    current: Option<&Lease>,
    given: Option<&LeaseId>,
) -> Result<(), StoreError> {
    let active = current.filter(|lease| lease.active(now_ms()));
    match (active, given) {
        (Some(lease), Some(given)) if lease.id == given.0 => Ok(()),
        (Some(_), _) => Err(StoreError::LeaseHeld {
            op,
            key: key.to_owned(),
        }),
        (None, Some(_)) => Err(StoreError::LeaseLost {
            op,
            key: key.to_owned(),
        }),
        (None, None) => Ok(()),
    }
}

fn io_error(op: &'static str, key: &str) -> impl FnOnce(io::Error) -> StoreError {
    let key = key.to_owned();
    move |source| StoreError::Io { op, key, source }
}

fn corrupt(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt value file: {why}"),
    )
}

/// `base/a/b/c<suffix>` for key `a/b/c` (already validated, so no segment escapes `base`).
fn nested(base: &Path, key: &str, suffix: &str) -> PathBuf {
    let (dirs, last) = key.rsplit_once('/').unwrap_or(("", key));
    let mut path = base.to_path_buf();
    path.extend(dirs.split('/').filter(|segment| !segment.is_empty()));
    path.push(format!("{last}{suffix}"));
    path
}

fn encode(header: &Header, data: &[u8]) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(header)?;
    let len = u32::try_from(json.len()).map_err(|_| corrupt("header too long"))?;
    let mut bytes = Vec::with_capacity(8 + json.len() + data.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&json);
    bytes.extend_from_slice(data);
    Ok(bytes)
}

/// Reads the header's length and the header from `reader`, which is at the start of the file.
fn decode_header(reader: &mut impl Read) -> io::Result<Header> {
    let mut prefix = [0u8; 8];
    reader
        .read_exact(&mut prefix)
        .map_err(|_| corrupt("shorter than its prefix"))?;
    let (magic, len) = prefix.split_at(4);
    if magic != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
    let len = usize::try_from(len).map_err(|_| corrupt("header too long"))?;
    if len > MAX_HEADER {
        return Err(corrupt("header too long"));
    }
    let mut json = vec![0u8; len];
    reader
        .read_exact(&mut json)
        .map_err(|_| corrupt("header cut short"))?;
    serde_json::from_slice(&json).map_err(|error| corrupt(&error.to_string()))
}

/// `None` when there is no value: opening the file is atomic with the rename that replaced it,
/// so the open file is wholly the old or wholly the new value.
fn open_value(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

fn read_header(path: &Path) -> io::Result<Option<Header>> {
    let Some(file) = open_value(path)? else {
        return Ok(None);
    };
    decode_header(&mut io::BufReader::new(file)).map(Some)
}

/// The ETag of a value file whose header is damaged (see `get`).
const CORRUPT_ETAG: &str = "corrupt";

/// The header for a write or delete: a damaged one stands for a value without a lease under
/// [`CORRUPT_ETAG`], so the value can be replaced or removed.
fn read_header_or_corrupt(path: &Path) -> io::Result<Option<Header>> {
    match read_header(path) {
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(Some(Header {
            etag: CORRUPT_ETAG.to_owned(),
            lease: None,
        })),
        other => other,
    }
}

fn read_record(path: &Path) -> io::Result<Option<Record>> {
    let Some(mut file) = open_value(path)? else {
        return Ok(None);
    };
    let header = decode_header(&mut file)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    Ok(Some(Record { header, data }))
}

/// Replaces `path` with `bytes` so that a crash at any point leaves the old or the new file: the
/// new content is written and synced under a temporary name, then renamed over the old. A
/// volatile write skips both syncs: other processes still see the old or the new file, never
/// part of one, but a crash of the machine may lose it or leave it damaged.
fn write_atomic(base: &Path, path: &Path, bytes: &[u8], durability: Durability) -> io::Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "value path has no parent",
        ));
    };
    ensure_dir(base, dir)?;
    let mut temp_name = name.to_os_string();
    temp_name.push(format!(
        "{TEMP_MARK}{}-{:016x}",
        std::process::id(),
        random_u64()
    ));
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE)
            .open(&temp)?;
        make_private(&file, PRIVATE_FILE)?;
        file.write_all(bytes)?;
        if durability == Durability::Durable {
            file.sync_all()?;
        }
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        // Best effort: the temporary file is garbage either way and `list` ignores it.
        let _ = fs::remove_file(&temp);
    }
    written?;
    match durability {
        Durability::Durable => sync_dir(dir),
        Durability::Volatile => Ok(()),
    }
}

/// Records and logs are readable by their creator only (0600), directories are 0700.
const PRIVATE_FILE: u32 = 0o600;
const PRIVATE_DIR: u32 = 0o700;

/// Sets `mode` exactly: `OpenOptions::mode` is filtered by the umask, which may be anything.
fn make_private(file: &File, mode: u32) -> io::Result<()> {
    if file.metadata()?.permissions().mode() & 0o777 != mode {
        file.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Creates `dir` and its missing parents as private directories, and makes `dir` itself private
/// if it already existed.
pub fn private_dir_all(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)?;
    if fs::metadata(dir)?.permissions().mode() & 0o777 != PRIVATE_DIR {
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "make {} private (mode 0700): {e}; it must belong to the user running Terraform",
                    dir.display()
                ),
            )
        })?;
    }
    Ok(())
}

/// Creates `dir` (inside `base`) if needed, syncing each parent so the new directories survive a
/// crash along with the file about to be renamed into them.
fn ensure_dir(base: &Path, dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    private_dir_all(dir)?;
    let mut created = dir;
    while created != base {
        let Some(parent) = created.parent() else {
            break;
        };
        sync_dir(parent)?;
        created = parent;
    }
    Ok(())
}

fn sync_parent(path: &Path) -> io::Result<()> {
    path.parent().map_or(Ok(()), sync_dir)
}

/// Makes a rename or removal in `dir` durable. Only Unix can open and sync a directory.
fn sync_dir(dir: &Path) -> io::Result<()> {
    if cfg!(unix) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Collects the keys under `dir` (whose keys start with `key_prefix`) that start with `want`,
/// skipping subtrees that cannot contain one and every name that is not a key's.
fn walk(dir: &Path, key_prefix: &str, want: &str, keys: &mut Vec<String>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let file_type = match entry.file_type() {
            Ok(file_type) => file_type,
            // Removed since the directory was read.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        if file_type.is_dir() {
            let sub = format!("{key_prefix}{name}/");
            if is_segment(&name) && (sub.starts_with(want) || want.starts_with(&sub)) {
                walk(&entry.path(), &sub, want, keys)?;
            }
        } else if let Some(stem) = name.strip_suffix(VALUE_SUFFIX)
            && is_segment(stem)
        {
            let key = format!("{key_prefix}{stem}");
            if key.starts_with(want) {
                keys.push(key);
            }
        }
    }
    Ok(())
}

fn is_segment(name: &str) -> bool {
    !name.contains('/') && validate_key("list", name).is_ok()
}

/// FNV-1a: stable across processes and compiler versions, which `DefaultHasher` does not promise,
/// and every process must map a key to the same lock.
fn fnv1a(space: u8, key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in std::iter::once(space).chain(key.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// 64 random bits: `RandomState` is seeded from the OS and its keys differ per call; the counter,
/// process id and time make values distinct even if that seeding were weak.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos()),
    );
    hasher.finish()
}

fn new_etag() -> ETag {
    ETag(format!("0x{:016X}", random_u64()))
}

/// A GUID-shaped id, as Azure lease ids are.
fn new_lease_id() -> LeaseId {
    let (a, b) = (random_u64(), random_u64());
    LeaseId(format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    ))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn store() -> (tempfile::TempDir, DirStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn value_file_holds_header_and_data() {
        let (_dir, store) = store();
        let etag = store.put("a/b", b"data", Condition::Always, None).unwrap();
        let bytes = fs::read(store.values.join("a").join("b~v")).unwrap();
        assert_eq!(&bytes[..4], MAGIC);
        let record = read_record(&store.value_path("a/b")).unwrap().unwrap();
        assert_eq!(record.header.etag, etag.0);
        assert_eq!(record.data, b"data");
        assert!(bytes.ends_with(b"data"));
    }

    #[test]
    fn a_damaged_value_file_reads_as_garbage_and_can_be_replaced_or_removed() {
        let (_dir, store) = store();
        fs::write(store.values.join("bad~v"), b"DSV1\xff\xff\xff\xff").unwrap();
        fs::write(store.values.join("short~v"), b"DS").unwrap();
        for key in ["bad", "short"] {
            let value = store.get(key).unwrap().unwrap();
            assert_eq!(value.etag.0, CORRUPT_ETAG, "{key}");
            assert!(serde_json::from_slice::<serde_json::Value>(&value.data).is_err());
        }
        store
            .put(
                "bad",
                b"{}",
                Condition::IfMatch(ETag(CORRUPT_ETAG.into())),
                None,
            )
            .unwrap();
        assert_eq!(store.get("bad").unwrap().unwrap().data, b"{}");
        store
            .delete("short", Condition::IfMatch(ETag(CORRUPT_ETAG.into())), None)
            .unwrap();
        assert!(store.get("short").unwrap().is_none());
    }

    #[test]
    fn list_ignores_temporary_and_foreign_files() {
        let (_dir, store) = store();
        store.put("a/b", b"1", Condition::Always, None).unwrap();
        fs::write(store.values.join("a").join("c~v~tmp-1-00"), b"partial").unwrap();
        fs::write(store.values.join("a").join("notes.txt"), b"").unwrap();
        fs::create_dir(store.values.join("a").join("odd dir")).unwrap();
        fs::write(store.values.join("a").join("odd dir").join("x~v"), b"").unwrap();
        assert_eq!(store.list("").unwrap(), ["a/b"]);
    }

    #[test]
    fn volatile_writes_keep_conditions_and_leases() {
        let (_dir, store) = store();
        let etag = store
            .put_volatile("a/b", b"1", Condition::IfNoneExists, None)
            .unwrap();
        assert!(
            store
                .put_volatile("a/b", b"2", Condition::IfNoneExists, None)
                .unwrap_err()
                .is_conflict()
        );
        let lease = store.acquire_lease("a/b", MIN_LEASE).unwrap();
        assert!(matches!(
            store.put_volatile("a/b", b"2", Condition::IfMatch(etag.clone()), None),
            Err(StoreError::LeaseHeld { .. })
        ));
        let etag = store
            .put_volatile("a/b", b"2", Condition::IfMatch(etag), Some(&lease))
            .unwrap();
        assert_eq!(store.get("a/b").unwrap().unwrap().data, b"2");
        store.release_lease("a/b", &lease).unwrap();
        assert!(
            store
                .delete_volatile("a/b", Condition::IfMatch(ETag("other".into())), None)
                .unwrap_err()
                .is_conflict()
        );
        store
            .delete_volatile("a/b", Condition::IfMatch(etag), None)
            .unwrap();
        assert!(store.get("a/b").unwrap().is_none());
    }

    #[test]
    fn lease_ids_and_etags_differ() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| new_lease_id().0).collect();
        let etags: std::collections::HashSet<_> = (0..1000).map(|_| new_etag().0).collect();
        assert_eq!((ids.len(), etags.len()), (1000, 1000));
    }
}
