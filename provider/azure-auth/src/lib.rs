//! Azure credentials resolved the way the azurerm provider resolves them, and the cloud's
//! endpoints.
//!
//! [`authenticate`] reads [`AuthSettings`] (the provider's `azure {}` block), falls back to
//! azurerm's environment variables for every unset field, finds the cloud (`environment`, or
//! `metadata_host`'s `/metadata/endpoints`), and returns an [`Authenticated`]: an
//! `Arc<dyn TokenCredential>`, the method used and the endpoints. [`Authenticated::probe`]
//! asks for one Resource Manager token, so that a bad credential is one diagnostic at
//! configure time. Every failure is one [`AuthError`]; when it is about the credential, its
//! message lists each method in order, whether it was configured and why it was skipped or
//! failed. No error, `Debug` output or log line carries a secret value.
//!
//! # Precedence (azurerm's)
//!
//! Read from go-azure-sdk's `NewAuthorizerFromCredentials` (`sdk/auth/auth.go`, the version
//! vendored by terraform-provider-azurerm) and azurerm's `providerConfigure`
//! (`internal/provider/provider.go`, `helpers.go`). The first method whose inputs are all
//! present is used; later methods are never tried, even when the chosen one fails.
//!
//! | # | Method | Used when | Credential |
//! |---|---|---|---|
//! | 1 | client certificate | tenant, client ID, and `client_certificate` (base64) or `client_certificate_path` | `ClientAssertionCredential`, an RS256 JWT signed here per request (PKCS#12 with AES, or PEM) |
//! | 2 | client secret | tenant, client ID, `client_secret` or `client_secret_file_path` | `ClientSecretCredential` |
//! | 3 | oidc token | `use_oidc` or `use_aks_workload_identity`; tenant, client ID, `oidc_token`, `oidc_token_file_path` or (AKS) `AZURE_FEDERATED_TOKEN_FILE` | `ClientAssertionCredential`, the file read on each token request |
//! | 4 | azure devops oidc | OIDC on; tenant, client ID, `ado_pipeline_service_connection_id`, request URL and token | `ClientAssertionCredential`, token POSTed for from the pipeline |
//! | 5 | github actions oidc | OIDC on; tenant, client ID, request URL and token | `ClientAssertionCredential`, token fetched with `audience=api://AzureADTokenExchange` |
//! | 6 | managed identity | `use_msi` (user-assigned when a client ID is set) | `ManagedIdentityCredential`, or `msi_endpoint` |
//! | 7 | azure cli | `use_cli` (default true) and `az` on `PATH` | `AzureCliCredential` |
//!
//! Certificates and secrets are always enabled (azurerm has no flag for them). The request
//! URL and token fall back to `ARM_OIDC_REQUEST_URL`, `ACTIONS_ID_TOKEN_REQUEST_URL`,
//! `SYSTEM_OIDCREQUESTURI` and `ARM_OIDC_REQUEST_TOKEN`, `ACTIONS_ID_TOKEN_REQUEST_TOKEN`,
//! `SYSTEM_ACCESSTOKEN`, in that order. With `use_aks_workload_identity`, `AZURE_CLIENT_ID` and
//! `AZURE_TENANT_ID` fill the client and tenant IDs (a different explicit value is an error,
//! as is an inline token that differs from a token file's content).
//!
//! Test-only: `BATCHAI_TEST_CA_CERTIFICATE` names a PEM CA that every HTTP client built here
//! trusts ([`transport::http_client`]).

mod assertion;
mod certificate;
mod chain;
mod cloud;
pub mod env;
mod error;
mod msi;
mod pkcs12;
mod settings;
pub mod transport;

pub use assertion::FEDERATED_AUDIENCE;
pub use certificate::ClientCertificate;
pub use chain::{Consideration, Considered, Method, Outcome};
pub use cloud::{CloudEndpoints, CloudError, METADATA_API_VERSION};
pub use env::{Env, MapEnv, ProcessEnv};
pub use error::AuthError;
pub use settings::AuthSettings;
pub use transport::{TEST_CA_VAR, TransportError};

use assertion::{InlineToken, RequestedToken, TokenFile, TokenService};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertion, ClientAssertionCredential,
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};
use certificate::CertificateAssertion;
use settings::{CertificateSource, Config, OidcTokenSource};
use std::fmt;
use std::sync::Arc;

/// Which method the settings choose, before anything is built or fetched.
#[derive(Debug)]
pub struct Plan {
    config: Config,
    considered: Considered,
}

impl Plan {
    /// The chosen method, `None` when no method is usable.
    pub fn chosen(&self) -> Option<Method> {
        self.considered.chosen()
    }

    /// Every method with what became of it.
    pub fn considered(&self) -> &Considered {
        &self.considered
    }

    /// The subscription (`subscription_id`, `ARM_SUBSCRIPTION_ID`).
    pub fn subscription_id(&self) -> Option<&str> {
        self.config.subscription_id.as_deref()
    }
}

/// Applies the environment fallbacks to `settings` and goes down azurerm's list. Reads the
/// files the settings name (client ID, secret, OIDC token), nothing over the network.
pub fn plan(settings: &AuthSettings, env: &dyn Env) -> Result<Plan, AuthError> {
    let config = Config::resolve(settings, env)?;
    let considered = chain::choose(&config, env);
    Ok(Plan { config, considered })
}

/// A credential and the cloud it is for.
#[derive(Clone)]
pub struct Authenticated {
    /// The credential; its tokens are cached per scope by azure_core's bearer token policy.
    pub credential: Arc<dyn TokenCredential>,
    /// The method the credential comes from.
    pub method: Method,
    /// The cloud's endpoints.
    pub cloud: CloudEndpoints,
    /// `subscription_id` or `ARM_SUBSCRIPTION_ID`. `None` only when the Azure CLI may be
    /// used (azurerm then takes the CLI's default subscription).
    pub subscription_id: Option<String>,
    /// The tenant, when set.
    pub tenant_id: Option<String>,
    /// The client ID, when set.
    pub client_id: Option<String>,
    considered: Considered,
    transport: Transport,
}

impl fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticated")
            .field("method", &self.method)
            .field("cloud", &self.cloud.name)
            .field("subscription_id", &self.subscription_id)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Authenticated {
    /// Every method with what became of it.
    pub fn considered(&self) -> &Considered {
        &self.considered
    }

    /// The Resource Manager token scope, e.g. `https://management.azure.com/.default`.
    pub fn arm_scope(&self) -> String {
        self.cloud.arm_scope()
    }

    /// `ClientOptions` with this crate's transport (the test CA) and the cloud: what the ARM
    /// client builds its pipeline with.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            transport: Some(self.transport.clone()),
            cloud: Some(self.cloud.cloud.clone()),
            ..ClientOptions::default()
        }
    }

    /// Requests one token for Resource Manager: `Ok` when the credential works. On failure,
    /// the error lists the methods with the chosen one's failure.
    pub async fn probe(&self) -> Result<(), AuthError> {
        let scope = self.arm_scope();
        match self.credential.get_token(&[scope.as_str()], None).await {
            Ok(_) => Ok(()),
            Err(error) => Err(AuthError::Authenticate(
                self.considered.failed(describe_azure(&error)),
            )),
        }
    }
}

/// [`Authenticated::probe`], as a function.
pub async fn probe(auth: &Authenticated) -> Result<(), AuthError> {
    auth.probe().await
}

/// An azure_core error with its causes.
fn describe_azure(error: &azure_core::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Resolves `settings` (with `env`'s fallbacks) into a credential for the cloud they name.
/// Builds the credential without requesting a token: call [`Authenticated::probe`] for that.
pub async fn authenticate(
    settings: &AuthSettings,
    env: &dyn Env,
) -> Result<Authenticated, AuthError> {
    let plan = plan(settings, env)?;
    let config = plan.config;
    if config.subscription_id.is_none() && !config.use_cli {
        return Err(AuthError::Settings(
            "subscription_id (ARM_SUBSCRIPTION_ID) is required when the azure cli is not used"
                .to_owned(),
        ));
    }
    let Some(method) = plan.considered.chosen() else {
        return Err(AuthError::Authenticate(plan.considered));
    };
    let client = transport::http_client(env)?;
    let transport = Transport::new(Arc::new(client.clone()));
    let cloud = match &config.metadata_host {
        Some(host) => CloudEndpoints::discover(&client, host).await?,
        None => CloudEndpoints::named(config.environment.as_deref().unwrap_or("public"))?,
    };
    let options = ClientOptions {
        transport: Some(transport.clone()),
        cloud: Some(cloud.cloud.clone()),
        ..ClientOptions::default()
    };
    let credential = build(method, &config, &cloud, &client, options)
        .map_err(|reason| AuthError::Authenticate(plan.considered.failed(reason)))?;
    tracing::debug!(
        method = method.name(),
        cloud = cloud.name,
        "azure credential chosen"
    );
    Ok(Authenticated {
        credential,
        method,
        subscription_id: config.subscription_id.clone(),
        tenant_id: config.tenant_id.clone(),
        client_id: config.client_id.clone(),
        cloud,
        considered: plan.considered,
        transport,
    })
}

/// The tenant and client ID, which [`chain::choose`] made sure of for the methods needing them.
fn identity(config: &Config) -> Result<(String, String), String> {
    match (&config.tenant_id, &config.client_id) {
        (Some(tenant), Some(client)) => Ok((tenant.clone(), client.clone())),
        _ => Err("the tenant or client ID is missing".to_owned()),
    }
}

fn assertion_credential<C: ClientAssertion + 'static>(
    config: &Config,
    assertion: C,
    options: ClientOptions,
) -> Result<Arc<dyn TokenCredential>, String> {
    let (tenant, client_id) = identity(config)?;
    let credential = ClientAssertionCredential::new(
        tenant,
        client_id,
        assertion,
        Some(ClientAssertionCredentialOptions {
            client_options: options,
        }),
    )
    .map_err(|error| describe_azure(&error))?;
    Ok(credential)
}

fn build(
    method: Method,
    config: &Config,
    cloud: &CloudEndpoints,
    client: &reqwest::Client,
    options: ClientOptions,
) -> Result<Arc<dyn TokenCredential>, String> {
    match method {
        Method::ClientCertificate => {
            let data = match &config.certificate {
                Some(CertificateSource::Data(data)) => data.clone(),
                Some(CertificateSource::Path(path)) => std::fs::read(path).map_err(|error| {
                    format!("read the client certificate {}: {error}", path.display())
                })?,
                None => return Err("no client certificate".to_owned()),
            };
            let certificate =
                ClientCertificate::parse(&data, config.certificate_password.as_deref())
                    .map_err(|detail| format!("read the client certificate: {detail}"))?;
            let (tenant, client_id) = identity(config)?;
            let audience = cloud
                .authority_host
                .join(&format!("/{tenant}/oauth2/v2.0/token"))
                .map_err(|error| format!("the tenant ID does not fit in a url: {error}"))?;
            let assertion = CertificateAssertion {
                certificate: Arc::new(certificate),
                client_id,
                audience: audience.to_string(),
            };
            assertion_credential(config, assertion, options)
        }
        Method::ClientSecret => {
            let (tenant, client_id) = identity(config)?;
            let secret = config.client_secret.clone().unwrap_or_default();
            let credential = ClientSecretCredential::new(
                &tenant,
                client_id,
                Secret::new(secret),
                Some(ClientSecretCredentialOptions {
                    client_options: options,
                }),
            )
            .map_err(|error| describe_azure(&error))?;
            Ok(credential)
        }
        Method::OidcToken => match &config.oidc_token {
            Some(OidcTokenSource::File(path)) => {
                assertion_credential(config, TokenFile(path.clone()), options)
            }
            Some(OidcTokenSource::Inline(token)) => {
                assertion_credential(config, InlineToken(token.clone()), options)
            }
            None => Err("no oidc token".to_owned()),
        },
        Method::AdoPipelineOidc | Method::GitHubOidc => {
            let service = match method {
                Method::AdoPipelineOidc => TokenService::AzureDevOps {
                    service_connection_id: config
                        .ado_service_connection_id
                        .clone()
                        .unwrap_or_default(),
                },
                _ => TokenService::GitHub,
            };
            let requested = RequestedToken {
                service,
                url: config.oidc_request_url.clone().unwrap_or_default(),
                request_token: config.oidc_request_token.clone().unwrap_or_default(),
                client: client.clone(),
            };
            requested.request_url()?;
            assertion_credential(config, requested, options)
        }
        Method::ManagedIdentity => {
            if let Some(endpoint) = &config.msi_endpoint {
                return Ok(Arc::new(msi::MsiEndpointCredential {
                    endpoint: endpoint.clone(),
                    client_id: config.client_id.clone(),
                    client: client.clone(),
                }));
            }
            let credential =
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: config.client_id.clone().map(UserAssignedId::ClientId),
                    client_options: options,
                }))
                .map_err(|error| describe_azure(&error))?;
            Ok(credential)
        }
        Method::AzureCli => {
            let credential = AzureCliCredential::new(Some(AzureCliCredentialOptions {
                tenant_id: config.tenant_id.clone(),
                subscription: config.subscription_id.clone(),
                ..AzureCliCredentialOptions::default()
            }))
            .map_err(|error| describe_azure(&error))?;
            Ok(credential)
        }
    }
}
