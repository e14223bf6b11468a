//! The blob control store: `control::Store` on an Azure Blob Storage container (Azurite in tests),
//! mapped one to one onto the service's own semantics: a get is a download with its ETag, a
//! conditional put is `If-Match` / `If-None-Match: *`, a lease is a blob lease, a log is an
//! append blob.
//!
//! **Sync trait, async SDK.** The `Store` trait is synchronous and is called from plain threads
//! (the agent) and from inside tokio tasks (the provider); the Azure SDK is async. Each call runs
//! its requests on one small process-wide tokio runtime with its own threads and waits for the
//! answer on a std channel (see `runtime`), so it works from any thread and never panics inside
//! another runtime. It blocks the calling thread like the directory store's file I/O does, so
//! async callers wrap store calls in `spawn_blocking`.
//!
//! **Layout.** The value of key `a/b` is the block blob `values/a/b`; the log `a/b` is the append
//! blob `logs/a/b`, so values and logs are apart as the trait requires, and other blobs in the
//! container (the agent binary, say) are never listed as keys. A key segment that ends with `.`
//! is stored with a `~` after it, because Azure trims trailing dots from names.
//!
//! **Failures.** Expected outcomes map to `Conflict`, `NotFound`, `LeaseHeld` and `LeaseLost` by
//! Azure's error code. Everything else (connection failures, timeouts, 5xx, 429, a refused
//! credential, a missing container) is `StoreError::Io`, the variant callers retry on, with the
//! status, Azure's error code and `x-ms-request-id` in its message. Every request is bounded by
//! [`REQUEST_TIMEOUT`] and the SDK does not retry: callers do their own retrying, and the SDK's
//! default would sleep through an uncapped `Retry-After`.
//!
//! **Credentials.** A SAS token, an account key (from which the store signs a short-lived account
//! SAS and signs a new one before it expires), or an Entra token credential (a managed identity
//! on nodes). The SDK sends bearer tokens over `https` only, so a token credential cannot reach
//! Azurite over plain http. No secret appears in `Debug` output, errors or logs.
//!
//! **Logs** are weaker than the directory store's in three ways: an append larger than
//! [`APPEND_BLOCK`] is split into blocks and another process's append may land between them; an
//! append blob takes at most 50,000 appends (then appends fail with `BlockCountExceedsLimit`);
//! and since nothing is retried here, an append whose answer was lost lands twice if the caller
//! retries it.
use std::fmt;
use std::future::Future;
use std::num::NonZero;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use azure_core::Bytes;
use azure_core::http::{ClientOptions, Etag, RetryOptions, Transport, Url};
use azure_storage_blob::models::{
    AppendBlobClientCreateOptions, BlobClientAcquireLeaseResultHeaders as _,
    BlobClientBreakLeaseOptions, BlobClientDeleteOptions, BlobClientDownloadOptions,
    BlobContainerClientListBlobsOptions, BlockBlobClientUploadOptions,
};
use azure_storage_blob::{BlobClient, BlobContainerClient, BlobContainerClientOptions};
use control::store::{MAX_LEASE, MIN_LEASE, validate_key};
use control::{Condition, ETag, LeaseId, Store, StoreError, Versioned};
use futures_util::StreamExt as _;

pub use azure_core::credentials::TokenCredential;
pub use error::OpenError;

#[cfg(feature = "azurite")]
pub mod azurite;
mod error;
pub mod http;
pub mod imds;
mod location;
mod runtime;
mod sas;

use error::{Failure, lease_op_error, lease_write_error};
use location::ContainerUrl;

/// The storage API version every request asks for. The SDK's default (2026-04-06) is newer than
/// Azurite 3.35.0 accepts; this one both Azure and Azurite serve, and it is new enough for
/// 100 MiB append blocks and the account-SAS format `sas` signs.
pub const API_VERSION: &str = "2025-11-05";

/// The longest one request may take, connection included. Callers retry after it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest append sent as one block. Larger appends are split (see the crate docs).
pub const APPEND_BLOCK: usize = 4 * 1024 * 1024;

/// Reads download this much per request: values and log reads are far smaller, so one request
/// answers them, and its ETag and body belong together.
const READ_PARTITION: usize = 64 * 1024 * 1024;

/// Values up to this size are written in one Put Blob (Azure takes up to 5000 MiB); larger ones
/// are staged in blocks and committed under the same conditions, still atomically.
const WRITE_PARTITION: u64 = 256 * 1024 * 1024;

/// Blobs per list page: the service's maximum, or a tiny page in this crate's unit tests so
/// that following pages is exercised without thousands of blobs.
const LIST_PAGE: i32 = if cfg!(test) { 2 } else { 5000 };

/// A read that spans several requests fails with 412 when the blob changes between them; it is
/// read again from the start, this many times at most.
const READ_ATTEMPTS: usize = 5;

/// Reads (get, list, a log's tail) change nothing, so one that meets a transient failure (a
/// connection reset, a busy service) is tried again here, twice, after 100 and 400 ms: a short,
/// bounded retry that spares every caller a failed operation for a blip. Writes are not, since
/// a write whose answer was lost may have happened; callers decide.
const READ_RETRIES: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(400)];

/// Runs the read `attempt` until it succeeds, fails for good, or [`READ_RETRIES`] are used up.
async fn read_retrying<T, F, Fut>(mut attempt: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut retries = READ_RETRIES.iter();
    loop {
        match attempt().await {
            Err(failure) if failure.is_transient() => match retries.next() {
                Some(nap) => tokio::time::sleep(*nap).await,
                None => return Err(failure),
            },
            other => return other,
        }
    }
}

/// How the store authenticates.
#[derive(Clone)]
pub enum Credential {
    /// A SAS query string (`sv=…&sig=…`, with or without the leading `?`): an account SAS, a
    /// service SAS for the container, or a user delegation SAS. It needs read, add, create,
    /// write, delete and list on the container's blobs.
    SasToken(String),
    /// A storage account key (base64, key1 or key2). The store signs an account SAS from it
    /// (blob service, containers and objects, `rwdlac`, valid one hour) and renews it before
    /// it expires; the key itself never leaves the process.
    AccountKey(String),
    /// An Entra ID credential (a managed identity on nodes), for `https` endpoints only: the SDK
    /// refuses to send a bearer token over plain http. The identity needs the Storage Blob Data
    /// Contributor role on the container (or account).
    Token(Arc<dyn TokenCredential>),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credential::SasToken(_) => "SasToken(REDACTED)",
            Credential::AccountKey(_) => "AccountKey(REDACTED)",
            Credential::Token(_) => "Token(..)",
        })
    }
}

/// The credential as the store uses it.
enum Auth {
    Sas(String),
    Key(Vec<u8>),
    Token(Arc<dyn TokenCredential>),
}

/// The container client in use and, for a signed SAS, when to sign the next one.
struct Current {
    container: Arc<BlobContainerClient>,
    renew_at: Option<SystemTime>,
}

struct Inner {
    location: ContainerUrl,
    auth: Auth,
    /// One HTTP client for every container client this store makes, so renewing the SAS keeps
    /// the open connections.
    transport: Transport,
    current: Mutex<Current>,
}

/// The control store on a blob container. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credential = match self.inner.auth {
            Auth::Sas(_) => "SAS token",
            Auth::Key(_) => "account key",
            Auth::Token(_) => "token credential",
        };
        f.debug_struct("BlobStore")
            .field("container", &self.inner.location.url.as_str())
            .field("credential", &credential)
            .finish()
    }
}

impl BlobStore {
    /// Opens the store on the container at `container_url`
    /// (`https://ACCOUNT.blob.core.windows.net/CONTAINER` or Azurite's
    /// `http://HOST:PORT/ACCOUNT/CONTAINER`). Sends nothing: [`check`](Self::check) or
    /// [`ensure_container`](Self::ensure_container) find out whether the endpoint answers.
    pub fn open(container_url: &str, credential: Credential) -> Result<BlobStore, OpenError> {
        let extra_ca = std::env::var_os(http::TEST_CA_VAR).filter(|v| !v.is_empty());
        Self::open_trusting(
            container_url,
            credential,
            extra_ca.as_deref().map(std::path::Path::new),
        )
    }

    /// [`open`](Self::open), trusting the certificates in the PEM file `extra_ca` besides the
    /// system's rather than those `BATCHAI_TEST_CA_CERTIFICATE` names: for test code that talks
    /// to a simulator with a CA of its own.
    pub fn open_trusting(
        container_url: &str,
        credential: Credential,
        extra_ca: Option<&std::path::Path>,
    ) -> Result<BlobStore, OpenError> {
        let location = ContainerUrl::parse(container_url)?;
        let invalid = |reason: &str| OpenError::InvalidCredential {
            url: location.url.to_string(),
            reason: reason.to_owned(),
        };
        let auth = match credential {
            Credential::SasToken(sas) => {
                let sas = sas.trim().trim_start_matches('?');
                if !sas.split('&').any(|pair| pair.starts_with("sig=")) {
                    return Err(invalid("the SAS token has no signature (sig=)"));
                }
                Auth::Sas(sas.to_owned())
            }
            Credential::AccountKey(key) => Auth::Key(sas::decode_key(&key).map_err(invalid)?),
            Credential::Token(token) => {
                if location.url.scheme() != "https" {
                    return Err(invalid(
                        "a token credential needs an https endpoint (the SDK sends bearer tokens over TLS only)",
                    ));
                }
                Auth::Token(token)
            }
        };
        // Storage clients turn automatic decompression off; the SDK's partitioned downloads
        // need the raw bytes.
        let transport =
            Transport::new(
                http::client_trusting(extra_ca).map_err(|e| OpenError::Failed {
                    url: location.url.to_string(),
                    detail: e.to_string(),
                })?,
            );
        let current =
            client(&location, &auth, &transport, SystemTime::now()).map_err(|detail| {
                OpenError::Failed {
                    url: location.url.to_string(),
                    detail,
                }
            })?;
        runtime::get().map_err(|error| OpenError::Failed {
            url: location.url.to_string(),
            detail: format!("start the store runtime: {error}"),
        })?;
        Ok(BlobStore {
            inner: Arc::new(Inner {
                location,
                auth,
                transport,
                current: Mutex::new(current),
            }),
        })
    }

    /// The container URL, without any credential.
    pub fn container_url(&self) -> &str {
        self.inner.location.url.as_str()
    }

    /// The URL of blob `name` in the container, without any credential.
    pub fn file_url(&self, name: &str) -> String {
        format!("{}/{name}", self.container_url().trim_end_matches('/'))
    }

    /// Uploads `data` as blob `name`, beside the store's keys and logs (never listed as a key),
    /// unless a blob of that name exists: files here are named by their content (the agent
    /// binary by its SHA-256), so one that exists is the same. Returns whether it uploaded.
    pub fn upload_file_once(&self, name: &str, data: Vec<u8>) -> Result<bool, StoreError> {
        self.upload(name, data, true)
    }

    /// Uploads `data` as blob `name`, beside the store's keys and logs (never listed as a key),
    /// replacing any blob of that name: a node's copy of a file it wrote, taken again when the
    /// file has grown.
    pub fn upload_file(&self, name: &str, data: Vec<u8>) -> Result<(), StoreError> {
        self.upload(name, data, false).map(drop)
    }

    fn upload(&self, name: &str, data: Vec<u8>, once: bool) -> Result<bool, StoreError> {
        const OP: &str = "upload";
        let blob = self.blob(OP, name, name)?;
        let options = BlockBlobClientUploadOptions {
            partition_size: NonZero::new(WRITE_PARTITION),
            if_none_match: once.then(|| Etag::from("*")),
            ..Default::default()
        };
        let owned = name.to_owned();
        Self::run(OP, name, async move {
            // A big file takes longer than one request's bound; allow it a minute per 64 MiB.
            let allowed = REQUEST_TIMEOUT * (1 + u32::try_from(data.len() >> 26).unwrap_or(60));
            let upload = blob.upload(Bytes::from(data).into(), Some(options));
            match tokio::time::timeout(allowed, upload).await {
                Ok(Ok(_)) => Ok(true),
                Ok(Err(error)) => {
                    let failure = Failure::from_azure(&error);
                    if once
                        && (failure.is(409, "BlobAlreadyExists")
                            || failure.is(412, "ConditionNotMet"))
                    {
                        Ok(false)
                    } else {
                        Err(failure.into_io(OP, &owned))
                    }
                }
                Err(_) => Err(Failure::timeout(allowed).into_io(OP, &owned)),
            }
        })
    }

    /// The content of blob `name` beside the store's keys (a kept file), or `None`.
    pub fn download_file(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        const OP: &str = "download";
        let blob = self.blob(OP, name, name)?;
        let owned = name.to_owned();
        Self::run(OP, name, async move {
            match read_retrying(|| bounded(download(&blob, 0))).await {
                Ok((data, _)) => Ok(Some(data)),
                Err(failure) if failure.is(404, "BlobNotFound") => Ok(None),
                Err(failure) => Err(failure.into_io(OP, &owned)),
            }
        })
    }

    /// The names of the blobs beside the store's keys that start with `prefix`, sorted (the
    /// files [`upload_file`](Self::upload_file) kept).
    pub fn list_files(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        const OP: &str = "list files";
        let container = self
            .container()
            .map_err(|failure| failure.into_io(OP, prefix))?;
        let owned = prefix.to_owned();
        Self::run(OP, prefix, async move {
            let options = BlobContainerClientListBlobsOptions {
                prefix: Some(owned.clone()),
                maxresults: Some(LIST_PAGE),
                ..Default::default()
            };
            let mut pages = container
                .list_blobs(Some(options))
                .map_err(|error| Failure::from_azure(&error).into_io(OP, &owned))?
                .into_pages();
            let mut names = Vec::new();
            loop {
                let page = bounded(async {
                    match pages.next().await {
                        Some(page) => page?.into_model().map(Some),
                        None => Ok(None),
                    }
                })
                .await
                .map_err(|failure| failure.into_io(OP, &owned))?;
                let Some(page) = page else { break };
                names.extend(page.blob_items.into_iter().filter_map(|item| item.name));
            }
            names.sort();
            Ok(names)
        })
    }

    /// One cheap request (a list of at most one blob) that tells whether the endpoint answers,
    /// the credential is accepted and the container exists.
    pub fn check(&self) -> Result<(), OpenError> {
        let container = self
            .container()
            .map_err(|failure| self.open_error(failure))?;
        let listed = runtime::run(async move {
            let options = BlobContainerClientListBlobsOptions {
                maxresults: Some(1),
                prefix: Some(location::list_prefix("")),
                ..Default::default()
            };
            let mut pages = container
                .list_blobs(Some(options))
                .map_err(|error| Failure::from_azure(&error))?
                .into_pages();
            bounded(async { pages.next().await.transpose() })
                .await
                .map(drop)
        });
        match listed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failure)) => Err(self.open_error(failure)),
            Err(error) => Err(OpenError::Failed {
                url: self.container_url().to_owned(),
                detail: error.to_string(),
            }),
        }
    }

    /// [`check`](Self::check), creating the container when it is missing.
    pub fn ensure_container(&self) -> Result<(), OpenError> {
        match self.check() {
            Err(OpenError::ContainerMissing { .. }) => {}
            other => return other,
        }
        let container = self
            .container()
            .map_err(|failure| self.open_error(failure))?;
        let created = runtime::run(async move { bounded(container.create(None)).await.map(drop) });
        let url = self.container_url().to_owned();
        match created {
            Ok(Ok(())) => Ok(()),
            // Someone else created it meanwhile.
            Ok(Err(failure)) if failure.is(409, "ContainerAlreadyExists") => Ok(()),
            Ok(Err(failure)) if failure.status == Some(403) => {
                Err(OpenError::ContainerNotCreatable {
                    url,
                    detail: failure.detail,
                })
            }
            Ok(Err(failure)) => Err(self.open_error(failure)),
            Err(error) => Err(OpenError::Failed {
                url,
                detail: error.to_string(),
            }),
        }
    }

    fn open_error(&self, failure: Failure) -> OpenError {
        let url = self.container_url().to_owned();
        let detail = failure.detail.clone();
        if failure.is_auth() {
            OpenError::AuthenticationRefused { url, detail }
        } else if failure.is(404, "ContainerNotFound") {
            OpenError::ContainerMissing { url }
        } else if failure.status.is_none() {
            OpenError::Unreachable { url, detail }
        } else {
            OpenError::Failed { url, detail }
        }
    }

    /// The container client, with a freshly signed SAS when the current one is due for renewal.
    fn container(&self) -> Result<Arc<BlobContainerClient>, Failure> {
        let inner = &self.inner;
        let mut current = inner.current.lock().unwrap_or_else(PoisonError::into_inner);
        let now = SystemTime::now();
        if current.renew_at.is_some_and(|at| now >= at) {
            *current = client(&inner.location, &inner.auth, &inner.transport, now)
                .map_err(|detail| Failure::other(&detail))?;
        }
        Ok(Arc::clone(&current.container))
    }

    fn blob(&self, op: &'static str, key: &str, name: &str) -> Result<BlobClient, StoreError> {
        self.container()
            .map(|container| container.blob_client(name))
            .map_err(|failure| failure.into_io(op, key))
    }

    /// Runs `future` on the store runtime; a runtime that cannot take it is an I/O failure.
    fn run<T: Send + 'static>(
        op: &'static str,
        key: &str,
        future: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        runtime::run(future).map_err(|source| StoreError::Io {
            op,
            key: key.to_owned(),
            source,
        })?
    }
}

/// A container client for the store's URL and credential, signing a SAS at `now` for an
/// account key.
fn client(
    location: &ContainerUrl,
    auth: &Auth,
    transport: &Transport,
    now: SystemTime,
) -> Result<Current, String> {
    let mut url: Url = location.url.clone();
    let (credential, renew_at) = match auth {
        Auth::Sas(sas) => {
            url.set_query(Some(sas));
            (None, None)
        }
        Auth::Key(key) => {
            let https_only = url.scheme() == "https";
            url.set_query(Some(&sas::sign(&location.account, key, https_only, now)));
            (None, Some(now + sas::LIFETIME - sas::RENEW_BEFORE))
        }
        Auth::Token(token) => (Some(Arc::clone(token)), None),
    };
    let options = BlobContainerClientOptions {
        client_options: ClientOptions {
            retry: RetryOptions::none(),
            transport: Some(transport.clone()),
            ..Default::default()
        },
        version: API_VERSION.to_owned(),
    };
    let container = BlobContainerClient::new(url, credential, Some(options))
        .map_err(|error| location::redact(&format!("make the container client: {error}")))?;
    Ok(Current {
        container: Arc::new(container),
        renew_at,
    })
}

/// Bounds one request by [`REQUEST_TIMEOUT`] and reduces its failure to a [`Failure`].
async fn bounded<T>(request: impl Future<Output = azure_core::Result<T>>) -> Result<T, Failure> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Failure::from_azure(&error)),
        Err(_) => Err(Failure::timeout(REQUEST_TIMEOUT)),
    }
}

/// Every value key starting with `prefix`, sorted, page by page.
async fn list_keys(container: &BlobContainerClient, prefix: &str) -> Result<Vec<String>, Failure> {
    let options = BlobContainerClientListBlobsOptions {
        prefix: Some(location::list_prefix(prefix)),
        maxresults: Some(LIST_PAGE),
        ..Default::default()
    };
    let mut pages = container
        .list_blobs(Some(options))
        .map_err(|error| Failure::from_azure(&error))?
        .into_pages();
    let mut keys = Vec::new();
    loop {
        let page = bounded(async {
            match pages.next().await {
                Some(page) => page?.into_model().map(Some),
                None => Ok(None),
            }
        })
        .await?;
        let Some(page) = page else { break };
        keys.extend(
            page.blob_items
                .into_iter()
                .filter_map(|item| item.name)
                .filter_map(|name| location::value_key(&name))
                .filter(|key| key.starts_with(prefix)),
        );
    }
    keys.sort();
    Ok(keys)
}

/// Downloads a blob from `offset` with its ETag, in one request unless it is larger than
/// [`READ_PARTITION`].
async fn download(blob: &BlobClient, offset: u64) -> azure_core::Result<(Vec<u8>, Option<Etag>)> {
    let options = BlobClientDownloadOptions {
        range: (offset > 0).then(|| (offset..).into()),
        parallel: Some(NonZero::<usize>::MIN),
        partition_size: NonZero::new(READ_PARTITION),
        ..Default::default()
    };
    let result = blob.download(Some(options)).await?;
    let etag = result.properties.etag;
    let data = result.body.collect().await?;
    Ok((data.to_vec(), etag))
}

/// Azure lease IDs are GUIDs and the service refuses any other form with 400. An ID that is not
/// one was never issued, so it is sent as the nil GUID, which no lease has either: the answer is
/// then the one the store owes (`LeaseHeld` or `LeaseLost`), not a bad request.
fn wire_lease(lease: &LeaseId) -> String {
    const NIL: &str = "00000000-0000-0000-0000-000000000000";
    let is_guid = lease.0.len() == NIL.len()
        && lease.0.bytes().zip(NIL.bytes()).all(|(byte, shape)| {
            if shape == b'-' {
                byte == b'-'
            } else {
                byte.is_ascii_hexdigit()
            }
        });
    if is_guid {
        lease.0.clone()
    } else {
        NIL.to_owned()
    }
}

impl Store for BlobStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        const OP: &str = "get";
        validate_key(OP, key)?;
        let blob = self.blob(OP, key, &location::value_blob(key))?;
        let owned = key.to_owned();
        Self::run(OP, key, async move {
            for _ in 0..READ_ATTEMPTS {
                match read_retrying(|| bounded(download(&blob, 0))).await {
                    Ok((data, Some(etag))) => {
                        return Ok(Some(Versioned {
                            data,
                            etag: ETag(etag.to_string()),
                        }));
                    }
                    Ok((_, None)) => return Err(Failure::protocol("an ETag").into_io(OP, &owned)),
                    Err(failure) if failure.is(404, "BlobNotFound") => return Ok(None),
                    // Changed between the requests of one large read: read it again.
                    Err(failure) if failure.status == Some(412) => continue,
                    Err(failure) => return Err(failure.into_io(OP, &owned)),
                }
            }
            Err(Failure::other("the value changed during every read").into_io(OP, &owned))
        })
    }

    fn put(
        &self,
        key: &str,
        data: &[u8],
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<ETag, StoreError> {
        const OP: &str = "put";
        validate_key(OP, key)?;
        let blob = self.blob(OP, key, &location::value_blob(key))?;
        let mut options = BlockBlobClientUploadOptions {
            lease_id: lease.map(wire_lease),
            partition_size: NonZero::new(WRITE_PARTITION),
            ..Default::default()
        };
        match condition {
            Condition::Always => {}
            Condition::IfMatch(etag) => options.if_match = Some(Etag::from(etag.0)),
            Condition::IfNoneExists => options.if_none_match = Some(Etag::from("*")),
        }
        let data = Bytes::copy_from_slice(data);
        let owned = key.to_owned();
        Self::run(OP, key, async move {
            match bounded(blob.upload(data.into(), Some(options))).await {
                Ok(result) => result
                    .etag
                    .map(|etag| ETag(etag.to_string()))
                    .ok_or_else(|| Failure::protocol("an ETag").into_io(OP, &owned)),
                Err(failure) => Err(lease_write_error(&failure, OP, &owned).unwrap_or_else(|| {
                    // `If-Match` on a missing blob fails as the condition it is, as in the
                    // directory store.
                    if failure.is(409, "BlobAlreadyExists")
                        || failure.is(412, "ConditionNotMet")
                        || failure.is(404, "BlobNotFound")
                    {
                        StoreError::Conflict {
                            op: OP,
                            key: owned.clone(),
                        }
                    } else {
                        failure.into_io(OP, &owned)
                    }
                })),
            }
        })
    }

    fn delete(
        &self,
        key: &str,
        condition: Condition,
        lease: Option<&LeaseId>,
    ) -> Result<(), StoreError> {
        const OP: &str = "delete";
        validate_key(OP, key)?;
        let blob = self.blob(OP, key, &location::value_blob(key))?;
        let options = BlobClientDeleteOptions {
            lease_id: lease.map(wire_lease),
            if_match: match condition {
                Condition::IfMatch(etag) => Some(Etag::from(etag.0)),
                Condition::Always | Condition::IfNoneExists => None,
            },
            ..Default::default()
        };
        let owned = key.to_owned();
        Self::run(OP, key, async move {
            match bounded(blob.delete(Some(options))).await {
                Ok(_) => Ok(()),
                Err(failure) if failure.is(404, "BlobNotFound") => {
                    Err(StoreError::NotFound { op: OP, key: owned })
                }
                // Azurite (and HTTP) fail `If-Match` on a missing blob as a condition; the trait
                // says a missing key is `NotFound` whatever the condition, so ask which it was.
                // A blob made since has a new ETag, so `Conflict` stays right if it exists.
                Err(failure) if failure.is(412, "ConditionNotMet") => {
                    match bounded(blob.get_properties(None)).await {
                        Ok(_) => Err(StoreError::Conflict { op: OP, key: owned }),
                        Err(missing) if missing.is(404, "BlobNotFound") => {
                            Err(StoreError::NotFound { op: OP, key: owned })
                        }
                        Err(other) => Err(other.into_io(OP, &owned)),
                    }
                }
                Err(failure) => Err(lease_write_error(&failure, OP, &owned)
                    .unwrap_or_else(|| failure.into_io(OP, &owned))),
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        const OP: &str = "list";
        let container = self
            .container()
            .map_err(|failure| failure.into_io(OP, prefix))?;
        let owned = prefix.to_owned();
        Self::run(OP, prefix, async move {
            read_retrying(|| list_keys(&container, &owned))
                .await
                .map_err(|failure| failure.into_io(OP, &owned))
        })
    }

    fn append(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        const OP: &str = "append";
        validate_key(OP, key)?;
        let log = self
            .blob(OP, key, &location::log_blob(key))?
            .append_blob_client();
        let data = Bytes::copy_from_slice(data);
        let owned = key.to_owned();
        Self::run(OP, key, async move {
            let io = |failure: Failure| failure.into_io(OP, &owned);
            // An empty append still leaves a log behind, as in the directory store.
            if data.is_empty() {
                return create_log(&log).await.map_err(io);
            }
            let mut offset = 0;
            while offset < data.len() {
                let end = data.len().min(offset + APPEND_BLOCK);
                let block = data.slice(offset..end);
                let len = block.len() as u64;
                // Most appends go to a log that exists: try first, create only when missing.
                match bounded(log.append_block(block.clone().into(), len, None)).await {
                    Ok(_) => {}
                    Err(failure) if failure.is(404, "BlobNotFound") => {
                        create_log(&log).await.map_err(io)?;
                        bounded(log.append_block(block.into(), len, None))
                            .await
                            .map_err(io)?;
                    }
                    Err(failure) => return Err(io(failure)),
                }
                offset = end;
            }
            Ok(())
        })
    }

    fn read_log(&self, key: &str, offset: u64) -> Result<Vec<u8>, StoreError> {
        const OP: &str = "read_log";
        validate_key(OP, key)?;
        let blob = self.blob(OP, key, &location::log_blob(key))?;
        let owned = key.to_owned();
        Self::run(OP, key, async move {
            for _ in 0..READ_ATTEMPTS {
                match read_retrying(|| bounded(download(&blob, offset))).await {
                    Ok((data, _)) => return Ok(data),
                    Err(failure) if failure.is(404, "BlobNotFound") => {
                        return Err(StoreError::NotFound { op: OP, key: owned });
                    }
                    // The log exists and ends at or before `offset`: nothing new yet.
                    Err(failure) if failure.status == Some(416) => return Ok(Vec::new()),
                    // Appended to between the requests of one large read: read it again.
                    Err(failure) if failure.status == Some(412) => continue,
                    Err(failure) => return Err(failure.into_io(OP, &owned)),
                }
            }
            Err(Failure::other("the log changed during every read").into_io(OP, &owned))
        })
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
        // Azure takes whole seconds; 15 to 60 always fits.
        let seconds = i32::try_from(duration.as_secs()).unwrap_or(60);
        let blob = self.blob(OP, key, &location::value_blob(key))?;
        let owned = key.to_owned();
        Self::run(OP, key, async move {
            match bounded(blob.acquire_lease(seconds, None)).await {
                Ok(response) => match response.lease_id() {
                    Ok(Some(id)) => Ok(LeaseId(id)),
                    _ => Err(Failure::protocol("a lease ID").into_io(OP, &owned)),
                },
                Err(failure) => Err(lease_result(failure, OP, owned)),
            }
        })
    }

    fn renew_lease(&self, key: &str, lease: &LeaseId) -> Result<(), StoreError> {
        const OP: &str = "renew_lease";
        validate_key(OP, key)?;
        let blob = self.blob(OP, key, &location::value_blob(key))?;
        let (id, owned) = (wire_lease(lease), key.to_owned());
        Self::run(OP, key, async move {
            bounded(blob.renew_lease(id, None))
                .await
                .map(drop)
                .map_err(|failure| lease_result(failure, OP, owned))
        })
    }

    fn release_lease(&self, key: &str, lease: &LeaseId) -> Result<(), StoreError> {
        const OP: &str = "release_lease";
        validate_key(OP, key)?;
        let blob = self.blob(OP, key, &location::value_blob(key))?;
        let (id, owned) = (wire_lease(lease), key.to_owned());
        Self::run(OP, key, async move {
            bounded(blob.release_lease(id, None))
                .await
                .map(drop)
                .map_err(|failure| lease_result(failure, OP, owned))
        })
    }

    fn break_lease(&self, key: &str) -> Result<(), StoreError> {
        const OP: &str = "break_lease";
        validate_key(OP, key)?;
        let blob = self.blob(OP, key, &location::value_blob(key))?;
        let options = BlobClientBreakLeaseOptions {
            break_period: Some(0),
            ..Default::default()
        };
        let owned = key.to_owned();
        Self::run(OP, key, async move {
            match bounded(blob.break_lease(Some(options))).await {
                Ok(_) => Ok(()),
                // Nothing to break, as in the directory store.
                Err(failure) if failure.is(409, "LeaseNotPresentWithLeaseOperation") => Ok(()),
                Err(failure) => Err(lease_result(failure, OP, owned)),
            }
        })
    }
}

/// The store outcome of a failed lease operation.
fn lease_result(failure: Failure, op: &'static str, key: String) -> StoreError {
    if failure.is(404, "BlobNotFound") {
        return StoreError::NotFound { op, key };
    }
    lease_op_error(&failure, op, &key).unwrap_or_else(|| failure.into_io(op, &key))
}

/// Creates an empty append blob unless one exists.
async fn create_log(log: &azure_storage_blob::AppendBlobClient) -> Result<(), Failure> {
    let options = AppendBlobClientCreateOptions {
        if_none_match: Some(Etag::from("*")),
        ..Default::default()
    };
    match bounded(log.create(Some(options))).await {
        Ok(_) => Ok(()),
        Err(failure) if failure.is(409, "BlobAlreadyExists") => Ok(()),
        Err(failure) => Err(failure),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lease_ids_that_azure_cannot_have_issued_become_the_nil_guid() {
        let cases: &[(&str, &str)] = &[
            (
                "5f0c3b1e-8a4d-4c2e-9b7f-0123456789ab",
                "5f0c3b1e-8a4d-4c2e-9b7f-0123456789ab",
            ),
            (
                "5F0C3B1E-8A4D-4C2E-9B7F-0123456789AB",
                "5F0C3B1E-8A4D-4C2E-9B7F-0123456789AB",
            ),
            ("nope", "00000000-0000-0000-0000-000000000000"),
            ("", "00000000-0000-0000-0000-000000000000"),
            (
                "5f0c3b1e-8a4d-4c2e-9b7f-0123456789ag",
                "00000000-0000-0000-0000-000000000000",
            ),
            (
                "5f0c3b1e8a4d-4c2e-9b7f-0123456789abc",
                "00000000-0000-0000-0000-000000000000",
            ),
        ];
        for (id, want) in cases {
            assert_eq!(wire_lease(&LeaseId((*id).to_owned())), *want, "{id}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output_and_errors() {
        let key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
        let url = "http://127.0.0.1:1/devstoreaccount1/control";
        let store = BlobStore::open(url, Credential::AccountKey(key.into())).unwrap();
        let sas = "sv=2025-11-05&sig=SECRETSIG";
        let with_sas = BlobStore::open(url, Credential::SasToken(sas.into())).unwrap();
        for text in [
            format!("{store:?}"),
            format!("{with_sas:?}"),
            format!("{:?}", Credential::AccountKey(key.into())),
            format!("{:?}", Credential::SasToken(sas.into())),
            // Port 1 refuses connections: the failure's message must not carry the SAS either.
            store.get("k").unwrap_err().to_string(),
            with_sas.get("k").unwrap_err().to_string(),
            store.check().unwrap_err().to_string(),
        ] {
            assert!(
                !text.contains("SECRETSIG") && !text.contains(&key[..20]),
                "{text}"
            );
            assert!(
                !text.contains("sig=") || text.contains("sig=REDACTED"),
                "{text}"
            );
        }
    }

    #[test]
    fn an_account_key_sas_is_signed_again_before_it_expires() {
        let key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
        let store = BlobStore::open(
            "https://acct.blob.core.windows.net/control",
            Credential::AccountKey(key.into()),
        )
        .unwrap();
        let first = store.container().unwrap();
        let query = first.url().query().unwrap_or_default().to_owned();
        assert!(
            query.contains("&spr=https&") && query.contains("&sig="),
            "{query}"
        );
        assert!(
            Arc::ptr_eq(&first, &store.container().unwrap()),
            "a SAS that is not due is kept"
        );
        let due = SystemTime::now() - Duration::from_secs(1);
        store.inner.current.lock().unwrap().renew_at = Some(due);
        let renewed = store.container().unwrap();
        assert!(!Arc::ptr_eq(&first, &renewed), "a due SAS is signed again");
        let next = store.inner.current.lock().unwrap().renew_at.unwrap();
        let lead = next.duration_since(SystemTime::now()).unwrap();
        assert!(
            lead > sas::LIFETIME - sas::RENEW_BEFORE - Duration::from_secs(60),
            "{lead:?}"
        );
    }

    #[test]
    fn open_refuses_bad_credentials_before_sending_anything() {
        let https = "https://acct.blob.core.windows.net/control";
        let cases: &[(&str, Credential, &str)] = &[
            (
                https,
                Credential::SasToken("sv=2025-11-05".into()),
                "no signature",
            ),
            (https, Credential::AccountKey("%%%".into()), "not base64"),
        ];
        for (url, credential, want) in cases {
            let error = BlobStore::open(url, credential.clone()).unwrap_err();
            assert!(
                matches!(error, OpenError::InvalidCredential { .. }),
                "{error}"
            );
            assert!(error.to_string().contains(want), "{error}");
        }
    }

    #[test]
    fn list_follows_pages() {
        let azurite = azurite::Azurite::shared().unwrap_or_else(|error| panic!("{error}"));
        let (store, _) = azurite.fresh_store().unwrap();
        let keys = ["a/1", "a/2", "a/3", "a/4", "a/5", "b"];
        for key in keys.iter().rev() {
            store.put(key, b"v", Condition::Always, None).unwrap();
        }
        assert_eq!(store.list("a/").unwrap(), keys[..5], "three pages of two");
        assert_eq!(store.list("").unwrap(), keys);
    }

    #[test]
    fn an_unreachable_endpoint_is_reported_as_such() {
        let store = BlobStore::open(
            "http://127.0.0.1:1/devstoreaccount1/control",
            Credential::SasToken("sv=1&sig=x".into()),
        )
        .unwrap();
        let error = store.check().unwrap_err();
        assert!(matches!(error, OpenError::Unreachable { .. }), "{error}");
        let error = store.ensure_container().unwrap_err();
        assert!(matches!(error, OpenError::Unreachable { .. }), "{error}");
        assert!(matches!(store.get("k"), Err(StoreError::Io { .. })));
    }
}
