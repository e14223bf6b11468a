//! Which machine a node runs on, as other nodes need to know it: an identity that tells two
//! nodes on one machine (and one network) from nodes elsewhere, and the address peers reach it
//! at.
use std::net::{IpAddr, Ipv4Addr, UdpSocket};

/// This machine and network namespace: `/etc/machine-id` and the namespace's inode. Nodes with
/// the same identity reach each other over loopback and share a file system; others do not.
pub fn identity() -> String {
    // Fixed for the process's life; liveness checks ask for it on every scheduling pass.
    static IDENTITY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IDENTITY.get_or_init(read_identity).clone()
}

fn read_identity() -> String {
    let machine = std::fs::read_to_string("/etc/machine-id")
        .map(|m| m.trim().to_owned())
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default()
        });
    let network = std::fs::read_link("/proc/self/ns/net")
        .map(|p| {
            p.to_string_lossy()
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
        })
        .unwrap_or_default();
    format!("{machine}-{network}")
}

/// The address this machine uses to reach `endpoint` (a URL or a path): the interface peers on
/// the same network reach it at. Loopback for a directory store or a store on this machine.
pub fn address_towards(endpoint: &str) -> IpAddr {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let Some(rest) = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
    else {
        return loopback;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let with_port = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:443")
    };
    // Connecting a UDP socket sends nothing; it only asks the kernel for a route.
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect(with_port.as_str()).map(|()| s))
        .and_then(|s| s.local_addr())
        .map_or(loopback, |a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_stable_key_segments() {
        let id = identity();
        assert_eq!(id, identity());
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')),
            "{id}"
        );
    }

    #[test]
    fn a_local_store_is_reached_over_loopback() {
        assert_eq!(
            address_towards("/var/lib/batchai/store"),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            address_towards("http://127.0.0.1:10000/devstoreaccount1/c"),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
    }
}
