//! The client-certificate credential without openssl: the certificate and its RSA key are read
//! from PEM, and each token request carries a fresh RS256 JWT client assertion signed with
//! aws-lc-rs (the shape Entra ID documents for certificate credentials: `x5t`/`x5t#S256`
//! thumbprints in the header; `aud` the token endpoint, `iss` = `sub` = the client ID).

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair};
use azure_core::error::ErrorKind;
use azure_core::http::ClientMethodOptions;
use azure_identity::ClientAssertion;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::pem::{self, SectionKind};
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// How long an assertion is valid: Entra only needs it for the one request.
const ASSERTION_LIFETIME_SECS: u64 = 600;

/// A client certificate and its private key.
pub struct ClientCertificate {
    key: RsaKeyPair,
    der: Vec<u8>,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t#S256", &self.thumbprint_sha256())
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// Reads a certificate and its unencrypted private key (PKCS#8 `PRIVATE KEY` or PKCS#1
    /// `RSA PRIVATE KEY`) from PEM. When the file holds a chain, the certificate is the one
    /// whose public key is the key's.
    pub fn from_pem(data: &[u8]) -> Result<Self, String> {
        let mut certs = Vec::new();
        let mut key = None;
        for section in pem::SliceIter::new(data) {
            let (kind, der) = section.map_err(|error| format!("read the pem: {error}"))?;
            match kind {
                SectionKind::Certificate => certs.push(der),
                SectionKind::PrivateKey => {
                    key = Some(RsaKeyPair::from_pkcs8(&der).map_err(|error| {
                        format!("the private key is not a usable rsa key: {error}")
                    })?);
                }
                SectionKind::RsaPrivateKey => {
                    key = Some(RsaKeyPair::from_der(&der).map_err(|error| {
                        format!("the private key is not a usable rsa key: {error}")
                    })?);
                }
                SectionKind::EcPrivateKey => {
                    return Err(
                        "the private key is an ec key; entra id client certificates here need rsa"
                            .to_owned(),
                    );
                }
                _ => {}
            }
        }
        if data.windows(9).any(|w| w == b"ENCRYPTED") && key.is_none() {
            return Err("the private key is encrypted: give an unencrypted pem key".to_owned());
        }
        let key = key.ok_or("the pem holds no private key")?;
        Self::matching(key, certs, "pem")
    }

    /// The certificate among `certs` whose public key is `key`'s.
    fn matching(key: RsaKeyPair, certs: Vec<Vec<u8>>, what: &str) -> Result<Self, String> {
        if certs.is_empty() {
            return Err(format!("the {what} holds no certificate"));
        }
        // The key's public key (PKCS#1 RSAPublicKey) appears verbatim in its certificate's
        // SubjectPublicKeyInfo.
        let public = key.public_key().as_ref().to_vec();
        let der = certs
            .into_iter()
            .find(|der| der.windows(public.len()).any(|w| w == public.as_slice()))
            .ok_or_else(|| format!("no certificate in the {what} matches the private key"))?;
        Ok(Self { key, der })
    }

    /// Reads a PKCS#12 bundle (modern encryption: PBES2 with AES) with `password`.
    pub fn from_pkcs12(data: &[u8], password: &str) -> Result<Self, String> {
        let contents = crate::pkcs12::parse(data, password)?;
        let key = contents
            .keys
            .iter()
            .find_map(|der| RsaKeyPair::from_pkcs8(der).ok())
            .ok_or("the pkcs#12 file holds no rsa private key")?;
        Self::matching(key, contents.certs, "pkcs#12 file")
    }

    /// Reads the client certificate from `data`: PEM (certificate and unencrypted key), or
    /// PKCS#12 as azurerm takes it (modern AES encryption only), opened with `password`.
    pub fn parse(data: &[u8], password: Option<&str>) -> Result<Self, String> {
        let text_start = data
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map(|i| &data[i..]);
        match text_start {
            Some(rest) if rest.starts_with(b"-----BEGIN") => Self::from_pem(data),
            _ => Self::from_pkcs12(data, password.unwrap_or("")),
        }
    }

    /// The certificate's DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The SHA-1 thumbprint, base64url (`x5t`).
    pub fn thumbprint_sha1(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &self.der))
    }

    /// The SHA-256 thumbprint, base64url (`x5t#S256`).
    pub fn thumbprint_sha256(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &self.der))
    }

    /// A signed client assertion for `client_id` at the token endpoint `audience`.
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: SystemTime,
    ) -> Result<String, String> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| "the clock is before 1970")?
            .as_secs();
        let mut jti = [0u8; 16];
        SystemRandom::new()
            .fill(&mut jti)
            .map_err(|_| "no randomness for the assertion id")?;
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": self.thumbprint_sha1(),
            "x5t#S256": self.thumbprint_sha256(),
        });
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "sign the assertion with the certificate's key")?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The [`ClientAssertion`] of the client-certificate credential: a new JWT per token request.
#[derive(Debug)]
pub(crate) struct CertificateAssertion {
    pub(crate) certificate: Arc<ClientCertificate>,
    pub(crate) client_id: String,
    /// The token endpoint, `{authority}/{tenant}/oauth2/v2.0/token`.
    pub(crate) audience: String,
}

#[async_trait::async_trait]
impl ClientAssertion for CertificateAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        self.certificate
            .assertion(&self.client_id, &self.audience, SystemTime::now())
            .map_err(|detail| {
                azure_core::Error::with_message(
                    ErrorKind::Credential,
                    format!("build the client certificate assertion: {detail}"),
                )
            })
    }
}
