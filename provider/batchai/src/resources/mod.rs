//! Managed resources of the provider.
pub mod cluster;
pub mod file_server;
