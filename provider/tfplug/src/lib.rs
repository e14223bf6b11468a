//! The Terraform plugin protocol (tfplugin6) for Rust providers: handshake and AutoMTLS, cty
//! values, schemas, diagnostics, and a typed API for resources. It knows nothing about any
//! particular provider; generated protocol types never leave this crate except through
//! [`testing`].
// The derive names `::tfplug`, which inside this crate is the crate itself.
extern crate self as tfplug;

pub mod diag;
pub mod docs;
pub mod function;
mod generated;
pub mod logging;
pub mod model;
pub mod plan;
pub mod resource;
pub mod schema;
pub mod serve;
pub mod server;
pub mod timeouts;
pub mod tls;
pub mod validate;
pub mod value;

pub use diag::{AttributePath, Diagnostic, Diagnostics, Severity, Warnings};
pub use function::{Function, FunctionError, Parameter, Signature};
pub use model::Model;
pub use resource::{
    Apply, ApplyRequest, ApplyResult, BoxFuture, ClientCapabilities, ConfigureRequest, Context,
    DataSource, DynDataSource, DynResource, Interrupted, Plan, PlanRequest, Provider, ReadResult,
    Resource, TimeoutDefaults,
};
pub use schema::{Attribute, Block, NestedBlock, Nesting, ObjectNesting, Schema};
pub use serve::{Mode, ServeOptions, serve};
pub use server::ProviderService;
pub use validate::{BlockCheck, Validator};
pub use value::{Number, Type, Value};

/// Protocol messages and a gRPC client, for in-process protocol tests of providers built on
/// this crate. Not for resource code.
pub mod testing {
    pub use crate::generated::health as health_proto;
    pub use crate::generated::health::health_client::HealthClient;
    pub use crate::generated::plugin as plugin_proto;
    pub use crate::generated::plugin::grpc_controller_client::GrpcControllerClient;
    pub use crate::generated::tfplugin6 as proto;
    pub use crate::generated::tfplugin6::provider_client::ProviderClient;
}
