//! Managed resources of the provider.
pub mod cluster;
pub mod file_server;
pub mod job;
pub(crate) mod mounts;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tfplug::{Diagnostic, Diagnostics, Model, TimeoutDefaults, Value};

use crate::names::Name;

/// The platforms a resource ID may name: its first segment, `<platform>/<kind>/<name>`, says
/// where the resource lives.
pub(crate) const PLATFORMS: [&str; 2] = ["local", "azure"];

/// `(platform, rest)` of an ID `<platform>/<kind>/<rest>` whose platform is a known one.
pub(crate) fn split_id<'a>(id: &'a str, kind: &str) -> Option<(&'a str, &'a str)> {
    let (platform, rest) = id.split_once('/')?;
    let rest = rest.strip_prefix(kind)?.strip_prefix('/')?;
    PLATFORMS.contains(&platform).then_some((platform, rest))
}

/// An ID of another platform than the provider's cannot be imported or referred to: the
/// resource is not where this provider looks.
pub(crate) fn check_platform(id: &str, provider: &str) -> Result<(), Diagnostic> {
    match id.split_once('/') {
        Some((platform, _)) if PLATFORMS.contains(&platform) && platform != provider => {
            Err(Diagnostic::error(
                "ID of another platform",
                format!(
                    "{id:?} names a resource on the {platform} platform, but this provider is \
                     configured for the {provider} platform; use the ID that its state shows \
                     ({provider}/...), or configure the provider for the {platform} platform"
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// Operation limits of resources whose `timeouts` block is not set.
pub(crate) const DEFAULT_TIMEOUTS: TimeoutDefaults = TimeoutDefaults {
    create: Duration::from_secs(30 * 60),
    read: Duration::from_secs(5 * 60),
    update: Duration::from_secs(30 * 60),
    delete: Duration::from_secs(30 * 60),
};

/// One problem the platform reports, as a resource's `errors` attribute lists it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct ErrorModel {
    #[tf(computed)]
    pub code: String,
    #[tf(computed)]
    pub message: String,
    #[tf(computed)]
    pub details: BTreeMap<String, String>,
}

/// The error of an import whose object does not exist on the platform.
pub(crate) fn import_not_found(kind: &str, id: &str, client: &crate::Client) -> Diagnostics {
    Diagnostic::error(
        format!("{kind} not found"),
        format!(
            "import {kind} {id}: no such {kind} on the {} platform",
            client.name()
        ),
    )
    .into()
}

/// The configuration a resource stored with its object (for import), read as its model.
pub(crate) fn stored_configuration<M: serde::de::DeserializeOwned>(
    kind: &str,
    id: &str,
    stored: &serde_json::Value,
) -> Result<M, Diagnostics> {
    serde_json::from_value(stored.clone()).map_err(|e| {
        Diagnostic::internal(format!(
            "import {kind} {id}: stored configuration is unreadable: {e}"
        ))
        .into()
    })
}

/// The name kept in state, which was validated when it was stored.
pub(crate) fn stored_name(name: Option<&str>) -> Result<Name, Diagnostics> {
    Name::parse(name.unwrap_or_default())
        .map_err(|e| Diagnostic::internal(format!("stored name is invalid: {e}")).into())
}

/// A segment unique to one creation, which keeps the logs and outputs of a re-created object
/// apart from its predecessor's.
pub(crate) fn unique_segment() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Milliseconds since the epoch as RFC 3339 (UTC, whole seconds), as Batch AI reported times.
pub(crate) fn rfc3339_ms(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Sets the value at `path` (attribute names) inside an object value.
#[cfg(test)]
pub(crate) fn set_path(value: &mut Value, path: &[&str], new: Value) {
    let Value::Object(attrs) = value else {
        return;
    };
    match path {
        [] => {}
        [last] => {
            attrs.insert((*last).to_owned(), new);
        }
        [first, rest @ ..] => {
            if let Some(inner) = attrs.get_mut(*first) {
                set_path(inner, rest, new);
            }
        }
    }
}

/// The value at `path` (attribute names) inside an object value, if every step exists.
pub(crate) fn value_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, name| v.get_attr(name))
}

/// What `ValidateResourceConfig` reports for `config`, declared checks included, with a CLI
/// that accepts write-only attributes.
#[cfg(test)]
pub(crate) fn validate_all(
    resource: &dyn tfplug::DynResource<crate::Client>,
    config: &Value,
) -> Diagnostics {
    let schema = tfplug::server::resource_schema(resource);
    tfplug::server::validate_resource_config(
        resource,
        &schema,
        config,
        tfplug::ClientCapabilities {
            write_only_attributes_allowed: true,
        },
    )
}
