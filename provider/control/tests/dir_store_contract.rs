//! Runs the store contract against `DirStore`, plus what only a directory that several processes
//! share must survive: compare-and-swap across processes, a lease holder killed while holding,
//! and a writer killed in the middle of a write.
//!
//! The multi-process tests re-run this test binary with `--exact worker_…` and `DIRSTORE_WORKER`
//! set; the worker tests return at once when it is not set to their kind.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use control::contract::{self, CHECKS};
use control::store::MIN_LEASE;
use control::{Condition, DirStore, Store, StoreError};

const WORKER: &str = "DIRSTORE_WORKER";
const WORKER_ROOT: &str = "DIRSTORE_WORKER_ROOT";
const WORKER_OPS: &str = "DIRSTORE_WORKER_OPS";

fn fresh() -> (tempfile::TempDir, DirStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path().join("store")).unwrap();
    (dir, store)
}

macro_rules! contract_tests {
    ($($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let (_dir, store) = fresh();
                contract::$check(&store);
            }
        )*

        #[test]
        fn every_contract_check_has_a_test() {
            let ours: BTreeSet<&str> = [$(stringify!($check)),*].into();
            let all: BTreeSet<&str> = CHECKS.iter().map(|(name, _)| *name).collect();
            assert_eq!(ours, all);
        }
    };
}

contract_tests!(
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

/// Kills and reaps the worker when dropped, so a failing test leaves no process behind.
struct Worker(Child);

impl Worker {
    fn spawn(kind: &str, root: &Path, ops: u64) -> Worker {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &format!("worker_{kind}"),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WORKER, kind)
            .env(WORKER_ROOT, root)
            .env(WORKER_OPS, ops.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Worker(child)
    }

    fn wait_success(mut self) {
        let status = self.0.wait().unwrap();
        assert!(status.success(), "worker failed: {status}");
    }

    /// SIGKILL on Unix: the worker gets no chance to clean up.
    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The store and operation count when this process is a worker of `kind`.
fn worker_store(kind: &str) -> Option<(DirStore, u64)> {
    if std::env::var(WORKER).ok()? != kind {
        return None;
    }
    let store = DirStore::open(std::env::var(WORKER_ROOT).unwrap()).unwrap();
    let ops = std::env::var(WORKER_OPS).unwrap().parse().unwrap();
    Some((store, ops))
}

/// Waits until the log `key` holds at least `len` bytes.
fn wait_for_log(store: &DirStore, key: &str, len: usize, worker: &mut Worker) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.read_log(key, 0) {
            Ok(data) if data.len() >= len => return,
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(error) => panic!("{error}"),
        }
        if let Some(status) = worker.0.try_wait().unwrap() {
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

#[test]
fn concurrent_cas_across_processes() {
    let (dir, store) = fresh();
    store
        .put("counter", b"0", Condition::IfNoneExists, None)
        .unwrap();
    let workers: Vec<_> = (0..PROCESSES)
        .map(|_| Worker::spawn("cas", &dir.path().join("store"), PROCESS_INCREMENTS))
        .collect();
    for worker in workers {
        worker.wait_success();
    }
    let total = PROCESSES * PROCESS_INCREMENTS;
    assert_eq!(
        contract::read_counter(&store, "counter"),
        total,
        "every increment counts once"
    );
    // Each successful swap wrote a distinct value, logged by its writer: none may repeat or be
    // missing, and no log line may be torn by another process's append.
    let log = String::from_utf8(store.read_log("written", 0).unwrap()).unwrap();
    let written: Vec<u64> = log.lines().map(|line| line.parse().unwrap()).collect();
    let distinct: BTreeSet<u64> = written.iter().copied().collect();
    assert_eq!(written.len() as u64, total, "one log line per increment");
    assert_eq!(
        distinct,
        (1..=total).collect(),
        "each value was written exactly once"
    );
}

#[test]
fn worker_cas() {
    let Some((store, ops)) = worker_store("cas") else {
        return;
    };
    for _ in 0..ops {
        let value = contract::cas_increment(&store, "counter");
        store
            .append("written", format!("{value}\n").as_bytes())
            .unwrap();
    }
}

#[test]
fn lease_expires_after_holder_is_killed() {
    let (dir, store) = fresh();
    store.put("leased", b"v", Condition::Always, None).unwrap();
    let mut worker = Worker::spawn("lease", &dir.path().join("store"), 0);
    wait_for_log(&store, "ready", 1, &mut worker);
    let leased = Instant::now();
    worker.kill();

    let held = |result: Result<_, StoreError>, what: &str| {
        assert!(
            matches!(result, Err(StoreError::LeaseHeld { .. })),
            "{what} right after the kill: {result:?}"
        );
    };
    held(
        store.put("leased", b"x", Condition::Always, None).map(drop),
        "put",
    );
    held(
        store.acquire_lease("leased", MIN_LEASE).map(drop),
        "acquire",
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
            Err(error) => panic!("{error}"),
        }
    };
    // The worker took the lease before it said so, so it expires a little under 15 s after.
    assert!(
        leased.elapsed() > Duration::from_secs(10),
        "the lease expired early: {:?}",
        leased.elapsed()
    );
    store
        .put("leased", b"mine", Condition::Always, Some(&lease))
        .unwrap();
    assert_eq!(store.get("leased").unwrap().unwrap().data, b"mine");
}

#[test]
fn worker_lease() {
    let Some((store, _)) = worker_store("lease") else {
        return;
    };
    store.acquire_lease("leased", MIN_LEASE).unwrap();
    store.append("ready", b"1").unwrap();
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

#[test]
fn killed_writer_never_leaves_a_torn_value() {
    let (dir, store) = fresh();
    let mut rng = Rng::new();
    store
        .put("blob", &pattern(1024, PARENT_BYTE), Condition::Always, None)
        .unwrap();
    let mut progress = 0;
    let mut rounds_with_writes = 0;
    for _ in 0..10 {
        let mut worker = Worker::spawn("writer", &dir.path().join("store"), 0);
        // Kill at a random moment once the worker is in its loop, not while it is starting;
        // until then, reads racing the writes must see whole values too.
        wait_for_log(&store, "progress", progress + 1, &mut worker);
        let kill_at = Instant::now() + Duration::from_millis(rng.below(50));
        while Instant::now() < kill_at {
            check_pattern(&store.get("blob").unwrap().unwrap().data);
        }
        worker.kill();
        progress = store.read_log("progress", 0).unwrap().len();

        let value = store.get("blob").unwrap().unwrap();
        check_pattern(&value.data);
        if value.data[0] != PARENT_BYTE {
            rounds_with_writes += 1;
        }
        store
            .put(
                "blob",
                &pattern(1024, PARENT_BYTE),
                Condition::IfMatch(value.etag),
                None,
            )
            .unwrap();
    }
    assert_eq!(
        rounds_with_writes, 10,
        "each round the worker wrote before it was killed"
    );
    assert_eq!(
        store.list("").unwrap(),
        ["blob"],
        "interrupted writes leave no visible keys"
    );
}

#[test]
fn worker_writer() {
    let Some((store, _)) = worker_store("writer") else {
        return;
    };
    let mut rng = Rng::new();
    // Bounded in case the parent died without killing this process.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let current = store.get("blob").unwrap().unwrap();
        let len = 1024 + rng.below(1024 * 1024 - 1024 + 1) as usize;
        let byte = b'a' + rng.below(26) as u8;
        store
            .put(
                "blob",
                &pattern(len, byte),
                Condition::IfMatch(current.etag),
                None,
            )
            .unwrap();
        store.append("progress", b"+").unwrap();
    }
}
