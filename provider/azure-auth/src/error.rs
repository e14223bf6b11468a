//! The errors of this crate. None of them carries a secret value: messages name settings and
//! environment variables, never what they hold.

use crate::chain::Considered;
use crate::cloud::CloudError;
use crate::transport::TransportError;

/// Why no credential, or no working one, came out of the settings.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A setting or environment variable is malformed, or a file it names cannot be read.
    #[error("read the azure settings: {0}")]
    Settings(String),
    /// The HTTP client could not be built (the test CA).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The cloud's endpoints could not be found.
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// No method yielded a credential, or the chosen one could not be built or failed its
    /// first token request. Lists every method in azurerm's order with what became of it.
    #[error("authenticate to azure: {0}")]
    Authenticate(Considered),
}
