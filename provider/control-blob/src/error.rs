//! Failures: the distinct kinds `open`, `check` and `ensure_container` report, so the provider
//! can turn a wrong key or an unreachable endpoint into a diagnostic at configure time, and how a
//! failed Azure request becomes a `StoreError`.
//!
//! Every message is redacted: a SAS signature (`sig=`) never reaches one.
use std::io;
use std::time::Duration;

use azure_core::error::ErrorKind;
use azure_core::http::headers::HeaderName;
use control::StoreError;

use crate::location::{redact, strip_url_queries};

/// Why a blob store could not be opened or did not answer as one should.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("open blob store {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("open blob store {url}: {reason}")]
    InvalidCredential { url: String, reason: String },
    #[error("check blob store {url}: the endpoint is unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    #[error(
        "check blob store {url}: authentication refused ({detail}): check the account key or SAS token (its expiry and permissions) or the identity's role on the account"
    )]
    AuthenticationRefused { url: String, detail: String },
    #[error("check blob store {url}: the container does not exist")]
    ContainerMissing { url: String },
    #[error(
        "create container {url}: refused ({detail}): create the container beforehand, or use a credential that may create containers"
    )]
    ContainerNotCreatable { url: String, detail: String },
    #[error("check blob store {url}: {detail}")]
    Failed { url: String, detail: String },
}

impl OpenError {
    /// Whether the credential is at fault (a key or SAS token that does not parse, or one the
    /// service refuses) rather than the URL, the endpoint or the container: which attribute a
    /// diagnostic points at.
    pub fn blames_credential(&self) -> bool {
        matches!(
            self,
            OpenError::InvalidCredential { .. } | OpenError::AuthenticationRefused { .. }
        )
    }
}

/// A failed request, reduced to what the mapping needs and a redacted description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The HTTP status, `None` when no response came (connection, timeout).
    pub status: Option<u16>,
    /// Azure's error code (`x-ms-error-code`), e.g. `LeaseIdMissing`.
    pub code: Option<String>,
    pub detail: String,
    kind: io::ErrorKind,
}

impl Failure {
    /// A failure that the same request may not meet again: no answer at all (a connection
    /// reset or refused, a timeout), or a busy or failing service (408, 429, 5xx).
    pub fn is_transient(&self) -> bool {
        self.status
            .is_none_or(|s| matches!(s, 408 | 429 | 500 | 502 | 503 | 504))
    }

    pub fn from_azure(error: &azure_core::Error) -> Failure {
        match error.kind() {
            ErrorKind::HttpResponse {
                status,
                error_code,
                raw_response,
            } => {
                let status = u16::from(*status);
                let header = |name: &'static str| {
                    raw_response.as_ref().and_then(|response| {
                        response
                            .headers()
                            .get_optional_string(&HeaderName::from_static(name))
                    })
                };
                let code = error_code.clone().or_else(|| header("x-ms-error-code"));
                let body = raw_response
                    .as_ref()
                    .map(|response| String::from_utf8_lossy(response.body()).into_owned())
                    .unwrap_or_default();
                let mut detail = format!("HTTP {status}");
                if let Some(code) = &code {
                    detail.push_str(&format!(" {code}"));
                }
                if let Some(request_id) = header("x-ms-request-id") {
                    detail.push_str(&format!(", x-ms-request-id {request_id}"));
                }
                for element in ["Message", "AuthenticationErrorDetail"] {
                    if let Some(text) = xml_text(&body, element) {
                        detail.push_str(&format!(": {text}"));
                    }
                }
                let kind = match status {
                    403 => io::ErrorKind::PermissionDenied,
                    408 | 504 => io::ErrorKind::TimedOut,
                    _ => io::ErrorKind::Other,
                };
                Failure {
                    status: Some(status),
                    code,
                    detail: redact(&detail),
                    kind,
                }
            }
            _ => {
                // The SDK's own message ("failed to execute `reqwest` request") says little; the
                // causes below it say what happened (connection refused, DNS, TLS).
                let mut detail = error.to_string();
                let mut kind = if matches!(error.kind(), ErrorKind::Credential) {
                    io::ErrorKind::PermissionDenied
                } else {
                    io::ErrorKind::Other
                };
                let mut source = std::error::Error::source(error);
                while let Some(cause) = source {
                    let text = cause.to_string();
                    if !detail.contains(&text) {
                        detail.push_str(&format!(": {text}"));
                    }
                    if let Some(io) = cause.downcast_ref::<io::Error>() {
                        kind = io.kind();
                    }
                    source = cause.source();
                }
                Failure {
                    status: None,
                    code: None,
                    detail: redact(&strip_url_queries(&detail)),
                    kind,
                }
            }
        }
    }

    pub fn timeout(after: Duration) -> Failure {
        Failure {
            status: None,
            code: None,
            detail: format!("no answer within {} s", after.as_secs()),
            kind: io::ErrorKind::TimedOut,
        }
    }

    /// A failure of this crate's own making (no request was answered).
    pub fn other(detail: &str) -> Failure {
        Failure {
            status: None,
            code: None,
            detail: redact(detail),
            kind: io::ErrorKind::Other,
        }
    }

    /// The credential was refused, or no token could be had for it.
    pub fn is_auth(&self) -> bool {
        matches!(self.status, Some(401 | 403)) || self.kind == io::ErrorKind::PermissionDenied
    }

    /// An answer that broke the protocol (no ETag on a write, no lease ID on an acquire).
    pub fn protocol(what: &str) -> Failure {
        Failure {
            status: None,
            code: None,
            detail: format!("the service answered without {what}"),
            kind: io::ErrorKind::InvalidData,
        }
    }

    pub fn is(&self, status: u16, code: &str) -> bool {
        self.status == Some(status) && self.code.as_deref() == Some(code)
    }

    pub fn code_is(&self, codes: &[&str]) -> bool {
        self.code
            .as_deref()
            .is_some_and(|code| codes.contains(&code))
    }

    /// The retryable failure callers already retry on: transient failures (connection, timeout,
    /// 5xx, 429) and everything this store cannot map to an expected outcome.
    pub fn into_io(self, op: &'static str, key: &str) -> StoreError {
        let detail = if self.is(409, "BlockCountExceedsLimit") {
            format!(
                "{}: the log has reached Azure's 50,000 appends per append blob",
                self.detail
            )
        } else {
            self.detail
        };
        StoreError::Io {
            op,
            key: key.to_owned(),
            source: io::Error::new(self.kind, detail),
        }
    }
}

/// The text of the first `<element>` in an XML error body, its first line only (Azure appends
/// request id and time lines, which the detail already has).
fn xml_text(body: &str, element: &str) -> Option<String> {
    let start = body.find(&format!("<{element}>"))? + element.len() + 2;
    let end = body[start..].find(&format!("</{element}>"))? + start;
    let text = body[start..end]
        .lines()
        .next()?
        .trim()
        .trim_end_matches('.');
    (!text.is_empty()).then(|| text.to_owned())
}

/// Lease failures of writes and deletes (412), the same for both. Writing with another holder's
/// ID or without one is `LeaseHeld`; writing with an ID that no longer holds is `LeaseLost`.
pub(crate) fn lease_write_error(
    failure: &Failure,
    op: &'static str,
    key: &str,
) -> Option<StoreError> {
    let key = key.to_owned();
    if failure.code_is(&["LeaseIdMissing", "LeaseIdMismatchWithBlobOperation"]) {
        Some(StoreError::LeaseHeld { op, key })
    } else if failure.code_is(&["LeaseNotPresentWithBlobOperation", "LeaseLost"]) {
        Some(StoreError::LeaseLost { op, key })
    } else {
        None
    }
}

/// Lease failures of lease operations (409; `LeaseLost` is 412).
pub(crate) fn lease_op_error(failure: &Failure, op: &'static str, key: &str) -> Option<StoreError> {
    let key = key.to_owned();
    if failure.code_is(&["LeaseAlreadyPresent", "LeaseIsBreakingAndCannotBeAcquired"]) {
        Some(StoreError::LeaseHeld { op, key })
    } else if failure.code_is(&[
        "LeaseIdMismatchWithLeaseOperation",
        "LeaseNotPresentWithLeaseOperation",
        "LeaseIsBrokenAndCannotBeRenewed",
        "LeaseIsBreakingAndCannotBeChanged",
        "LeaseLost",
    ]) {
        Some(StoreError::LeaseLost { op, key })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use azure_core::http::headers::Headers;
    use azure_core::http::{RawResponse, StatusCode};

    fn http(status: u16, code: &str, body: &str) -> azure_core::Error {
        let mut headers = Headers::new();
        headers.insert("x-ms-request-id", "req-1");
        headers.insert("x-ms-error-code", code.to_owned());
        ErrorKind::HttpResponse {
            status: StatusCode::from(status),
            error_code: Some(code.to_owned()),
            raw_response: Some(Box::new(RawResponse::from_bytes(
                StatusCode::from(status),
                headers,
                body.as_bytes().to_vec(),
            ))),
        }
        .into_error()
    }

    #[test]
    fn http_failures_keep_status_code_request_and_message() {
        let error = http(
            403,
            "AuthenticationFailed",
            "<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:req-1\nTime:x</Message><AuthenticationErrorDetail>Signature did not match. sig=SECRET</AuthenticationErrorDetail></Error>",
        );
        let failure = Failure::from_azure(&error);
        assert_eq!(failure.status, Some(403));
        assert_eq!(failure.code.as_deref(), Some("AuthenticationFailed"));
        assert_eq!(
            failure.detail,
            "HTTP 403 AuthenticationFailed, x-ms-request-id req-1: Server failed to authenticate the request: Signature did not match. sig=REDACTED"
        );
        let StoreError::Io { source, .. } = failure.into_io("get", "k") else {
            panic!("not Io");
        };
        assert_eq!(source.kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn transport_failures_name_their_cause() {
        let cause = io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "connect http://h/c?sig=SECRET: refused",
        );
        let error = azure_core::Error::with_error(
            ErrorKind::Connection,
            cause,
            "failed to execute `reqwest` request",
        );
        let failure = Failure::from_azure(&error);
        assert_eq!(failure.status, None);
        assert!(!failure.detail.contains("SECRET"), "{}", failure.detail);
        let message = failure.into_io("put", "a/b").to_string();
        assert!(message.starts_with("put a/b: "), "{message}");
        assert!(message.contains("refused"), "{message}");
    }

    #[test]
    fn azure_codes_map_to_store_outcomes() {
        type Map = fn(&Failure, &'static str, &str) -> Option<StoreError>;
        let cases: &[(Map, u16, &str, Option<&str>)] = &[
            (lease_write_error, 412, "LeaseIdMissing", Some("LeaseHeld")),
            (
                lease_write_error,
                412,
                "LeaseIdMismatchWithBlobOperation",
                Some("LeaseHeld"),
            ),
            (
                lease_write_error,
                412,
                "LeaseNotPresentWithBlobOperation",
                Some("LeaseLost"),
            ),
            (lease_write_error, 412, "LeaseLost", Some("LeaseLost")),
            (lease_write_error, 412, "ConditionNotMet", None),
            (
                lease_op_error,
                409,
                "LeaseAlreadyPresent",
                Some("LeaseHeld"),
            ),
            (
                lease_op_error,
                409,
                "LeaseIsBreakingAndCannotBeAcquired",
                Some("LeaseHeld"),
            ),
            (
                lease_op_error,
                409,
                "LeaseIdMismatchWithLeaseOperation",
                Some("LeaseLost"),
            ),
            (
                lease_op_error,
                409,
                "LeaseNotPresentWithLeaseOperation",
                Some("LeaseLost"),
            ),
            (
                lease_op_error,
                409,
                "LeaseIsBrokenAndCannotBeRenewed",
                Some("LeaseLost"),
            ),
            (lease_op_error, 412, "LeaseLost", Some("LeaseLost")),
            (lease_op_error, 503, "ServerBusy", None),
        ];
        for (map, status, code, want) in cases {
            let failure = Failure::from_azure(&http(*status, code, ""));
            let got = map(&failure, "op", "k").map(|error| match error {
                StoreError::LeaseHeld { .. } => "LeaseHeld",
                StoreError::LeaseLost { .. } => "LeaseLost",
                _ => "other",
            });
            assert_eq!(got, *want, "{status} {code}");
        }
    }

    #[test]
    fn unmapped_failures_are_io_with_a_hint_where_one_helps() {
        let cases: &[(u16, &str, &str)] = &[
            (404, "ContainerNotFound", "HTTP 404 ContainerNotFound"),
            (409, "BlockCountExceedsLimit", "50,000 appends"),
            (
                503,
                "ServerBusy",
                "HTTP 503 ServerBusy, x-ms-request-id req-1",
            ),
            (429, "TooManyRequests", "HTTP 429"),
        ];
        for (status, code, want) in cases {
            let error = Failure::from_azure(&http(*status, code, "")).into_io("append", "log");
            assert!(matches!(error, StoreError::Io { .. }), "{error}");
            let message = error.to_string();
            assert!(message.starts_with("append log: "), "{message}");
            assert!(message.contains(want), "{message}");
        }
        let timeout = Failure::timeout(Duration::from_secs(30)).into_io("get", "k");
        assert_eq!(timeout.to_string(), "get k: no answer within 30 s");
    }
}
