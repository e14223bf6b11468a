//! The account SAS we sign from a storage account key. `azure_storage_blob` 1.x has no shared-key
//! authentication, and a short-lived SAS keeps the key itself off the wire: each request carries
//! a signature that expires within the hour instead.
//!
//! The string to sign is Microsoft's account-SAS format for signed versions 2020-12-06 and later
//! (<https://learn.microsoft.com/rest/api/storageservices/create-account-sas>): ten fields, each
//! followed by a newline, the last being the (empty) encryption scope.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use azure_core::base64;
use azure_core::time::OffsetDateTime;

use crate::API_VERSION;

/// What the store does: read, write (and lease), delete, list, add (append blocks), create.
const PERMISSIONS: &str = "rwdlac";
/// The blob service only.
const SERVICES: &str = "b";
/// Containers (to check and create the control container) and objects (blobs).
const RESOURCE_TYPES: &str = "co";

/// How long a signed SAS is valid, and how early before its expiry a new one is signed: a
/// request never leaves with a SAS that has less than `RENEW_BEFORE` left.
pub(crate) const LIFETIME: Duration = Duration::from_secs(60 * 60);
pub(crate) const RENEW_BEFORE: Duration = Duration::from_secs(15 * 60);
/// Clocks differ; a SAS that starts a little in the past works on a server whose clock is ahead.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The fields of an account SAS, in the order they are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AccountSas<'a> {
    account: &'a str,
    start: String,
    expiry: String,
    protocol: &'static str,
}

impl AccountSas<'_> {
    fn string_to_sign(&self) -> String {
        [
            self.account,
            PERMISSIONS,
            SERVICES,
            RESOURCE_TYPES,
            &self.start,
            &self.expiry,
            "", // signed IP range: any
            self.protocol,
            API_VERSION,
            "", // signed encryption scope: the account's default
            "",
        ]
        .join("\n")
    }

    /// The SAS query string (without `?`), its signature made with `key`.
    fn query(&self, key: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key);
        let signature = base64::encode(hmac::sign(&key, self.string_to_sign().as_bytes()));
        format!(
            "sv={API_VERSION}&ss={SERVICES}&srt={RESOURCE_TYPES}&sp={PERMISSIONS}&st={}&se={}&spr={}&sig={}",
            encode_query_value(&self.start),
            encode_query_value(&self.expiry),
            encode_query_value(self.protocol),
            encode_query_value(&signature),
        )
    }
}

/// A SAS for `account` signed with `key`, valid from a little before `now` for [`LIFETIME`];
/// `https` only unless the endpoint is plain http (Azurite).
pub(crate) fn sign(account: &str, key: &[u8], https_only: bool, now: SystemTime) -> String {
    AccountSas {
        account,
        start: iso8601(now.checked_sub(CLOCK_SKEW).unwrap_or(now)),
        expiry: iso8601(now + LIFETIME),
        protocol: if https_only { "https" } else { "https,http" },
    }
    .query(key)
}

/// Decodes a base64 account key; the error never repeats the key.
pub(crate) fn decode_key(key: &str) -> Result<Vec<u8>, &'static str> {
    match base64::decode(key.trim()) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        Ok(_) => Err("the account key is empty"),
        Err(_) => Err("the account key is not base64 (copy key1 or key2 of the storage account)"),
    }
}

/// `YYYY-MM-DDThh:mm:ssZ` in UTC, the form SAS times take.
fn iso8601(at: SystemTime) -> String {
    let seconds = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let at = OffsetDateTime::from_unix_timestamp(i64::try_from(seconds).unwrap_or(0))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters: base64's `+`, `/` and `=`
/// and the times' `:` must not be read as query syntax.
fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Azurite's well-known development key (public, in Azurite's and Microsoft's docs).
    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    /// Signatures computed apart from this code (Python's `hmac` over the string to sign written
    /// out from Microsoft's documented format), so a mistake here cannot agree with itself.
    #[test]
    fn account_sas_matches_independently_computed_vectors() {
        let cases: &[(AccountSas, &str, &str)] = &[
            (
                AccountSas {
                    account: "devstoreaccount1",
                    start: "2026-12-01T10:00:00Z".into(),
                    expiry: "2026-12-01T11:00:00Z".into(),
                    protocol: "https,http",
                },
                "devstoreaccount1\nrwdlac\nb\nco\n2026-12-01T10:00:00Z\n2026-12-01T11:00:00Z\n\nhttps,http\n2025-11-05\n\n",
                "sv=2025-11-05&ss=b&srt=co&sp=rwdlac&st=2026-12-01T10%3A00%3A00Z&se=2026-12-01T11%3A00%3A00Z&spr=https%2Chttp&sig=NKqOdmV2ZwDBwnPvY5FXqdpFvsMVdtbP60t8hKjTxYI%3D",
            ),
            (
                AccountSas {
                    account: "myaccount",
                    start: "2026-01-31T23:55:00Z".into(),
                    expiry: "2026-02-01T01:00:00Z".into(),
                    protocol: "https",
                },
                "myaccount\nrwdlac\nb\nco\n2026-01-31T23:55:00Z\n2026-02-01T01:00:00Z\n\nhttps\n2025-11-05\n\n",
                "sv=2025-11-05&ss=b&srt=co&sp=rwdlac&st=2026-01-31T23%3A55%3A00Z&se=2026-02-01T01%3A00%3A00Z&spr=https&sig=wlaeftrjpwO%2Fl9ONGoNCCgaMLzjr0%2FV48QxGEhs%2Byfc%3D",
            ),
        ];
        let key = decode_key(KEY).unwrap();
        for (sas, string_to_sign, query) in cases {
            assert_eq!(sas.string_to_sign(), *string_to_sign, "{}", sas.account);
            assert_eq!(sas.query(&key), *query, "{}", sas.account);
        }
    }

    #[test]
    fn signed_sas_starts_early_and_lasts_an_hour() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_119_200); // 2026-12-01T10:00:00Z
        let cases: &[(bool, &str)] = &[(true, "spr=https&"), (false, "spr=https%2Chttp&")];
        for (https_only, protocol) in cases {
            let query = sign("acct", b"key", *https_only, now);
            assert!(query.contains("&st=2026-12-01T09%3A55%3A00Z&"), "{query}");
            assert!(query.contains("&se=2026-12-01T11%3A00%3A00Z&"), "{query}");
            assert!(query.contains(protocol), "{query}");
        }
    }

    #[test]
    fn times_are_utc_seconds() {
        let cases: &[(u64, &str)] = &[
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_796_119_200, "2026-12-01T10:00:00Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
        ];
        for (seconds, want) in cases {
            let at = UNIX_EPOCH + Duration::from_secs(*seconds) + Duration::from_millis(999);
            assert_eq!(iso8601(at), *want);
        }
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("not base64!", "not base64"),
            ("c2VjcmV0", ""),
        ];
        for (key, want) in cases {
            match decode_key(key) {
                Ok(bytes) => assert!(want.is_empty() && !bytes.is_empty(), "{key}"),
                Err(message) => {
                    assert!(
                        !want.is_empty() && message.contains(want),
                        "{key}: {message}"
                    );
                    assert!(key.is_empty() || !message.contains(key), "{message}");
                }
            }
        }
    }
}
