//! Runs the store contract against `DirStore`, with the multi-process checks: compare-and-swap
//! across processes, a lease holder killed while holding, and a writer killed in the middle of a
//! write.
//!
//! The multi-process checks re-run this test binary as `--exact contract_worker`, which opens the
//! same directory from `DIRSTORE_ROOT`; in every other run `contract_worker` returns at once.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use control::DirStore;
use control::contract::{self, CHECKS, MULTI_PROCESS_CHECKS, Shared};

const ROOT: &str = "DIRSTORE_ROOT";

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

macro_rules! multi_process_tests {
    ($($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let dir = tempfile::tempdir().unwrap();
                let root = dir.path().join("store");
                let shared = Shared {
                    store: Box::new(DirStore::open(&root).unwrap()),
                    env: vec![(ROOT.to_owned(), root.display().to_string())],
                };
                contract::$check(&shared);
            }
        )*

        #[test]
        fn every_multi_process_check_has_a_test() {
            let ours: BTreeSet<&str> = [$(stringify!($check)),*].into();
            let all: BTreeSet<&str> = MULTI_PROCESS_CHECKS.iter().map(|(name, _)| *name).collect();
            assert_eq!(ours, all);
        }
    };
}

multi_process_tests!(
    concurrent_cas_across_processes,
    lease_expires_after_holder_is_killed,
    killed_writer_never_leaves_a_torn_value,
);

#[test]
fn contract_worker() {
    contract::worker(|| Box::new(DirStore::open(std::env::var(ROOT).unwrap()).unwrap()));
}
