//! Provider configuration: which platform to use and where the local platform keeps its state.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tfplug::{AttributePath, Diagnostic, Diagnostics, Model, Schema, Value};

use crate::Client;

/// The Batch AI provider brings Azure Batch AI back as infrastructure as code: clusters of
/// (GPU) nodes, shared file servers and training jobs. Without an `azure` block it runs
/// everything on the embedded `local` platform.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct ProviderConfig {
    /// Settings of the `local` platform, the default: nodes are agent processes on this machine
    /// and file servers are directories.
    #[tf(block)]
    pub local: Option<LocalSettings>,
    /// Settings of the `azure` platform: clusters are VM scale sets in `resource_group_name`
    /// whose nodes run the agent, and the control store is a container of
    /// `storage_account_name`. Authentication follows the azurerm provider: the same arguments
    /// and `ARM_*` environment variables, in the same order (see the provider's documentation).
    #[tf(block)]
    pub azure: Option<AzureSettings>,
}

/// The `azure` block. Every argument but the resource group, location and storage account may
/// come from its `ARM_*` environment variable instead, as in azurerm.
#[derive(Clone, Default, Serialize, Deserialize, Model)]
pub struct AzureSettings {
    /// The subscription (`ARM_SUBSCRIPTION_ID`).
    #[tf(optional)]
    pub subscription_id: Option<String>,
    /// The resource group every cluster's scale set and identity is created in. It must exist.
    #[tf(required)]
    pub resource_group_name: Option<String>,
    /// The Azure region of the scale sets, e.g. `westeurope`.
    #[tf(required)]
    pub location: Option<String>,
    /// The storage account (in `resource_group_name`) whose container holds the control store
    /// and the agent binary nodes download. It must exist; the container is created.
    #[tf(required)]
    pub storage_account_name: Option<String>,
    /// The control store's container; `batchai` by default.
    #[tf(optional)]
    pub container_name: Option<String>,
    /// The Microsoft Entra tenant (`ARM_TENANT_ID`).
    #[tf(optional)]
    pub tenant_id: Option<String>,
    /// The service principal's or managed identity's client ID (`ARM_CLIENT_ID`).
    #[tf(optional)]
    pub client_id: Option<String>,
    /// A file holding the client ID (`ARM_CLIENT_ID_FILE_PATH`).
    #[tf(optional)]
    pub client_id_file_path: Option<String>,
    /// The service principal's secret (`ARM_CLIENT_SECRET`).
    #[tf(optional, sensitive)]
    pub client_secret: Option<String>,
    /// A file holding the client secret (`ARM_CLIENT_SECRET_FILE_PATH`).
    #[tf(optional)]
    pub client_secret_file_path: Option<String>,
    /// A PKCS#12 or PEM client certificate (`ARM_CLIENT_CERTIFICATE_PATH`).
    #[tf(optional)]
    pub client_certificate_path: Option<String>,
    /// The same certificate, base64-encoded (`ARM_CLIENT_CERTIFICATE`).
    #[tf(optional, sensitive)]
    pub client_certificate: Option<String>,
    /// The certificate's password (`ARM_CLIENT_CERTIFICATE_PASSWORD`).
    #[tf(optional, sensitive)]
    pub client_certificate_password: Option<String>,
    /// Authenticate with an OpenID Connect token (`ARM_USE_OIDC`): GitHub Actions, Azure
    /// DevOps, or a token given directly.
    #[tf(optional)]
    pub use_oidc: Option<bool>,
    /// The OIDC token (`ARM_OIDC_TOKEN`).
    #[tf(optional, sensitive)]
    pub oidc_token: Option<String>,
    /// A file holding the OIDC token, read again for each token request
    /// (`ARM_OIDC_TOKEN_FILE_PATH`).
    #[tf(optional)]
    pub oidc_token_file_path: Option<String>,
    /// Where to request an OIDC token (`ARM_OIDC_REQUEST_URL`, GitHub's
    /// `ACTIONS_ID_TOKEN_REQUEST_URL`).
    #[tf(optional)]
    pub oidc_request_url: Option<String>,
    /// The bearer token for that request (`ARM_OIDC_REQUEST_TOKEN`,
    /// `ACTIONS_ID_TOKEN_REQUEST_TOKEN`).
    #[tf(optional, sensitive)]
    pub oidc_request_token: Option<String>,
    /// An Azure DevOps service connection for OIDC
    /// (`ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID`).
    #[tf(optional)]
    pub ado_pipeline_service_connection_id: Option<String>,
    /// Authenticate with a managed identity (`ARM_USE_MSI`); `client_id` picks a user-assigned
    /// one.
    #[tf(optional)]
    pub use_msi: Option<bool>,
    /// A managed identity endpoint other than the instance metadata service's
    /// (`ARM_MSI_ENDPOINT`).
    #[tf(optional)]
    pub msi_endpoint: Option<String>,
    /// Authenticate with the Azure CLI's login (`ARM_USE_CLI`, true by default).
    #[tf(optional)]
    pub use_cli: Option<bool>,
    /// Authenticate with AKS workload identity (`ARM_USE_AKS_WORKLOAD_IDENTITY`).
    #[tf(optional)]
    pub use_aks_workload_identity: Option<bool>,
    /// `public` (the default), `usgovernment` or `china` (`ARM_ENVIRONMENT`).
    #[tf(optional)]
    pub environment: Option<String>,
    /// A host serving the cloud's endpoints at `/metadata/endpoints`, for Azure Stack and other
    /// clouds (`ARM_METADATA_HOSTNAME`).
    #[tf(optional)]
    pub metadata_host: Option<String>,
}

impl std::fmt::Debug for AzureSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureSettings")
            .field("subscription_id", &self.subscription_id)
            .field("resource_group_name", &self.resource_group_name)
            .field("location", &self.location)
            .field("storage_account_name", &self.storage_account_name)
            .finish_non_exhaustive()
    }
}

impl AzureSettings {
    fn auth(&self) -> azure_auth::AuthSettings {
        azure_auth::AuthSettings {
            subscription_id: self.subscription_id.clone(),
            tenant_id: self.tenant_id.clone(),
            client_id: self.client_id.clone(),
            client_id_file_path: self.client_id_file_path.clone(),
            client_secret: self.client_secret.clone(),
            client_secret_file_path: self.client_secret_file_path.clone(),
            client_certificate_path: self.client_certificate_path.clone(),
            client_certificate: self.client_certificate.clone(),
            client_certificate_password: self.client_certificate_password.clone(),
            use_oidc: self.use_oidc,
            oidc_token: self.oidc_token.clone(),
            oidc_token_file_path: self.oidc_token_file_path.clone(),
            oidc_request_url: self.oidc_request_url.clone(),
            oidc_request_token: self.oidc_request_token.clone(),
            ado_pipeline_service_connection_id: self.ado_pipeline_service_connection_id.clone(),
            use_msi: self.use_msi,
            msi_endpoint: self.msi_endpoint.clone(),
            use_cli: self.use_cli,
            use_aks_workload_identity: self.use_aks_workload_identity,
            environment: self.environment.clone(),
            metadata_host: self.metadata_host.clone(),
        }
    }
}

fn azure_path() -> AttributePath {
    AttributePath::attrs(["azure"])
}

/// Whether the configuration selects the azure platform.
pub fn uses_azure(config: &Value) -> bool {
    config.get_attr("azure").is_some_and(|v| !v.is_null())
}

/// Configures the azure platform: authenticates as azurerm would (one token proves the
/// credential now), then opens the control container through Resource Manager.
pub async fn configure_azure(config: &Value) -> Result<Client, Diagnostics> {
    let block = config.get_attr("azure").cloned().unwrap_or(Value::Null);
    if !block.is_wholly_known() {
        return Err(Diagnostic::error(
            "azure settings are not known yet",
            "the azure block depends on values only known after apply; use values known at plan time",
        )
        .at(azure_path())
        .into());
    }
    let settings: AzureSettings =
        tfplug::model::decode(&block, &AzureSettings::block().implied_type())?;
    if config
        .get_attr("local")
        .and_then(|l| l.get_attr("control_store"))
        .is_some_and(|v| !v.is_null())
    {
        return Err(Diagnostic::error(
            "two control stores",
            "the azure platform keeps its control store in azure.storage_account_name; remove local.control_store",
        )
        .at(AttributePath::attrs(["local", "control_store"]))
        .into());
    }
    let unusable = |summary: &str, detail: String| -> Diagnostics {
        Diagnostic::error(summary, detail).at(azure_path()).into()
    };
    let auth = azure_auth::authenticate(&settings.auth(), &azure_auth::ProcessEnv)
        .await
        .map_err(|e| unusable("no usable Azure credential", e.to_string()))?;
    auth.probe()
        .await
        .map_err(|e| unusable("no usable Azure credential", e.to_string()))?;
    let Some(subscription) = auth.subscription_id.clone() else {
        return Err(Diagnostic::error(
            "no Azure subscription",
            "set azure.subscription_id or ARM_SUBSCRIPTION_ID",
        )
        .at(AttributePath::attrs(["azure", "subscription_id"]))
        .into());
    };
    let test_ca = match std::env::var_os(control_blob::http::TEST_CA_VAR).filter(|v| !v.is_empty())
    {
        Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| {
            unusable(
                "unreadable test CA",
                format!(
                    "read {} ({}): {e}",
                    path.to_string_lossy(),
                    control_blob::http::TEST_CA_VAR
                ),
            )
        })?),
        None => None,
    };
    let resource_manager = auth.cloud.resource_manager.to_string();
    let arm = arm::ArmClient::new(
        &resource_manager,
        subscription,
        auth.credential.clone(),
        auth.arm_scope(),
        arm::ArmClientOptions {
            ca_certificate_pem: test_ca.clone().map(String::into_bytes),
            user_agent_suffix: Some(format!(
                "terraform-provider-batchai/{}",
                env!("CARGO_PKG_VERSION")
            )),
            ..Default::default()
        },
    )
    .map_err(|e| unusable("unusable Azure settings", e.to_string()))?;
    let agent_binary = match std::env::var_os("BATCHAI_AGENT_BINARY").filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe().map_err(|e| {
            unusable(
                "no agent binary",
                format!("find this provider's binary: {e}"),
            )
        })?,
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let platform = crate::platform::azure::platform(
        arm,
        crate::platform::azure::AzureSettings {
            resource_group: text(&settings.resource_group_name),
            location: text(&settings.location),
            storage_account: text(&settings.storage_account_name),
            container: settings
                .container_name
                .clone()
                .unwrap_or_else(|| "batchai".to_owned()),
            agent_binary,
            resource_manager,
            arm_scope: auth.arm_scope(),
            test_ca_pem: test_ca,
            storage_suffix: auth.cloud.storage_suffix.clone(),
        },
    )
    .await
    .map_err(|e| {
        Diagnostic::error("unusable control store", e.to_string())
            .at(AttributePath::attrs(["azure", "storage_account_name"]))
    })?;
    Ok(Arc::new(platform))
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct LocalSettings {
    /// Directory where the local platform keeps file server exports, clusters, nodes and the
    /// control store. Created if missing; must be writable. Defaults to `$BATCHAI_HOME`, else
    /// `$XDG_DATA_HOME/batchai`, else `~/.local/share/batchai`.
    #[tf(optional, validate = check_root, summary = "empty local root")]
    pub root: Option<String>,
    /// Where the platform keeps its control store (the records clusters, nodes and jobs share)
    /// when not in a directory under `root`: an Azure Storage blob container, which nodes on
    /// other machines can reach too (`terraform-provider-batchai agent join`).
    #[tf(block)]
    pub control_store: Option<ControlStoreSettings>,
}

/// A blob container as the control store, authenticated with the storage account's key or a
/// SAS token (exactly one). The container is created when it does not exist.
#[derive(Clone, Default, Serialize, Deserialize, Model)]
#[tf(exactly_one_of(account_key, sas_token))]
pub struct ControlStoreSettings {
    /// The container's URL: `https://<account>.blob.core.windows.net/<container>`, or for
    /// Azurite `http://127.0.0.1:10000/devstoreaccount1/<container>`.
    #[tf(required, validate = check_container_url, summary = "invalid blob_container_url")]
    pub blob_container_url: Option<String>,
    /// The storage account's key (base64). The provider signs short-lived SAS tokens with it;
    /// nodes get it in their environment, never on a command line.
    #[tf(optional, sensitive)]
    pub account_key: Option<String>,
    /// A SAS token for the container (or account) with read, write, delete, list, add and
    /// create permissions, with or without its leading `?`.
    #[tf(optional, sensitive)]
    pub sas_token: Option<String>,
}

pub fn schema() -> Schema {
    Schema::new(0, ProviderConfig::block())
}

fn check_root(root: &str) -> Result<(), &'static str> {
    if root.trim().is_empty() {
        return Err("local.root must name a directory; remove it to use the default");
    }
    Ok(())
}

impl std::fmt::Debug for ControlStoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("ControlStoreSettings")
            .field("blob_container_url", &self.blob_container_url)
            .field("account_key", &shown(&self.account_key))
            .field("sas_token", &shown(&self.sas_token))
            .finish()
    }
}

fn check_container_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an http(s) URL; write https://<account>.blob.core.windows.net/<container>"))?;
    if rest.contains('?') {
        return Err("put the SAS token in sas_token, not in the URL".to_owned());
    }
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if segments.len() < 2 || segments.iter().any(|s| s.is_empty()) {
        return Err(format!(
            "{url:?} names no container; write https://<account>.blob.core.windows.net/<container>"
        ));
    }
    Ok(())
}

fn configured_root(config: &Value) -> Option<&Value> {
    config.get_attr("local")?.get_attr("root")
}

fn root_path() -> AttributePath {
    AttributePath::attrs(["local", "root"])
}

/// The directory the local platform uses when the configuration names none.
pub fn default_root() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("BATCHAI_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(home));
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(data).join("batchai"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".local/share/batchai"))
}

pub fn configure(config: &Value) -> Result<Client, Diagnostics> {
    let configured = configured_root(config);
    if configured.is_some_and(Value::is_unknown) {
        return Err(Diagnostic::error(
            "local root is not known yet",
            "local.root depends on a value that is only known after apply; use a value known at plan time",
        )
        .at(root_path())
        .into());
    }
    let (root, path) = match configured.and_then(Value::as_str) {
        Some(root) => (PathBuf::from(root), Some(root_path())),
        None => match default_root() {
            Some(root) => (root, None),
            None => {
                return Err(Diagnostic::error(
                    "no directory for the local platform",
                    "neither local.root, BATCHAI_HOME nor HOME is set; set local.root in the provider block",
                )
                .into());
            }
        },
    };
    check_writable(&root).map_err(|e| {
        let d = Diagnostic::error("unusable local root", e.to_string());
        Diagnostics::from(match &path {
            Some(p) => d.at(p.clone()),
            None => d,
        })
    })?;
    let root = root.canonicalize().unwrap_or(root);
    let store = control_store(config)?;
    let platform = crate::platform::local::platform(root, store).map_err(|e| {
        let d = Diagnostic::error("unusable local root", e.to_string());
        Diagnostics::from(match &path {
            Some(p) => d.at(p.clone()),
            None => d,
        })
    })?;
    Ok(Arc::new(platform))
}

fn store_path(attribute: &str) -> AttributePath {
    AttributePath::attrs(["local", "control_store", attribute])
}

/// The configured blob control store, opened and checked (the container created when missing),
/// so that a wrong key or an unreachable endpoint is a diagnostic now, on the attribute that
/// explains it; `None` for the directory store under the root.
fn control_store(config: &Value) -> Result<Option<agent::store::OpenedStore>, Diagnostics> {
    let Some(settings) = config
        .get_attr("local")
        .and_then(|l| l.get_attr("control_store"))
        .filter(|v| !v.is_null())
    else {
        return Ok(None);
    };
    for attribute in ["blob_container_url", "account_key", "sas_token"] {
        if settings.get_attr(attribute).is_some_and(Value::is_unknown) {
            return Err(Diagnostic::error(
                "control store setting is not known yet",
                format!("local.control_store.{attribute} depends on a value that is only known after apply; use a value known at plan time"),
            )
            .at(store_path(attribute))
            .into());
        }
    }
    let text = |attribute: &str| {
        settings
            .get_attr(attribute)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let credential = match (text("account_key"), text("sas_token")) {
        (Some(key), _) => agent::store::Credential::AccountKey(key),
        (None, Some(token)) => agent::store::Credential::SasToken(token),
        (None, None) => {
            return Err(Diagnostic::error(
                "no credential for the control store",
                "set local.control_store.account_key or local.control_store.sas_token",
            )
            .at(store_path("account_key"))
            .into());
        }
    };
    let location = agent::store::StoreLocation {
        url: text("blob_container_url").unwrap_or_default(),
        credential: Some(credential),
    };
    agent::store::open_checked(&location)
        .map(Some)
        .map_err(|e| {
            let attribute = match e.blame {
                agent::store::Blame::Endpoint => "blob_container_url",
                agent::store::Blame::Credential => match location.credential {
                    Some(agent::store::Credential::SasToken(_)) => "sas_token",
                    _ => "account_key",
                },
            };
            Diagnostic::error("unusable control store", e.to_string())
                .at(store_path(attribute))
                .into()
        })
}

/// Why the local platform's root cannot be used.
#[derive(Debug, thiserror::Error)]
enum RootError {
    #[error("cannot create {}: {source}; choose a directory you can write to", .root.display())]
    Create {
        root: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not writable: {source}; choose a directory you can write to", .root.display())]
    Write {
        root: PathBuf,
        source: std::io::Error,
    },
}

fn check_writable(root: &Path) -> Result<(), RootError> {
    std::fs::create_dir_all(root).map_err(|source| RootError::Create {
        root: root.to_owned(),
        source,
    })?;
    let probe = root.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|source| RootError::Write {
        root: root.to_owned(),
        source,
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_root(root: Option<&str>) -> Value {
        let local = match root {
            Some(r) => Value::Object([("root".to_owned(), Value::string(r))].into()),
            None => Value::Null,
        };
        Value::Object([("local".to_owned(), local)].into())
    }

    #[test]
    fn configure_creates_the_root() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().join("a/b");
        let root_text = root.to_string_lossy().into_owned();
        assert!(configure(&config_with_root(Some(&root_text))).is_ok());
        assert!(root.is_dir());
    }

    #[test]
    fn unwritable_root_points_at_the_attribute() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap_or_else(|e| panic!("{e}"));
        let root_text = file.join("sub").to_string_lossy().into_owned();
        let err = configure(&config_with_root(Some(&root_text))).err();
        let diag = err.and_then(|d| d.0.into_iter().next());
        assert_eq!(diag.and_then(|d| d.path), Some(root_path()));
    }

    fn config_with_store(url: &str, key: Option<&str>, sas: Option<&str>) -> Value {
        let text = |v: Option<&str>| v.map_or(Value::Null, Value::string);
        let store = Value::Object(
            [
                ("blob_container_url".to_owned(), Value::string(url)),
                ("account_key".to_owned(), text(key)),
                ("sas_token".to_owned(), text(sas)),
            ]
            .into(),
        );
        let local = Value::Object(
            [
                ("root".to_owned(), Value::Null),
                ("control_store".to_owned(), store),
            ]
            .into(),
        );
        Value::Object([("local".to_owned(), local)].into())
    }

    #[test]
    fn control_store_settings_are_checked_at_the_attribute() {
        let validate = |config: &Value| tfplug::validate::validate(&schema().block, config);
        let first_path = |config: &Value| validate(config).0.first().and_then(|d| d.path.clone());
        let ok = "https://acct.blob.core.windows.net/batchai";
        assert!(!validate(&config_with_store(ok, Some("a2V5"), None)).has_errors());
        assert!(!validate(&config_with_store(ok, None, Some("sv=x&sig=y"))).has_errors());
        for bad in [
            "acct.blob.core.windows.net/batchai",
            "https://acct.blob.core.windows.net",
            "https://acct.blob.core.windows.net/",
            "https://acct.blob.core.windows.net/c?sv=x&sig=y",
        ] {
            assert_eq!(
                first_path(&config_with_store(bad, Some("a2V5"), None)),
                Some(store_path("blob_container_url")),
                "{bad}"
            );
        }
        assert!(validate(&config_with_store(ok, Some("a2V5"), Some("sv=x"))).has_errors());
        assert!(validate(&config_with_store(ok, None, None)).has_errors());
    }

    #[test]
    fn empty_root_is_rejected_at_validation() {
        let validate = |config: &Value| tfplug::validate::validate(&schema().block, config);
        let empty = validate(&config_with_root(Some(" ")));
        assert_eq!(
            empty.0.first().and_then(|d| d.path.clone()),
            Some(root_path())
        );
        assert!(!validate(&config_with_root(None)).has_errors());
    }
}
