//! Microsoft.Network models (azure-mgmt-network 33.1.0, api-version 2026-03-01): the subnet a
//! cluster joins and the NIC whose private IP the file server is reached at. Read only.
use serde::Deserialize;

use super::{Extra, SubResource};

/// `Subnet`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub properties: Option<SubnetProperties>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `SubnetPropertiesFormat`: what decides whether nodes reach the internet (the bootstrap
/// downloads from storage): a NAT gateway, a route table, and `defaultOutboundAccess`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetProperties {
    #[serde(default)]
    pub address_prefix: Option<String>,
    #[serde(default)]
    pub address_prefixes: Option<Vec<String>>,
    #[serde(default)]
    pub nat_gateway: Option<SubResource>,
    #[serde(default)]
    pub route_table: Option<SubResource>,
    #[serde(default)]
    pub network_security_group: Option<SubResource>,
    /// `false` means no default outbound access (subnets made after 2025 default to it).
    #[serde(default)]
    pub default_outbound_access: Option<bool>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `NetworkInterface`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub properties: Option<NetworkInterfaceProperties>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl NetworkInterface {
    /// The private IP of the primary IP configuration (else the first that has one).
    pub fn primary_private_ip(&self) -> Option<&str> {
        let configs = &self.properties.as_ref()?.ip_configurations;
        configs
            .iter()
            .find(|c| c.properties.as_ref().and_then(|p| p.primary) == Some(true))
            .and_then(NetworkInterfaceIpConfiguration::private_ip)
            .or_else(|| {
                configs
                    .iter()
                    .find_map(NetworkInterfaceIpConfiguration::private_ip)
            })
    }
}

/// `NetworkInterfacePropertiesFormat`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceProperties {
    #[serde(default)]
    pub ip_configurations: Vec<NetworkInterfaceIpConfiguration>,
    #[serde(default)]
    pub virtual_machine: Option<SubResource>,
    #[serde(default)]
    pub primary: Option<bool>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `NetworkInterfaceIPConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceIpConfiguration {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub properties: Option<NetworkInterfaceIpConfigurationProperties>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl NetworkInterfaceIpConfiguration {
    fn private_ip(&self) -> Option<&str> {
        self.properties.as_ref()?.private_ip_address.as_deref()
    }
}

/// `NetworkInterfaceIPConfigurationPropertiesFormat`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceIpConfigurationProperties {
    #[serde(default, rename = "privateIPAddress")]
    pub private_ip_address: Option<String>,
    #[serde(default)]
    pub primary: Option<bool>,
    #[serde(default)]
    pub subnet: Option<SubResource>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}
