//! Runs the store contract against `DirStore`, with the multi-process checks: compare-and-swap
//! across processes, a lease holder killed while holding, and a writer killed in the middle of a
//! write.
//!
//! The multi-process checks re-run this test binary as `--exact contract_worker`, which opens the
//! same directory from `DIRSTORE_ROOT`; in every other run `contract_worker` returns at once.
#![allow(clippy::unwrap_used)]

use control::DirStore;
use control::contract::{self, Shared};

const ROOT: &str = "DIRSTORE_ROOT";

fn fresh() -> (tempfile::TempDir, DirStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path().join("store")).unwrap();
    (dir, store)
}

fn shared() -> (tempfile::TempDir, Shared) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let shared = Shared {
        store: Box::new(DirStore::open(&root).unwrap()),
        env: vec![(ROOT.to_owned(), root.display().to_string())],
    };
    (dir, shared)
}

control::store_contract_tests!(fresh = fresh, shared = shared);

#[test]
fn contract_worker() {
    contract::worker(|| Box::new(DirStore::open(std::env::var(ROOT).unwrap()).unwrap()));
}
