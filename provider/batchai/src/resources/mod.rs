//! Managed resources of the provider.
pub mod cluster;
pub mod file_server;
pub(crate) mod mounts;

use std::time::Duration;

use tfplug::{Diagnostic, Diagnostics, TimeoutDefaults};

use crate::names::Name;

/// Operation limits of resources whose `timeouts` block is not set.
pub(crate) const DEFAULT_TIMEOUTS: TimeoutDefaults = TimeoutDefaults {
    create: Duration::from_secs(30 * 60),
    read: Duration::from_secs(5 * 60),
    update: Duration::from_secs(30 * 60),
    delete: Duration::from_secs(30 * 60),
};

/// The name kept in state, which was validated when it was stored.
pub(crate) fn stored_name(name: Option<&str>) -> Result<Name, Diagnostics> {
    Name::parse(name.unwrap_or_default())
        .map_err(|e| Diagnostic::internal(format!("stored name is invalid: {e}")).into())
}
