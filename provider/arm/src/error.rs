//! `ArmError`: what went wrong with one ARM operation, with everything a Terraform diagnostic
//! needs (the operation, HTTP status, ARM's error code, message, target and details, and the
//! correlation and request IDs Azure support asks for).
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// The operation an error belongs to: the HTTP method and the URL path of the request that
/// started it (for a long-running operation, the first request, not the status URL polled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    method: String,
    path: String,
}

impl Operation {
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Operation {
        Operation {
            method: method.into(),
            path: path.into(),
        }
    }

    /// `GET`, `PUT`, `PATCH`, `POST` or `DELETE`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The full URL path, `/subscriptions/…`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path after the last `providers/{namespace}/` (`virtualMachineScaleSets/gpu`), the
    /// part a user recognises; the whole path when it has no provider.
    pub fn short_path(&self) -> &str {
        short_path(&self.path)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.short_path())
    }
}

fn short_path(path: &str) -> &str {
    let lower = path.to_ascii_lowercase();
    match lower.rfind("/providers/") {
        Some(at) => {
            let rest = &path[at + "/providers/".len()..];
            // Skip the namespace (`Microsoft.Compute/`).
            match rest.find('/') {
                Some(slash) if slash + 1 < rest.len() => &rest[slash + 1..],
                _ => rest,
            }
        }
        None => path,
    }
}

/// ARM's error object: `{"code", "message", "target", "details": […]}`, found under `error` in
/// error responses and in a failed operation's status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub details: Vec<ErrorDetail>,
}

impl ErrorDetail {
    /// The `error` object of an ARM error body. Some services put the fields at the top level
    /// (`{"code", "message"}`), and a few send `odata.error`; both are accepted. `None` when
    /// the body is not JSON or has no code or message.
    pub fn from_body(body: &[u8]) -> Option<ErrorDetail> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        Self::from_value(&value)
    }

    /// The same as [`ErrorDetail::from_body`], on parsed JSON.
    pub fn from_value(value: &serde_json::Value) -> Option<ErrorDetail> {
        let object = value
            .get("error")
            .or_else(|| value.get("odata.error"))
            .unwrap_or(value);
        let detail: ErrorDetail = serde_json::from_value(object.clone()).ok()?;
        (detail.code.is_some() || detail.message.is_some()).then_some(detail)
    }
}

/// What kind of failure an [`ArmError`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArmErrorKind {
    /// ARM answered with an error status (after any retries).
    Status,
    /// A long-running operation ended `Failed` or `Canceled` (the status as ARM wrote it).
    OperationFailed { status: String },
    /// Waiting as asked (by ARM's `Retry-After`, a poll interval or our backoff) would pass the
    /// caller's deadline, so the call failed at once instead of sleeping.
    Deadline {
        /// How long ARM (or the backoff) asked to wait.
        asked: Duration,
        /// How long was left until the deadline.
        left: Duration,
        /// Why there was a wait (`throttled (429)`, `polling`, …).
        reason: &'static str,
    },
    /// The deadline passed while a request was in flight.
    TimedOut,
    /// No HTTP answer: connection refused or reset, TLS, DNS.
    Transport,
    /// An answer we could not read (a body that is not the JSON the operation returns).
    Decode,
    /// The credential gave no token.
    Credential,
    /// The client was set up wrongly or asked something impossible (an `http://` endpoint
    /// without `allow_http`, a malformed URL); not retryable.
    Invalid,
}

/// A failed ARM operation. See the crate docs for how it displays. Boxed: errors travel up
/// through many `Result`s and are rare.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ArmError(Box<ErrorInner>);

#[derive(Debug, Clone)]
struct ErrorInner {
    operation: Operation,
    kind: ArmErrorKind,
    status: Option<u16>,
    detail: Option<ErrorDetail>,
    /// Our own words for kinds without an ARM error object (transport, decode, credential).
    note: Option<String>,
    correlation_id: Option<String>,
    request_id: Option<String>,
}

impl ArmError {
    pub(crate) fn new(operation: Operation, kind: ArmErrorKind) -> ArmError {
        ArmError(Box::new(ErrorInner {
            operation,
            kind,
            status: None,
            detail: None,
            note: None,
            correlation_id: None,
            request_id: None,
        }))
    }

    pub(crate) fn with_status(mut self, status: u16) -> ArmError {
        self.0.status = Some(status);
        self
    }

    pub(crate) fn with_detail(mut self, detail: Option<ErrorDetail>) -> ArmError {
        self.0.detail = detail;
        self
    }

    pub(crate) fn with_note(mut self, note: impl Into<String>) -> ArmError {
        self.0.note = Some(note.into());
        self
    }

    pub(crate) fn with_ids(
        mut self,
        correlation: Option<String>,
        request: Option<String>,
    ) -> ArmError {
        self.0.correlation_id = correlation;
        self.0.request_id = request;
        self
    }

    /// An error from a response with an error status.
    pub(crate) fn from_response(
        operation: Operation,
        response: &crate::client::ArmResponse,
    ) -> ArmError {
        ArmError::new(operation, ArmErrorKind::Status)
            .with_status(response.status)
            .with_detail(ErrorDetail::from_body(&response.body))
            .with_note(if response.body.is_empty() {
                String::new()
            } else {
                // A body that is not ARM's shape still says something; keep its start.
                String::from_utf8_lossy(&response.body[..response.body.len().min(300)]).into_owned()
            })
            .with_ids(
                response.header("x-ms-correlation-request-id"),
                response.header("x-ms-request-id"),
            )
    }

    pub fn kind(&self) -> &ArmErrorKind {
        &self.0.kind
    }

    pub fn operation(&self) -> &Operation {
        &self.0.operation
    }

    /// The HTTP status of the answer that failed the operation, if there was one.
    pub fn status(&self) -> Option<u16> {
        self.0.status
    }

    /// ARM's error code (`AllocationFailed`, `SkuNotAvailable`, `QuotaExceeded`, …).
    pub fn code(&self) -> Option<&str> {
        self.0.detail.as_ref()?.code.as_deref()
    }

    /// ARM's error message, else our own words for the failure.
    pub fn message(&self) -> Option<&str> {
        self.0
            .detail
            .as_ref()
            .and_then(|d| d.message.as_deref())
            .or(self.0.note.as_deref().filter(|n| !n.is_empty()))
    }

    /// The property ARM blames (`sku.name`).
    pub fn target(&self) -> Option<&str> {
        self.0.detail.as_ref()?.target.as_deref()
    }

    /// ARM's nested error details.
    pub fn details(&self) -> &[ErrorDetail] {
        self.0.detail.as_ref().map_or(&[], |d| d.details.as_slice())
    }

    /// The whole error object, when ARM sent one.
    pub fn detail(&self) -> Option<&ErrorDetail> {
        self.0.detail.as_ref()
    }

    /// `x-ms-correlation-request-id`: what Azure support asks for.
    pub fn correlation_id(&self) -> Option<&str> {
        self.0.correlation_id.as_deref()
    }

    /// `x-ms-request-id` of the failing answer.
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// Whether the resource does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.0.status == Some(404)
    }

    /// Whether the error is a deadline: the caller's timeout, not a failure of ARM.
    pub fn is_deadline(&self) -> bool {
        matches!(
            self.0.kind,
            ArmErrorKind::Deadline { .. } | ArmErrorKind::TimedOut
        )
    }
}

impl fmt::Display for ArmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.0.operation)?;
        match &self.0.kind {
            ArmErrorKind::Status => match self.0.status {
                Some(status) => write!(f, "{status}")?,
                None => f.write_str("failed")?,
            },
            ArmErrorKind::OperationFailed { status } => {
                write!(f, "operation {}", status.to_ascii_lowercase())?;
            }
            ArmErrorKind::Deadline {
                asked,
                left,
                reason,
            } => {
                write!(
                    f,
                    "{reason}: ARM asked to wait {} s but the operation's timeout ends in {} s",
                    ceil_secs(*asked),
                    left.as_secs()
                )?;
                if let Some(status) = self.0.status {
                    write!(f, "; the last answer was {status}")?;
                }
            }
            ArmErrorKind::TimedOut => {
                f.write_str("the operation's timeout ended before ARM answered")?
            }
            ArmErrorKind::Transport => f.write_str("no answer from ARM")?,
            ArmErrorKind::Decode => f.write_str("unreadable answer")?,
            ArmErrorKind::Credential => f.write_str("no access token")?,
            ArmErrorKind::Invalid => f.write_str("invalid request")?,
        }
        if let Some(code) = self.code() {
            write!(f, " {code}")?;
        }
        if let Some(message) = self.message() {
            write!(f, ": {}", message.trim_end_matches('.'))?;
        }
        let mut extras = Vec::new();
        if let Some(target) = self.target() {
            extras.push(format!("target {target}"));
        }
        if let Some(id) = &self.0.correlation_id {
            extras.push(format!("correlation id {id}"));
        } else if let Some(id) = &self.0.request_id {
            extras.push(format!("request id {id}"));
        }
        if !extras.is_empty() {
            write!(f, " ({})", extras.join("; "))?;
        }
        Ok(())
    }
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn short_paths_drop_the_scope_and_namespace() {
        let cases = [
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/gpu",
                "virtualMachineScaleSets/gpu",
            ),
            ("/subscriptions/s/providers/Microsoft.Compute/skus", "skus"),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/providers/Microsoft.Authorization/roleAssignments/g",
                "roleAssignments/g",
            ),
            (
                "/subscriptions/s/resourcegroups/rg",
                "/subscriptions/s/resourcegroups/rg",
            ),
        ];
        for (path, short) in cases {
            assert_eq!(Operation::new("GET", path).short_path(), short, "{path}");
        }
    }

    #[test]
    fn error_bodies_parse_in_their_shapes() {
        let cases: [(&str, Option<(&str, &str)>); 5] = [
            (
                r#"{"error":{"code":"AllocationFailed","message":"no capacity","target":"sku.name","details":[{"code":"Inner","message":"x"}]}}"#,
                Some(("AllocationFailed", "no capacity")),
            ),
            (
                r#"{"code":"Flat","message":"top level"}"#,
                Some(("Flat", "top level")),
            ),
            (
                r#"{"odata.error":{"code":"OData","message":"m"}}"#,
                Some(("OData", "m")),
            ),
            (r#"{"unrelated":true}"#, None),
            ("<html>bad gateway</html>", None),
        ];
        for (body, want) in cases {
            let got = ErrorDetail::from_body(body.as_bytes());
            assert_eq!(
                got.as_ref()
                    .map(|d| (d.code.as_deref().unwrap(), d.message.as_deref().unwrap())),
                want,
                "{body}"
            );
        }
        let nested = ErrorDetail::from_body(cases_first().as_bytes()).unwrap();
        assert_eq!(nested.target.as_deref(), Some("sku.name"));
        assert_eq!(nested.details[0].code.as_deref(), Some("Inner"));
    }

    fn cases_first() -> &'static str {
        r#"{"error":{"code":"AllocationFailed","message":"no capacity","target":"sku.name","details":[{"code":"Inner","message":"x"}]}}"#
    }

    #[test]
    fn display_names_operation_status_code_target_and_correlation() {
        let error = ArmError::new(
            Operation::new(
                "PUT",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/gpu",
            ),
            ArmErrorKind::Status,
        )
        .with_status(409)
        .with_detail(ErrorDetail::from_body(cases_first().as_bytes()))
        .with_ids(Some("1234-abcd".into()), Some("r1".into()));
        assert_eq!(
            error.to_string(),
            "PUT virtualMachineScaleSets/gpu: 409 AllocationFailed: no capacity (target sku.name; correlation id 1234-abcd)"
        );
        assert_eq!(error.code(), Some("AllocationFailed"));
        assert_eq!(error.target(), Some("sku.name"));
        assert_eq!(error.correlation_id(), Some("1234-abcd"));
        assert_eq!(error.request_id(), Some("r1"));
        assert_eq!(error.details().len(), 1);
    }

    #[test]
    fn display_of_a_deadline_says_both_durations() {
        let error = ArmError::new(
            Operation::new("PATCH", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/gpu"),
            ArmErrorKind::Deadline {
                asked: Duration::from_millis(1_199_500),
                left: Duration::from_secs(300),
                reason: "throttled (429)",
            },
        )
        .with_status(429);
        let text = error.to_string();
        assert_eq!(
            text,
            "PATCH virtualMachineScaleSets/gpu: throttled (429): ARM asked to wait 1200 s but the operation's timeout ends in 300 s; the last answer was 429"
        );
        assert!(error.is_deadline());
    }

    #[test]
    fn display_of_a_failed_operation_is_lowercase() {
        let error = ArmError::new(
            Operation::new(
                "DELETE",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/fs",
            ),
            ArmErrorKind::OperationFailed {
                status: "Failed".into(),
            },
        )
        .with_detail(Some(ErrorDetail {
            code: Some("InternalError".into()),
            message: Some("boom.".into()),
            ..ErrorDetail::default()
        }));
        assert_eq!(
            error.to_string(),
            "DELETE virtualMachines/fs: operation failed InternalError: boom"
        );
    }
}
