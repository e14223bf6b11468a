//! The contract every `Store` implementation must pass. The directory store runs it in its tests;
//! a blob store can run the same checks against Azurite.
//!
//! Each check takes a fresh, empty store and panics with a message naming what failed. Run them
//! one test each so they run in parallel: `lease_expiry_allows_takeover` sleeps past `MIN_LEASE`.
//! Or all in one:
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
use std::fmt::Debug;
use std::thread;
use std::time::Duration;

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
