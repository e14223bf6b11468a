//! What the provider's `azure {}` block may set, and the same values after azurerm's
//! environment-variable fallbacks and file reads.

use crate::env::Env;
use crate::error::AuthError;
use base64::Engine as _;
use std::fmt;
use std::path::PathBuf;

/// The authentication settings of the provider's `azure {}` block. Each one left `None` (or
/// empty) falls back to azurerm's environment variable, named in the field's doc.
///
/// `Debug` shows whether a secret is set, never its value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthSettings {
    /// `ARM_SUBSCRIPTION_ID`.
    pub subscription_id: Option<String>,
    /// `ARM_TENANT_ID` (with `use_aks_workload_identity`, also `AZURE_TENANT_ID`).
    pub tenant_id: Option<String>,
    /// `ARM_CLIENT_ID` (with `use_aks_workload_identity`, also `AZURE_CLIENT_ID`).
    pub client_id: Option<String>,
    /// `ARM_CLIENT_ID_FILE_PATH`: a file holding the client ID.
    pub client_id_file_path: Option<String>,
    /// `ARM_CLIENT_SECRET`. Secret (write-only in the provider).
    pub client_secret: Option<String>,
    /// `ARM_CLIENT_SECRET_FILE_PATH`: a file holding the client secret.
    pub client_secret_file_path: Option<String>,
    /// `ARM_CLIENT_CERTIFICATE_PATH`: a PKCS#12 bundle as azurerm takes (AES-encrypted, as
    /// OpenSSL 3 writes), or PEM (certificate and unencrypted RSA key).
    pub client_certificate_path: Option<String>,
    /// `ARM_CLIENT_CERTIFICATE`: the same content, base64-encoded. Secret.
    pub client_certificate: Option<String>,
    /// `ARM_CLIENT_CERTIFICATE_PASSWORD`: the PKCS#12 password. Secret.
    pub client_certificate_password: Option<String>,
    /// `ARM_USE_OIDC` (default false).
    pub use_oidc: Option<bool>,
    /// `ARM_OIDC_TOKEN`. Secret.
    pub oidc_token: Option<String>,
    /// `ARM_OIDC_TOKEN_FILE_PATH`: a file holding the OIDC token, read again on each token request.
    pub oidc_token_file_path: Option<String>,
    /// `ARM_OIDC_REQUEST_URL`, `ACTIONS_ID_TOKEN_REQUEST_URL`, `SYSTEM_OIDCREQUESTURI`.
    pub oidc_request_url: Option<String>,
    /// `ARM_OIDC_REQUEST_TOKEN`, `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, `SYSTEM_ACCESSTOKEN`. Secret.
    pub oidc_request_token: Option<String>,
    /// `ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID`, `ARM_OIDC_AZURE_SERVICE_CONNECTION_ID`.
    pub ado_pipeline_service_connection_id: Option<String>,
    /// `ARM_USE_MSI` (default false).
    pub use_msi: Option<bool>,
    /// `ARM_MSI_ENDPOINT`: a managed identity token endpoint other than the instance metadata
    /// service's.
    pub msi_endpoint: Option<String>,
    /// `ARM_USE_CLI` (default true).
    pub use_cli: Option<bool>,
    /// `ARM_USE_AKS_WORKLOAD_IDENTITY` (default false): the token file is
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    pub use_aks_workload_identity: Option<bool>,
    /// `ARM_ENVIRONMENT`: `public` (default), `usgovernment` or `china`.
    pub environment: Option<String>,
    /// `ARM_METADATA_HOSTNAME`: a host serving `/metadata/endpoints` (Azure Stack, custom
    /// clouds, the simulator). Takes the place of `environment`.
    pub metadata_host: Option<String>,
}

fn shown(value: &Option<String>) -> &'static str {
    match value.as_deref() {
        Some(v) if !v.is_empty() => "<set>",
        _ => "<unset>",
    }
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("subscription_id", &self.subscription_id)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_id_file_path", &self.client_id_file_path)
            .field("client_secret", &shown(&self.client_secret))
            .field("client_secret_file_path", &self.client_secret_file_path)
            .field("client_certificate_path", &self.client_certificate_path)
            .field("client_certificate", &shown(&self.client_certificate))
            .field(
                "client_certificate_password",
                &shown(&self.client_certificate_password),
            )
            .field("use_oidc", &self.use_oidc)
            .field("oidc_token", &shown(&self.oidc_token))
            .field("oidc_token_file_path", &self.oidc_token_file_path)
            .field("oidc_request_url", &self.oidc_request_url)
            .field("oidc_request_token", &shown(&self.oidc_request_token))
            .field(
                "ado_pipeline_service_connection_id",
                &self.ado_pipeline_service_connection_id,
            )
            .field("use_msi", &self.use_msi)
            .field("msi_endpoint", &self.msi_endpoint)
            .field("use_cli", &self.use_cli)
            .field("use_aks_workload_identity", &self.use_aks_workload_identity)
            .field("environment", &self.environment)
            .field("metadata_host", &self.metadata_host)
            .finish()
    }
}

/// Where a client certificate comes from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum CertificateSource {
    /// `client_certificate`, decoded from base64.
    Data(Vec<u8>),
    /// `client_certificate_path`.
    Path(PathBuf),
}

/// Where the OIDC assertion comes from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum OidcTokenSource {
    Inline(String),
    /// Read again on each token request, so that a rotated token (AKS rotates its projected
    /// token hourly) is picked up.
    File(PathBuf),
}

/// The settings after the environment fallbacks, trimmed, files read where azurerm reads them.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) subscription_id: Option<String>,
    pub(crate) tenant_id: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<String>,
    pub(crate) certificate: Option<CertificateSource>,
    pub(crate) certificate_password: Option<String>,
    pub(crate) use_oidc: bool,
    pub(crate) use_aks_workload_identity: bool,
    pub(crate) oidc_token: Option<OidcTokenSource>,
    pub(crate) oidc_request_url: Option<String>,
    pub(crate) oidc_request_token: Option<String>,
    pub(crate) ado_service_connection_id: Option<String>,
    pub(crate) use_msi: bool,
    pub(crate) msi_endpoint: Option<String>,
    pub(crate) use_cli: bool,
    pub(crate) environment: Option<String>,
    pub(crate) metadata_host: Option<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("subscription_id", &self.subscription_id)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &shown(&self.client_secret))
            .field("certificate", &self.certificate.as_ref().map(|_| "<set>"))
            .field("use_oidc", &self.use_oidc)
            .field("use_aks_workload_identity", &self.use_aks_workload_identity)
            .field("oidc_token", &self.oidc_token.as_ref().map(|_| "<set>"))
            .field("oidc_request_url", &self.oidc_request_url)
            .field("oidc_request_token", &shown(&self.oidc_request_token))
            .field("ado_service_connection_id", &self.ado_service_connection_id)
            .field("use_msi", &self.use_msi)
            .field("msi_endpoint", &self.msi_endpoint)
            .field("use_cli", &self.use_cli)
            .field("environment", &self.environment)
            .field("metadata_host", &self.metadata_host)
            .finish_non_exhaustive()
    }
}

/// A non-empty, trimmed setting, else the first non-empty environment variable.
fn string(setting: &Option<String>, env: &dyn Env, names: &[&str]) -> Option<String> {
    setting
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .or_else(|| {
            env.first(names)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        })
}

/// A boolean setting, else its environment variable parsed as Go's `strconv.ParseBool` does
/// (azurerm's `EnvDefaultFunc` on a bool), else `default`.
fn boolean(
    setting: Option<bool>,
    env: &dyn Env,
    name: &str,
    default: bool,
) -> Result<bool, AuthError> {
    if let Some(value) = setting {
        return Ok(value);
    }
    match env.var(name) {
        None => Ok(default),
        Some(raw) => match raw.trim() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(AuthError::Settings(format!(
                "{name} is not a boolean (true or false)"
            ))),
        },
    }
}

/// The trimmed content of the file at `path`.
fn read_trimmed(path: &str, what: &str) -> Result<String, AuthError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|error| AuthError::Settings(format!("read the {what} from file {path}: {error}")))
}

/// `value` and the content of a file holding the same thing: they must agree when both are
/// given (azurerm's rule), and the file wins.
fn merge_with_file(
    value: Option<String>,
    path: Option<String>,
    what: &str,
) -> Result<Option<String>, AuthError> {
    let Some(path) = path else {
        return Ok(value);
    };
    let from_file = read_trimmed(&path, what)?;
    if let Some(value) = &value
        && *value != from_file
    {
        return Err(AuthError::Settings(format!(
            "the {what} given and the content of {path} differ: remove one or make them match"
        )));
    }
    Ok(Some(from_file).filter(|v| !v.is_empty()))
}

impl Config {
    /// Applies azurerm's fallbacks (`internal/provider/provider.go` and `helpers.go`).
    pub(crate) fn resolve(settings: &AuthSettings, env: &dyn Env) -> Result<Self, AuthError> {
        let use_aks_workload_identity = boolean(
            settings.use_aks_workload_identity,
            env,
            "ARM_USE_AKS_WORKLOAD_IDENTITY",
            false,
        )?;

        let client_id = string(&settings.client_id, env, &["ARM_CLIENT_ID"]);
        let client_id_file = string(
            &settings.client_id_file_path,
            env,
            &["ARM_CLIENT_ID_FILE_PATH"],
        );
        let mut client_id = merge_with_file(client_id, client_id_file, "client ID")?;
        let mut tenant_id = string(&settings.tenant_id, env, &["ARM_TENANT_ID"]);
        if use_aks_workload_identity {
            for (value, name, what) in [
                (&mut client_id, "AZURE_CLIENT_ID", "client ID"),
                (&mut tenant_id, "AZURE_TENANT_ID", "tenant ID"),
            ] {
                if let Some(from_aks) = env.var(name).map(|v| v.trim().to_owned()) {
                    if value.as_ref().is_some_and(|v| *v != from_aks) {
                        return Err(AuthError::Settings(format!(
                            "the {what} given and {name} from AKS workload identity differ: remove one, make them match, or turn use_aks_workload_identity off"
                        )));
                    }
                    *value = Some(from_aks);
                }
            }
        }

        let client_secret = string(&settings.client_secret, env, &["ARM_CLIENT_SECRET"]);
        let client_secret_file = string(
            &settings.client_secret_file_path,
            env,
            &["ARM_CLIENT_SECRET_FILE_PATH"],
        );
        let client_secret = merge_with_file(client_secret, client_secret_file, "client secret")?;

        // azurerm: inline certificate data wins over the path.
        let certificate = match string(
            &settings.client_certificate,
            env,
            &["ARM_CLIENT_CERTIFICATE"],
        ) {
            Some(encoded) => {
                let compact: String = encoded.split_whitespace().collect();
                let data = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|error| {
                        AuthError::Settings(format!(
                            "decode the client certificate (client_certificate, ARM_CLIENT_CERTIFICATE) from base64: {error}"
                        ))
                    })?;
                Some(CertificateSource::Data(data))
            }
            None => string(
                &settings.client_certificate_path,
                env,
                &["ARM_CLIENT_CERTIFICATE_PATH"],
            )
            .map(|path| CertificateSource::Path(PathBuf::from(path))),
        };
        let certificate_password = settings
            .client_certificate_password
            .clone()
            .filter(|v| !v.is_empty())
            .or_else(|| env.var("ARM_CLIENT_CERTIFICATE_PASSWORD"));

        // azurerm reads the token files here, whether OIDC is on or not, and insists that the
        // inline token and each file agree. We keep the path so that each token request reads
        // the file again.
        let mut oidc_token =
            string(&settings.oidc_token, env, &["ARM_OIDC_TOKEN"]).map(OidcTokenSource::Inline);
        let mut token_files = Vec::new();
        if let Some(path) = string(
            &settings.oidc_token_file_path,
            env,
            &["ARM_OIDC_TOKEN_FILE_PATH"],
        ) {
            token_files.push((path, "OIDC token"));
        }
        if use_aks_workload_identity && let Some(path) = env.var("AZURE_FEDERATED_TOKEN_FILE") {
            token_files.push((path, "OIDC token from AKS workload identity"));
        }
        for (path, what) in token_files {
            let from_file = read_trimmed(&path, what)?;
            let current = match &oidc_token {
                Some(OidcTokenSource::Inline(token)) => Some(token.clone()),
                Some(OidcTokenSource::File(previous)) => {
                    Some(read_trimmed(&previous.display().to_string(), "OIDC token")?)
                }
                None => None,
            };
            if current.is_some_and(|token| token != from_file) {
                return Err(AuthError::Settings(format!(
                    "the OIDC token given and the {what} in {path} differ: remove one or make them match"
                )));
            }
            if !from_file.is_empty() {
                oidc_token = Some(OidcTokenSource::File(PathBuf::from(path)));
            }
        }

        Ok(Self {
            subscription_id: string(&settings.subscription_id, env, &["ARM_SUBSCRIPTION_ID"]),
            tenant_id,
            client_id,
            client_secret,
            certificate,
            certificate_password,
            use_oidc: boolean(settings.use_oidc, env, "ARM_USE_OIDC", false)?,
            use_aks_workload_identity,
            oidc_token,
            oidc_request_url: string(
                &settings.oidc_request_url,
                env,
                &[
                    "ARM_OIDC_REQUEST_URL",
                    "ACTIONS_ID_TOKEN_REQUEST_URL",
                    "SYSTEM_OIDCREQUESTURI",
                ],
            ),
            oidc_request_token: string(
                &settings.oidc_request_token,
                env,
                &[
                    "ARM_OIDC_REQUEST_TOKEN",
                    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                    "SYSTEM_ACCESSTOKEN",
                ],
            ),
            ado_service_connection_id: string(
                &settings.ado_pipeline_service_connection_id,
                env,
                &[
                    "ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID",
                    "ARM_OIDC_AZURE_SERVICE_CONNECTION_ID",
                ],
            ),
            use_msi: boolean(settings.use_msi, env, "ARM_USE_MSI", false)?,
            msi_endpoint: string(&settings.msi_endpoint, env, &["ARM_MSI_ENDPOINT"]),
            use_cli: boolean(settings.use_cli, env, "ARM_USE_CLI", true)?,
            environment: string(&settings.environment, env, &["ARM_ENVIRONMENT"]),
            metadata_host: string(&settings.metadata_host, env, &["ARM_METADATA_HOSTNAME"]),
        })
    }

    /// azurerm turns every OIDC flavour on with `use_oidc` or `use_aks_workload_identity`.
    pub(crate) fn oidc_enabled(&self) -> bool {
        self.use_oidc || self.use_aks_workload_identity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;

    #[test]
    fn debug_hides_every_secret() {
        let settings = AuthSettings {
            client_id: Some("app-id".into()),
            client_secret: Some("s3cr3t-value".into()),
            client_certificate: Some("Y2VydA==".into()),
            client_certificate_password: Some("pfx-pass".into()),
            oidc_token: Some("eyJ.oidc.token".into()),
            oidc_request_token: Some("gh-request-token".into()),
            ..AuthSettings::default()
        };
        let shown = format!("{settings:?}");
        for secret in [
            "s3cr3t-value",
            "Y2VydA==",
            "pfx-pass",
            "eyJ.oidc.token",
            "gh-request-token",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("app-id"));
        assert!(shown.contains("<set>"));

        let config = Config::resolve(&settings, &MapEnv::new()).expect("resolve");
        let shown = format!("{config:?}");
        for secret in ["s3cr3t-value", "eyJ.oidc.token", "gh-request-token"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
    }

    #[test]
    fn settings_win_over_the_environment_and_empty_settings_do_not() {
        let env = MapEnv::new()
            .with("ARM_CLIENT_ID", "from-env")
            .with("ARM_TENANT_ID", "tenant-env");
        let settings = AuthSettings {
            client_id: Some(" from-block ".into()),
            tenant_id: Some(String::new()),
            ..AuthSettings::default()
        };
        let config = Config::resolve(&settings, &env).expect("resolve");
        assert_eq!(config.client_id.as_deref(), Some("from-block"));
        assert_eq!(config.tenant_id.as_deref(), Some("tenant-env"));
    }

    #[test]
    fn booleans_parse_like_go_and_reject_the_rest() {
        for (raw, want) in [("1", true), ("True", true), ("f", false), ("FALSE", false)] {
            let env = MapEnv::new().with("ARM_USE_MSI", raw);
            let config = Config::resolve(&AuthSettings::default(), &env).expect("resolve");
            assert_eq!(config.use_msi, want, "ARM_USE_MSI={raw}");
        }
        let env = MapEnv::new().with("ARM_USE_CLI", "yes");
        let error = Config::resolve(&AuthSettings::default(), &env).expect_err("yes is not Go");
        assert_eq!(
            error.to_string(),
            "read the azure settings: ARM_USE_CLI is not a boolean (true or false)"
        );
        let config = Config::resolve(&AuthSettings::default(), &MapEnv::new()).expect("resolve");
        assert!(config.use_cli, "use_cli defaults to true");
        assert!(!config.use_msi && !config.use_oidc);
    }

    #[test]
    fn secret_file_and_value_must_agree() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file\n").expect("write");
        let path = path.display().to_string();
        let env = MapEnv::new().with("ARM_CLIENT_SECRET_FILE_PATH", path.clone());
        let config = Config::resolve(&AuthSettings::default(), &env).expect("resolve");
        assert_eq!(config.client_secret.as_deref(), Some("from-file"));

        let env = env.with("ARM_CLIENT_SECRET", "other-value");
        let error = Config::resolve(&AuthSettings::default(), &env).expect_err("mismatch");
        let text = error.to_string();
        assert!(
            text.contains("client secret given and the content of"),
            "{text}"
        );
        assert!(
            !text.contains("other-value") && !text.contains("from-file"),
            "{text}"
        );

        let env = MapEnv::new().with("ARM_CLIENT_SECRET_FILE_PATH", "/nonexistent/secret");
        let error = Config::resolve(&AuthSettings::default(), &env).expect_err("missing file");
        assert!(
            error.to_string().starts_with(
                "read the azure settings: read the client secret from file /nonexistent/secret: "
            ),
            "{error}"
        );
    }

    #[test]
    fn aks_workload_identity_fills_client_tenant_and_token_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = dir.path().join("token");
        std::fs::write(&token, "aks-token").expect("write");
        let env = MapEnv::new()
            .with("ARM_USE_AKS_WORKLOAD_IDENTITY", "true")
            .with("AZURE_CLIENT_ID", "aks-client")
            .with("AZURE_TENANT_ID", "aks-tenant")
            .with("AZURE_FEDERATED_TOKEN_FILE", token.display().to_string());
        let config = Config::resolve(&AuthSettings::default(), &env).expect("resolve");
        assert_eq!(config.client_id.as_deref(), Some("aks-client"));
        assert_eq!(config.tenant_id.as_deref(), Some("aks-tenant"));
        assert!(config.oidc_enabled());
        assert!(matches!(config.oidc_token, Some(OidcTokenSource::File(ref p)) if *p == token));

        let env = env.with("ARM_CLIENT_ID", "someone-else");
        let error = Config::resolve(&AuthSettings::default(), &env).expect_err("mismatch");
        assert!(error.to_string().contains("AZURE_CLIENT_ID"), "{error}");
    }

    #[test]
    fn certificate_data_wins_over_the_path_and_must_be_base64() {
        let env = MapEnv::new()
            .with("ARM_CLIENT_CERTIFICATE", "aGVsbG8=")
            .with("ARM_CLIENT_CERTIFICATE_PATH", "/some/cert.pem");
        let config = Config::resolve(&AuthSettings::default(), &env).expect("resolve");
        assert!(
            matches!(config.certificate, Some(CertificateSource::Data(ref d)) if d == b"hello")
        );
        let env = MapEnv::new().with("ARM_CLIENT_CERTIFICATE", "not base64!");
        assert!(Config::resolve(&AuthSettings::default(), &env).is_err());
    }
}
