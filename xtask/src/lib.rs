//! The part of the developer tasks that other crates run too: packaging the provider as a
//! registry or a network mirror serves it, and installing a build into the local mirror that
//! Terraform and OpenTofu search without any configuration ([`release`]). The end-to-end tests
//! install through this code, so what they prove is what `cargo xtask install` does.
pub mod release;
