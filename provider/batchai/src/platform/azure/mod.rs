//! The `azure` platform's driver: clusters are VM scale sets whose instances boot the node agent
//! from the control container ([`bootstrap`]), file servers are VMs with RAID 0 over managed
//! data disks exported over NFS, and the control store is a blob container in the configured
//! storage account.
pub mod bootstrap;
