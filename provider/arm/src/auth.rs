//! Our bearer-token policy for the azure_core pipeline: adds `Authorization: Bearer …` from a
//! `TokenCredential`, keeps the token until shortly before it expires, refuses plain-http
//! endpoints unless the client allows them for tests, and appends the user-agent suffix.
//!
//! Ours rather than azure_core's `BearerTokenAuthorizationPolicy` because that one refuses
//! `http://` outright, and Microsoft's ARM mock server (Spector) serves plain HTTP.
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::http::headers::{AUTHORIZATION, HeaderName, HeaderValue};
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request, StatusCode};
use azure_core::time::{Duration, OffsetDateTime};
use tokio::sync::Mutex;

/// A token is renewed this long before it expires, so no request carries one that lapses in
/// flight (the SDK's own policies use the same margin).
const EXPIRY_MARGIN: Duration = Duration::minutes(5);

const USER_AGENT: HeaderName = HeaderName::from_static("user-agent");

/// Authorizes each request; see the module docs.
#[derive(Debug)]
pub(crate) struct BearerPolicy {
    credential: Arc<dyn TokenCredential>,
    scope: String,
    allow_http: bool,
    user_agent_suffix: Option<String>,
    cached: Mutex<Option<AccessToken>>,
}

impl BearerPolicy {
    pub(crate) fn new(
        credential: Arc<dyn TokenCredential>,
        scope: String,
        allow_http: bool,
        user_agent_suffix: Option<String>,
    ) -> BearerPolicy {
        BearerPolicy {
            credential,
            scope,
            allow_http,
            user_agent_suffix,
            cached: Mutex::new(None),
        }
    }

    /// The cached token while it has more than [`EXPIRY_MARGIN`] left, else a new one.
    /// `fresh` skips the cache (after a 401). One lock: concurrent requests wait for one fetch.
    async fn token(&self, fresh: bool) -> azure_core::Result<(String, bool)> {
        let mut cached = self.cached.lock().await;
        if !fresh
            && let Some(token) = cached.as_ref()
            && token.expires_on - OffsetDateTime::now_utc() > EXPIRY_MARGIN
        {
            return Ok((token.token.secret().to_owned(), true));
        }
        let token = self.credential.get_token(&[&self.scope], None).await?;
        let secret = token.token.secret().to_owned();
        *cached = Some(token);
        Ok((secret, false))
    }
}

#[async_trait]
impl Policy for BearerPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        if request.url().scheme() != "https" && !self.allow_http {
            return Err(azure_core::Error::with_message(
                ErrorKind::Other,
                "refused to send a bearer token over plain http (allow_http is for tests only)",
            ));
        }
        if let Some(suffix) = &self.user_agent_suffix {
            let agent = request
                .headers()
                .get_optional_str(&USER_AGENT)
                .map_or_else(|| suffix.clone(), |agent| format!("{agent} {suffix}"));
            request.insert_header(USER_AGENT, HeaderValue::from(agent));
        }
        let (token, from_cache) = self.token(false).await?;
        request.insert_header(AUTHORIZATION, HeaderValue::from(format!("Bearer {token}")));
        let response = next[0].send(ctx, request, &next[1..]).await?;
        if response.status() != StatusCode::Unauthorized || !from_cache {
            return Ok(response);
        }
        // A cached token the service no longer accepts (revoked, clock skew): one more try
        // with a new one. A new token refused is the caller's 401.
        let (token, _) = self.token(true).await?;
        request.insert_header(AUTHORIZATION, HeaderValue::from(format!("Bearer {token}")));
        next[0].send(ctx, request, &next[1..]).await
    }
}
