//! `arm`: our own thin, typed Azure Resource Manager client, on `azure_core` 1.x's HTTP
//! pipeline. No `azure_mgmt_*` crate: the 0.21 family is unmaintained and its long-running
//! operation polling is broken, and no maintained management crate exists.
//!
//! **What it does.** Typed requests and responses ([`models`]) for the operations the Azure
//! driver needs ([`ops`]: scale sets, VMs, SKUs, usages, subnets, NICs, storage accounts and
//! containers, managed identities, role assignments), over one request loop ([`ArmClient`]):
//!
//! - **Retry** (ours; azure_core's is off because it sleeps a 1200 s `Retry-After` in full):
//!   429 after the wait ARM asks for; 408, 500, 502, 503, 504 and lost connections with
//!   exponential backoff and jitter; 409 only for `AnotherOperationInProgress` (or
//!   `OperationNotAllowed` saying another operation is in progress). At most
//!   `max_retries` times.
//! - **Deadlines.** Every call takes `deadline: Option<tokio::time::Instant>`. A wait that
//!   would pass it fails at once: "throttled (429): ARM asked to wait 1200 s but the
//!   operation's timeout ends in 300 s".
//! - **Cancellation.** Every wait is a tokio sleep and every request a future: dropping a
//!   call's future (Terraform's Stop) stops it with nothing more sent. No thread ever sleeps.
//! - **Throttling headroom.** When `x-ms-ratelimit-remaining-resource` falls below
//!   `ratelimit_low_water`, the next mutation waits `ratelimit_pause` first.
//! - **One mutation per resource.** Scale set and VM mutations hold a per-resource async lock
//!   for their whole run, polls included.
//! - **Long-running operations** by ARM's rules ([`lro`]).
//! - **Errors** ([`ArmError`]) carry the operation, status, ARM's code, message, target and
//!   details, and the correlation ID: `PUT virtualMachineScaleSets/gpu: 409 AllocationFailed:
//!   … (target sku.name; correlation id …)`.
//! - **Request counting** ([`RequestLog`]): every request sent, with method, path and status.
//! - **Auth**: our bearer policy (token cached until 5 minutes before expiry, `https` only
//!   unless the test-only `allow_http`), and an optional extra trusted CA for the simulator.
//!
//! Synchronous callers use [`blocking::block_on`].
mod auth;
pub mod blocking;
mod client;
mod error;
mod id;
pub mod lro;
pub mod models;
pub mod ops;
pub mod retry;
#[cfg(feature = "spector")]
pub mod spector;

pub use azure_core::credentials::{AccessToken, TokenCredential};
pub use azure_core::http::{Method, Url};
pub use client::{ArmClient, ArmClientOptions, ArmResponse, RequestLog, RequestRecord};
pub use error::{ArmError, ArmErrorKind, ErrorDetail, Operation};
pub use id::{ResourceId, ResourceIdError};
pub use ops::{RoleAssignmentOutcome, api_version};
pub use tokio::time::Instant;
