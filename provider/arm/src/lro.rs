//! Long-running operations, by ARM's rules (as azure-mgmt-core's `ARMPolling` reads them):
//!
//! 1. Poll `Azure-AsyncOperation` if the first answer has it, else `Location`; a PUT or PATCH
//!    with neither polls the resource's own `properties.provisioningState`.
//! 2. Terminal statuses are `Succeeded`, `Failed` and `Canceled`/`Cancelled`, in any case.
//! 3. A 4xx or 5xx from a status URL is a failed read, tried again (up to `max_retries` in a
//!    row); throttling and transient failures are retried as every request is.
//! 4. Location polling: 202 means still running; any other 2xx is the result.
//! 5. After an `Azure-AsyncOperation` succeeds, the final GET goes to the status body's
//!    `resourceLocation` if present, else the original URL for PUT and PATCH, the first
//!    answer's `Location` for POST; a DELETE has none (not even to `resourceLocation`,
//!    which would answer 404).
//! 6. Between polls, wait `retry-after-ms`, `x-ms-retry-after-ms` or `Retry-After` (seconds or
//!    an HTTP date), else the client's poll delay (10 s), never less than its minimum (1 s).
//!
//! A `Failed` or `Canceled` operation is an [`ArmError`] of kind `OperationFailed` carrying the
//! status body's `error` object.
use std::time::SystemTime;

use azure_core::http::{Method, Url};
use tokio::time::Instant;

use crate::client::{ArmClient, ArmResponse, new_correlation_id, wait};
use crate::error::{ArmError, ArmErrorKind, ErrorDetail, Operation};
use crate::retry;

/// How an operation is followed after its first answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polling {
    /// Already finished: the first answer is the result.
    Done,
    AsyncOperation(Url),
    Location(Url),
    /// GET the resource until its `provisioningState` is terminal.
    ProvisioningState,
}

/// A status as ARM reports it, sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Succeeded,
    Failed,
    Canceled,
    InProgress,
}

impl Status {
    /// Terminal statuses case-insensitively; anything else (`InProgress`, `Creating`,
    /// `Updating`, `Deleting`, `Accepted`, `Running`) is still going.
    pub fn parse(status: &str) -> Status {
        match status.to_ascii_lowercase().as_str() {
            "succeeded" => Status::Succeeded,
            "failed" => Status::Failed,
            "canceled" | "cancelled" => Status::Canceled,
            _ => Status::InProgress,
        }
    }
}

/// How to follow an operation whose first answer is `first` to a `method` request.
pub fn polling_for(method: Method, first: &ArmResponse) -> Result<Polling, String> {
    let parse = |name: &str| -> Result<Option<Url>, String> {
        match first.header(name).filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(value) => Url::parse(value.trim())
                .map(Some)
                .map_err(|e| format!("its {name} header {value:?} is not a URL: {e}")),
        }
    };
    if let Some(url) = parse("azure-asyncoperation")? {
        return Ok(Polling::AsyncOperation(url));
    }
    if let Some(url) = parse("location")? {
        return Ok(Polling::Location(url));
    }
    if matches!(method, Method::Put | Method::Patch)
        && let Some(state) = provisioning_state(first)
        && Status::parse(&state) == Status::InProgress
    {
        return Ok(Polling::ProvisioningState);
    }
    Ok(Polling::Done)
}

/// Where the result of a succeeded `Azure-AsyncOperation` is read: see rule 5.
pub fn final_get_url(
    method: Method,
    original: &Url,
    first_location: Option<&Url>,
    status_body: &serde_json::Value,
) -> Option<Url> {
    // A deleted resource has nothing to read (a GET of `resourceLocation` would be a 404).
    if method == Method::Delete {
        return None;
    }
    if let Some(location) = status_body
        .get("resourceLocation")
        .and_then(|v| v.as_str())
        .and_then(|v| Url::parse(v).ok())
    {
        return Some(location);
    }
    match method {
        Method::Put | Method::Patch => Some(original.clone()),
        Method::Post => first_location.cloned(),
        _ => None,
    }
}

fn provisioning_state(response: &ArmResponse) -> Option<String> {
    let body = response.json_value()?;
    body.get("properties")?
        .get("provisioningState")?
        .as_str()
        .map(str::to_owned)
}

impl ArmClient {
    /// Starts a long-running operation and follows it to its end. Returns the final answer,
    /// whose body is the resource (PUT, PATCH) or the action's result (POST), or `None` when
    /// the operation has no result to read (DELETE; a POST without `Location`).
    ///
    /// An error status on the first request is returned as it is (a DELETE's 404 included:
    /// callers decide whether absent is fine).
    pub async fn long_running(
        &self,
        method: Method,
        url: Url,
        body: Option<&[u8]>,
        deadline: Option<Instant>,
    ) -> Result<Option<ArmResponse>, ArmError> {
        let operation = Operation::new(method.to_string(), url.path());
        let correlation = new_correlation_id();
        let first = self
            .send_ok(&operation, method, &url, body, &correlation, deadline)
            .await?;
        let polling = polling_for(method, &first).map_err(|note| {
            ArmError::new(operation.clone(), ArmErrorKind::Decode).with_note(note)
        })?;
        let first_location = first
            .header("location")
            .and_then(|v| Url::parse(v.trim()).ok());
        let mut poller = Poller {
            client: self,
            operation: &operation,
            correlation: &correlation,
            deadline,
            last: first,
        };
        match polling {
            Polling::Done => {
                let last = poller.last;
                Ok((method != Method::Delete).then_some(last))
            }
            Polling::AsyncOperation(status_url) => {
                let status_body = poller.until_terminal_status(&status_url).await?;
                match final_get_url(method, &url, first_location.as_ref(), &status_body) {
                    Some(final_url) => {
                        let response = self
                            .send_ok(
                                &operation,
                                Method::Get,
                                &final_url,
                                None,
                                &correlation,
                                deadline,
                            )
                            .await?;
                        Ok(Some(response))
                    }
                    None if method == Method::Post => Ok(Some(poller.last)),
                    None => Ok(None),
                }
            }
            Polling::Location(location) => {
                let response = poller.until_location_done(location).await?;
                let empty = response.body.iter().all(u8::is_ascii_whitespace);
                if !empty {
                    return Ok(Some(response));
                }
                match method {
                    Method::Put | Method::Patch => {
                        let response = self
                            .send_ok(&operation, Method::Get, &url, None, &correlation, deadline)
                            .await?;
                        Ok(Some(response))
                    }
                    _ => Ok(None),
                }
            }
            Polling::ProvisioningState => {
                let response = poller.until_provisioned(&url).await?;
                Ok(Some(response))
            }
        }
    }
}

/// The state of one operation being followed.
struct Poller<'a> {
    client: &'a ArmClient,
    operation: &'a Operation,
    correlation: &'a str,
    deadline: Option<Instant>,
    /// The last answer: its `Retry-After` sets the next wait.
    last: ArmResponse,
}

impl Poller<'_> {
    /// Waits as the last answer asks, then GETs `url`, trying failed reads again.
    async fn poll(&mut self, url: &Url) -> Result<ArmResponse, ArmError> {
        let options = self.client.options();
        let mut failures = 0u32;
        loop {
            let asked = retry::retry_after(|name| self.last.header(name), SystemTime::now());
            let delay = asked
                .unwrap_or(options.poll_delay)
                .max(options.min_poll_delay);
            wait(
                self.operation,
                delay,
                self.deadline,
                "polling",
                Some(&self.last),
            )
            .await?;
            let response = self
                .client
                .send(
                    self.operation,
                    Method::Get,
                    url,
                    None,
                    self.correlation,
                    self.deadline,
                )
                .await?;
            if response.is_success() {
                self.last = response.clone();
                return Ok(response);
            }
            failures += 1;
            if failures > options.max_retries {
                return Err(ArmError::from_response(self.operation.clone(), &response));
            }
            self.last = response;
        }
    }

    /// Polls an `Azure-AsyncOperation` URL until its `status` is terminal; the succeeded
    /// status body.
    async fn until_terminal_status(&mut self, url: &Url) -> Result<serde_json::Value, ArmError> {
        loop {
            let response = self.poll(url).await?;
            let body = response.json_value().unwrap_or_default();
            let Some(status) = body.get("status").and_then(|s| s.as_str()) else {
                return Err(ArmError::new(self.operation.clone(), ArmErrorKind::Decode)
                    .with_status(response.status)
                    .with_note("the operation status has no status field"));
            };
            match Status::parse(status) {
                Status::Succeeded => return Ok(body),
                Status::Failed | Status::Canceled => {
                    return Err(self.failed(status, &body, &response));
                }
                Status::InProgress => {}
            }
        }
    }

    /// Polls a `Location` URL until it answers something other than 202.
    async fn until_location_done(&mut self, mut url: Url) -> Result<ArmResponse, ArmError> {
        loop {
            let response = self.poll(&url).await?;
            if response.status != 202 {
                return Ok(response);
            }
            // A 202 may move the operation on to a new Location.
            if let Some(next) = response
                .header("location")
                .and_then(|v| Url::parse(v.trim()).ok())
            {
                url = next;
            }
        }
    }

    /// GETs the resource until its `provisioningState` is terminal.
    async fn until_provisioned(&mut self, url: &Url) -> Result<ArmResponse, ArmError> {
        loop {
            let response = self.poll(url).await?;
            let state = provisioning_state(&response).unwrap_or_else(|| "Succeeded".into());
            match Status::parse(&state) {
                Status::Succeeded => return Ok(response),
                Status::Failed | Status::Canceled => {
                    let body = response.json_value().unwrap_or_default();
                    return Err(self.failed(&state, &body, &response));
                }
                Status::InProgress => {}
            }
        }
    }

    fn failed(&self, status: &str, body: &serde_json::Value, response: &ArmResponse) -> ArmError {
        let detail = body
            .get("error")
            .and_then(|e| ErrorDetail::from_value(&serde_json::json!({ "error": e })))
            .or_else(|| {
                body.get("properties")
                    .and_then(|p| p.get("error"))
                    .and_then(|e| ErrorDetail::from_value(&serde_json::json!({ "error": e })))
            });
        ArmError::new(
            self.operation.clone(),
            ArmErrorKind::OperationFailed {
                status: status.to_owned(),
            },
        )
        .with_status(response.status)
        .with_detail(detail)
        .with_ids(
            response.header("x-ms-correlation-request-id"),
            response.header("x-ms-request-id"),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> ArmResponse {
        ArmResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn statuses_parse_case_insensitively() {
        let cases = [
            ("Succeeded", Status::Succeeded),
            ("succeeded", Status::Succeeded),
            ("FAILED", Status::Failed),
            ("Canceled", Status::Canceled),
            ("Cancelled", Status::Canceled),
            ("InProgress", Status::InProgress),
            ("Creating", Status::InProgress),
            ("Deleting", Status::InProgress),
            ("", Status::InProgress),
        ];
        for (text, want) in cases {
            assert_eq!(Status::parse(text), want, "{text}");
        }
    }

    #[test]
    fn polling_prefers_async_operation_then_location_then_provisioning_state() {
        let aao = "https://arm/ops/1";
        let loc = "https://arm/results/1";
        let creating = r#"{"properties":{"provisioningState":"Creating"}}"#;
        let done = r#"{"properties":{"provisioningState":"Succeeded"}}"#;
        let cases = [
            (
                Method::Put,
                response(
                    201,
                    &[("azure-asyncoperation", aao), ("location", loc)],
                    creating,
                ),
                Polling::AsyncOperation(url(aao)),
            ),
            (
                Method::Delete,
                response(202, &[("location", loc)], ""),
                Polling::Location(url(loc)),
            ),
            (
                Method::Put,
                response(201, &[], creating),
                Polling::ProvisioningState,
            ),
            (
                Method::Patch,
                response(200, &[], creating),
                Polling::ProvisioningState,
            ),
            (Method::Put, response(200, &[], done), Polling::Done),
            // Only PUT and PATCH poll the resource itself.
            (Method::Post, response(200, &[], creating), Polling::Done),
            (Method::Delete, response(204, &[], ""), Polling::Done),
        ];
        for (method, first, want) in cases {
            assert_eq!(
                polling_for(method, &first).unwrap(),
                want,
                "{method} {first:?}"
            );
        }
        let bad = response(202, &[("location", "not a url")], "");
        assert!(
            polling_for(Method::Delete, &bad)
                .unwrap_err()
                .contains("location")
        );
    }

    #[test]
    fn final_get_urls_follow_the_rules_per_method() {
        let original =
            url("https://arm/subscriptions/s/resourceGroups/rg/providers/NS/t/n?api-version=1");
        let location = url("https://arm/results/9");
        let with_resource =
            serde_json::json!({"status": "Succeeded", "resourceLocation": "https://arm/elsewhere"});
        let plain = serde_json::json!({"status": "Succeeded"});
        let cases = [
            (Method::Put, Some(&location), &plain, Some(original.clone())),
            (Method::Patch, None, &plain, Some(original.clone())),
            (
                Method::Post,
                Some(&location),
                &plain,
                Some(location.clone()),
            ),
            (Method::Post, None, &plain, None),
            (Method::Delete, Some(&location), &plain, None),
            (
                Method::Put,
                None,
                &with_resource,
                Some(url("https://arm/elsewhere")),
            ),
            (Method::Delete, None, &with_resource, None),
        ];
        for (method, first_location, body, want) in cases {
            assert_eq!(
                final_get_url(method, &original, first_location, body),
                want,
                "{method} {body}"
            );
        }
    }
}
