//! Plan-time checks of a new cluster's machines on Azure, from what Resource Manager says cheaply:
//! the VM size is offered in the location (resource SKUs), the quota covers the nodes (usages),
//! and the subnet reaches out (the nodes download the agent). Deciding is a pure function of
//! what was read; reading is the driver's, and a read that fails says nothing.
use arm::models::compute::{ResourceSku, Usage};
use arm::models::network::Subnet;

use crate::platform::{MachineCheck, MachineFinding};

/// What the checks find in what was read.
pub fn findings(
    check: &MachineCheck,
    location: &str,
    skus: &[ResourceSku],
    usages: &[Usage],
    subnet: Option<&Subnet>,
) -> Vec<MachineFinding> {
    let mut found = Vec::new();
    let sku = skus.iter().find(|s| {
        s.resource_type.as_deref() == Some("virtualMachines")
            && s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(&check.vm_size))
    });
    let Some(sku) = sku else {
        found.push(MachineFinding {
            error: true,
            attribute: "vm_size",
            summary: "VM size not offered here".to_owned(),
            detail: format!(
                "Azure offers no VM size {} in {location}; `az vm list-skus --location {location} --resource-type virtualMachines` lists those it does",
                check.vm_size
            ),
        });
        return found;
    };
    if let Some(restriction) = sku.location_restriction(location) {
        found.push(MachineFinding {
            error: true,
            attribute: "vm_size",
            summary: "VM size not available to this subscription".to_owned(),
            detail: format!(
                "{} is restricted in {location} for this subscription ({}); pick another size or location, or ask Azure support to lift it",
                check.vm_size,
                restriction.reason_code.as_deref().unwrap_or("NotAvailableForSubscription")
            ),
        });
    }
    let vcpus: i64 = sku
        .capability("vCPUs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let needed = vcpus * i64::from(check.max_nodes);
    if needed > 0 {
        let quota = if check.spot {
            Some("lowPriorityCores".to_owned())
        } else {
            sku.family.clone()
        };
        let usage = quota.as_deref().and_then(|q| {
            usages.iter().find(|u| {
                u.name
                    .value
                    .as_deref()
                    .is_some_and(|v| v.eq_ignore_ascii_case(q))
            })
        });
        if let Some(usage) = usage
            && usage.current_value + needed > usage.limit
        {
            found.push(MachineFinding {
                error: false,
                attribute: "scale_settings",
                summary: "the quota may not cover the nodes".to_owned(),
                detail: format!(
                    "{} node(s) of {} need {needed} vCPUs of the {} quota in {location}, which allows {} with {} in use; nodes beyond it will fail to allocate (raise the quota, or scale down)",
                    check.max_nodes,
                    check.vm_size,
                    usage.name.value.as_deref().unwrap_or_default(),
                    usage.limit,
                    usage.current_value
                ),
            });
        }
    }
    if let Some(properties) = subnet.and_then(|s| s.properties.as_ref())
        && properties.default_outbound_access == Some(false)
        && properties.nat_gateway.is_none()
    {
        found.push(MachineFinding {
            error: false,
            attribute: "subnet_id",
            summary: "the subnet may have no outbound access".to_owned(),
            detail: "the subnet has no default outbound access and no NAT gateway: nodes download the agent from the storage account and reach Resource Manager at boot; give it a NAT gateway, or a service endpoint and a route for both"
                .to_owned(),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sku(name: &str, family: &str, vcpus: &str, restricted_in: Option<&str>) -> ResourceSku {
        serde_json::from_value(serde_json::json!({
            "resourceType": "virtualMachines",
            "name": name,
            "family": family,
            "locations": ["westeurope"],
            "capabilities": [{"name": "vCPUs", "value": vcpus}],
            "restrictions": restricted_in.map(|l| vec![serde_json::json!({
                "type": "Location", "values": [l], "reasonCode": "NotAvailableForSubscription",
                "restrictionInfo": {"locations": [l]}
            })]).unwrap_or_default(),
        }))
        .unwrap()
    }

    fn usage(name: &str, current: i64, limit: i64) -> Usage {
        serde_json::from_value(serde_json::json!({
            "unit": "Count", "currentValue": current, "limit": limit,
            "name": {"value": name, "localizedValue": name}
        }))
        .unwrap()
    }

    fn subnet(outbound: Option<bool>, nat: bool) -> Subnet {
        let mut properties = serde_json::json!({"addressPrefix": "10.0.0.0/24"});
        if let Some(o) = outbound {
            properties["defaultOutboundAccess"] = o.into();
        }
        if nat {
            properties["natGateway"] = serde_json::json!({"id": "/x/natGateways/n"});
        }
        serde_json::from_value(serde_json::json!({"id": "/x/subnets/s", "properties": properties}))
            .unwrap()
    }

    fn check(size: &str, spot: bool, nodes: u32) -> MachineCheck {
        MachineCheck {
            vm_size: size.to_owned(),
            spot,
            max_nodes: nodes,
            subnet_id: Some("/x/subnets/s".to_owned()),
        }
    }

    #[test]
    fn findings_follow_what_azure_says() {
        let skus = [
            sku("Standard_NC6s_v3", "standardNCSv3Family", "6", None),
            sku(
                "Standard_ND96asr_v4",
                "standardNDASv4_A100Family",
                "96",
                Some("westeurope"),
            ),
        ];
        let usages = [
            usage("standardNCSv3Family", 12, 24),
            usage("lowPriorityCores", 0, 100),
        ];
        let open = subnet(Some(true), false);
        let closed = subnet(Some(false), false);
        let natted = subnet(Some(false), true);
        // (check, subnet, [(attribute, error)])
        type Case<'a> = (MachineCheck, &'a Subnet, Vec<(&'static str, bool)>);
        let cases: Vec<Case> = vec![
            (check("Standard_NC6s_v3", false, 2), &open, vec![]),
            (check("standard_nc6s_v3", false, 2), &open, vec![]),
            (
                check("Standard_NC6s_v3", false, 3),
                &open,
                vec![("scale_settings", false)],
            ),
            (check("Standard_NC6s_v3", true, 3), &open, vec![]),
            (
                check("Standard_NC6s_v3", true, 17),
                &open,
                vec![("scale_settings", false)],
            ),
            (
                check("Standard_NC6s_v3", false, 0),
                &closed,
                vec![("subnet_id", false)],
            ),
            (check("Standard_NC6s_v3", false, 0), &natted, vec![]),
            (
                check("Standard_XYZ", false, 1),
                &closed,
                vec![("vm_size", true)],
            ),
            (
                check("Standard_ND96asr_v4", false, 1),
                &open,
                vec![("vm_size", true)],
            ),
        ];
        for (check, subnet, expected) in cases {
            let got: Vec<(&str, bool)> =
                findings(&check, "westeurope", &skus, &usages, Some(subnet))
                    .iter()
                    .map(|f| (f.attribute, f.error))
                    .collect();
            assert_eq!(got, expected, "{check:?}");
        }
    }

    #[test]
    fn a_quota_finding_says_what_is_needed_and_allowed() {
        let skus = [sku("Standard_NC6s_v3", "standardNCSv3Family", "6", None)];
        let usages = [usage("standardNCSv3Family", 12, 24)];
        let found = findings(
            &check("Standard_NC6s_v3", false, 3),
            "westeurope",
            &skus,
            &usages,
            None,
        );
        assert_eq!(found.len(), 1);
        assert!(found[0].detail.contains("need 18 vCPUs of the standardNCSv3Family quota in westeurope, which allows 24 with 12 in use"), "{}", found[0].detail);
    }
}
