//! ARM resource IDs as a small typed value: parse and format
//! `/subscriptions/{s}/resourceGroups/{rg}/providers/{Namespace}/{type}/{name}[/{type}/{name}…]`.
use std::fmt;
use std::str::FromStr;

/// A resource ID in a resource group: subscription, resource group, provider namespace and the
/// chain of `(type, name)` pairs (`virtualNetworks/v`, then `subnets/s`). Comparisons of IDs
/// are the caller's business: ARM treats them case-insensitively, `PartialEq` here does not.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceId {
    subscription: String,
    resource_group: String,
    namespace: String,
    /// At least one `(type, name)`.
    segments: Vec<(String, String)>,
}

/// Why a string is not a resource ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse resource ID {id:?}: {reason}")]
pub struct ResourceIdError {
    id: String,
    reason: &'static str,
}

impl ResourceId {
    /// A resource directly under a provider: `…/providers/{namespace}/{type}/{name}`.
    pub fn new(
        subscription: impl Into<String>,
        resource_group: impl Into<String>,
        namespace: impl Into<String>,
        resource_type: impl Into<String>,
        name: impl Into<String>,
    ) -> ResourceId {
        ResourceId {
            subscription: subscription.into(),
            resource_group: resource_group.into(),
            namespace: namespace.into(),
            segments: vec![(resource_type.into(), name.into())],
        }
    }

    /// A child resource: `{self}/{type}/{name}`.
    pub fn child(&self, resource_type: impl Into<String>, name: impl Into<String>) -> ResourceId {
        let mut child = self.clone();
        child.segments.push((resource_type.into(), name.into()));
        child
    }

    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    pub fn resource_group(&self) -> &str {
        &self.resource_group
    }

    /// `Microsoft.Network`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The last segment's name (`default` of `…/subnets/default`).
    pub fn name(&self) -> &str {
        self.segments.last().map_or("", |(_, name)| name)
    }

    /// The full type, `Microsoft.Network/virtualNetworks/subnets`.
    pub fn resource_type(&self) -> String {
        let mut out = self.namespace.clone();
        for (kind, _) in &self.segments {
            out.push('/');
            out.push_str(kind);
        }
        out
    }

    /// The `(type, name)` pairs after the namespace.
    pub fn segments(&self) -> &[(String, String)] {
        &self.segments
    }

    /// The parent resource (`…/virtualNetworks/v` of a subnet), `None` for a top-level one.
    pub fn parent(&self) -> Option<ResourceId> {
        (self.segments.len() > 1).then(|| {
            let mut parent = self.clone();
            parent.segments.pop();
            parent
        })
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/subscriptions/{}/resourceGroups/{}/providers/{}",
            self.subscription, self.resource_group, self.namespace
        )?;
        for (kind, name) in &self.segments {
            write!(f, "/{kind}/{name}")?;
        }
        Ok(())
    }
}

impl FromStr for ResourceId {
    type Err = ResourceIdError;

    fn from_str(id: &str) -> Result<ResourceId, ResourceIdError> {
        let fail = |reason| ResourceIdError {
            id: id.to_owned(),
            reason,
        };
        let rest = id
            .strip_prefix('/')
            .ok_or_else(|| fail("it does not start with /"))?;
        let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(fail("it has an empty segment"));
        }
        // subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{type}/{name}…]
        if parts.len() < 8 {
            return Err(fail(
                "it is shorter than /subscriptions/{s}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}",
            ));
        }
        let keyword = |at: usize, want: &str| parts[at].eq_ignore_ascii_case(want);
        if !keyword(0, "subscriptions") {
            return Err(fail("it does not start with /subscriptions/"));
        }
        if !keyword(2, "resourceGroups") {
            return Err(fail("it has no resourceGroups/ after the subscription"));
        }
        if !keyword(4, "providers") {
            return Err(fail("it has no providers/ after the resource group"));
        }
        let pairs = &parts[6..];
        if !pairs.len().is_multiple_of(2) {
            return Err(fail("a resource type has no name after it"));
        }
        Ok(ResourceId {
            subscription: parts[1].to_owned(),
            resource_group: parts[3].to_owned(),
            namespace: parts[5].to_owned(),
            segments: pairs
                .chunks(2)
                .map(|pair| (pair[0].to_owned(), pair[1].to_owned()))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_round_trip_and_expose_their_parts() {
        let subnet = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default";
        let id: ResourceId = subnet.parse().unwrap();
        assert_eq!(id.to_string(), subnet);
        assert_eq!(id.subscription(), "0000");
        assert_eq!(id.resource_group(), "rg");
        assert_eq!(id.namespace(), "Microsoft.Network");
        assert_eq!(id.name(), "default");
        assert_eq!(
            id.resource_type(),
            "Microsoft.Network/virtualNetworks/subnets"
        );
        assert_eq!(
            id.parent().unwrap().to_string(),
            "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet"
        );
        let built = ResourceId::new("0000", "rg", "Microsoft.Network", "virtualNetworks", "vnet")
            .child("subnets", "default");
        assert_eq!(built, id);
        assert_eq!(built.parent().unwrap().parent(), None);
    }

    #[test]
    fn keywords_are_case_insensitive_and_a_trailing_slash_is_fine() {
        let id: ResourceId =
            "/SUBSCRIPTIONS/s/resourcegroups/RG/Providers/Microsoft.Compute/virtualMachines/fs/"
                .parse()
                .unwrap();
        assert_eq!(
            id.to_string(),
            "/subscriptions/s/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/fs"
        );
    }

    #[test]
    fn malformed_ids_are_refused_with_a_reason() {
        let cases = [
            (
                "subscriptions/s/resourceGroups/rg/providers/NS/t/n",
                "does not start with /",
            ),
            ("/subscriptions/s/resourceGroups/rg", "shorter than"),
            (
                "/subscriptions/s/resourceGroups/rg/providers/NS/t/n/child",
                "no name after it",
            ),
            (
                "/subscriptions/s/rg/rg/providers/NS/t/n",
                "no resourceGroups/",
            ),
            (
                "/tenants/s/resourceGroups/rg/providers/NS/t/n",
                "/subscriptions/",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/other/NS/t/n",
                "no providers/",
            ),
            (
                "/subscriptions//resourceGroups/rg/providers/NS/t/n",
                "empty segment",
            ),
        ];
        for (id, reason) in cases {
            let error = id.parse::<ResourceId>().unwrap_err().to_string();
            assert!(error.contains(reason), "{id}: {error}");
        }
    }
}
