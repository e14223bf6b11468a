//! Managed identity through a custom endpoint (`msi_endpoint`): azure_identity's
//! `ManagedIdentityCredential` has the instance metadata service's address built in, so a
//! configured endpoint is asked here, with the IMDS protocol go-azure-sdk uses for it.

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::time::{Duration, OffsetDateTime};
use serde::Deserialize;

/// The IMDS token api-version go-azure-sdk uses with a custom endpoint.
const MSI_API_VERSION: &str = "2018-02-01";

/// Managed identity tokens from `endpoint` (an IMDS-shaped
/// `…/metadata/identity/oauth2/token`), for a user-assigned identity when `client_id` is set.
#[derive(Debug)]
pub(crate) struct MsiEndpointCredential {
    pub(crate) endpoint: String,
    pub(crate) client_id: Option<String>,
    pub(crate) client: reqwest::Client,
}

/// A number that IMDS sends as a string or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Text(String),
    Int(i64),
}

impl Number {
    fn value(&self) -> Option<i64> {
        match self {
            Number::Text(text) => text.trim().parse().ok(),
            Number::Int(n) => Some(*n),
        }
    }
}

impl MsiEndpointCredential {
    async fn token(&self, resource: &str) -> Result<AccessToken, String> {
        let mut url = reqwest::Url::parse(&self.endpoint)
            .map_err(|error| format!("msi_endpoint is not a url: {error}"))?;
        {
            let mut pairs = url.query_pairs_mut();
            pairs
                .append_pair("api-version", MSI_API_VERSION)
                .append_pair("resource", resource);
            if let Some(client_id) = &self.client_id {
                pairs.append_pair("client_id", client_id);
            }
        }
        let response = self
            .client
            .get(url)
            .header("Metadata", "true")
            .send()
            .await
            .map_err(|error| crate::cloud::describe_reqwest(&error))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| crate::cloud::describe_reqwest(&error))?;
        if !status.is_success() {
            let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            return Err(format!("status {status}: {text}"));
        }
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            expires_on: Option<Number>,
            expires_in: Option<Number>,
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|error| format!("the answer is not the expected JSON: {error}"))?;
        let now = OffsetDateTime::now_utc();
        let expires_on = match (
            answer.expires_on.as_ref().and_then(Number::value),
            answer.expires_in.as_ref().and_then(Number::value),
        ) {
            (Some(at), _) => OffsetDateTime::from_unix_timestamp(at)
                .map_err(|_| "expires_on is out of range".to_owned())?,
            (None, Some(seconds)) => now + Duration::seconds(seconds),
            (None, None) => return Err("the answer has neither expires_on nor expires_in".into()),
        };
        Ok(AccessToken::new(answer.access_token, expires_on))
    }
}

#[async_trait::async_trait]
impl TokenCredential for MsiEndpointCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let [scope] = scopes else {
            return Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                "managed identity takes exactly one scope",
            ));
        };
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        self.token(resource).await.map_err(|detail| {
            azure_core::Error::with_message(
                ErrorKind::Credential,
                format!(
                    "request a managed identity token from {}: {detail}",
                    self.endpoint
                ),
            )
        })
    }
}
