//! Runs the store contract against Azurite: every check of `control::contract`, the
//! multi-process ones included, each on a fresh container of one Azurite this test process
//! starts, and what only the blob store has (credentials, the configure-time check, large
//! values and logs).
//!
//! Azurite comes from `cargo xtask test` (or `BATCHAI_AZURITE`); without it these tests fail and
//! say how to get it. The multi-process checks re-run this binary as `--exact contract_worker`,
//! which opens the same container from `BLOBSTORE_CONTAINER_URL`.
#![allow(clippy::unwrap_used)]

use control::contract::{self, Shared};
use control::{Condition, Store};
use control_blob::azurite::Azurite;
use control_blob::{BlobStore, Credential, OpenError};

const CONTAINER_URL: &str = "BLOBSTORE_CONTAINER_URL";

fn azurite() -> &'static Azurite {
    Azurite::shared().unwrap_or_else(|error| panic!("{error}"))
}

fn fresh() -> (BlobStore, String) {
    azurite()
        .fresh_store()
        .unwrap_or_else(|error| panic!("{error}"))
}

fn shared() -> (String, Shared) {
    let (store, url) = fresh();
    let shared = Shared {
        store: Box::new(store),
        env: vec![(CONTAINER_URL.to_owned(), url.clone())],
    };
    (url, shared)
}

fn contract_store() -> (String, BlobStore) {
    let (store, url) = fresh();
    (url, store)
}

control::store_contract_tests!(fresh = contract_store, shared = shared);

#[test]
fn contract_worker() {
    contract::worker(|| {
        let url = std::env::var(CONTAINER_URL).unwrap();
        Box::new(BlobStore::open(&url, Azurite::credential()).unwrap())
    });
}

#[test]
fn check_tells_a_refused_key_a_missing_container_and_a_dead_endpoint_apart() {
    let azurite = azurite();
    let missing = azurite.container_url(&Azurite::unique_container("missing"));
    let wrong_key = Credential::AccountKey("d3Jvbmcga2V5".into());
    let cases: &[(&str, Credential, &str)] = &[
        (&missing, Azurite::credential(), "ContainerMissing"),
        (&missing, wrong_key.clone(), "AuthenticationRefused"),
        (
            "http://127.0.0.1:1/devstoreaccount1/control",
            Azurite::credential(),
            "Unreachable",
        ),
    ];
    for (url, credential, want) in cases {
        let store = BlobStore::open(url, credential.clone()).unwrap();
        let error = store.check().unwrap_err();
        let kind = match &error {
            OpenError::ContainerMissing { .. } => "ContainerMissing",
            OpenError::AuthenticationRefused { .. } => "AuthenticationRefused",
            OpenError::Unreachable { .. } => "Unreachable",
            _ => "other",
        };
        assert_eq!(kind, *want, "{url}: {error}");
        assert_eq!(
            error.blames_credential(),
            *want == "AuthenticationRefused",
            "{error}"
        );
        assert!(
            error.to_string().starts_with("check blob store "),
            "{error}"
        );
    }

    let store = BlobStore::open(&missing, Azurite::credential()).unwrap();
    store.ensure_container().unwrap();
    store.check().unwrap();
    store.ensure_container().unwrap();
    let refused = BlobStore::open(
        &azurite.container_url(&Azurite::unique_container("refused")),
        wrong_key,
    )
    .unwrap();
    assert!(matches!(
        refused.ensure_container(),
        Err(OpenError::AuthenticationRefused { .. })
    ));
}

#[test]
fn a_sas_token_works_and_a_bad_one_is_refused_without_showing_it() {
    let (_, url) = fresh();
    let sas = Azurite::sas_token().unwrap();
    let store = BlobStore::open(&url, Credential::SasToken(format!("?{sas}"))).unwrap();
    store.check().unwrap();
    store.put("k", b"v", Condition::IfNoneExists, None).unwrap();
    assert_eq!(store.get("k").unwrap().unwrap().data, b"v");

    let forged = sas.replacen("sp=rwdlac", "sp=rwdlacx", 1);
    let store = BlobStore::open(&url, Credential::SasToken(forged)).unwrap();
    let error = store.check().unwrap_err();
    assert!(
        matches!(error, OpenError::AuthenticationRefused { .. }),
        "{error}"
    );
    let error = store.get("k").unwrap_err().to_string();
    assert!(error.contains("403"), "{error}");
    let signature = sas.split("sig=").nth(1).unwrap();
    for text in [error, store.check().unwrap_err().to_string()] {
        assert!(!text.contains(signature), "{text}");
    }
}

#[test]
fn large_values_and_split_appends_round_trip() {
    let (store, _) = fresh();
    let value: Vec<u8> = (0..5 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
    let etag = store.put("big", &value, Condition::Always, None).unwrap();
    let got = store.get("big").unwrap().unwrap();
    assert_eq!((got.data.len(), &got.etag), (value.len(), &etag));
    assert!(got.data == value, "the value comes back whole");

    // Larger than one append block: split, and read back whole and from the middle.
    let log: Vec<u8> = (0..control_blob::APPEND_BLOCK * 2 + 3)
        .map(|i| (i % 253) as u8)
        .collect();
    store.append("log", &log).unwrap();
    store.append("log", b"tail").unwrap();
    let mut want = log.clone();
    want.extend_from_slice(b"tail");
    assert!(store.read_log("log", 0).unwrap() == want);
    let middle = control_blob::APPEND_BLOCK as u64 + 1;
    assert!(store.read_log("log", middle).unwrap() == want[middle as usize..]);
}

#[test]
fn files_upload_once_beside_the_keys_and_are_never_listed() {
    let (store, _) = fresh();
    let data = vec![7u8; 300_000];
    assert!(
        store
            .upload_file_once("agent/0.1.0/abc", data.clone())
            .unwrap()
    );
    assert!(!store.upload_file_once("agent/0.1.0/abc", vec![1]).unwrap());
    assert!(
        store
            .file_url("agent/0.1.0/abc")
            .ends_with("/agent/0.1.0/abc")
    );
    assert_eq!(store.list("").unwrap(), Vec::<String>::new());
}
