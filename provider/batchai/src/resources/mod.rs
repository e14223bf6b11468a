//! Managed resources of the provider.
pub mod file_server;
