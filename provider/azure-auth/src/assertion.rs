//! Client assertions for workload identity federation: a token given inline, a token file read
//! on every request, and tokens fetched from GitHub Actions' and Azure DevOps' token services.

use azure_core::error::ErrorKind;
use azure_core::http::ClientMethodOptions;
use azure_identity::ClientAssertion;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

/// The audience Entra ID expects of a federated token (azurerm's default for both services).
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The api-version go-azure-sdk asks Azure DevOps' OIDC endpoint for.
const ADO_API_VERSION: &str = "7.1";

fn credential_error(message: String) -> azure_core::Error {
    azure_core::Error::with_message(ErrorKind::Credential, message)
}

/// A federated token given inline (`oidc_token`). `Debug` hides it.
pub(crate) struct InlineToken(pub(crate) String);

impl fmt::Debug for InlineToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InlineToken(<redacted>)")
    }
}

#[async_trait::async_trait]
impl ClientAssertion for InlineToken {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        Ok(self.0.clone())
    }
}

/// A federated token in a file, read again on each token request: AKS and other issuers
/// rotate the file under a long-running process.
#[derive(Debug)]
pub(crate) struct TokenFile(pub(crate) PathBuf);

#[async_trait::async_trait]
impl ClientAssertion for TokenFile {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let text = std::fs::read_to_string(&self.0).map_err(|error| {
            credential_error(format!(
                "read the oidc token file {}: {error}",
                self.0.display()
            ))
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(credential_error(format!(
                "read the oidc token file {}: it is empty",
                self.0.display()
            )));
        }
        Ok(token.to_owned())
    }
}

/// Which token service a [`RequestedToken`] asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenService {
    /// GitHub Actions: `GET {ACTIONS_ID_TOKEN_REQUEST_URL}&audience=…`, answering `{"value"}`.
    GitHub,
    /// An Azure DevOps service connection: `POST {SYSTEM_OIDCREQUESTURI}?api-version=7.1&serviceConnectionId=…&audience=…`,
    /// answering `{"oidcToken"}`.
    AzureDevOps { service_connection_id: String },
}

/// A federated token fetched from a CI system's token service on each token request (the
/// tokens live minutes). `Debug` hides the request token.
pub(crate) struct RequestedToken {
    pub(crate) service: TokenService,
    pub(crate) url: String,
    pub(crate) request_token: String,
    pub(crate) client: reqwest::Client,
}

impl fmt::Debug for RequestedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestedToken")
            .field("service", &self.service)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RequestedToken {
    /// The token service's URL with the query parameters azurerm adds when they are absent.
    pub(crate) fn request_url(&self) -> Result<reqwest::Url, String> {
        let mut url = reqwest::Url::parse(&self.url)
            .map_err(|error| format!("the oidc request url is not a url: {error}"))?;
        let has = |url: &reqwest::Url, key: &str| url.query_pairs().any(|(k, _)| k == key);
        let mut add = Vec::new();
        if let TokenService::AzureDevOps {
            service_connection_id,
        } = &self.service
        {
            if !has(&url, "api-version") {
                add.push(("api-version", ADO_API_VERSION.to_owned()));
            }
            if !has(&url, "serviceConnectionId") {
                add.push(("serviceConnectionId", service_connection_id.clone()));
            }
        }
        if !has(&url, "audience") {
            add.push(("audience", FEDERATED_AUDIENCE.to_owned()));
        }
        if !add.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in add {
                pairs.append_pair(key, &value);
            }
        }
        Ok(url)
    }

    async fn fetch(&self) -> Result<String, String> {
        let url = self.request_url()?;
        let request = match self.service {
            TokenService::GitHub => self.client.get(url),
            TokenService::AzureDevOps { .. } => self
                .client
                .post(url)
                .header("Content-Type", "application/json"),
        };
        let response = request
            .header("Accept", "application/json")
            .bearer_auth(&self.request_token)
            .send()
            .await
            .map_err(|error| crate::cloud::describe_reqwest(&error))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| crate::cloud::describe_reqwest(&error))?;
        if !status.is_success() {
            // The body of an error is the service's message, not a token.
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(300).collect();
            return Err(format!("status {status}: {text}"));
        }
        #[derive(Deserialize)]
        struct Answer {
            value: Option<String>,
            #[serde(rename = "oidcToken")]
            oidc_token: Option<String>,
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|error| format!("the answer is not the expected JSON: {error}"))?;
        let token = match self.service {
            TokenService::GitHub => answer.value,
            TokenService::AzureDevOps { .. } => answer.oidc_token,
        };
        token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "the answer holds no token".to_owned())
    }
}

#[async_trait::async_trait]
impl ClientAssertion for RequestedToken {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let what = match self.service {
            TokenService::GitHub => "github actions",
            TokenService::AzureDevOps { .. } => "azure devops",
        };
        self.fetch().await.map_err(|detail| {
            credential_error(format!(
                "request an oidc token from {what} at {}: {detail}",
                self.url
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested(service: TokenService, url: &str) -> RequestedToken {
        RequestedToken {
            service,
            url: url.to_owned(),
            request_token: "request-token".to_owned(),
            client: reqwest::Client::new(),
        }
    }

    #[test]
    fn github_url_gets_the_audience_unless_it_has_one() {
        let token = requested(
            TokenService::GitHub,
            "https://pipelines.example/idtoken?api-version=2.0",
        );
        assert_eq!(
            token.request_url().expect("url").as_str(),
            "https://pipelines.example/idtoken?api-version=2.0&audience=api%3A%2F%2FAzureADTokenExchange"
        );
        let token = requested(TokenService::GitHub, "https://x.example/t?audience=mine");
        assert_eq!(
            token.request_url().expect("url").as_str(),
            "https://x.example/t?audience=mine"
        );
        assert!(format!("{token:?}").contains("x.example"));
        assert!(!format!("{token:?}").contains("request-token"));
    }

    #[test]
    fn ado_url_gets_version_connection_and_audience() {
        let token = requested(
            TokenService::AzureDevOps {
                service_connection_id: "conn-1".to_owned(),
            },
            "https://dev.azure.example/org/_apis/distributedtask/hubs/build/plans/p/jobs/j/oidctoken",
        );
        let url = token.request_url().expect("url");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("api-version".to_owned(), "7.1".to_owned()),
                ("serviceConnectionId".to_owned(), "conn-1".to_owned()),
                ("audience".to_owned(), FEDERATED_AUDIENCE.to_owned()),
            ]
        );
    }

    #[test]
    fn inline_token_debug_is_redacted() {
        assert!(!format!("{:?}", InlineToken("eyJ.secret".into())).contains("eyJ"));
    }
}
