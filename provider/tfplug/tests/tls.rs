//! AutoMTLS handshakes against a client shaped like Terraform's (ECDSA P-521, self-signed CA
//! certificate): the pinned certificate is accepted with ALPN h2, any other is refused.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

struct TerraformLikeClient {
    pem: String,
    der: Vec<u8>,
    key: Vec<u8>,
}

fn terraform_like_client() -> TerraformLikeClient {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    TerraformLikeClient {
        pem: cert.pem(),
        der: cert.der().to_vec(),
        key: key.serialize_der(),
    }
}

/// Trusts exactly the server certificate from the handshake line, as go-plugin's client does.
#[derive(Debug)]
struct PinnedServer(Vec<u8>);

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        assert_eq!(end_entity.as_ref(), self.0.as_slice());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

async fn handshake(pinned_pem: &str, presented: &TerraformLikeClient) -> Result<Vec<u8>, String> {
    let server = tfplug::tls::server_tls(pinned_pem).unwrap();
    let client_config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(PinnedServer(server.certificate_der.clone())))
    .with_client_auth_cert(
        vec![CertificateDer::from(presented.der.clone())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(presented.key.clone())),
    )
    .unwrap();
    let mut client_config = client_config;
    client_config.alpn_protocols = vec![b"h2".to_vec()];

    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server.config.clone());
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let server_side = tokio::spawn(async move { acceptor.accept(server_io).await });
    let client_side = connector
        .connect(ServerName::try_from("localhost").unwrap(), client_io)
        .await;
    let server_result = server_side.await.unwrap();
    match (server_result, client_side) {
        (Ok(tls), Ok(_)) => Ok(tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec()),
        (Err(e), _) => Err(format!("server: {e}")),
        (_, Err(e)) => Err(format!("client: {e}")),
    }
}

#[tokio::test]
async fn terraforms_p521_ca_certificate_is_accepted_with_h2() {
    let client = terraform_like_client();
    let alpn = handshake(&client.pem, &client).await.unwrap();
    assert_eq!(alpn, b"h2");
}

#[tokio::test]
async fn any_other_client_certificate_is_refused() {
    let pinned = terraform_like_client();
    let intruder = terraform_like_client();
    let err = handshake(&pinned.pem, &intruder).await.unwrap_err();
    assert!(err.starts_with("server:"), "{err}");
}

/// The client config of a Terraform-like client that trusts exactly `server_der`.
fn client_config(server_der: Vec<u8>, client: &TerraformLikeClient) -> ClientConfig {
    let mut config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(PinnedServer(server_der)))
    .with_client_auth_cert(
        vec![CertificateDer::from(client.der.clone())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client.key.clone())),
    )
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

#[tokio::test]
async fn a_silent_client_neither_blocks_terraform_nor_holds_its_connection() {
    use tokio::io::AsyncReadExt as _;
    use tokio_stream::StreamExt as _;

    let client = terraform_like_client();
    let server = tfplug::tls::server_tls(&client.pem).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("p.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    // A short handshake limit keeps the test quick; the production limit is the same code path.
    let mut incoming = tfplug::serve::accept_loop(
        listener,
        Some(server.config.clone()),
        std::time::Duration::from_millis(300),
    );

    // Connects and never says a word.
    let mut silent = tokio::net::UnixStream::connect(&socket).await.unwrap();

    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(client_config(server.certificate_der, &client)));
    let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let bound = std::time::Duration::from_secs(30);
    let (connected, accepted) = tokio::time::timeout(bound, async {
        tokio::join!(
            connector.connect(ServerName::try_from("localhost").unwrap(), stream),
            incoming.next()
        )
    })
    .await
    .expect("the real client's handshake waited for the silent one");
    connected.unwrap();
    assert!(matches!(accepted, Some(Ok(tfplug::serve::Io::Tls(_)))));

    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(bound, silent.read(&mut buf))
        .await
        .expect("the silent client's connection was never closed");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the server closed the connection: {read:?}"
    );
}
