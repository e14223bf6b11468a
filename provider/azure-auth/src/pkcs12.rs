//! A PKCS#12 (`.pfx`) reader for what azurerm's `client_certificate_path` takes, in its modern
//! form only: PBES2 (PBKDF2 with HMAC-SHA-1/SHA-256/384/512, AES-CBC) and an HMAC-SHA-1/SHA-256
//! integrity MAC, as OpenSSL 3 writes by default. The legacy ciphers (3DES, RC2) are not in
//! aws-lc-rs's API; such a file gets an error saying how to convert it.
//!
//! The DER reader below handles definite lengths only, which is what DER (and OpenSSL) writes.

use aws_lc_rs::cipher::{
    AES_128, AES_192, AES_256, DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey,
};
use aws_lc_rs::{constant_time, digest, hmac, iv::FixedLength, pbkdf2};
use std::num::NonZeroU32;

const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const OID_ENCRYPTED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06];
const OID_KEY_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x01,
];
const OID_SHROUDED_KEY_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02,
];
const OID_CERT_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03,
];
const OID_X509_CERT: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01];
const OID_PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
const OID_PBKDF2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c];
const OID_HMAC_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x07];
const OID_HMAC_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09];
const OID_HMAC_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x0a];
const OID_HMAC_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x0b];
const OID_AES128_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02];
const OID_AES192_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x16];
const OID_AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
const OID_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
/// pbeWithSHAAnd… (PKCS#12 v1 legacy ciphers: RC4, 3DES, RC2).
const OID_PKCS12_PBE_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const CONTEXT_0: u8 = 0xa0;
const CONTEXT_0_PRIMITIVE: u8 = 0x80;

/// The key (PKCS#8 DER) and certificates (DER) of a PKCS#12 file.
pub(crate) struct Contents {
    pub(crate) keys: Vec<Vec<u8>>,
    pub(crate) certs: Vec<Vec<u8>>,
}

/// A DER reader over a byte slice.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// The next element: its tag and contents.
    fn any(&mut self) -> Result<(u8, &'a [u8]), String> {
        let truncated =
            || "the certificate is neither pem nor a well-formed pkcs#12 (der) file".to_owned();
        let (&tag, rest) = self.0.split_first().ok_or_else(truncated)?;
        let (&first, mut rest) = rest.split_first().ok_or_else(truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err("the pkcs#12 file uses indefinite lengths (ber), not der".to_owned());
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(truncated());
        }
        let (contents, rest) = rest.split_at(len);
        self.0 = rest;
        Ok((tag, contents))
    }

    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        let (got, contents) = self.any()?;
        if got != tag {
            return Err(format!("the pkcs#12 file is malformed at {what}"));
        }
        Ok(contents)
    }

    fn sequence(&mut self, what: &str) -> Result<Der<'a>, String> {
        self.expect(SEQUENCE, what).map(Der)
    }

    fn oid(&mut self, what: &str) -> Result<&'a [u8], String> {
        self.expect(OID, what)
    }

    fn octets(&mut self, what: &str) -> Result<&'a [u8], String> {
        self.expect(OCTET_STRING, what)
    }

    fn uint(&mut self, what: &str) -> Result<u32, String> {
        let bytes = self.expect(INTEGER, what)?;
        let bytes = match bytes {
            [0, rest @ ..] => rest,
            other => other,
        };
        if bytes.len() > 4 {
            return Err(format!("the pkcs#12 file has a too large {what}"));
        }
        Ok(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
    }

    /// `[0] EXPLICIT` contents.
    fn explicit0(&mut self, what: &str) -> Result<Der<'a>, String> {
        self.expect(CONTEXT_0, what).map(Der)
    }
}

/// The password as the PKCS#12 MAC key derivation takes it: BMPString (UTF-16BE) with a
/// terminating zero.
fn bmp_password(password: &str) -> Vec<u8> {
    let mut out: Vec<u8> = password.encode_utf16().flat_map(u16::to_be_bytes).collect();
    out.extend_from_slice(&[0, 0]);
    out
}

/// RFC 7292 appendix B.2 with ID 3 (MAC key), for a key as long as one hash output.
fn pkcs12_mac_key(
    algorithm: &'static digest::Algorithm,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let v = algorithm.block_len();
    let fill = |data: &[u8]| -> Vec<u8> {
        if data.is_empty() {
            return Vec::new();
        }
        let len = v * data.len().div_ceil(v);
        data.iter().copied().cycle().take(len).collect()
    };
    let mut input = vec![3u8; v];
    input.extend(fill(salt));
    input.extend(fill(password));
    let mut a = digest::digest(algorithm, &input).as_ref().to_vec();
    for _ in 1..iterations.max(1) {
        a = digest::digest(algorithm, &a).as_ref().to_vec();
    }
    a.truncate(algorithm.output_len());
    a
}

/// Checks the file's MAC over the authenticated safe.
fn verify_mac(mac_data: &[u8], content: &[u8], password: &str) -> Result<(), String> {
    let mut mac_data = Der(mac_data);
    let mut digest_info = mac_data.sequence("MacData.mac")?;
    let mut algorithm = digest_info.sequence("MacData.mac.algorithm")?;
    let oid = algorithm.oid("MacData digest algorithm")?;
    let expected = digest_info.octets("MacData.mac.digest")?;
    let salt = mac_data.octets("MacData.macSalt")?;
    let iterations = if mac_data.peek() == Some(INTEGER) {
        mac_data.uint("MacData.iterations")?
    } else {
        1
    };
    let (digest_alg, hmac_alg) = match oid {
        OID_SHA1 => (
            &digest::SHA1_FOR_LEGACY_USE_ONLY,
            hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        ),
        OID_SHA256 => (&digest::SHA256, hmac::HMAC_SHA256),
        _ => return Err("the pkcs#12 integrity mac uses an unsupported digest".to_owned()),
    };
    // OpenSSL derives with the empty password's BMPString either with or without the
    // terminator; try both for an empty password.
    let mut candidates = vec![bmp_password(password)];
    if password.is_empty() {
        candidates.push(Vec::new());
    }
    for candidate in candidates {
        let key = pkcs12_mac_key(digest_alg, &candidate, salt, iterations);
        let tag = hmac::sign(&hmac::Key::new(hmac_alg, &key), content);
        if constant_time::verify_slices_are_equal(tag.as_ref(), expected).is_ok() {
            return Ok(());
        }
    }
    Err("the pkcs#12 password is wrong (the integrity check failed)".to_owned())
}

/// Decrypts PBES2 ciphertext whose AlgorithmIdentifier parameters are `params`.
fn pbes2_decrypt(
    algorithm: &mut Der<'_>,
    ciphertext: &[u8],
    password: &str,
) -> Result<Vec<u8>, String> {
    let oid = algorithm.oid("encryption algorithm")?;
    if oid.starts_with(OID_PKCS12_PBE_PREFIX) {
        return Err("the pkcs#12 file uses a legacy cipher (3des or rc2); re-export it with aes (`openssl pkcs12 -legacy -in old.pfx -nodes | openssl pkcs12 -export -out new.pfx`) or give a pem".to_owned());
    }
    if oid != OID_PBES2 {
        return Err("the pkcs#12 file uses an unsupported encryption scheme".to_owned());
    }
    let mut params = algorithm.sequence("PBES2 parameters")?;
    let mut kdf = params.sequence("PBES2 key derivation")?;
    if kdf.oid("PBES2 key derivation algorithm")? != OID_PBKDF2 {
        return Err("the pkcs#12 file uses a key derivation other than pbkdf2".to_owned());
    }
    let mut kdf_params = kdf.sequence("PBKDF2 parameters")?;
    let salt = kdf_params.octets("PBKDF2 salt")?;
    let iterations = NonZeroU32::new(kdf_params.uint("PBKDF2 iteration count")?)
        .ok_or("the pkcs#12 file has a zero pbkdf2 iteration count")?;
    if kdf_params.peek() == Some(INTEGER) {
        kdf_params.uint("PBKDF2 key length")?;
    }
    let prf = if kdf_params.is_empty() {
        OID_HMAC_SHA1
    } else {
        kdf_params
            .sequence("PBKDF2 prf")?
            .oid("PBKDF2 prf algorithm")?
    };
    let prf = match prf {
        OID_HMAC_SHA1 => pbkdf2::PBKDF2_HMAC_SHA1,
        OID_HMAC_SHA256 => pbkdf2::PBKDF2_HMAC_SHA256,
        OID_HMAC_SHA384 => pbkdf2::PBKDF2_HMAC_SHA384,
        OID_HMAC_SHA512 => pbkdf2::PBKDF2_HMAC_SHA512,
        _ => return Err("the pkcs#12 file uses an unsupported pbkdf2 prf".to_owned()),
    };
    let mut scheme = params.sequence("PBES2 encryption scheme")?;
    let (cipher, key_len) = match scheme.oid("PBES2 cipher")? {
        OID_AES128_CBC => (&AES_128, 16),
        OID_AES192_CBC => (&AES_192, 24),
        OID_AES256_CBC => (&AES_256, 32),
        _ => return Err("the pkcs#12 file uses a cipher other than aes-cbc".to_owned()),
    };
    let iv: [u8; 16] = scheme
        .octets("PBES2 iv")?
        .try_into()
        .map_err(|_| "the pkcs#12 file has an aes iv that is not 16 bytes")?;
    let mut key = vec![0u8; key_len];
    pbkdf2::derive(prf, iterations, salt, password.as_bytes(), &mut key);
    let key = UnboundCipherKey::new(cipher, &key)
        .and_then(PaddedBlockDecryptingKey::cbc_pkcs7)
        .map_err(|_| "the pkcs#12 aes key is unusable")?;
    let mut buffer = ciphertext.to_vec();
    let plain = key
        .decrypt(&mut buffer, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| "decrypt the pkcs#12 content: wrong password or corrupt file")?;
    Ok(plain.to_vec())
}

/// Reads the bags of one SafeContents into `out`.
fn read_safe_contents(data: &[u8], password: &str, out: &mut Contents) -> Result<(), String> {
    let mut bags = Der(data).sequence("SafeContents")?;
    while !bags.is_empty() {
        let mut bag = bags.sequence("SafeBag")?;
        let bag_id = bag.oid("SafeBag id")?;
        let mut value = bag.explicit0("SafeBag value")?;
        match bag_id {
            OID_KEY_BAG => {
                let (_, contents) = value.any()?;
                // Re-wrap: the bag value is the PrivateKeyInfo SEQUENCE itself.
                out.keys.push(der_sequence(contents));
            }
            OID_SHROUDED_KEY_BAG => {
                let mut encrypted = value.sequence("EncryptedPrivateKeyInfo")?;
                let mut algorithm = encrypted.sequence("EncryptedPrivateKeyInfo algorithm")?;
                let ciphertext = encrypted.octets("EncryptedPrivateKeyInfo data")?;
                out.keys
                    .push(pbes2_decrypt(&mut algorithm, ciphertext, password)?);
            }
            OID_CERT_BAG => {
                let mut cert_bag = value.sequence("CertBag")?;
                if cert_bag.oid("CertBag id")? == OID_X509_CERT {
                    let cert = cert_bag.explicit0("CertBag value")?.octets("certificate")?;
                    out.certs.push(cert.to_vec());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `contents` wrapped in a SEQUENCE header.
fn der_sequence(contents: &[u8]) -> Vec<u8> {
    let len = contents.len();
    let mut out = vec![SEQUENCE];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

/// Reads a PKCS#12 file with `password`.
pub(crate) fn parse(data: &[u8], password: &str) -> Result<Contents, String> {
    let mut pfx = Der(data).sequence("PFX")?;
    if pfx.uint("PFX version")? != 3 {
        return Err("the file is not pkcs#12 version 3".to_owned());
    }
    let mut auth_safe = pfx.sequence("PFX authSafe")?;
    if auth_safe.oid("authSafe content type")? != OID_DATA {
        return Err(
            "the pkcs#12 file is signed with public keys, which is not supported".to_owned(),
        );
    }
    let content = auth_safe
        .explicit0("authSafe content")?
        .octets("authSafe data")?;
    if !pfx.is_empty() {
        let (_, mac_data) = pfx.any()?;
        verify_mac(mac_data, content, password)?;
    }
    let mut out = Contents {
        keys: Vec::new(),
        certs: Vec::new(),
    };
    let mut infos = Der(content).sequence("AuthenticatedSafe")?;
    while !infos.is_empty() {
        let mut info = infos.sequence("ContentInfo")?;
        match info.oid("ContentInfo type")? {
            OID_DATA => {
                let safe = info.explicit0("ContentInfo content")?.octets("data")?;
                read_safe_contents(safe, password, &mut out)?;
            }
            OID_ENCRYPTED_DATA => {
                let mut encrypted = info
                    .explicit0("ContentInfo content")?
                    .sequence("EncryptedData")?;
                encrypted.uint("EncryptedData version")?;
                let mut content_info = encrypted.sequence("EncryptedContentInfo")?;
                content_info.oid("EncryptedContentInfo type")?;
                let mut algorithm = content_info.sequence("EncryptedContentInfo algorithm")?;
                let ciphertext = content_info.expect(CONTEXT_0_PRIMITIVE, "encrypted content")?;
                let plain = pbes2_decrypt(&mut algorithm, ciphertext, password)?;
                read_safe_contents(&plain, password, &mut out)?;
            }
            _ => return Err("the pkcs#12 file has content of an unsupported type".to_owned()),
        }
    }
    Ok(out)
}
