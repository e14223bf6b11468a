//! The cloud's endpoints: a named Azure cloud (`ARM_ENVIRONMENT`), or a metadata host
//! (`ARM_METADATA_HOSTNAME`) serving `/metadata/endpoints`, as azurerm finds them.

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::http::Url;
use serde::Deserialize;
use std::sync::Arc;

/// The metadata document's api-version (go-azure-sdk's `internal/metadata`).
pub const METADATA_API_VERSION: &str = "2022-09-01";

/// Why the cloud's endpoints could not be found.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// `environment` names no cloud this crate knows.
    #[error(
        "resolve the azure cloud {name:?}: unknown environment (known: public, usgovernment, china{german})",
        german = if .name.eq_ignore_ascii_case("german") { "; the German cloud was closed in 2021" } else { "" }
    )]
    UnknownEnvironment {
        /// The name given.
        name: String,
    },
    /// The metadata host did not answer with a usable document.
    #[error("discover the cloud endpoints from {url}: {detail}")]
    Metadata {
        /// The metadata URL.
        url: String,
        /// What went wrong.
        detail: String,
    },
}

/// The endpoints of one cloud that this provider needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEndpoints {
    /// The cloud's name (`AzureCloud`, …, or the metadata document's `name`).
    pub name: String,
    /// The Entra ID authority host, e.g. `https://login.microsoftonline.com/`.
    pub authority_host: Url,
    /// Azure Resource Manager, e.g. `https://management.azure.com/`.
    pub resource_manager: Url,
    /// The token audience of Resource Manager, e.g. `https://management.azure.com/`.
    pub resource_manager_audience: String,
    /// The storage DNS suffix, e.g. `core.windows.net`.
    pub storage_suffix: String,
    /// azure_core's cloud configuration, for `ClientOptions::cloud`.
    pub cloud: Arc<CloudConfiguration>,
}

fn url(text: &str) -> Url {
    // Only called on the literals below, which parse.
    Url::parse(text).unwrap_or_else(|error| unreachable!("built-in url {text}: {error}"))
}

impl CloudEndpoints {
    /// The scope of a token for Resource Manager: its audience with `/.default`.
    pub fn arm_scope(&self) -> String {
        format!(
            "{}/.default",
            self.resource_manager_audience.trim_end_matches('/')
        )
    }

    /// A named cloud, as `ARM_ENVIRONMENT` names it (case-insensitive; azurerm's names:
    /// `public`/`global`, `usgovernment`/`usgovernmentl4`, `china`).
    pub fn named(name: &str) -> Result<Self, CloudError> {
        let (cloud_name, login, arm, storage, cloud) = match name.to_ascii_lowercase().as_str() {
            "public" | "global" => (
                "AzureCloud",
                "https://login.microsoftonline.com/",
                "https://management.azure.com/",
                "core.windows.net",
                CloudConfiguration::AzurePublic,
            ),
            "usgovernment" | "usgovernmentl4" => (
                "AzureUSGovernment",
                "https://login.microsoftonline.us/",
                "https://management.usgovcloudapi.net/",
                "core.usgovcloudapi.net",
                CloudConfiguration::AzureGovernment,
            ),
            "china" => (
                "AzureChinaCloud",
                "https://login.chinacloudapi.cn/",
                "https://management.chinacloudapi.cn/",
                "core.chinacloudapi.cn",
                CloudConfiguration::AzureChina,
            ),
            _ => {
                return Err(CloudError::UnknownEnvironment {
                    name: name.to_owned(),
                });
            }
        };
        Ok(Self {
            name: cloud_name.to_owned(),
            authority_host: url(login),
            resource_manager: url(arm),
            resource_manager_audience: arm.to_owned(),
            storage_suffix: storage.to_owned(),
            cloud: Arc::new(cloud),
        })
    }

    /// The URL azurerm reads a metadata host's endpoints from.
    pub fn metadata_url(host: &str) -> String {
        let host = host
            .trim()
            .trim_start_matches("https://")
            .trim_end_matches('/');
        format!("https://{host}/metadata/endpoints?api-version={METADATA_API_VERSION}")
    }

    /// Reads a metadata host's `/metadata/endpoints` document (azurerm's `metadata_host`).
    pub async fn discover(client: &reqwest::Client, host: &str) -> Result<Self, CloudError> {
        let url = Self::metadata_url(host);
        let failed = |detail: String| CloudError::Metadata {
            url: url.clone(),
            detail,
        };
        let response = client
            .get(&url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|error| failed(describe_reqwest(&error)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| failed(describe_reqwest(&error)))?;
        if !status.is_success() {
            return Err(failed(format!("status {status}")));
        }
        Self::from_metadata(&body).map_err(failed)
    }

    /// The endpoints in a metadata document.
    pub fn from_metadata(body: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Authentication {
            #[serde(rename = "loginEndpoint")]
            login_endpoint: String,
            audiences: Vec<String>,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Suffixes {
            storage: String,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Metadata {
            name: String,
            #[serde(rename = "resourceManager")]
            resource_manager: String,
            authentication: Authentication,
            suffixes: Suffixes,
        }
        // Azure Stack answers with a byte-order mark (go-azure-sdk strips it too).
        let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
        let doc: Metadata = serde_json::from_slice(body)
            .map_err(|error| format!("the document is not the expected JSON: {error}"))?;
        if doc.name.is_empty() {
            return Err("the document has no name".to_owned());
        }
        let https = |field: &str, value: &str| -> Result<Url, String> {
            if value.is_empty() {
                return Err(format!("the document has no {field}"));
            }
            let mut parsed =
                Url::parse(value).map_err(|error| format!("{field} {value:?}: {error}"))?;
            if parsed.scheme() != "https" {
                return Err(format!("{field} {value:?} is not https"));
            }
            if !parsed.path().ends_with('/') {
                let path = format!("{}/", parsed.path());
                parsed.set_path(&path);
            }
            Ok(parsed)
        };
        let resource_manager = https("resourceManager", &doc.resource_manager)?;
        let authority_host = https(
            "authentication.loginEndpoint",
            &doc.authentication.login_endpoint,
        )?;
        // Azure Stack's Resource Manager takes tokens for an audience that differs from its
        // URL; the document's first audience is the one to ask for.
        let resource_manager_audience = doc
            .authentication
            .audiences
            .iter()
            .find(|a| !a.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| resource_manager.to_string());
        let mut custom = CustomConfiguration::default();
        custom.authority_host = authority_host.to_string();
        Ok(Self {
            name: doc.name,
            authority_host,
            resource_manager,
            resource_manager_audience,
            storage_suffix: doc.suffixes.storage,
            cloud: Arc::new(CloudConfiguration::Custom(custom)),
        })
    }
}

/// A reqwest error with its causes (its own Display says only "error sending request").
pub(crate) fn describe_reqwest(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_clouds_and_their_scopes() {
        let public = CloudEndpoints::named("Public").expect("public");
        assert_eq!(
            public.authority_host.as_str(),
            "https://login.microsoftonline.com/"
        );
        assert_eq!(public.arm_scope(), "https://management.azure.com/.default");
        assert_eq!(public.storage_suffix, "core.windows.net");
        let gov = CloudEndpoints::named("usgovernment").expect("usgovernment");
        assert_eq!(
            gov.resource_manager.as_str(),
            "https://management.usgovcloudapi.net/"
        );
        assert_eq!(
            gov.arm_scope(),
            "https://management.usgovcloudapi.net/.default"
        );
        assert_eq!(*gov.cloud, CloudConfiguration::AzureGovernment);
        let china = CloudEndpoints::named("china").expect("china");
        assert_eq!(
            china.authority_host.as_str(),
            "https://login.chinacloudapi.cn/"
        );
        assert_eq!(china.storage_suffix, "core.chinacloudapi.cn");

        let german = CloudEndpoints::named("german").expect_err("german is gone");
        assert_eq!(
            german.to_string(),
            "resolve the azure cloud \"german\": unknown environment (known: public, usgovernment, china; the German cloud was closed in 2021)"
        );
        assert!(CloudEndpoints::named("mars").is_err());
    }

    #[test]
    fn metadata_document_is_read_like_azurerm() {
        let doc = br#"{"resourceManager":"https://sim.local:8443","authentication":{"loginEndpoint":"https://sim.local:8443/","audiences":["https://management.azure.com/"]},"suffixes":{"storage":"sim.local"},"name":"AzureSimulator"}"#;
        let mut with_bom = b"\xef\xbb\xbf".to_vec();
        with_bom.extend_from_slice(doc);
        let cloud = CloudEndpoints::from_metadata(&with_bom).expect("parse");
        assert_eq!(cloud.name, "AzureSimulator");
        assert_eq!(cloud.resource_manager.as_str(), "https://sim.local:8443/");
        assert_eq!(cloud.authority_host.as_str(), "https://sim.local:8443/");
        assert_eq!(cloud.arm_scope(), "https://management.azure.com/.default");
        assert_eq!(cloud.storage_suffix, "sim.local");
        let CloudConfiguration::Custom(custom) = &*cloud.cloud else {
            panic!("a metadata cloud is custom: {:?}", cloud.cloud);
        };
        assert_eq!(custom.authority_host, "https://sim.local:8443/");

        for (broken, why) in [
            (&br#"{"resourceManager":"https://x/"}"#[..], "no name"),
            (br#"{"name":"n","authentication":{"loginEndpoint":"https://x/"}}"#, "no resourceManager"),
            (br#"{"name":"n","resourceManager":"http://x/","authentication":{"loginEndpoint":"https://x/"}}"#, "is not https"),
            (br#"{"name":"n","resourceManager":"https://x/"}"#, "no authentication.loginEndpoint"),
            (b"[1,2]", "not the expected JSON"),
        ] {
            let error = CloudEndpoints::from_metadata(broken).expect_err(why);
            assert!(error.contains(why), "{error} should say {why}");
        }
    }

    #[test]
    fn metadata_url_takes_a_bare_host() {
        assert_eq!(
            CloudEndpoints::metadata_url("sim.local:8443"),
            "https://sim.local:8443/metadata/endpoints?api-version=2022-09-01"
        );
        assert_eq!(
            CloudEndpoints::metadata_url("https://sim.local/"),
            "https://sim.local/metadata/endpoints?api-version=2022-09-01"
        );
    }
}
