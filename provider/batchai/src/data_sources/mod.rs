//! Data sources of the provider.
pub mod file_server;
