//! The HTTP client every Azure request of the provider goes through, which trusts the test CA
//! named by `BATCHAI_TEST_CA_CERTIFICATE` besides the platform's roots.
//!
//! Test-only: the ARM simulator serves Resource Manager, the token endpoint and the cloud
//! metadata over HTTPS with a CA of its own (azure_core sends bearer tokens over TLS only).

use crate::env::Env;
use azure_core::http::{ClientOptions, Transport};
use std::sync::Arc;
use std::time::Duration;

/// The test-only variable naming a PEM file of extra CA certificates to trust.
pub const TEST_CA_VAR: &str = "BATCHAI_TEST_CA_CERTIFICATE";

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The test CA file could not be read.
    #[error("read the test ca certificate {path} ({TEST_CA_VAR}): {source}")]
    ReadCa {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The test CA file holds no usable certificate.
    #[error("parse the test ca certificate {path} ({TEST_CA_VAR}): {detail}")]
    ParseCa {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// reqwest refused the configuration.
    #[error("build the http client: {0}")]
    Build(String),
}

/// The timeouts azure_core's own reqwest client uses.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A reqwest client configured as azure_core's default one (no redirects, no automatic
/// decompression, the same timeouts) that also trusts the CA certificates in the file
/// `BATCHAI_TEST_CA_CERTIFICATE` names, when `env` sets it.
pub fn http_client(env: &dyn Env) -> Result<reqwest::Client, TransportError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        // Storage clients need the raw bytes (the SDK's partitioned downloads); these are
        // no-ops unless some crate turns the features on.
        .no_gzip()
        .no_deflate()
        .no_brotli()
        .no_zstd();
    if let Some(path) = env.var(TEST_CA_VAR) {
        let pem = std::fs::read(&path).map_err(|source| TransportError::ReadCa {
            path: path.clone(),
            source,
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
            TransportError::ParseCa {
                path: path.clone(),
                detail: error.to_string(),
            }
        })?;
        if certs.is_empty() {
            return Err(TransportError::ParseCa {
                path,
                detail: "no CERTIFICATE section".to_owned(),
            });
        }
        tracing::debug!(path, "trusting the test CA");
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|error| TransportError::Build(crate::cloud::describe_reqwest(&error)))
}

/// An azure_core transport over [`http_client`].
pub fn transport(env: &dyn Env) -> Result<Transport, TransportError> {
    Ok(Transport::new(Arc::new(http_client(env)?)))
}

/// `ClientOptions` whose transport is [`transport`]: what the ARM client, the blob store and
/// the credentials here build their pipelines with.
pub fn client_options(env: &dyn Env) -> Result<ClientOptions, TransportError> {
    Ok(ClientOptions {
        transport: Some(transport(env)?),
        ..ClientOptions::default()
    })
}
