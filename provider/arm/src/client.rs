//! `ArmClient`: one subscription's Resource Manager endpoint, its credential and options, and
//! the request loop every operation goes through: one HTTP exchange on azure_core's pipeline
//! (its own retry off), our retry and throttling around it, the caller's deadline over all of
//! it, the request log, and the per-resource mutation locks.
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use azure_core::credentials::TokenCredential;
use azure_core::http::headers::{HeaderName, HeaderValue};
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, Request, RetryOptions,
    Transport, Url,
};
use serde::de::DeserializeOwned;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use crate::auth::BearerPolicy;
use crate::error::{ArmError, ArmErrorKind, Operation};
use crate::retry::{self, Disposition};

/// Settings of an [`ArmClient`]. `Default` is right for real Azure; tests lower the delays.
#[derive(Clone)]
pub struct ArmClientOptions {
    /// An extra trusted CA certificate (PEM), for the simulator's test CA. Test-only: real
    /// Azure is trusted through the platform's roots.
    pub ca_certificate_pem: Option<Vec<u8>>,
    /// Appended to the `User-Agent` azure_core sends (`terraform-provider-batchai/0.1.0`).
    pub user_agent_suffix: Option<String>,
    /// Send bearer tokens over plain `http://`. Test-only: Microsoft's ARM mock server
    /// (Spector) serves plain HTTP. Never set it for Azure.
    pub allow_http: bool,
    /// How long to wait between polls of a long-running operation when ARM does not say
    /// (ARM's rule: 10 s).
    pub poll_delay: Duration,
    /// The shortest wait between polls even when ARM asks for less (ARM's rule: 1 s).
    pub min_poll_delay: Duration,
    /// The first backoff after a transient failure; it doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How many times one request is tried again after throttling or transient failures.
    pub max_retries: u32,
    /// The longest one HTTP exchange may take before it counts as lost.
    pub request_timeout: Duration,
    /// When `x-ms-ratelimit-remaining-resource` falls below this, the next mutation waits
    /// `ratelimit_pause` first, to leave ARM's throttling window some room.
    pub ratelimit_low_water: u64,
    pub ratelimit_pause: Duration,
}

impl Default for ArmClientOptions {
    fn default() -> ArmClientOptions {
        ArmClientOptions {
            ca_certificate_pem: None,
            user_agent_suffix: None,
            allow_http: false,
            poll_delay: Duration::from_secs(10),
            min_poll_delay: Duration::from_secs(1),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_retries: 10,
            request_timeout: Duration::from_secs(60),
            ratelimit_low_water: 5,
            ratelimit_pause: Duration::from_secs(5),
        }
    }
}

impl ArmClientOptions {
    /// Options for tests against fakes and simulators that answer at once: plain http allowed,
    /// polls and backoffs of milliseconds. `Retry-After` is still honoured as sent.
    pub fn for_tests() -> ArmClientOptions {
        ArmClientOptions {
            allow_http: true,
            poll_delay: Duration::from_millis(20),
            min_poll_delay: Duration::ZERO,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            request_timeout: Duration::from_secs(30),
            ratelimit_pause: Duration::from_millis(50),
            ..ArmClientOptions::default()
        }
    }
}

impl fmt::Debug for ArmClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmClientOptions")
            .field(
                "ca_certificate_pem",
                &self.ca_certificate_pem.as_ref().map(Vec::len),
            )
            .field("user_agent_suffix", &self.user_agent_suffix)
            .field("allow_http", &self.allow_http)
            .field("poll_delay", &self.poll_delay)
            .field("min_poll_delay", &self.min_poll_delay)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_retries", &self.max_retries)
            .field("request_timeout", &self.request_timeout)
            .field("ratelimit_low_water", &self.ratelimit_low_water)
            .field("ratelimit_pause", &self.ratelimit_pause)
            .finish()
    }
}

/// One HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct ArmResponse {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ArmResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON; `Value::Null` when empty.
    pub fn json_value(&self) -> Option<serde_json::Value> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Some(serde_json::Value::Null);
        }
        serde_json::from_slice(&self.body).ok()
    }
}

/// One request as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// The URL path, without the query.
    pub path: String,
    /// `None` when no answer came (connection failure, timeout).
    pub status: Option<u16>,
}

/// Every HTTP request a client sent (retries and polls included), for the ARM request counts
/// per apply and plan. The count is exact; the records keep the first [`RequestLog::KEEP`].
#[derive(Debug, Default)]
pub struct RequestLog {
    count: AtomicU64,
    records: Mutex<Vec<RequestRecord>>,
}

impl RequestLog {
    /// How many records are kept (a provider process lives for one Terraform command, but a
    /// node agent lives long).
    pub const KEEP: usize = 10_000;

    /// Requests sent so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// A copy of the kept records, oldest first.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes the kept records and resets the count, for counting one phase at a time.
    pub fn take(&self) -> Vec<RequestRecord> {
        self.count.store(0, Ordering::Relaxed);
        std::mem::take(&mut *self.records.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn record(&self, record: RequestRecord) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        if records.len() < Self::KEEP {
            records.push(record);
        }
    }
}

/// A typed, retrying Azure Resource Manager client for one subscription. Cheap to clone; the
/// clones share the connection pool, token cache, request log and locks.
///
/// **Deadlines and cancellation.** Every call takes a deadline (`None`: no limit). A wait that
/// would pass it (ARM's `Retry-After`, a poll interval, a backoff) fails at once with
/// [`ArmErrorKind::Deadline`], and a request in flight at the deadline is dropped
/// ([`ArmErrorKind::TimedOut`]). Every wait is a tokio sleep and every request a future, so
/// dropping a call's future (Terraform's Stop) stops it at once: nothing more is sent, and a
/// held mutation lock is released. Nothing here blocks a thread.
#[derive(Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Url,
    subscription_id: String,
    pipeline: Pipeline,
    options: ArmClientOptions,
    log: Arc<RequestLog>,
    /// One async mutex per resource being mutated (lower-case ID); entries die with their last
    /// user.
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    /// When throttling headroom ran low: mutations wait until then.
    slow_until: Mutex<Option<Instant>>,
}

impl fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmClient")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("subscription_id", &self.inner.subscription_id)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

const CORRELATION_ID: HeaderName = HeaderName::from_static("x-ms-correlation-request-id");
const CONTENT_TYPE: HeaderName = HeaderName::from_static("content-type");
const ACCEPT: HeaderName = HeaderName::from_static("accept");

impl ArmClient {
    /// A client for `subscription_id` at `endpoint` (`https://management.azure.com/`), with
    /// tokens for `scope` (`https://management.azure.com/.default`) from `credential`.
    pub fn new(
        endpoint: &str,
        subscription_id: impl Into<String>,
        credential: Arc<dyn TokenCredential>,
        scope: impl Into<String>,
        options: ArmClientOptions,
    ) -> Result<ArmClient, ArmError> {
        let invalid = |note: String| {
            ArmError::new(Operation::new("CONNECT", endpoint), ArmErrorKind::Invalid)
                .with_note(note)
        };
        let mut endpoint_url =
            Url::parse(endpoint).map_err(|e| invalid(format!("the endpoint is not a URL: {e}")))?;
        match endpoint_url.scheme() {
            "https" => {}
            "http" if options.allow_http => {}
            other => {
                return Err(invalid(format!(
                    "the endpoint must be https (it is {other}); plain http is for tests only (allow_http)"
                )));
            }
        }
        if !endpoint_url.path().ends_with('/') {
            let path = format!("{}/", endpoint_url.path());
            endpoint_url.set_path(&path);
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(options.request_timeout)
            // ARM does not redirect; a 3xx is an answer, not something to follow.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &options.ca_certificate_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| invalid(format!("read the CA certificate: {e}")))?;
            builder = builder.tls_certs_merge(certificates);
        }
        let http = builder
            .build()
            .map_err(|e| invalid(format!("build the HTTP client: {e}")))?;
        let policy = BearerPolicy::new(
            credential,
            scope.into(),
            options.allow_http,
            options.user_agent_suffix.clone(),
        );
        let client_options = ClientOptions {
            // We retry ourselves: the SDK's retry sleeps a 1200 s Retry-After in full.
            retry: RetryOptions::none(),
            transport: Some(Transport::new(Arc::new(http))),
            ..ClientOptions::default()
        };
        let pipeline = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            client_options,
            Vec::new(),
            vec![Arc::new(policy)],
            None,
        );
        Ok(ArmClient {
            inner: Arc::new(Inner {
                endpoint: endpoint_url,
                subscription_id: subscription_id.into(),
                pipeline,
                options,
                log: Arc::new(RequestLog::default()),
                locks: Mutex::new(HashMap::new()),
                slow_until: Mutex::new(None),
            }),
        })
    }

    pub fn subscription_id(&self) -> &str {
        &self.inner.subscription_id
    }

    pub fn endpoint(&self) -> &Url {
        &self.inner.endpoint
    }

    pub fn options(&self) -> &ArmClientOptions {
        &self.inner.options
    }

    /// The log of every request this client (and its clones) sent.
    pub fn requests(&self) -> Arc<RequestLog> {
        Arc::clone(&self.inner.log)
    }

    /// `endpoint` + `path` (absolute, `/subscriptions/…`) + `?api-version=…` and `query`.
    pub fn url(&self, path: &str, api_version: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.inner.endpoint.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}/{}", path.trim_start_matches('/')));
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("api-version", api_version);
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        url
    }

    /// Waits until no other mutation of `resource_id` in this process runs, then holds it
    /// until the guard is dropped. Fails at `deadline`.
    pub async fn lock_resource(
        &self,
        resource_id: &str,
        deadline: Option<Instant>,
    ) -> Result<OwnedMutexGuard<()>, ArmError> {
        let key = resource_id.to_ascii_lowercase();
        let mutex = {
            let mut locks = self
                .inner
                .locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            locks.retain(|_, weak| weak.strong_count() > 0);
            match locks.get(&key).and_then(Weak::upgrade) {
                Some(mutex) => mutex,
                None => {
                    let mutex = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(key, Arc::downgrade(&mutex));
                    mutex
                }
            }
        };
        match deadline {
            None => Ok(mutex.lock_owned().await),
            Some(deadline) => tokio::time::timeout_at(deadline, mutex.lock_owned())
                .await
                .map_err(|_| {
                    ArmError::new(Operation::new("LOCK", resource_id), ArmErrorKind::TimedOut)
                        .with_note(
                            "another change of this resource in this process was still running",
                        )
                }),
        }
    }

    /// Sends one request with retries (see the crate docs) and returns the final answer, an
    /// error status included. `Err` only when no answer came or the deadline stops it.
    pub async fn send(
        &self,
        operation: &Operation,
        method: Method,
        url: &Url,
        body: Option<&[u8]>,
        correlation_id: &str,
        deadline: Option<Instant>,
    ) -> Result<ArmResponse, ArmError> {
        let options = &self.inner.options;
        let mutation = !matches!(method, Method::Get | Method::Head);
        let mut attempt = 0u32;
        loop {
            if mutation {
                self.pause_if_throttled(operation, deadline).await?;
            }
            let outcome = self
                .exchange(operation, method, url, body, correlation_id, deadline)
                .await;
            let (disposition, response) = match outcome {
                Ok(response) => {
                    self.note_ratelimit(&response);
                    (
                        retry::classify(response.status, &response.body),
                        Some(response),
                    )
                }
                Err(error) if error.kind() == &ArmErrorKind::Transport => {
                    (Disposition::Transient, None)
                }
                Err(error) => return Err(error),
            };
            if disposition == Disposition::Done {
                // `Done` always comes with a response.
                if let Some(response) = response {
                    return Ok(response);
                }
            }
            if attempt >= options.max_retries {
                return match response {
                    Some(response) => Ok(response),
                    None => Err(ArmError::new(operation.clone(), ArmErrorKind::Transport)
                        .with_note(format!("no answer after {} tries", attempt + 1))),
                };
            }
            let asked = response
                .as_ref()
                .and_then(|r| retry::retry_after(|name| r.header(name), SystemTime::now()));
            let delay = asked.unwrap_or_else(|| {
                retry::backoff(attempt, options.initial_backoff, options.max_backoff)
            });
            wait(
                operation,
                delay,
                deadline,
                disposition.reason(),
                response.as_ref(),
            )
            .await?;
            attempt += 1;
        }
    }

    /// [`ArmClient::send`], then an error for any status but 2xx.
    pub async fn send_ok(
        &self,
        operation: &Operation,
        method: Method,
        url: &Url,
        body: Option<&[u8]>,
        correlation_id: &str,
        deadline: Option<Instant>,
    ) -> Result<ArmResponse, ArmError> {
        let response = self
            .send(operation, method, url, body, correlation_id, deadline)
            .await?;
        if response.is_success() {
            Ok(response)
        } else {
            Err(ArmError::from_response(operation.clone(), &response))
        }
    }

    /// One HTTP exchange, logged, bounded by the request timeout and the deadline.
    async fn exchange(
        &self,
        operation: &Operation,
        method: Method,
        url: &Url,
        body: Option<&[u8]>,
        correlation_id: &str,
        deadline: Option<Instant>,
    ) -> Result<ArmResponse, ArmError> {
        self.check_origin(operation, url)?;
        let mut request = Request::new(url.clone(), method);
        request.insert_header(ACCEPT, HeaderValue::from_static("application/json"));
        request.insert_header(CORRELATION_ID, HeaderValue::from(correlation_id.to_owned()));
        if let Some(body) = body {
            request.insert_header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            request.set_body(body.to_vec());
        }
        let limit = self.inner.options.request_timeout;
        let (limit, by_deadline) = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left < limit {
                    (left, true)
                } else {
                    (limit, false)
                }
            }
            None => (limit, false),
        };
        let sent = tokio::time::timeout(
            limit,
            self.inner.pipeline.send(
                &Context::new(),
                &mut request,
                // Every status is an answer to classify here, not an SDK error.
                Some(PipelineSendOptions {
                    skip_checks: true,
                    ..PipelineSendOptions::default()
                }),
            ),
        )
        .await;
        let record = |status| RequestRecord {
            method: method.to_string(),
            path: url.path().to_owned(),
            status,
        };
        let raw = match sent {
            Err(_) => {
                self.inner.log.record(record(None));
                return Err(if by_deadline {
                    ArmError::new(operation.clone(), ArmErrorKind::TimedOut)
                } else {
                    ArmError::new(operation.clone(), ArmErrorKind::Transport)
                        .with_note(format!("no answer within {} s", limit.as_secs()))
                });
            }
            Ok(Err(error)) => {
                self.inner.log.record(record(None));
                return Err(sdk_error(operation, &error));
            }
            Ok(Ok(raw)) => raw,
        };
        let (status, headers, body) = raw.deconstruct();
        let status = u16::from(status);
        self.inner.log.record(record(Some(status)));
        Ok(ArmResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.as_str().to_owned()))
                .collect(),
            body: body.to_vec(),
        })
    }

    /// Status and page URLs come from ARM's headers and bodies; the bearer token goes only
    /// to the endpoint's own scheme, host and port.
    fn check_origin(&self, operation: &Operation, url: &Url) -> Result<(), ArmError> {
        let endpoint = &self.inner.endpoint;
        if url.scheme() == endpoint.scheme()
            && url.host_str() == endpoint.host_str()
            && url.port_or_known_default() == endpoint.port_or_known_default()
        {
            return Ok(());
        }
        Err(
            ArmError::new(operation.clone(), ArmErrorKind::Invalid).with_note(format!(
                "ARM pointed at {} outside the endpoint {}; not sending the token there",
                url.origin().ascii_serialization(),
                endpoint.origin().ascii_serialization()
            )),
        )
    }

    fn note_ratelimit(&self, response: &ArmResponse) {
        let Some(remaining) = response
            .header("x-ms-ratelimit-remaining-resource")
            .and_then(|v| retry::ratelimit_remaining(&v))
        else {
            return;
        };
        if remaining < self.inner.options.ratelimit_low_water {
            let until = Instant::now() + self.inner.options.ratelimit_pause;
            let mut slow = self
                .inner
                .slow_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *slow = Some(slow.map_or(until, |at| at.max(until)));
        }
    }

    async fn pause_if_throttled(
        &self,
        operation: &Operation,
        deadline: Option<Instant>,
    ) -> Result<(), ArmError> {
        let until = *self
            .inner
            .slow_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(until) = until {
            let delay = until.saturating_duration_since(Instant::now());
            if !delay.is_zero() {
                wait(
                    operation,
                    delay,
                    deadline,
                    "throttling headroom ran low",
                    None,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// GETs `url` and every `nextLink` after it, collecting each page's `value`.
    pub async fn list<T: DeserializeOwned>(
        &self,
        operation: &Operation,
        url: Url,
        deadline: Option<Instant>,
    ) -> Result<Vec<T>, ArmError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page<T> {
            #[serde(default = "Vec::new")]
            value: Vec<T>,
            #[serde(default)]
            next_link: Option<String>,
        }
        let correlation = new_correlation_id();
        let mut items = Vec::new();
        let mut next = Some(url);
        let mut pages = 0u32;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > 10_000 {
                return Err(ArmError::new(operation.clone(), ArmErrorKind::Decode)
                    .with_note("more than 10000 pages: the nextLink chain does not end"));
            }
            let response = self
                .send_ok(operation, Method::Get, &url, None, &correlation, deadline)
                .await?;
            let page: Page<T> = decode(operation, &response)?;
            items.extend(page.value);
            if let Some(link) = page.next_link.filter(|l| !l.is_empty()) {
                next = Some(Url::parse(&link).map_err(|e| {
                    ArmError::new(operation.clone(), ArmErrorKind::Decode)
                        .with_note(format!("nextLink {link:?} is not a URL: {e}"))
                })?);
            }
        }
        Ok(items)
    }
}

/// Sleeps `delay`, or fails at once when that would pass `deadline`.
pub(crate) async fn wait(
    operation: &Operation,
    delay: Duration,
    deadline: Option<Instant>,
    reason: &'static str,
    last: Option<&ArmResponse>,
) -> Result<(), ArmError> {
    if let Some(deadline) = deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        if delay > left {
            let mut error = ArmError::new(
                operation.clone(),
                ArmErrorKind::Deadline {
                    asked: delay,
                    left,
                    reason,
                },
            );
            if let Some(last) = last {
                let from = ArmError::from_response(operation.clone(), last);
                error = error
                    .with_status(last.status)
                    .with_detail(from.detail().cloned())
                    .with_ids(
                        from.correlation_id().map(str::to_owned),
                        from.request_id().map(str::to_owned),
                    );
            }
            return Err(error);
        }
    }
    tokio::time::sleep(delay).await;
    Ok(())
}

/// The response body as `T`.
pub(crate) fn decode<T: DeserializeOwned>(
    operation: &Operation,
    response: &ArmResponse,
) -> Result<T, ArmError> {
    let body: &[u8] = if response.body.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        &response.body
    };
    serde_json::from_slice(body).map_err(|e| {
        ArmError::new(operation.clone(), ArmErrorKind::Decode)
            .with_status(response.status)
            .with_note(format!("read the {} answer: {e}", response.status))
            .with_ids(
                response.header("x-ms-correlation-request-id"),
                response.header("x-ms-request-id"),
            )
    })
}

/// A new `x-ms-correlation-request-id`: one per operation, shared by its retries and polls, so
/// an error names the one ID Azure support can trace the whole operation by.
pub(crate) fn new_correlation_id() -> String {
    azure_core::Uuid::new_v4().to_string()
}

fn sdk_error(operation: &Operation, error: &azure_core::Error) -> ArmError {
    use azure_core::error::ErrorKind;
    let kind = match error.kind() {
        ErrorKind::Io => ArmErrorKind::Transport,
        ErrorKind::Credential => ArmErrorKind::Credential,
        ErrorKind::Other if error.to_string().contains("plain http") => ArmErrorKind::Invalid,
        _ => ArmErrorKind::Transport,
    };
    // The SDK's message ("failed to execute `reqwest` request") says little; its sources say
    // what failed (refused, reset, certificate).
    let mut note = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        note.push_str(": ");
        note.push_str(&cause.to_string());
        source = cause.source();
    }
    ArmError::new(operation.clone(), kind).with_note(note)
}
