//! Where the store lives: the container URL (Azure's `https://acct.blob.core.windows.net/c` and
//! Azurite's path-style `http://127.0.0.1:PORT/acct/c`), how keys become blob names, and how a
//! URL is redacted before it reaches a message.
use azure_core::http::Url;

use crate::OpenError;

/// A parsed container URL. It never carries a query: a SAS travels as the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerUrl {
    /// The container URL without a trailing slash.
    pub url: Url,
    pub account: String,
    pub container: String,
}

impl ContainerUrl {
    pub fn parse(text: &str) -> Result<ContainerUrl, OpenError> {
        let invalid = |reason: &str| OpenError::InvalidUrl {
            url: redact(text),
            reason: reason.to_owned(),
        };
        let url = Url::parse(text).map_err(|error| invalid(&error.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be https (or http for Azurite)"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "the container URL must not have a query or fragment: pass a SAS as the credential",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "the container URL must not carry a user or password",
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| invalid("the URL has no host"))?;
        let segments: Vec<&str> = url
            .path()
            .split('/')
            .filter(|segment| !segment.is_empty())
            .collect();
        // One path segment: the account is the host's first label (Azure, private endpoints,
        // custom domains). Two: the account is the first segment (Azurite and other emulators).
        let (account, container) = match segments.as_slice() {
            [container] => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                if bare.parse::<std::net::IpAddr>().is_ok() {
                    return Err(invalid(
                        "an IP address needs the account in the path: http://HOST:PORT/ACCOUNT/CONTAINER",
                    ));
                }
                let account = host.split('.').next().unwrap_or_default();
                (account, *container)
            }
            [account, container] => (*account, *container),
            _ => {
                return Err(invalid(
                    "expected https://ACCOUNT.blob.core.windows.net/CONTAINER or http://HOST:PORT/ACCOUNT/CONTAINER",
                ));
            }
        };
        check_account(account).map_err(invalid)?;
        check_container(container).map_err(invalid)?;
        let mut url = url.clone();
        url.set_path(&segments.join("/"));
        Ok(ContainerUrl {
            url,
            account: account.to_owned(),
            container: container.to_owned(),
        })
    }
}

/// Storage account names: 3 to 24 lowercase letters and digits.
fn check_account(account: &str) -> Result<(), &'static str> {
    if (3..=24).contains(&account.len())
        && account
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err("the account name must be 3 to 24 lowercase letters and digits")
    }
}

/// Container names: 3 to 63 lowercase letters, digits and single hyphens, starting and ending
/// with a letter or digit.
fn check_container(container: &str) -> Result<(), &'static str> {
    let bytes = container.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if (3..=63).contains(&bytes.len())
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && !container.contains("--")
    {
        Ok(())
    } else {
        Err(
            "the container name must be 3 to 63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit",
        )
    }
}

const VALUES: &str = "values/";
const LOGS: &str = "logs/";

/// Azure trims dots at the end of a blob name's segments (by design, it says), so `a.` and `a`
/// would be one blob. A segment that ends with `.` gets a `~`, which keys never contain, so the
/// mapping stays one to one.
fn encode(key: &str) -> String {
    let mut name = String::with_capacity(key.len() + 2);
    for (i, segment) in key.split('/').enumerate() {
        if i > 0 {
            name.push('/');
        }
        name.push_str(segment);
        if segment.ends_with('.') {
            name.push('~');
        }
    }
    name
}

/// The blob holding the value of `key` (already validated).
pub(crate) fn value_blob(key: &str) -> String {
    format!("{VALUES}{}", encode(key))
}

/// The append blob holding the log `key` (already validated): a namespace apart from values.
pub(crate) fn log_blob(key: &str) -> String {
    format!("{LOGS}{}", encode(key))
}

/// The blob-name prefix under which every value whose key starts with `prefix` lies: complete
/// segments are encoded, the last partial one is not (its key may go on past the dot).
pub(crate) fn list_prefix(prefix: &str) -> String {
    match prefix.rsplit_once('/') {
        Some((complete, partial)) => format!("{VALUES}{}/{partial}", encode(complete)),
        None => format!("{VALUES}{prefix}"),
    }
}

/// The key of a value blob, or `None` for a blob that no key maps to (left by someone else).
pub(crate) fn value_key(name: &str) -> Option<String> {
    let encoded = name.strip_prefix(VALUES)?;
    let key = encoded
        .split('/')
        .map(|segment| match segment.strip_suffix('~') {
            Some(stem) if stem.ends_with('.') => stem,
            _ => segment,
        })
        .collect::<Vec<_>>()
        .join("/");
    (control::store::validate_key("list", &key).is_ok() && encode(&key) == encoded).then_some(key)
}

/// `text` with the value of every `sig=` query parameter replaced, so that a SAS signature never
/// reaches an error message or a log.
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_ignore_case(rest, "sig=") {
        let (before, after) = rest.split_at(at + 4);
        out.push_str(before);
        out.push_str("REDACTED");
        let end = after
            .find(|c: char| c == '&' || c == '#' || c == ')' || c == '"' || c.is_whitespace())
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `text` with the query cut from every URL in it: the transport's messages quote the whole
/// request URL, whose SAS parameters are noise at best (the signature is also redacted).
pub(crate) fn strip_url_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, url) = rest.split_at(at);
        out.push_str(before);
        let end = url
            .find(|c: char| c == ')' || c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(url.len());
        let (url, after) = url.split_at(end);
        out.push_str(url.split_once('?').map_or(url, |(bare, _)| bare));
        rest = after;
    }
    out.push_str(rest);
    out
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn container_urls_parse_in_both_styles() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "https://acct1.blob.core.windows.net/jobs",
                "acct1",
                "jobs",
                "https://acct1.blob.core.windows.net/jobs",
            ),
            (
                "https://acct1.blob.core.windows.net/jobs/",
                "acct1",
                "jobs",
                "https://acct1.blob.core.windows.net/jobs",
            ),
            (
                "https://acct1.privatelink.blob.core.windows.net/c-1",
                "acct1",
                "c-1",
                "https://acct1.privatelink.blob.core.windows.net/c-1",
            ),
            (
                "http://127.0.0.1:10000/devstoreaccount1/control",
                "devstoreaccount1",
                "control",
                "http://127.0.0.1:10000/devstoreaccount1/control",
            ),
            (
                "http://localhost:10000/devstoreaccount1/control/",
                "devstoreaccount1",
                "control",
                "http://localhost:10000/devstoreaccount1/control",
            ),
        ];
        for (text, account, container, url) in cases {
            let parsed = ContainerUrl::parse(text).unwrap();
            assert_eq!(
                (
                    parsed.account.as_str(),
                    parsed.container.as_str(),
                    parsed.url.as_str()
                ),
                (*account, *container, *url),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_container_urls_say_why() {
        let cases: &[(&str, &str)] = &[
            ("not a url", "relative URL"),
            ("ftp://acct.blob.core.windows.net/c1", "scheme"),
            (
                "https://acct.blob.core.windows.net/c1?sv=1&sig=SECRET",
                "pass a SAS as the credential",
            ),
            ("https://acct.blob.core.windows.net/", "expected https://"),
            (
                "https://acct.blob.core.windows.net/a/b/c",
                "expected https://",
            ),
            ("http://127.0.0.1:10000/control", "an IP address"),
            ("https://user:pw@acct.blob.core.windows.net/c1", "user"),
            ("https://ab.blob.core.windows.net/c11", "account name"),
            ("https://acct.blob.core.windows.net/C1", "container name"),
            ("https://acct.blob.core.windows.net/a--b", "container name"),
            ("https://acct.blob.core.windows.net/-ab", "container name"),
            ("https://acct.blob.core.windows.net/ab", "container name"),
        ];
        for (text, want) in cases {
            let message = ContainerUrl::parse(text).unwrap_err().to_string();
            assert!(message.contains(want), "{text}: {message}");
            assert!(!message.contains("SECRET"), "{message}");
        }
    }

    #[test]
    fn keys_map_to_blob_names_one_to_one() {
        let cases: &[(&str, &str)] = &[
            ("a", "values/a"),
            ("a/b/c", "values/a/b/c"),
            ("a.b", "values/a.b"),
            ("...", "values/...~"),
            ("a./b", "values/a.~/b"),
            ("a/b.", "values/a/b.~"),
            (".hidden", "values/.hidden"),
        ];
        for (key, name) in cases {
            assert_eq!(value_blob(key), *name, "{key}");
            assert_eq!(value_key(name).as_deref(), Some(*key), "{name}");
        }
        assert_eq!(log_blob("a./b"), "logs/a.~/b");
        for foreign in [
            "values/a~",
            "values/a.",
            "values/a b",
            "values/",
            "logs/a",
            "agent/v1",
        ] {
            assert_eq!(value_key(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn list_prefixes_cover_every_matching_key() {
        let keys = ["a", "a.", "a.b", "a./x", "a/b", "ab", "b"];
        for prefix in ["", "a", "a.", "a./", "a/", "a.b", "c"] {
            let blob_prefix = list_prefix(prefix);
            for key in keys {
                if key.starts_with(prefix) {
                    assert!(
                        value_blob(key).starts_with(&blob_prefix),
                        "{key} under {prefix:?} ({blob_prefix})"
                    );
                }
            }
        }
    }

    #[test]
    fn url_queries_are_cut_from_messages() {
        let cases: &[(&str, &str)] = &[
            (
                "error sending request for url (http://h:1/a/b?comp=list&sig=x): refused",
                "error sending request for url (http://h:1/a/b): refused",
            ),
            (
                "see https://h/c?x=1 and http://g/?y",
                "see https://h/c and http://g/",
            ),
            ("no url", "no url"),
        ];
        for (text, want) in cases {
            assert_eq!(strip_url_queries(text), *want);
        }
    }

    #[test]
    fn signatures_are_redacted() {
        let cases: &[(&str, &str)] = &[
            (
                "http://h/c?sv=2025-11-05&sig=abc%2Bdef%3D&se=x",
                "http://h/c?sv=2025-11-05&sig=REDACTED&se=x",
            ),
            (
                "error sending (url: http://h/?SIG=a+b)",
                "error sending (url: http://h/?SIG=REDACTED)",
            ),
            ("sig=a sig=b", "sig=REDACTED sig=REDACTED"),
            ("no secret here", "no secret here"),
            ("ends with sig=", "ends with sig=REDACTED"),
        ];
        for (text, want) in cases {
            assert_eq!(redact(text), *want);
        }
    }
}
