//! The HTTP client every request to Azure Storage and the instance metadata service in this
//! process goes through, with one test-only twist: `BATCHAI_TEST_CA_CERTIFICATE` names a PEM
//! file whose certificates are trusted besides the system's, so that the ARM simulator's
//! Azurite (served over TLS with a test CA, as bearer tokens need) can be reached. Nothing else
//! changes how certificates are checked.
use std::sync::Arc;

use azure_core::http::HttpClient;

/// The test-only variable naming a PEM file of extra trusted CA certificates.
pub const TEST_CA_VAR: &str = "BATCHAI_TEST_CA_CERTIFICATE";

/// Why the HTTP client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("read the test CA certificate {path} ({TEST_CA_VAR}): {source}")]
    ReadCa {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("use the test CA certificate {path} ({TEST_CA_VAR}): {detail}")]
    BadCa { path: String, detail: String },
}

/// A client that trusts the system's CAs, plus those in `BATCHAI_TEST_CA_CERTIFICATE` when it is
/// set. It never decompresses: storage clients need the raw bytes, and nothing else asks for
/// compression.
pub fn client() -> Result<Arc<dyn HttpClient>, HttpError> {
    let path = std::env::var_os(TEST_CA_VAR).filter(|v| !v.is_empty());
    client_trusting(path.as_deref().map(std::path::Path::new))
}

/// A client that trusts the system's CAs, plus the certificates in the PEM file `extra_ca`.
pub fn client_trusting(
    extra_ca: Option<&std::path::Path>,
) -> Result<Arc<dyn HttpClient>, HttpError> {
    let Some(path) = extra_ca else {
        return Ok(azure_core::http::new_http_client(Some(
            azure_core::http::HttpClientOptions {
                automatic_decompression: false,
            },
        )));
    };
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| HttpError::ReadCa {
        path: shown.clone(),
        source,
    })?;
    let bad = |detail: String| HttpError::BadCa {
        path: shown.clone(),
        detail,
    };
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
    if certificates.is_empty() {
        return Err(bad("it holds no PEM certificate".to_owned()));
    }
    let mut builder = reqwest::ClientBuilder::new();
    for certificate in certificates {
        builder = builder.add_root_certificate(certificate);
    }
    let client = builder.build().map_err(|e| bad(e.to_string()))?;
    Ok(Arc::new(client))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_test_ca_must_be_a_readable_pem_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let good = dir.path().join("ca.pem");
        let ca = rcgen::generate_simple_self_signed(vec!["test-ca".to_owned()]).unwrap();
        std::fs::write(&good, ca.cert.pem()).unwrap();

        let error = client_trusting(Some(&missing)).unwrap_err().to_string();
        assert!(error.starts_with("read the test CA certificate"), "{error}");
        let error = client_trusting(Some(&empty)).unwrap_err().to_string();
        assert!(error.contains("holds no PEM certificate"), "{error}");
        assert!(client_trusting(Some(&good)).is_ok());
        assert!(client_trusting(None).is_ok());
    }
}
