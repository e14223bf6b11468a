//! The Azure instance metadata service as a node on an Azure VM sees it: its user-assigned
//! identity's tokens (the credential a node's blob store and ARM client use, so no secret ever
//! reaches the VM), its own name and address, and the platform's scheduled events (Spot
//! evictions).
//!
//! IMDS is plain HTTP on the link-local address `169.254.169.254`, reachable from the VM only,
//! and needs the `Metadata: true` header. `BATCHAI_IMDS_ENDPOINT` replaces that address: the
//! ARM simulator sets it for a VM it boots without a network namespace of its own (test-only).
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{HttpClient, Method, Request, Url};
use serde::Deserialize;
use time::OffsetDateTime;

/// The variable that replaces IMDS's address (test-only: the ARM simulator sets it).
pub const ENDPOINT_VAR: &str = "BATCHAI_IMDS_ENDPOINT";
/// Where IMDS answers on every Azure VM.
pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// The API versions asked for: each is one IMDS documents for what is read.
const TOKEN_API: &str = "2018-02-01";
const INSTANCE_API: &str = "2021-02-01";
const EVENTS_API: &str = "2020-07-01";

/// IMDS answers within milliseconds; a request that takes longer is retried by its caller.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A cached token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// A failed request to the instance metadata service.
#[derive(Debug, thiserror::Error)]
#[error("{operation} from the instance metadata service at {endpoint}: {detail}")]
pub struct ImdsError {
    pub operation: &'static str,
    pub endpoint: String,
    pub detail: String,
}

/// The instance metadata service of the VM this process runs on.
#[derive(Debug, Clone)]
pub struct Imds {
    endpoint: Url,
    http: Arc<dyn HttpClient>,
}

/// What IMDS says about this VM (`/metadata/instance`), as far as a node needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The VM's name; a scale set instance's is `<scale set>_<instance ID>`.
    pub name: String,
    /// Empty for a VM that is not in a scale set.
    pub scale_set: String,
    pub resource_id: String,
    pub private_ip: Option<String>,
}

/// One of the platform's scheduled events that names this VM.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduledEvent {
    pub event_id: String,
    /// `Preempt` (a Spot eviction), `Terminate`, `Reboot`, `Redeploy`, `Freeze`.
    pub event_type: String,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub event_status: String,
    #[serde(default)]
    pub not_before: String,
}

impl ScheduledEvent {
    /// Whether the event ends this VM's life: a Spot eviction or a scale set's termination.
    pub fn ends_the_vm(&self) -> bool {
        matches!(self.event_type.as_str(), "Preempt" | "Terminate")
    }
}

impl Imds {
    /// IMDS at `BATCHAI_IMDS_ENDPOINT` when set, else at its link-local address.
    pub fn from_env() -> Result<Self, ImdsError> {
        let endpoint = std::env::var(ENDPOINT_VAR)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        Self::at(&endpoint)
    }

    pub fn at(endpoint: &str) -> Result<Self, ImdsError> {
        let url = Url::parse(endpoint).map_err(|e| ImdsError {
            operation: "parse the address",
            endpoint: endpoint.to_owned(),
            detail: e.to_string(),
        })?;
        Ok(Self {
            endpoint: url,
            http: crate::http::client().map_err(|e| ImdsError {
                operation: "make the HTTP client",
                endpoint: endpoint.to_owned(),
                detail: e.to_string(),
            })?,
        })
    }

    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    fn error(&self, operation: &'static str, detail: impl ToString) -> ImdsError {
        ImdsError {
            operation,
            endpoint: self.endpoint.as_str().trim_end_matches('/').to_owned(),
            detail: detail.to_string(),
        }
    }

    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ImdsError> {
        let mut url = self
            .endpoint
            .join(path)
            .map_err(|e| self.error(operation, e))?;
        url.query_pairs_mut().extend_pairs(query);
        let mut request = Request::new(url, method);
        request.insert_header("metadata", "true");
        if let Some(body) = body {
            request.insert_header("content-type", "application/json");
            request.set_body(body);
        }
        let exchange = async {
            let response = self.http.execute_request(&request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?;
            Ok::<_, azure_core::Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| self.error(operation, "no answer within 10 s"))?
            .map_err(|e| self.error(operation, e))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(300).collect();
            return Err(self.error(operation, format!("status {status}: {text}")));
        }
        Ok(body.to_vec())
    }

    /// A token for `resource` (e.g. `https://storage.azure.com/`) from the user-assigned
    /// identity with `client_id`, or the VM's only identity without one.
    pub async fn token(
        &self,
        resource: &str,
        client_id: Option<&str>,
    ) -> Result<AccessToken, ImdsError> {
        const OPERATION: &str = "get a managed identity token";
        let mut query = vec![("api-version", TOKEN_API), ("resource", resource)];
        if let Some(id) = client_id {
            query.push(("client_id", id));
        }
        let body = self
            .call(
                OPERATION,
                Method::Get,
                "/metadata/identity/oauth2/token",
                &query,
                None,
            )
            .await?;
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            expires_on: serde_json::Value,
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| self.error(OPERATION, format!("unreadable answer: {e}")))?;
        // IMDS writes the expiry as a string of Unix seconds; accept a number too.
        let seconds = match &answer.expires_on {
            serde_json::Value::String(s) => s.parse::<i64>().ok(),
            serde_json::Value::Number(n) => n.as_i64(),
            _ => None,
        }
        .ok_or_else(|| self.error(OPERATION, "the answer has no readable expires_on"))?;
        let expires_on = OffsetDateTime::from_unix_timestamp(seconds)
            .map_err(|e| self.error(OPERATION, format!("expires_on {seconds}: {e}")))?;
        Ok(AccessToken::new(answer.access_token, expires_on))
    }

    /// This VM's name, scale set, resource ID and private address.
    pub async fn instance(&self) -> Result<Instance, ImdsError> {
        const OPERATION: &str = "read the instance metadata";
        let body = self
            .call(
                OPERATION,
                Method::Get,
                "/metadata/instance",
                &[("api-version", INSTANCE_API)],
                None,
            )
            .await?;
        parse_instance(&body).map_err(|e| self.error(OPERATION, e))
    }

    /// The scheduled events that name this VM (`vm_name`), or affect every VM when they name
    /// none.
    pub async fn scheduled_events(&self, vm_name: &str) -> Result<Vec<ScheduledEvent>, ImdsError> {
        const OPERATION: &str = "read the scheduled events";
        let body = self
            .call(
                OPERATION,
                Method::Get,
                "/metadata/scheduledevents",
                &[("api-version", EVENTS_API)],
                None,
            )
            .await?;
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Document {
            #[serde(default)]
            events: Vec<ScheduledEvent>,
        }
        let document: Document = serde_json::from_slice(&body)
            .map_err(|e| self.error(OPERATION, format!("unreadable answer: {e}")))?;
        Ok(document
            .events
            .into_iter()
            .filter(|e| e.resources.is_empty() || e.resources.iter().any(|r| r == vm_name))
            .collect())
    }

    /// Tells the platform that this VM is ready for the events: an eviction then happens at
    /// once instead of at its `NotBefore`.
    pub async fn acknowledge(&self, event_ids: &[String]) -> Result<(), ImdsError> {
        let requests: Vec<_> = event_ids
            .iter()
            .map(|id| serde_json::json!({ "EventId": id }))
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "StartRequests": requests }))
            .map_err(|e| self.error("acknowledge the scheduled events", e))?;
        self.call(
            "acknowledge the scheduled events",
            Method::Post,
            "/metadata/scheduledevents",
            &[("api-version", EVENTS_API)],
            Some(body),
        )
        .await?;
        Ok(())
    }
}

fn parse_instance(body: &[u8]) -> Result<Instance, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("unreadable answer: {e}"))?;
    let compute = &value["compute"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let name = text(&compute["name"]);
    if name.is_empty() {
        return Err("the answer names no VM (compute.name)".to_owned());
    }
    let private_ip = value["network"]["interface"][0]["ipv4"]["ipAddress"][0]["privateIpAddress"]
        .as_str()
        .map(str::to_owned);
    Ok(Instance {
        name,
        scale_set: text(&compute["vmScaleSetName"]),
        resource_id: text(&compute["resourceId"]),
        private_ip,
    })
}

/// The VM's user-assigned managed identity as an Entra token credential: what a node's blob
/// store and ARM client authenticate with. Tokens are cached until five minutes before they
/// expire, one per resource.
#[derive(Debug)]
pub struct ManagedIdentity {
    imds: Imds,
    client_id: Option<String>,
    cache: Mutex<Vec<(String, AccessToken)>>,
}

impl ManagedIdentity {
    pub fn new(imds: Imds, client_id: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            imds,
            client_id,
            cache: Mutex::new(Vec::new()),
        })
    }

    fn cached(&self, resource: &str) -> Option<AccessToken> {
        let now = OffsetDateTime::now_utc();
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(r, token)| r == resource && token.expires_on - RENEW_BEFORE > now)
            .map(|(_, token)| token.clone())
    }
}

/// The IMDS resource for an Entra scope: `https://storage.azure.com/.default` asks for
/// `https://storage.azure.com/`.
fn resource_of(scope: &str) -> &str {
    scope.strip_suffix(".default").unwrap_or(scope)
}

#[async_trait::async_trait]
impl TokenCredential for ManagedIdentity {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let [scope] = scopes else {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "a managed identity token is for exactly one scope",
            ));
        };
        let resource = resource_of(scope);
        if let Some(token) = self.cached(resource) {
            return Ok(token);
        }
        let token = self
            .imds
            .token(resource, self.client_id.as_deref())
            .await
            .map_err(|e| {
                azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    e.to_string(),
                )
            })?;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.retain(|(r, _)| r != resource);
        cache.push((resource.to_owned(), token.clone()));
        Ok(token)
    }
}

/// Runs an IMDS call from a plain thread (the agent), on the store's runtime.
pub fn blocking<T: Send + 'static>(
    future: impl Future<Output = Result<T, ImdsError>> + Send + 'static,
) -> Result<T, ImdsError> {
    crate::runtime::run(future).map_err(|e| ImdsError {
        operation: "call",
        endpoint: String::new(),
        detail: e.to_string(),
    })?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A one-thread fake IMDS that answers each request with `answer(request line, headers,
    /// body)` and counts requests.
    fn fake(
        answer: impl Fn(&str, &str, &str) -> (u16, String) + Send + 'static,
    ) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                counted.fetch_add(1, Ordering::SeqCst);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut headers = String::new();
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    let lower = h.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    headers.push_str(&lower);
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let (status, text) = answer(&line, &headers, &String::from_utf8_lossy(&body));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        (address, count)
    }

    #[test]
    fn tokens_carry_the_metadata_header_and_client_id_and_are_cached_per_resource() {
        let expires = OffsetDateTime::now_utc().unix_timestamp() + 3600;
        let (endpoint, count) = fake(move |line, headers, _| {
            if !headers.contains("metadata: true") {
                return (400, "{\"error\":\"no Metadata header\"}".into());
            }
            assert!(line.contains("client_id=abc"), "{line}");
            let resource = if line.contains("storage.azure.com") {
                "s"
            } else {
                "m"
            };
            (
                200,
                format!("{{\"access_token\":\"tok-{resource}\",\"expires_on\":\"{expires}\"}}"),
            )
        });
        let identity = ManagedIdentity::new(Imds::at(&endpoint).unwrap(), Some("abc".into()));
        let get = |scope: &'static str| {
            let identity = identity.clone();
            crate::runtime::run(async move { identity.get_token(&[scope], None).await })
                .unwrap()
                .unwrap()
        };
        assert_eq!(
            get("https://storage.azure.com/.default").token.secret(),
            "tok-s"
        );
        assert_eq!(
            get("https://storage.azure.com/.default").token.secret(),
            "tok-s"
        );
        assert_eq!(
            get("https://management.azure.com/.default").token.secret(),
            "tok-m"
        );
        assert_eq!(
            count.load(Ordering::SeqCst),
            2,
            "the second storage token came from the cache"
        );
    }

    #[test]
    fn a_token_about_to_expire_is_fetched_again() {
        let soon = OffsetDateTime::now_utc().unix_timestamp() + 60;
        let (endpoint, count) = fake(move |_, _, _| {
            (
                200,
                format!("{{\"access_token\":\"t\",\"expires_on\":{soon}}}"),
            )
        });
        let identity = ManagedIdentity::new(Imds::at(&endpoint).unwrap(), None);
        for _ in 0..2 {
            let identity = identity.clone();
            crate::runtime::run(async move {
                identity
                    .get_token(&["https://storage.azure.com/.default"], None)
                    .await
            })
            .unwrap()
            .unwrap();
        }
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn failures_name_the_operation_and_the_status() {
        let (endpoint, _) = fake(|_, _, _| (400, "{\"error\":\"invalid_request\"}".into()));
        let imds = Imds::at(&endpoint).unwrap();
        let error = blocking(async move { imds.token("https://storage.azure.com/", None).await })
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("get a managed identity token from the instance metadata service at http://127.0.0.1:"), "{error}");
        assert!(
            error.contains("status 400") && error.contains("invalid_request"),
            "{error}"
        );
    }

    #[test]
    fn instance_metadata_and_scheduled_events_for_this_vm() {
        let acknowledged = Arc::new(Mutex::new(String::new()));
        let seen = acknowledged.clone();
        let (endpoint, _) = fake(move |line, _, body| {
            if line.starts_with("GET /metadata/instance?") {
                return (200, r#"{"compute":{"name":"gpu_3","vmScaleSetName":"gpu","resourceId":"/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachineScaleSets/gpu/virtualMachines/3"},"network":{"interface":[{"ipv4":{"ipAddress":[{"privateIpAddress":"10.0.0.7"}]}}]}}"#.into());
            }
            if line.starts_with("GET /metadata/scheduledevents?") {
                return (200, r#"{"DocumentIncarnation":2,"Events":[
                    {"EventId":"e1","EventType":"Preempt","ResourceType":"VirtualMachine","Resources":["gpu_3"],"EventStatus":"Scheduled","NotBefore":"Mon, 30 Nov 2026 10:00:00 GMT"},
                    {"EventId":"e2","EventType":"Preempt","ResourceType":"VirtualMachine","Resources":["gpu_4"],"EventStatus":"Scheduled","NotBefore":""},
                    {"EventId":"e3","EventType":"Freeze","ResourceType":"VirtualMachine","Resources":[],"EventStatus":"Scheduled","NotBefore":""}]}"#.into());
            }
            if line.starts_with("POST /metadata/scheduledevents?") {
                *seen.lock().unwrap() = body.to_owned();
                return (200, String::new());
            }
            (404, "{}".into())
        });
        let imds = Imds::at(&endpoint).unwrap();
        let i = imds.clone();
        let instance = blocking(async move { i.instance().await }).unwrap();
        assert_eq!(
            instance,
            Instance {
                name: "gpu_3".into(),
                scale_set: "gpu".into(),
                resource_id: "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachineScaleSets/gpu/virtualMachines/3".into(),
                private_ip: Some("10.0.0.7".into()),
            }
        );
        let i = imds.clone();
        let events = blocking(async move { i.scheduled_events("gpu_3").await }).unwrap();
        let ids: Vec<_> = events
            .iter()
            .map(|e| (e.event_id.as_str(), e.ends_the_vm()))
            .collect();
        assert_eq!(
            ids,
            [("e1", true), ("e3", false)],
            "gpu_4's eviction is not ours"
        );
        let i = imds.clone();
        blocking(async move { i.acknowledge(&["e1".to_owned()]).await }).unwrap();
        let body: serde_json::Value = serde_json::from_str(&acknowledged.lock().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"StartRequests":[{"EventId":"e1"}]})
        );
    }

    #[test]
    fn scopes_map_to_imds_resources() {
        let cases = [
            (
                "https://storage.azure.com/.default",
                "https://storage.azure.com/",
            ),
            (
                "https://management.azure.com/.default",
                "https://management.azure.com/",
            ),
            (
                "https://management.azure.com/",
                "https://management.azure.com/",
            ),
        ];
        for (scope, resource) in cases {
            assert_eq!(resource_of(scope), resource);
        }
    }
}
