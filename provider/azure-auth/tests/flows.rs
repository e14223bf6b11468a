//! Token flows against an in-process HTTPS token endpoint and metadata host, trusted only
//! through the test CA setting.

#![allow(clippy::unwrap_used)]

mod common;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use azure_auth::{AuthError, AuthSettings, Env, MapEnv, Method, authenticate};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const CLIENT: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const ARM_SCOPE: &str = "https://management.azure.com/.default";

fn service_principal(env: MapEnv) -> MapEnv {
    env.with("ARM_TENANT_ID", TENANT)
        .with("ARM_CLIENT_ID", CLIENT)
        .with("PATH", "")
}

#[tokio::test]
async fn client_secret_through_the_metadata_host_and_the_test_ca() {
    let server = common::start().await;
    let env = service_principal(server.env()).with("ARM_CLIENT_SECRET", "right-secret");
    let auth = authenticate(&AuthSettings::default(), &env).await.unwrap();
    assert_eq!(auth.method, Method::ClientSecret);
    assert_eq!(auth.cloud.name, "AzureSimulator");
    assert_eq!(auth.cloud.resource_manager.as_str(), server.url("/"));
    assert_eq!(auth.cloud.authority_host.as_str(), server.url("/"));
    assert_eq!(auth.cloud.storage_suffix, "storage.sim.test");
    assert_eq!(auth.arm_scope(), ARM_SCOPE);
    assert_eq!(
        auth.subscription_id.as_deref(),
        Some("00000000-0000-0000-0000-0000000000aa")
    );
    auth.probe().await.unwrap();

    let seen = server.seen();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].target, "/metadata/endpoints?api-version=2022-09-01");
    let tokens = server.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].path(), format!("/{TENANT}/oauth2/v2.0/token"));
    let form = tokens[0].form();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], CLIENT);
    assert_eq!(form["client_secret"], "right-secret");
    assert_eq!(form["scope"], ARM_SCOPE);
    assert!(!format!("{auth:?}").contains("right-secret"));
}

#[tokio::test]
async fn without_the_test_ca_the_metadata_host_is_not_trusted() {
    let server = common::start().await;
    let mut env = service_principal(MapEnv::new())
        .with("ARM_CLIENT_SECRET", "right-secret")
        .with("ARM_METADATA_HOSTNAME", server.host.clone());
    let error = authenticate(&AuthSettings::default(), &env)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, AuthError::Cloud(_)), "{error:?}");
    assert!(
        text.starts_with(&format!(
            "discover the cloud endpoints from https://{}/metadata/endpoints?api-version=2022-09-01: ",
            server.host
        )),
        "{text}"
    );
    assert!(server.seen().is_empty(), "no request got through TLS");

    env.set(azure_auth::TEST_CA_VAR, "/nonexistent/ca.pem");
    let error = authenticate(&AuthSettings::default(), &env)
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with(
            "read the test ca certificate /nonexistent/ca.pem (BATCHAI_TEST_CA_CERTIFICATE): "
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_rejected_secret_fails_the_probe_naming_each_method_and_not_the_secret() {
    let server = common::start().await;
    let env = service_principal(server.env()).with("ARM_CLIENT_SECRET", "wrong-secret");
    let auth = authenticate(&AuthSettings::default(), &env).await.unwrap();
    let error = auth.probe().await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("authenticate to azure: client secret failed (methods in azurerm's order): client certificate: not configured, skipped: "),
        "{text}"
    );
    assert!(text.contains("; client secret: chosen, failed: "), "{text}");
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(
        text.contains("; azure cli: configured, not tried"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret"), "{text}");
    let AuthError::Authenticate(considered) = error else {
        panic!("not an authentication error");
    };
    assert_eq!(considered.chosen(), Some(Method::ClientSecret));
}

#[tokio::test]
async fn oidc_token_file_is_read_again_on_each_token_request() {
    let server = common::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "federated-token-1\n").unwrap();
    let env = service_principal(server.env())
        .with("ARM_USE_OIDC", "true")
        .with("ARM_OIDC_TOKEN_FILE_PATH", file.display().to_string());
    let auth = authenticate(&AuthSettings::default(), &env).await.unwrap();
    assert_eq!(auth.method, Method::OidcToken);
    auth.probe().await.unwrap();
    std::fs::write(&file, "federated-token-2\n").unwrap();
    // Another scope misses the credential's token cache: a second token request.
    auth.credential
        .get_token(&["https://storage.azure.com/.default"], None)
        .await
        .unwrap();

    let tokens = server.token_requests();
    assert_eq!(tokens.len(), 2);
    let assertions: Vec<String> = tokens
        .iter()
        .map(|t| t.form()["client_assertion"].clone())
        .collect();
    assert_eq!(assertions, ["federated-token-1", "federated-token-2"]);
    let form = tokens[0].form();
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(form["client_id"], CLIENT);
    assert_eq!(
        tokens[1].form()["scope"],
        "https://storage.azure.com/.default"
    );
}

#[tokio::test]
async fn github_actions_token_is_requested_for_the_federation_audience() {
    let server = common::start().await;
    let env = service_principal(server.env())
        .with("ARM_USE_OIDC", "true")
        .with(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            server.url("/github/token?api-version=2.0"),
        )
        .with("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "gh-request-token");
    let auth = authenticate(&AuthSettings::default(), &env).await.unwrap();
    assert_eq!(auth.method, Method::GitHubOidc);
    auth.probe().await.unwrap();

    let github: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.path() == "/github/token")
        .collect();
    assert_eq!(github.len(), 1);
    assert_eq!(github[0].method, "GET");
    assert_eq!(
        github[0].query(),
        [
            ("api-version".to_owned(), "2.0".to_owned()),
            (
                "audience".to_owned(),
                "api://AzureADTokenExchange".to_owned()
            ),
        ]
    );
    assert_eq!(
        github[0].headers["authorization"],
        "Bearer gh-request-token"
    );
    let tokens = server.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].form()["client_assertion"], "gh-oidc-token");
}

#[tokio::test]
async fn azure_devops_token_is_posted_for_with_the_service_connection() {
    let server = common::start().await;
    let env = service_principal(server.env())
        .with("ARM_USE_OIDC", "true")
        .with("SYSTEM_OIDCREQUESTURI", server.url("/ado/oidctoken"))
        .with("SYSTEM_ACCESSTOKEN", "ado-access-token")
        .with("ARM_OIDC_AZURE_SERVICE_CONNECTION_ID", "connection-7");
    let auth = authenticate(&AuthSettings::default(), &env).await.unwrap();
    assert_eq!(auth.method, Method::AdoPipelineOidc);
    auth.probe().await.unwrap();

    let ado: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.path() == "/ado/oidctoken")
        .collect();
    assert_eq!(ado.len(), 1);
    assert_eq!(ado[0].method, "POST");
    assert_eq!(
        ado[0].query(),
        [
            ("api-version".to_owned(), "7.1".to_owned()),
            ("serviceConnectionId".to_owned(), "connection-7".to_owned()),
            (
                "audience".to_owned(),
                "api://AzureADTokenExchange".to_owned()
            ),
        ]
    );
    assert_eq!(ado[0].headers["authorization"], "Bearer ado-access-token");
    assert_eq!(
        server.token_requests()[0].form()["client_assertion"],
        "ado-oidc-token"
    );
}

#[tokio::test]
async fn managed_identity_through_a_custom_endpoint_is_user_assigned_by_client_id() {
    let server = common::start().await;
    let env = server
        .env()
        .with("ARM_USE_MSI", "true")
        .with("ARM_MSI_ENDPOINT", server.url("/msi/token"))
        .with("ARM_CLIENT_ID", CLIENT)
        .with("PATH", "");
    let auth = authenticate(&AuthSettings::default(), &env).await.unwrap();
    assert_eq!(auth.method, Method::ManagedIdentity);
    auth.probe().await.unwrap();
    let msi: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.path() == "/msi/token")
        .collect();
    assert_eq!(msi.len(), 1);
    assert_eq!(msi[0].headers["metadata"], "true");
    assert_eq!(
        msi[0].query(),
        [
            ("api-version".to_owned(), "2018-02-01".to_owned()),
            (
                "resource".to_owned(),
                "https://management.azure.com".to_owned()
            ),
            ("client_id".to_owned(), CLIENT.to_owned()),
        ]
    );
}

/// An RSA certificate and key, as PEM, and the certificate's DER.
fn rsa_certificate() -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["batchai-sp".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (
        format!("{}{}", cert.pem(), key.serialize_pem()),
        cert.der().to_vec(),
    )
}

fn json_part(part: &str) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Checks the assertion the token endpoint got: header, claims, and the signature against the
/// certificate's public key (read by an independent X.509 parser).
fn check_assertion(assertion: &str, cert_der: &[u8], token_url: &str) {
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS in compact form");
    let header = json_part(parts[0]);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(
        header["x5t"],
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, cert_der))
    );
    assert_eq!(
        header["x5t#S256"],
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, cert_der))
    );
    let claims = json_part(parts[1]);
    assert_eq!(claims["aud"], token_url);
    assert_eq!(claims["iss"], CLIENT);
    assert_eq!(claims["sub"], CLIENT);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
    let nbf = claims["nbf"].as_u64().unwrap();
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp > nbf, "exp {exp} after nbf {nbf}");

    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).unwrap();
    let public_key = cert.public_key().subject_public_key.data.to_vec();
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let signed = format!("{}.{}", parts[0], parts[1]);
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public_key)
        .verify(signed.as_bytes(), &signature)
        .expect("the assertion is signed with the certificate's key");
    let mut tampered = signed.into_bytes();
    tampered[0] ^= 1;
    assert!(
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public_key)
            .verify(&tampered, &signature)
            .is_err()
    );
}

#[tokio::test]
async fn client_certificate_signs_a_fresh_assertion_per_request() {
    let server = common::start().await;
    let (pem, der) = rsa_certificate();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sp.pem");
    std::fs::write(&path, &pem).unwrap();
    // A secret too: the certificate comes first.
    let env = service_principal(server.env())
        .with("ARM_CLIENT_CERTIFICATE_PATH", path.display().to_string())
        .with("ARM_CLIENT_SECRET", "right-secret");
    let auth = authenticate(&AuthSettings::default(), &env).await.unwrap();
    assert_eq!(auth.method, Method::ClientCertificate);
    auth.probe().await.unwrap();
    auth.credential
        .get_token(&["https://storage.azure.com/.default"], None)
        .await
        .unwrap();

    let tokens = server.token_requests();
    assert_eq!(tokens.len(), 2);
    let token_url = server.url(&format!("/{TENANT}/oauth2/v2.0/token"));
    let first = tokens[0].form();
    assert!(!first.contains_key("client_secret"));
    assert_eq!(
        first["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    check_assertion(&first["client_assertion"], &der, &token_url);
    let second = tokens[1].form();
    check_assertion(&second["client_assertion"], &der, &token_url);
    assert_ne!(
        first["client_assertion"], second["client_assertion"],
        "each request carries a new assertion (new jti)"
    );
}

#[tokio::test]
async fn client_certificate_from_base64_settings() {
    let server = common::start().await;
    let (pem, der) = rsa_certificate();
    let env = service_principal(server.env());
    let settings = AuthSettings {
        client_certificate: Some(STANDARD.encode(pem.as_bytes())),
        ..AuthSettings::default()
    };
    let auth = authenticate(&settings, &env).await.unwrap();
    assert_eq!(auth.method, Method::ClientCertificate);
    auth.probe().await.unwrap();
    let tokens = server.token_requests();
    check_assertion(
        &tokens[0].form()["client_assertion"],
        &der,
        &server.url(&format!("/{TENANT}/oauth2/v2.0/token")),
    );
}

#[tokio::test]
async fn a_certificate_that_cannot_be_read_fails_the_chosen_method() {
    let env = MapEnv::new()
        .with("ARM_TENANT_ID", TENANT)
        .with("ARM_CLIENT_ID", CLIENT)
        .with("ARM_SUBSCRIPTION_ID", "sub")
        .with("ARM_CLIENT_CERTIFICATE_PATH", "/nonexistent/sp.pem")
        .with("PATH", "");
    let error = authenticate(&AuthSettings::default(), &env)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("authenticate to azure: client certificate failed (methods in azurerm's order): client certificate: chosen, failed: read the client certificate /nonexistent/sp.pem: "),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sp.pfx");
    std::fs::write(&path, [0x30, 0x82, 0x01, 0x00]).unwrap();
    let env = env.with("ARM_CLIENT_CERTIFICATE_PATH", path.display().to_string());
    let text = authenticate(&AuthSettings::default(), &env)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("neither pem nor a well-formed pkcs#12"),
        "{text}"
    );
}

#[tokio::test]
async fn nothing_configured_lists_every_method_and_why() {
    let env = MapEnv::new()
        .with("ARM_SUBSCRIPTION_ID", "sub")
        .with("PATH", "");
    let error = authenticate(&AuthSettings::default(), &env)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "authenticate to azure: no method yielded a credential (methods in azurerm's order): \
         client certificate: not configured, skipped: ARM_CLIENT_CERTIFICATE_PATH (client_certificate_path) and ARM_CLIENT_CERTIFICATE (client_certificate) not set; \
         client secret: not configured, skipped: ARM_CLIENT_SECRET (client_secret) and ARM_CLIENT_SECRET_FILE_PATH not set; \
         oidc token: not configured, skipped: neither ARM_USE_OIDC (use_oidc) nor ARM_USE_AKS_WORKLOAD_IDENTITY (use_aks_workload_identity) is true; \
         azure devops oidc: not configured, skipped: neither ARM_USE_OIDC (use_oidc) nor ARM_USE_AKS_WORKLOAD_IDENTITY (use_aks_workload_identity) is true; \
         github actions oidc: not configured, skipped: neither ARM_USE_OIDC (use_oidc) nor ARM_USE_AKS_WORKLOAD_IDENTITY (use_aks_workload_identity) is true; \
         managed identity: not configured, skipped: ARM_USE_MSI (use_msi) not true; \
         azure cli: configured, skipped: az not found on PATH"
    );
    assert!(env.var("PATH").is_none());
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The DER of the certificate the PKCS#12 fixtures were made with (`tests/data/README.md`).
fn fixture_cert_der() -> Vec<u8> {
    use rustls_pki_types::pem::PemObject as _;
    rustls_pki_types::CertificateDer::from_pem_file(fixture("sp-cert.pem"))
        .unwrap()
        .to_vec()
}

#[test]
fn pkcs12_bundles_with_aes_are_read_and_their_key_signs() {
    let der = fixture_cert_der();
    for (file, password) in [
        ("sp-aes.pfx", "batchai-test"),
        ("sp-aes-sha1.pfx", "batchai-test"),
        ("sp-nopass.pfx", ""),
    ] {
        let data = std::fs::read(fixture(file)).unwrap();
        let cert = azure_auth::ClientCertificate::parse(&data, Some(password))
            .unwrap_or_else(|error| panic!("{file}: {error}"));
        assert_eq!(cert.der(), der.as_slice(), "{file}");
        let url = "https://login.example/t/oauth2/v2.0/token";
        let assertion = cert
            .assertion(CLIENT, url, std::time::SystemTime::now())
            .unwrap();
        check_assertion(&assertion, &der, url);
    }
}

#[test]
fn pkcs12_wrong_password_and_legacy_ciphers_are_named() {
    let data = std::fs::read(fixture("sp-aes.pfx")).unwrap();
    let error = azure_auth::ClientCertificate::parse(&data, Some("not-it")).unwrap_err();
    assert_eq!(
        error,
        "the pkcs#12 password is wrong (the integrity check failed)"
    );
    assert!(!error.contains("not-it"));
    let data = std::fs::read(fixture("sp-legacy.pfx")).unwrap();
    let error = azure_auth::ClientCertificate::parse(&data, Some("batchai-test")).unwrap_err();
    assert!(
        error.starts_with("the pkcs#12 file uses a legacy cipher"),
        "{error}"
    );
    let error = azure_auth::ClientCertificate::parse(b"\x30\x03\x02\x01", None).unwrap_err();
    assert!(error.contains("neither pem nor"), "{error}");
}

#[tokio::test]
async fn client_certificate_from_a_pkcs12_path_with_its_password() {
    let server = common::start().await;
    let env = service_principal(server.env())
        .with(
            "ARM_CLIENT_CERTIFICATE_PATH",
            fixture("sp-aes.pfx").display().to_string(),
        )
        .with("ARM_CLIENT_CERTIFICATE_PASSWORD", "batchai-test");
    let auth = authenticate(&AuthSettings::default(), &env).await.unwrap();
    assert_eq!(auth.method, Method::ClientCertificate);
    auth.probe().await.unwrap();
    check_assertion(
        &server.token_requests()[0].form()["client_assertion"],
        &fixture_cert_der(),
        &server.url(&format!("/{TENANT}/oauth2/v2.0/token")),
    );
}
