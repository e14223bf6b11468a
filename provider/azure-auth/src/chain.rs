//! azurerm's order of authentication methods, and which one the settings choose.
//!
//! The order and the conditions are those of go-azure-sdk's `NewAuthorizerFromCredentials`
//! (`sdk/auth/auth.go`) as azurerm's `providerConfigure` (`internal/provider/provider.go`)
//! calls it: the first method whose inputs are all present (and, where it has one, whose
//! `use_*` flag is on) is the one used; a later method is never tried, even when the chosen one
//! fails.

use crate::env::{Env, find_on_path};
use crate::settings::Config;
use std::fmt;

/// An authentication method, in azurerm's order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// A service principal with a client certificate (`client_certificate[_path]`).
    ClientCertificate,
    /// A service principal with a client secret (`client_secret[_file_path]`).
    ClientSecret,
    /// Workload identity federation with a token at hand (`oidc_token[_file_path]`, or AKS
    /// workload identity's token file).
    OidcToken,
    /// Workload identity federation with a token from an Azure DevOps pipeline's service
    /// connection.
    AdoPipelineOidc,
    /// Workload identity federation with a token from GitHub Actions' token service.
    GitHubOidc,
    /// The managed identity of the machine (`use_msi`), user-assigned when a client ID is set.
    ManagedIdentity,
    /// The Azure CLI's login (`use_cli`, on by default).
    AzureCli,
}

impl Method {
    /// Every method, in azurerm's order.
    pub const ALL: [Method; 7] = [
        Method::ClientCertificate,
        Method::ClientSecret,
        Method::OidcToken,
        Method::AdoPipelineOidc,
        Method::GitHubOidc,
        Method::ManagedIdentity,
        Method::AzureCli,
    ];

    /// The name diagnostics use.
    pub fn name(self) -> &'static str {
        match self {
            Method::ClientCertificate => "client certificate",
            Method::ClientSecret => "client secret",
            Method::OidcToken => "oidc token",
            Method::AdoPipelineOidc => "azure devops oidc",
            Method::GitHubOidc => "github actions oidc",
            Method::ManagedIdentity => "managed identity",
            Method::AzureCli => "azure cli",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What became of one method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed over: an input is missing or its flag is off.
    Skipped(String),
    /// The method used.
    Chosen,
    /// The method used, which could not be built or whose token request failed.
    Failed(String),
    /// Not looked at: an earlier method was chosen (azurerm never falls through).
    NotTried,
}

/// One method, whether the settings configure it (its main input is present or its flag is
/// on), and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consideration {
    /// The method.
    pub method: Method,
    /// Whether its main input is present (or, for managed identity and the CLI, its flag on).
    pub configured: bool,
    /// What became of it.
    pub outcome: Outcome,
}

impl fmt::Display for Consideration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.configured {
            "configured"
        } else {
            "not configured"
        };
        match &self.outcome {
            Outcome::Skipped(reason) => write!(f, "{}: {state}, skipped: {reason}", self.method),
            Outcome::Chosen => write!(f, "{}: chosen", self.method),
            Outcome::Failed(reason) => write!(f, "{}: chosen, failed: {reason}", self.method),
            Outcome::NotTried => write!(f, "{}: {state}, not tried", self.method),
        }
    }
}

/// Every method in azurerm's order with what became of it: the body of the one diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Considered(pub Vec<Consideration>);

impl Considered {
    /// The chosen (or chosen and failed) method.
    pub fn chosen(&self) -> Option<Method> {
        self.0
            .iter()
            .find(|c| matches!(c.outcome, Outcome::Chosen | Outcome::Failed(_)))
            .map(|c| c.method)
    }

    /// What became of `method`.
    pub fn get(&self, method: Method) -> Option<&Consideration> {
        self.0.iter().find(|c| c.method == method)
    }

    /// The same list with the chosen method marked failed for `reason`.
    pub(crate) fn failed(&self, reason: String) -> Considered {
        let mut list = self.clone();
        for c in &mut list.0 {
            if c.outcome == Outcome::Chosen {
                c.outcome = Outcome::Failed(reason.clone());
            }
        }
        list
    }
}

impl fmt::Display for Considered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self
            .0
            .iter()
            .find(|c| matches!(c.outcome, Outcome::Chosen | Outcome::Failed(_)))
        {
            None => f.write_str("no method yielded a credential (methods in azurerm's order): ")?,
            Some(c) => match c.outcome {
                Outcome::Failed(_) => {
                    write!(f, "{} failed (methods in azurerm's order): ", c.method)?
                }
                _ => write!(f, "{} chosen (methods in azurerm's order): ", c.method)?,
            },
        }
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// `names` joined as "A", "A and B", "A, B and C", then `tail`.
fn missing(names: &[&str], tail: &str) -> String {
    let list = match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    };
    format!("{list} {tail}")
}

/// The tenant and client ID every service principal method needs.
fn identity_missing(config: &Config) -> Option<String> {
    let mut names = Vec::new();
    if config.tenant_id.is_none() {
        names.push("ARM_TENANT_ID (tenant_id)");
    }
    if config.client_id.is_none() {
        names.push("ARM_CLIENT_ID (client_id)");
    }
    (!names.is_empty()).then(|| missing(&names, "not set"))
}

/// Whether `method` can be used with `config`: `Ok`, or whether it is configured and why not.
fn evaluate(method: Method, config: &Config, env: &dyn Env) -> Result<(), (bool, String)> {
    let oidc_off = || {
        "neither ARM_USE_OIDC (use_oidc) nor ARM_USE_AKS_WORKLOAD_IDENTITY (use_aks_workload_identity) is true"
            .to_owned()
    };
    let request_missing = |configured: bool| {
        let mut names = Vec::new();
        if config.oidc_request_url.is_none() {
            names.push("ARM_OIDC_REQUEST_URL (oidc_request_url)");
        }
        if config.oidc_request_token.is_none() {
            names.push("ARM_OIDC_REQUEST_TOKEN (oidc_request_token)");
        }
        (!names.is_empty()).then(|| (configured, missing(&names, "not set")))
    };
    match method {
        Method::ClientCertificate => {
            if config.certificate.is_none() {
                return Err((
                    false,
                    "ARM_CLIENT_CERTIFICATE_PATH (client_certificate_path) and ARM_CLIENT_CERTIFICATE (client_certificate) not set"
                        .to_owned(),
                ));
            }
            identity_missing(config).map_or(Ok(()), |reason| Err((true, reason)))
        }
        Method::ClientSecret => {
            if config.client_secret.is_none() {
                return Err((
                    false,
                    "ARM_CLIENT_SECRET (client_secret) and ARM_CLIENT_SECRET_FILE_PATH not set"
                        .to_owned(),
                ));
            }
            identity_missing(config).map_or(Ok(()), |reason| Err((true, reason)))
        }
        Method::OidcToken => {
            let has_token = config.oidc_token.is_some();
            if !config.oidc_enabled() {
                return Err((has_token, oidc_off()));
            }
            if !has_token {
                return Err((
                    false,
                    "ARM_OIDC_TOKEN (oidc_token) and ARM_OIDC_TOKEN_FILE_PATH (oidc_token_file_path) not set"
                        .to_owned(),
                ));
            }
            identity_missing(config).map_or(Ok(()), |reason| Err((true, reason)))
        }
        Method::AdoPipelineOidc => {
            let has_connection = config.ado_service_connection_id.is_some();
            if !config.oidc_enabled() {
                return Err((has_connection, oidc_off()));
            }
            if !has_connection {
                return Err((
                    false,
                    "ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID (ado_pipeline_service_connection_id) not set"
                        .to_owned(),
                ));
            }
            if let Some(reason) = request_missing(true) {
                return Err(reason);
            }
            identity_missing(config).map_or(Ok(()), |reason| Err((true, reason)))
        }
        Method::GitHubOidc => {
            let has_request =
                config.oidc_request_url.is_some() && config.oidc_request_token.is_some();
            if !config.oidc_enabled() {
                return Err((has_request, oidc_off()));
            }
            if let Some(reason) = request_missing(false) {
                return Err(reason);
            }
            identity_missing(config).map_or(Ok(()), |reason| Err((true, reason)))
        }
        Method::ManagedIdentity => {
            if config.use_msi {
                Ok(())
            } else {
                Err((false, "ARM_USE_MSI (use_msi) not true".to_owned()))
            }
        }
        Method::AzureCli => {
            if !config.use_cli {
                return Err((false, "ARM_USE_CLI (use_cli) is false".to_owned()));
            }
            if find_on_path(env, "az").is_none() {
                return Err((true, "az not found on PATH".to_owned()));
            }
            Ok(())
        }
    }
}

/// Goes down azurerm's list: the first usable method is chosen, the ones before it skipped,
/// the ones after it not tried.
pub(crate) fn choose(config: &Config, env: &dyn Env) -> Considered {
    let mut chosen = false;
    let list = Method::ALL
        .iter()
        .map(|&method| {
            let verdict = evaluate(method, config, env);
            let configured = match &verdict {
                Ok(()) => true,
                Err((configured, _)) => *configured,
            };
            let outcome = match verdict {
                _ if chosen => Outcome::NotTried,
                Ok(()) => {
                    chosen = true;
                    Outcome::Chosen
                }
                Err((_, reason)) => Outcome::Skipped(reason),
            };
            Consideration {
                method,
                configured,
                outcome,
            }
        })
        .collect();
    Considered(list)
}
