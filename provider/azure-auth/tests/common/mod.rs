//! An in-process HTTPS server playing Entra ID's token endpoint, a cloud metadata host, GitHub
//! Actions' and Azure DevOps' OIDC token services and a managed identity endpoint, with a test
//! CA of its own; it records every request.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names lowercased.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Seen {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> Vec<(String, String)> {
        let query = self.target.split_once('?').map_or("", |(_, q)| q);
        form(query)
    }

    pub fn form(&self) -> BTreeMap<String, String> {
        form(&self.body).into_iter().collect()
    }
}

/// Decodes `a=b&c=d` (percent and `+`).
pub fn form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// The server: its address (`127.0.0.1:port`), the CA file clients must trust, and what it saw.
pub struct Server {
    pub host: String,
    pub ca_path: std::path::PathBuf,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.host)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The token requests (POST …/oauth2/v2.0/token), in order.
    pub fn token_requests(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.path().ends_with("/oauth2/v2.0/token"))
            .collect()
    }

    /// The base environment pointing at this server: its CA and it as the metadata host.
    pub fn env(&self) -> azure_auth::MapEnv {
        azure_auth::MapEnv::new()
            .with(azure_auth::TEST_CA_VAR, self.ca_path.display().to_string())
            .with("ARM_METADATA_HOSTNAME", self.host.clone())
            .with(
                "ARM_SUBSCRIPTION_ID",
                "00000000-0000-0000-0000-0000000000aa",
            )
    }
}

fn respond(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn route(seen: &Seen, host: &str) -> Vec<u8> {
    let path = seen.path();
    if seen.method == "GET" && path == "/metadata/endpoints" {
        let body = serde_json::json!({
            "name": "AzureSimulator",
            "resourceManager": format!("https://{host}/"),
            "authentication": {
                "loginEndpoint": format!("https://{host}/"),
                "audiences": ["https://management.azure.com/"],
            },
            "suffixes": {"storage": "storage.sim.test"},
        });
        return respond("200 OK", &body.to_string());
    }
    if seen.method == "POST" && path.ends_with("/oauth2/v2.0/token") {
        let form = seen.form();
        if form.get("client_secret").map(String::as_str) == Some("wrong-secret")
            || form.get("client_assertion").map(String::as_str) == Some("rejected-assertion")
        {
            let body = serde_json::json!({
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
                "error_codes": [7000215],
            });
            return respond("401 Unauthorized", &body.to_string());
        }
        let body = serde_json::json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "access_token": "issued-access-token",
        });
        return respond("200 OK", &body.to_string());
    }
    if path == "/github/token" {
        if seen.headers.get("authorization").map(String::as_str) != Some("Bearer gh-request-token")
        {
            return respond("401 Unauthorized", r#"{"message":"bad request token"}"#);
        }
        return respond("200 OK", r#"{"count":1,"value":"gh-oidc-token"}"#);
    }
    if path == "/ado/oidctoken" && seen.method == "POST" {
        if seen.headers.get("authorization").map(String::as_str) != Some("Bearer ado-access-token")
        {
            return respond("401 Unauthorized", r#"{"message":"bad request token"}"#);
        }
        return respond("200 OK", r#"{"oidcToken":"ado-oidc-token"}"#);
    }
    if path == "/msi/token" && seen.method == "GET" {
        return respond(
            "200 OK",
            r#"{"access_token":"msi-access-token","expires_in":"3599","token_type":"Bearer"}"#,
        );
    }
    respond("404 Not Found", r#"{"error":"not found"}"#)
}

async fn read_request<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Starts the server on a free port of 127.0.0.1 with a fresh CA.
pub async fn start() -> Server {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "azure-auth test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

    let server_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let server_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let server_cert = server_params.signed_by(&server_key, &ca).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    {
        let seen = seen.clone();
        let host = host.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                let host = host.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some(request) = read_request(&mut tls).await else {
                        return;
                    };
                    let response = route(&request, &host);
                    seen.lock().unwrap().push(request);
                    let _ = tls.write_all(&response).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
    }
    Server {
        host,
        ca_path,
        seen,
        _dir: dir,
    }
}
