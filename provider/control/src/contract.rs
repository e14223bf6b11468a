//! The contract every `Store` implementation must pass. The directory store runs it in its tests
//! and the blob store runs the same checks against Azurite.
//!
//! Each check takes a fresh, empty store and panics with a message naming what failed. Run them
//! one test each so they run in parallel: `lease_expiry_allows_takeover` sleeps past `MIN_LEASE`.
//! [`MULTI_PROCESS_CHECKS`] add what only a store that several processes share must survive;
//! they re-run the test binary as workers (see [`Shared`] and [`worker`]). Or all in one:
//!
//! ```no_run
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let stores = AtomicUsize::new(0);
//! control::contract::run_all(&|| {
//!     let root = dir.path().join(stores.fetch_add(1, Ordering::Relaxed).to_string());
//!     Box::new(control::DirStore::open(root).unwrap())
//! });
//! ```
use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hasher};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::store::{Condition, LeaseId, MIN_LEASE, Store, StoreError};

/// A contract check: takes a fresh, empty store and panics if the store breaks the contract.
pub type Check = fn(&dyn Store);

/// Every check, by name.
pub const CHECKS: &[(&str, Check)] = &[
    ("get_put_roundtrip", get_put_roundtrip),
    (
        "parent_and_child_keys_coexist",
        parent_and_child_keys_coexist,
    ),
    ("create_only", create_only),
    ("compare_and_swap", compare_and_swap),
    ("delete_if_match", delete_if_match),
    ("list_by_prefix", list_by_prefix),
    ("append_and_read_log", append_and_read_log),
    (
        "lease_acquire_renew_release_break",
        lease_acquire_renew_release_break,
    ),
    (
        "lease_blocks_writes_without_id",
        lease_blocks_writes_without_id,
    ),
    ("lease_expiry_allows_takeover", lease_expiry_allows_takeover),
    ("invalid_keys_are_rejected", invalid_keys_are_rejected),
    ("concurrent_cas_in_threads", concurrent_cas_in_threads),
];

/// Runs every check, each on a fresh store from `factory`. Takes over `MIN_LEASE` (15 s).
pub fn run_all(factory: &dyn Fn() -> Box<dyn Store>) {
    for (_, check) in CHECKS {
        check(factory().as_ref());
    }
}

fn kind(error: &StoreError) -> &'static str {
    match error {
        StoreError::Conflict { .. } => "Conflict",
        StoreError::NotFound { .. } => "NotFound",
        StoreError::LeaseHeld { .. } => "LeaseHeld",
        StoreError::LeaseLost { .. } => "LeaseLost",
        StoreError::InvalidLease { .. } => "InvalidLease",
        StoreError::InvalidKey { .. } => "InvalidKey",
        StoreError::Io { .. } => "Io",
    }
}

#[track_caller]
fn ok<T>(what: &str, result: Result<T, StoreError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{what}: unexpected error: {error}"),
    }
}

#[track_caller]
fn fails<T: Debug>(what: &str, result: Result<T, StoreError>, want: &str) -> StoreError {
    match result {
        Err(error) if kind(&error) == want => error,
        Err(error) => panic!("{what}: expected {want}, got {}: {error}", kind(&error)),
        Ok(value) => panic!("{what}: expected {want}, got Ok({value:?})"),
    }
}

#[track_caller]
fn data(store: &dyn Store, key: &str) -> Option<Vec<u8>> {
    ok(&format!("get {key}"), store.get(key)).map(|value| value.data)
}

pub fn get_put_roundtrip(store: &dyn Store) {
    assert_eq!(data(store, "k"), None, "a missing key reads as None");
    let binary: Vec<u8> = (0..=255).collect();
    let mut etags = BTreeSet::new();
    for value in [&b"first"[..], b"", &binary, b"last"] {
        let etag = ok("put", store.put("k", value, Condition::Always, None));
        let got = ok("get", store.get("k")).unwrap_or_else(|| panic!("get after put: no value"));
        assert_eq!(got.data, value, "get returns what put wrote");
        assert_eq!(got.etag, etag, "get returns the etag put returned");
        assert!(etags.insert(etag.0), "every write gets a new etag");
    }
}

pub fn parent_and_child_keys_coexist(store: &dyn Store) {
    let keys = ["a", "a/b", "a/b/c", "a.b", "b/a"];
    for key in keys {
        ok(
            "put",
            store.put(key, key.as_bytes(), Condition::IfNoneExists, None),
        );
    }
    for key in keys {
        assert_eq!(
            data(store, key).as_deref(),
            Some(key.as_bytes()),
            "{key} keeps its own value"
        );
    }
    ok("delete a/b", store.delete("a/b", Condition::Always, None));
    assert_eq!(data(store, "a/b"), None, "a/b is deleted");
    assert_eq!(
        data(store, "a").as_deref(),
        Some(&b"a"[..]),
        "deleting a/b leaves its parent a"
    );
    assert_eq!(
        data(store, "a/b/c").as_deref(),
        Some(&b"a/b/c"[..]),
        "deleting a/b leaves its child a/b/c"
    );
}

pub fn create_only(store: &dyn Store) {
    let etag = ok(
        "create",
        store.put("k", b"one", Condition::IfNoneExists, None),
    );
    fails(
        "create of an existing key",
        store.put("k", b"two", Condition::IfNoneExists, None),
        "Conflict",
    );
    let got = ok("get", store.get("k"));
    assert_eq!(
        got.map(|value| (value.data, value.etag)),
        Some((b"one".to_vec(), etag)),
        "a failed create changes nothing"
    );
}

pub fn compare_and_swap(store: &dyn Store) {
    let stale = ok("put", store.put("k", b"1", Condition::Always, None));
    let current = ok(
        "cas",
        store.put("k", b"2", Condition::IfMatch(stale.clone()), None),
    );
    assert_ne!(current, stale, "a swap changes the etag");
    fails(
        "cas with a stale etag",
        store.put("k", b"x", Condition::IfMatch(stale), None),
        "Conflict",
    );
    assert_eq!(
        data(store, "k").as_deref(),
        Some(&b"2"[..]),
        "a failed swap changes nothing"
    );
    fails(
        "cas on a missing key",
        store.put("missing", b"x", Condition::IfMatch(current.clone()), None),
        "Conflict",
    );
    assert_eq!(
        data(store, "missing"),
        None,
        "a failed swap creates nothing"
    );
    ok(
        "cas",
        store.put("k", b"3", Condition::IfMatch(current), None),
    );
    ok(
        "unconditional put",
        store.put("k", b"4", Condition::Always, None),
    );
    assert_eq!(data(store, "k").as_deref(), Some(&b"4"[..]));
}

pub fn delete_if_match(store: &dyn Store) {
    fails(
        "delete of a missing key",
        store.delete("k", Condition::Always, None),
        "NotFound",
    );
    let stale = ok("put", store.put("k", b"1", Condition::Always, None));
    let current = ok("put", store.put("k", b"2", Condition::Always, None));
    fails(
        "delete with a stale etag",
        store.delete("k", Condition::IfMatch(stale), None),
        "Conflict",
    );
    assert_eq!(
        data(store, "k").as_deref(),
        Some(&b"2"[..]),
        "a failed delete changes nothing"
    );
    ok(
        "delete if match",
        store.delete("k", Condition::IfMatch(current.clone()), None),
    );
    assert_eq!(data(store, "k"), None, "delete removes the value");
    fails(
        "delete of a deleted key",
        store.delete("k", Condition::IfMatch(current), None),
        "NotFound",
    );
    ok(
        "create after delete",
        store.put("k", b"3", Condition::IfNoneExists, None),
    );
    ok(
        "delete if none exists, read as always",
        store.delete("k", Condition::IfNoneExists, None),
    );
    assert_eq!(data(store, "k"), None);
}

pub fn list_by_prefix(store: &dyn Store) {
    let keys = [
        "clusters/a",
        "clusters/a/nodes/n1",
        "clusters/a/nodes/n2",
        "clusters/ab",
        "clusters/b/nodes/n1",
        "other",
    ];
    for key in keys.iter().rev() {
        ok("put", store.put(key, b"v", Condition::Always, None));
    }
    ok("append", store.append("clusters/a/log", b"not a value"));
    let cases: &[(&str, &[&str])] = &[
        ("", &keys),
        (
            "clusters/a/nodes/",
            &["clusters/a/nodes/n1", "clusters/a/nodes/n2"],
        ),
        (
            "clusters/a",
            &[
                "clusters/a",
                "clusters/a/nodes/n1",
                "clusters/a/nodes/n2",
                "clusters/ab",
            ],
        ),
        (
            "clusters/a/",
            &["clusters/a/nodes/n1", "clusters/a/nodes/n2"],
        ),
        (
            "clusters/a/nodes/n",
            &["clusters/a/nodes/n1", "clusters/a/nodes/n2"],
        ),
        ("clusters/b", &["clusters/b/nodes/n1"]),
        ("other", &["other"]),
        ("missing/", &[]),
        ("clusters/c", &[]),
    ];
    for (prefix, want) in cases {
        assert_eq!(
            ok("list", store.list(prefix)),
            *want,
            "list({prefix:?}) lists values only, sorted"
        );
    }
    ok(
        "delete",
        store.delete("clusters/a/nodes/n1", Condition::Always, None),
    );
    assert_eq!(
        ok("list", store.list("clusters/a/nodes/")),
        ["clusters/a/nodes/n2"],
        "list omits deleted keys"
    );
}

pub fn append_and_read_log(store: &dyn Store) {
    fails(
        "read of a missing log",
        store.read_log("log", 0),
        "NotFound",
    );
    ok("append", store.append("log", b"hello "));
    ok("append", store.append("log", b""));
    ok("append", store.append("log", b"world"));
    let cases: &[(u64, &[u8])] = &[
        (0, b"hello world"),
        (6, b"world"),
        (10, b"d"),
        (11, b""),
        (1000, b""),
    ];
    for (offset, want) in cases {
        assert_eq!(
            ok("read_log", store.read_log("log", *offset)),
            *want,
            "read_log from {offset}"
        );
    }
    assert_eq!(data(store, "log"), None, "logs are apart from values");
    ok(
        "put",
        store.put("log", b"value", Condition::IfNoneExists, None),
    );
    assert_eq!(
        ok("read_log", store.read_log("log", 0)),
        b"hello world",
        "values are apart from logs"
    );
    ok(
        "append to a nested log",
        store.append("log/child", b"child"),
    );
    assert_eq!(ok("read_log", store.read_log("log/child", 0)), b"child");
}

pub fn lease_acquire_renew_release_break(store: &dyn Store) {
    fails(
        "acquire on a missing key",
        store.acquire_lease("k", MIN_LEASE),
        "NotFound",
    );
    let etag = ok("put", store.put("k", b"v", Condition::Always, None));
    for duration in [
        Duration::ZERO,
        Duration::from_secs(14),
        Duration::from_secs(61),
    ] {
        fails(
            &format!("acquire for {duration:?}"),
            store.acquire_lease("k", duration),
            "InvalidLease",
        );
    }
    let first = ok("acquire", store.acquire_lease("k", MIN_LEASE));
    fails(
        "acquire of a leased key",
        store.acquire_lease("k", Duration::from_secs(60)),
        "LeaseHeld",
    );
    ok("renew", store.renew_lease("k", &first));
    let wrong = LeaseId("00000000-0000-0000-0000-000000000000".into());
    fails(
        "renew with another id",
        store.renew_lease("k", &wrong),
        "LeaseLost",
    );
    fails(
        "release with another id",
        store.release_lease("k", &wrong),
        "LeaseLost",
    );
    ok("release", store.release_lease("k", &first));
    fails(
        "renew after release",
        store.renew_lease("k", &first),
        "LeaseLost",
    );
    fails(
        "release after release",
        store.release_lease("k", &first),
        "LeaseLost",
    );

    let second = ok("acquire after release", store.acquire_lease("k", MIN_LEASE));
    assert_ne!(second, first, "each acquire gets a new id");
    ok("break", store.break_lease("k"));
    fails(
        "renew after break",
        store.renew_lease("k", &second),
        "LeaseLost",
    );
    ok(
        "put after break",
        store.put("k", b"v", Condition::IfMatch(etag), None),
    );
    ok("acquire after break", store.acquire_lease("k", MIN_LEASE));
    ok("break", store.break_lease("k"));
    ok("break of an unleased key", store.break_lease("k"));
    fails(
        "break on a missing key",
        store.break_lease("missing"),
        "NotFound",
    );

    let etag = ok("get", store.get("k")).map(|value| value.etag);
    let third = ok("acquire", store.acquire_lease("k", MIN_LEASE));
    ok("renew", store.renew_lease("k", &third));
    ok("release", store.release_lease("k", &third));
    assert_eq!(
        ok("get", store.get("k")).map(|value| value.etag),
        etag,
        "lease operations keep the etag"
    );
}

pub fn lease_blocks_writes_without_id(store: &dyn Store) {
    ok("put", store.put("k", b"1", Condition::Always, None));
    fails(
        "put with an id on an unleased key",
        store.put("k", b"x", Condition::Always, Some(&LeaseId("nope".into()))),
        "LeaseLost",
    );
    let lease = ok("acquire", store.acquire_lease("k", MIN_LEASE));
    let other = LeaseId("00000000-0000-0000-0000-000000000000".into());
    for (what, id) in [("without an id", None), ("with another id", Some(&other))] {
        fails(
            &format!("put {what}"),
            store.put("k", b"x", Condition::Always, id),
            "LeaseHeld",
        );
        fails(
            &format!("delete {what}"),
            store.delete("k", Condition::Always, id),
            "LeaseHeld",
        );
    }
    assert_eq!(
        data(store, "k").as_deref(),
        Some(&b"1"[..]),
        "reads need no lease; refused writes change nothing"
    );

    let etag = ok(
        "put with the id",
        store.put("k", b"2", Condition::Always, Some(&lease)),
    );
    ok(
        "cas with the id",
        store.put("k", b"3", Condition::IfMatch(etag), Some(&lease)),
    );
    fails(
        "put without an id after a leased write",
        store.put("k", b"x", Condition::Always, None),
        "LeaseHeld",
    );
    ok("renew after writes", store.renew_lease("k", &lease));
    assert_eq!(data(store, "k").as_deref(), Some(&b"3"[..]));

    ok(
        "delete with the id",
        store.delete("k", Condition::Always, Some(&lease)),
    );
    assert_eq!(data(store, "k"), None);
    ok(
        "put after a leased delete",
        store.put("k", b"4", Condition::IfNoneExists, None),
    );
    fails(
        "renew after delete",
        store.renew_lease("k", &lease),
        "LeaseLost",
    );
    ok("acquire after delete", store.acquire_lease("k", MIN_LEASE));
}

pub fn lease_expiry_allows_takeover(store: &dyn Store) {
    for key in ["renewed", "taken"] {
        ok("put", store.put(key, b"v", Condition::Always, None));
    }
    let renewed = ok("acquire", store.acquire_lease("renewed", MIN_LEASE));
    let taken = ok("acquire", store.acquire_lease("taken", MIN_LEASE));
    thread::sleep(MIN_LEASE + Duration::from_millis(1500));

    // Nobody took `renewed` after it expired, so its holder may renew it.
    ok(
        "renew of an expired lease nobody took",
        store.renew_lease("renewed", &renewed),
    );
    fails(
        "put without an id after renewal",
        store.put("renewed", b"x", Condition::Always, None),
        "LeaseHeld",
    );
    ok(
        "put with the renewed id",
        store.put("renewed", b"x", Condition::Always, Some(&renewed)),
    );

    fails(
        "put with an expired id",
        store.put("taken", b"x", Condition::Always, Some(&taken)),
        "LeaseLost",
    );
    ok(
        "put without an id after expiry",
        store.put("taken", b"x", Condition::Always, None),
    );
    let new = ok(
        "acquire after expiry",
        store.acquire_lease("taken", MIN_LEASE),
    );
    assert_ne!(new, taken, "a takeover gets a new id");
    fails(
        "renew of a lease taken over",
        store.renew_lease("taken", &taken),
        "LeaseLost",
    );
    fails(
        "release of a lease taken over",
        store.release_lease("taken", &taken),
        "LeaseLost",
    );
    fails(
        "put with the old id",
        store.put("taken", b"y", Condition::Always, Some(&taken)),
        "LeaseHeld",
    );
    ok(
        "put with the new id",
        store.put("taken", b"y", Condition::Always, Some(&new)),
    );
}

pub fn invalid_keys_are_rejected(store: &dyn Store) {
    let long = "a".repeat(513);
    let bad = [
        "", "/", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "../a", "a b", "a\\b", "a:b",
        "a~b", "ä", "a\n", &long,
    ];
    let lease = LeaseId("id".into());
    type Op<'a> = (&'a str, &'a dyn Fn(&str) -> Result<(), StoreError>);
    let ops: &[Op] = &[
        ("get", &|key| store.get(key).map(drop)),
        ("put", &|key| {
            store.put(key, b"v", Condition::Always, None).map(drop)
        }),
        ("delete", &|key| store.delete(key, Condition::Always, None)),
        ("append", &|key| store.append(key, b"v")),
        ("read_log", &|key| store.read_log(key, 0).map(drop)),
        ("acquire_lease", &|key| {
            store.acquire_lease(key, MIN_LEASE).map(drop)
        }),
        ("renew_lease", &|key| store.renew_lease(key, &lease)),
        ("release_lease", &|key| store.release_lease(key, &lease)),
        ("break_lease", &|key| store.break_lease(key)),
    ];
    for key in bad {
        for (op, call) in ops {
            let error = fails(&format!("{op} {key:?}"), call(key), "InvalidKey");
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("{op} {key}: ")),
                "the error names the operation and key: {message}"
            );
        }
    }
    assert_eq!(
        ok("list", store.list("")),
        Vec::<String>::new(),
        "rejected keys leave nothing behind"
    );
    for key in [
        ".hidden",
        "...",
        "a.b-c_D9",
        "values",
        "logs/.locks",
        &"k".repeat(200),
    ] {
        ok(
            &format!("put {key}"),
            store.put(key, key.as_bytes(), Condition::IfNoneExists, None),
        );
        assert_eq!(
            data(store, key).as_deref(),
            Some(key.as_bytes()),
            "odd but valid key {key}"
        );
    }
}

/// `THREADS` threads each add `INCREMENTS` to a counter by compare-and-swap, retrying on
/// `Conflict`: no update may be lost.
pub fn concurrent_cas_in_threads(store: &dyn Store) {
    const THREADS: u64 = 8;
    const INCREMENTS: u64 = 25;
    ok(
        "create counter",
        store.put("counter", b"0", Condition::IfNoneExists, None),
    );
    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..INCREMENTS {
                    cas_increment(store, "counter");
                }
            });
        }
    });
    assert_eq!(
        read_counter(store, "counter"),
        THREADS * INCREMENTS,
        "every increment counts once"
    );
}

/// Reads a decimal counter written by `cas_increment`.
pub fn read_counter(store: &dyn Store, key: &str) -> u64 {
    let value =
        ok("get counter", store.get(key)).unwrap_or_else(|| panic!("counter {key} is missing"));
    let text = String::from_utf8_lossy(&value.data);
    text.parse()
        .unwrap_or_else(|_| panic!("counter {key} holds {text:?}"))
}

/// Adds one to a decimal counter by compare-and-swap, retrying on `Conflict`; returns the new
/// value.
pub fn cas_increment(store: &dyn Store, key: &str) -> u64 {
    loop {
        let current =
            ok("get counter", store.get(key)).unwrap_or_else(|| panic!("counter {key} is missing"));
        let text = String::from_utf8_lossy(&current.data);
        let next = text
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("counter {key} holds {text:?}"))
            + 1;
        match store.put(
            key,
            next.to_string().as_bytes(),
            Condition::IfMatch(current.etag),
            None,
        ) {
            Ok(_) => return next,
            Err(error) if error.is_conflict() => continue,
            Err(error) => panic!("increment {key}: {error}"),
        }
    }
}

/// A store under a multi-process check, and how a worker process opens the same store: `env` is
/// passed to each worker, whose [`worker`] call rebuilds the store from it.
#[derive(Debug)]
pub struct Shared {
    pub store: Box<dyn Store>,
    pub env: Vec<(String, String)>,
}

/// A multi-process check: takes a fresh, empty store that workers can open too.
pub type MultiProcessCheck = fn(&Shared);

/// Every multi-process check, by name. Each test binary that runs them must also have a test named
/// [`WORKER_TEST`] that calls [`worker`].
pub const MULTI_PROCESS_CHECKS: &[(&str, MultiProcessCheck)] = &[
    (
        "concurrent_cas_across_processes",
        concurrent_cas_across_processes,
    ),
    (
        "lease_expires_after_holder_is_killed",
        lease_expires_after_holder_is_killed,
    ),
    (
        "killed_writer_never_leaves_a_torn_value",
        killed_writer_never_leaves_a_torn_value,
    ),
];

/// The name of the test a worker process runs (`--exact contract_worker`).
pub const WORKER_TEST: &str = "contract_worker";
/// Which part a worker process plays; unset in every other process.
const WORKER_KIND: &str = "CONTROL_CONTRACT_WORKER";
/// How many operations a worker does, where its part counts them.
const WORKER_OPS: &str = "CONTROL_CONTRACT_WORKER_OPS";

/// The body of the test named [`WORKER_TEST`]: when this process was started as a worker, opens
/// the store with `open` (from the environment the parent passed in [`Shared::env`]) and plays its
/// part; otherwise returns at once.
pub fn worker(open: impl FnOnce() -> Box<dyn Store>) {
    let Ok(kind) = std::env::var(WORKER_KIND) else {
        return;
    };
    let ops = std::env::var(WORKER_OPS)
        .ok()
        .and_then(|ops| ops.parse().ok())
        .unwrap_or(0);
    let store = open();
    match kind.as_str() {
        "cas" => worker_cas(store.as_ref(), ops),
        "lease" => worker_lease(store.as_ref()),
        "writer" => worker_writer(store.as_ref()),
        other => panic!("unknown worker kind {other:?}"),
    }
}

/// A worker process: this test binary re-run as `--exact contract_worker`. Killed and reaped when
/// dropped, so a failing check leaves no process behind.
struct Worker(Child);

impl Worker {
    fn spawn(shared: &Shared, kind: &str, ops: u64) -> Worker {
        let exe = std::env::current_exe()
            .unwrap_or_else(|error| panic!("find this test binary to run a worker: {error}"));
        let child = Command::new(exe)
            .args(["--exact", WORKER_TEST, "--nocapture", "--test-threads=1"])
            .envs(shared.env.iter().map(|(name, value)| (name, value)))
            .env(WORKER_KIND, kind)
            .env(WORKER_OPS, ops.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("start a {kind} worker: {error}"));
        Worker(child)
    }

    fn wait_success(mut self) {
        let status = self
            .0
            .wait()
            .unwrap_or_else(|error| panic!("wait for a worker: {error}"));
        assert!(status.success(), "worker failed: {status}");
    }

    /// SIGKILL on Unix: the worker gets no chance to clean up.
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0
            .try_wait()
            .unwrap_or_else(|error| panic!("check on a worker: {error}"))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the log `key` holds at least `len` bytes.
fn wait_for_log(store: &dyn Store, key: &str, len: usize, worker: &mut Worker) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.read_log(key, 0) {
            Ok(data) if data.len() >= len => return,
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(error) => panic!("{error}"),
        }
        if let Some(status) = worker.exited() {
            panic!("worker exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "worker never wrote {len} bytes to log {key}"
        );
        thread::sleep(Duration::from_millis(2));
    }
}

/// A small xorshift generator seeded from `RandomState`; tests need variety, not quality.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        Rng(RandomState::new().build_hasher().finish() | 1)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

const PROCESSES: u64 = 4;
const PROCESS_INCREMENTS: u64 = 40;

/// `PROCESSES` worker processes each add `PROCESS_INCREMENTS` to a counter by compare-and-swap and
/// log each value they wrote: no update may be lost or repeated, and no log line torn.
pub fn concurrent_cas_across_processes(shared: &Shared) {
    let store = shared.store.as_ref();
    ok(
        "create counter",
        store.put("counter", b"0", Condition::IfNoneExists, None),
    );
    let workers: Vec<_> = (0..PROCESSES)
        .map(|_| Worker::spawn(shared, "cas", PROCESS_INCREMENTS))
        .collect();
    for worker in workers {
        worker.wait_success();
    }
    let total = PROCESSES * PROCESS_INCREMENTS;
    assert_eq!(
        read_counter(store, "counter"),
        total,
        "every increment counts once"
    );
    // Each successful swap wrote a distinct value, logged by its writer: none may repeat or be
    // missing, and no log line may be torn by another process's append.
    let log = ok("read_log written", store.read_log("written", 0));
    let log = String::from_utf8_lossy(&log);
    let written: Vec<u64> = log
        .lines()
        .map(|line| {
            line.parse()
                .unwrap_or_else(|_| panic!("torn log line {line:?}"))
        })
        .collect();
    let distinct: BTreeSet<u64> = written.iter().copied().collect();
    assert_eq!(written.len() as u64, total, "one log line per increment");
    assert_eq!(
        distinct,
        (1..=total).collect(),
        "each value was written exactly once"
    );
}

fn worker_cas(store: &dyn Store, ops: u64) {
    for _ in 0..ops {
        let value = cas_increment(store, "counter");
        ok(
            "append written",
            store.append("written", format!("{value}\n").as_bytes()),
        );
    }
}

/// A worker takes a lease and is killed while holding it: the lease holds until it expires, and
/// then another holder takes the key over.
pub fn lease_expires_after_holder_is_killed(shared: &Shared) {
    let store = shared.store.as_ref();
    ok("put", store.put("leased", b"v", Condition::Always, None));
    let mut worker = Worker::spawn(shared, "lease", 0);
    wait_for_log(store, "ready", 1, &mut worker);
    let leased = Instant::now();
    worker.kill();

    fails(
        "put right after the kill",
        store.put("leased", b"x", Condition::Always, None),
        "LeaseHeld",
    );
    fails(
        "acquire right after the kill",
        store.acquire_lease("leased", MIN_LEASE),
        "LeaseHeld",
    );
    let lease = loop {
        match store.acquire_lease("leased", MIN_LEASE) {
            Ok(lease) => break lease,
            Err(StoreError::LeaseHeld { .. }) => {
                assert!(
                    leased.elapsed() < Duration::from_secs(20),
                    "the dead holder's lease never expired"
                );
                thread::sleep(Duration::from_millis(100));
            }
            Err(error) => panic!("acquire after the kill: {error}"),
        }
    };
    // The worker took the lease before it said so, so it expires a little under 15 s after.
    assert!(
        leased.elapsed() > Duration::from_secs(10),
        "the lease expired early: {:?}",
        leased.elapsed()
    );
    ok(
        "put with the new lease",
        store.put("leased", b"mine", Condition::Always, Some(&lease)),
    );
    assert_eq!(data(store, "leased").as_deref(), Some(&b"mine"[..]));
}

fn worker_lease(store: &dyn Store) {
    ok("acquire", store.acquire_lease("leased", MIN_LEASE));
    ok("append ready", store.append("ready", b"1"));
    // Hold the lease without renewing until killed; give up eventually if the parent died.
    thread::sleep(Duration::from_secs(60));
}

/// `len` copies of `byte` followed by `len` as 8 little-endian bytes: a torn or mixed value fails
/// `check_pattern`.
fn pattern(len: usize, byte: u8) -> Vec<u8> {
    let mut data = vec![byte; len];
    data.extend_from_slice(&(len as u64).to_le_bytes());
    data
}

/// What the parent writes; workers write `a` to `z`.
const PARENT_BYTE: u8 = b'P';

#[track_caller]
fn check_pattern(data: &[u8]) {
    let Some((body, len)) = data.split_last_chunk::<8>() else {
        panic!("value of {} bytes is too short", data.len());
    };
    assert_eq!(u64::from_le_bytes(*len), body.len() as u64, "value is torn");
    assert!(
        body.len() >= 1024,
        "value of {} bytes is shorter than any written",
        body.len()
    );
    assert!(
        body.iter().all(|&byte| byte == body[0]),
        "value mixes writes"
    );
}

#[track_caller]
fn current_blob(store: &dyn Store) -> crate::store::Versioned {
    ok("get blob", store.get("blob")).unwrap_or_else(|| panic!("blob is missing"))
}

/// A worker rewrites a value of up to 1 MiB in a loop and is killed at a random moment, ten
/// times: readers, during and after, see only whole values, and nothing else becomes visible.
pub fn killed_writer_never_leaves_a_torn_value(shared: &Shared) {
    let store = shared.store.as_ref();
    let mut rng = Rng::new();
    ok(
        "put",
        store.put("blob", &pattern(1024, PARENT_BYTE), Condition::Always, None),
    );
    let mut progress = 0;
    let mut rounds_with_writes = 0;
    for _ in 0..10 {
        let mut worker = Worker::spawn(shared, "writer", 0);
        // Kill at a random moment once the worker is in its loop, not while it is starting;
        // until then, reads racing the writes must see whole values too.
        wait_for_log(store, "progress", progress + 1, &mut worker);
        let kill_at = Instant::now() + Duration::from_millis(rng.below(50));
        while Instant::now() < kill_at {
            check_pattern(&current_blob(store).data);
        }
        worker.kill();
        progress = ok("read_log progress", store.read_log("progress", 0)).len();

        let value = current_blob(store);
        check_pattern(&value.data);
        if value.data[0] != PARENT_BYTE {
            rounds_with_writes += 1;
        }
        ok(
            "reset blob",
            store.put(
                "blob",
                &pattern(1024, PARENT_BYTE),
                Condition::IfMatch(value.etag),
                None,
            ),
        );
    }
    assert_eq!(
        rounds_with_writes, 10,
        "each round the worker wrote before it was killed"
    );
    assert_eq!(
        ok("list", store.list("")),
        ["blob"],
        "interrupted writes leave no visible keys"
    );
}

fn worker_writer(store: &dyn Store) {
    let mut rng = Rng::new();
    // Bounded in case the parent died without killing this process.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let current = current_blob(store);
        let len = 1024 + rng.below(1024 * 1024 - 1024 + 1) as usize;
        let byte = b'a' + rng.below(26) as u8;
        ok(
            "put blob",
            store.put(
                "blob",
                &pattern(len, byte),
                Condition::IfMatch(current.etag),
                None,
            ),
        );
        ok("append progress", store.append("progress", b"+"));
    }
}

/// Declares one `#[test]` per contract check for a store, and one per multi-process check, plus
/// guards that fail when a check has no test. `fresh` makes a new store: a function returning
/// `(guard, store)` (the guard, a temporary directory say, lives as long as the test);
/// `shared` makes a store that worker processes can reopen: `(guard, Shared)`.
#[macro_export]
macro_rules! store_contract_tests {
    (fresh = $fresh:expr, shared = $shared:expr $(,)?) => {
        $crate::store_contract_tests!(@single $fresh;
            get_put_roundtrip,
            parent_and_child_keys_coexist,
            create_only,
            compare_and_swap,
            delete_if_match,
            list_by_prefix,
            append_and_read_log,
            lease_acquire_renew_release_break,
            lease_blocks_writes_without_id,
            lease_expiry_allows_takeover,
            invalid_keys_are_rejected,
            concurrent_cas_in_threads,
        );
        $crate::store_contract_tests!(@multi $shared;
            concurrent_cas_across_processes,
            lease_expires_after_holder_is_killed,
            killed_writer_never_leaves_a_torn_value,
        );
    };
    (@single $fresh:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let (_guard, store) = ($fresh)();
                $crate::contract::$check(&store);
            }
        )*

        #[test]
        fn every_contract_check_has_a_test() {
            let ours: ::std::collections::BTreeSet<&str> = [$(stringify!($check)),*].into();
            let all: ::std::collections::BTreeSet<&str> =
                $crate::contract::CHECKS.iter().map(|(name, _)| *name).collect();
            assert_eq!(ours, all);
        }
    };
    (@multi $shared:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let (_guard, shared) = ($shared)();
                $crate::contract::$check(&shared);
            }
        )*

        #[test]
        fn every_multi_process_check_has_a_test() {
            let ours: ::std::collections::BTreeSet<&str> = [$(stringify!($check)),*].into();
            let all: ::std::collections::BTreeSet<&str> = $crate::contract::MULTI_PROCESS_CHECKS
                .iter()
                .map(|(name, _)| *name)
                .collect();
            assert_eq!(ours, all);
        }
    };
}
