//! The tfplugin6 `Provider` service: decodes requests into [`Value`]s, calls the typed
//! [`Provider`]/[`Resource`] API, enforces plan/apply invariants and turns every problem,
//! panics included, into diagnostics.
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use futures_util::{FutureExt as _, Stream};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::diag::{AttributePath, Diagnostic, Diagnostics, PathStep, Severity, Warnings};
use crate::function::{Function, FunctionError, Signature};
use crate::generated::tfplugin6 as pb;
use crate::plan::{check_apply, check_plan, default_plan};
use crate::resource::{
    ApplyRequest, ClientCapabilities, ConfigureRequest, Context, DynDataSource, DynResource, Plan,
    PlanRequest, Provider, TimeoutDefaults,
};
use crate::schema::{Attribute, AttributeType, Block, Nesting, ObjectNesting, Schema};
use crate::timeouts::{self, Operation};
use crate::value::{Type, Value, json, msgpack};

struct ResourceEntry<C> {
    resource: Box<dyn DynResource<C>>,
    schema: Schema,
    ty: Type,
    timeouts: Option<TimeoutDefaults>,
}

struct DataSourceEntry<C> {
    data_source: Box<dyn DynDataSource<C>>,
    schema: Schema,
    ty: Type,
}

struct FunctionEntry {
    function: Box<dyn Function>,
    signature: Signature,
}

/// Everything the service knows about one provider, built once at start.
pub(crate) struct Inner<P: Provider> {
    provider: P,
    provider_schema: Schema,
    provider_type: Type,
    resources: BTreeMap<String, ResourceEntry<P::Client>>,
    data_sources: BTreeMap<String, DataSourceEntry<P::Client>>,
    functions: BTreeMap<String, FunctionEntry>,
    /// Replaced on every ConfigureProvider: debug-mode servers are configured once per command.
    client: RwLock<Option<Arc<P::Client>>>,
    stop: watch::Sender<bool>,
}

/// The tfplugin6 service for a provider.
pub struct ProviderService<P: Provider> {
    inner: Arc<Inner<P>>,
}

impl<P: Provider> Clone for ProviderService<P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<P: Provider> std::fmt::Debug for ProviderService<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderService")
            .field("provider", &self.inner.provider.type_name())
            .finish_non_exhaustive()
    }
}

/// The full schema of a resource as served, with the framework's `timeouts` block.
pub fn resource_schema<C>(resource: &dyn DynResource<C>) -> Schema {
    let mut schema = resource.schema();
    if let Some(defaults) = resource.timeouts() {
        schema.block.blocks.push(timeouts::block(&defaults));
    }
    schema
}

/// Everything `ValidateResourceConfig` checks: the `timeouts` block, write-only attributes the
/// CLI cannot keep out of state, the schema's declared validators and checks, then the
/// resource's own `validate`. Public so resource tests check exactly what Terraform gets.
pub fn validate_resource_config<C>(
    resource: &dyn DynResource<C>,
    schema: &Schema,
    config: &Value,
    capabilities: ClientCapabilities,
) -> Diagnostics {
    let mut diags = validate_timeouts(config);
    if !capabilities.write_only_attributes_allowed {
        let mut paths = Vec::new();
        set_write_only_paths(&schema.block, config, &AttributePath::root(), &mut paths);
        for path in paths {
            diags.push(
                Diagnostic::error(
                    "write-only attribute needs a newer Terraform",
                    format!(
                        "{path} is write-only: its value must never be stored in state, \
                         and this Terraform CLI does not support write-only attributes. \
                         Use Terraform 1.11 or later (or OpenTofu 1.11 or later), or remove {path}"
                    ),
                )
                .at(path),
            );
        }
    }
    diags.extend(crate::validate::validate(&schema.block, config));
    diags.extend(resource.validate(config, capabilities));
    diags
}

impl<P: Provider> ProviderService<P> {
    pub fn new(provider: P) -> Self {
        let provider_schema = provider.schema();
        let provider_type = provider_schema.implied_type();
        let resources = provider
            .resources()
            .into_iter()
            .map(|resource| {
                let schema = resource_schema(resource.as_ref());
                let entry = ResourceEntry {
                    ty: schema.implied_type(),
                    timeouts: resource.timeouts(),
                    schema,
                    resource,
                };
                (entry.resource.type_name().to_owned(), entry)
            })
            .collect();
        let data_sources = provider
            .data_sources()
            .into_iter()
            .map(|data_source| {
                let schema = data_source.schema();
                let entry = DataSourceEntry {
                    ty: schema.implied_type(),
                    schema,
                    data_source,
                };
                (entry.data_source.type_name().to_owned(), entry)
            })
            .collect();
        let functions = provider
            .functions()
            .into_iter()
            .map(|function| {
                let entry = FunctionEntry {
                    signature: function.signature(),
                    function,
                };
                (entry.function.name().to_owned(), entry)
            })
            .collect();
        let (stop, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                provider,
                provider_schema,
                provider_type,
                resources,
                data_sources,
                functions,
                client: RwLock::new(None),
                stop,
            }),
        }
    }

    /// The `GetProviderSchema` response, also used to write `schemas/`.
    pub fn schema_response(&self) -> pb::get_provider_schema::Response {
        let inner = &self.inner;
        pb::get_provider_schema::Response {
            provider: Some(schema_to_proto(&inner.provider_schema)),
            resource_schemas: inner
                .resources
                .iter()
                .map(|(name, e)| (name.clone(), schema_to_proto(&e.schema)))
                .collect(),
            data_source_schemas: inner
                .data_sources
                .iter()
                .map(|(name, e)| (name.clone(), schema_to_proto(&e.schema)))
                .collect(),
            functions: self.function_declarations(),
            server_capabilities: Some(capabilities()),
            ..Default::default()
        }
    }

    /// Every function's declaration, by name, as `GetFunctions` and `GetProviderSchema` serve it.
    fn function_declarations(&self) -> std::collections::HashMap<String, pb::Function> {
        self.inner
            .functions
            .iter()
            .map(|(name, e)| (name.clone(), function_to_proto(&e.signature)))
            .collect()
    }

    /// Runs one `CallFunction`: the argument count, decoding with each parameter's type, the
    /// call (a panic becomes an error), and the result checked against the return type.
    fn call_function(
        &self,
        name: &str,
        arguments: &[pb::DynamicValue],
    ) -> Result<pb::DynamicValue, FunctionError> {
        let entry = self.inner.functions.get(name).ok_or_else(|| {
            FunctionError::general(format!(
                "call function {name}: this provider has no function {name:?}"
            ))
        })?;
        let signature = &entry.signature;
        let fixed = signature.parameters.len();
        if arguments.len() < fixed || (signature.variadic.is_none() && arguments.len() > fixed) {
            return Err(FunctionError::general(format!(
                "call function {name}: it takes {fixed} argument(s), got {}",
                arguments.len()
            )));
        }
        let mut values = Vec::with_capacity(arguments.len());
        for (index, argument) in arguments.iter().enumerate() {
            let Some(parameter) = signature.parameter(index) else {
                return Err(FunctionError::general(format!(
                    "call function {name}: too many arguments"
                )));
            };
            let decoded = decode(
                Some(argument),
                &parameter.ty,
                &format!("argument {:?}", parameter.name),
            )
            .map_err(|d| FunctionError::argument(index, first_text(d)))?;
            // A dynamic parameter's value arrives with its type; the function wants the value.
            let value = match decoded {
                Value::Dynamic(_, inner) => *inner,
                other => other,
            };
            // Terraform keeps these promises itself; a client that does not gets the answer
            // Terraform would give, never a function run on values it did not ask for.
            if !parameter.allow_unknown && !value.is_wholly_known() {
                return encode(&Value::unknown(), &signature.returns, "function result")
                    .map_err(|d| FunctionError::general(first_text(d)));
            }
            if !parameter.allow_null && value.is_null() {
                return Err(FunctionError::argument(
                    index,
                    format!("argument {:?} must not be null", parameter.name),
                ));
            }
            values.push(value);
        }
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| entry.function.call(&values)));
        let result = match called {
            Ok(result) => result?,
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                tracing::error!(function = name, panic = %message, "function panicked");
                return Err(FunctionError::general(format!(
                    "call function {name}: internal error in the provider (a panic: {message}); please report it"
                )));
            }
        };
        encode(&result, &signature.returns, "function result")
            .map_err(|d| FunctionError::general(format!("call function {name}: {}", first_text(d))))
    }

    /// Every schema this provider serves, by kind and name, for validation and documentation.
    pub fn schemas(&self) -> ServedSchemas {
        ServedSchemas {
            provider: self.inner.provider_schema.clone(),
            resources: self
                .inner
                .resources
                .iter()
                .map(|(n, e)| (n.clone(), e.schema.clone()))
                .collect(),
            data_sources: self
                .inner
                .data_sources
                .iter()
                .map(|(n, e)| (n.clone(), e.schema.clone()))
                .collect(),
            functions: self
                .inner
                .functions
                .iter()
                .map(|(n, e)| (n.clone(), e.signature.clone()))
                .collect(),
        }
    }

    fn context(&self, timeout: Option<std::time::Duration>, warnings: &Warnings) -> Context {
        Context::new(self.inner.stop.subscribe(), timeout, warnings.clone())
    }

    fn client(&self) -> Result<Arc<P::Client>, Diagnostics> {
        let guard =
            self.inner.client.read().map_err(|_| {
                Diagnostics::from(Diagnostic::internal("the client lock is poisoned"))
            })?;
        guard.clone().ok_or_else(|| {
            Diagnostic::internal("a resource operation arrived before ConfigureProvider").into()
        })
    }

    fn resource(&self, type_name: &str) -> Result<&ResourceEntry<P::Client>, Diagnostics> {
        self.inner.resources.get(type_name).ok_or_else(|| {
            Diagnostic::error(
                "unknown resource type",
                format!("this provider has no resource type {type_name:?}"),
            )
            .into()
        })
    }

    fn data_source(&self, type_name: &str) -> Result<&DataSourceEntry<P::Client>, Diagnostics> {
        self.inner.data_sources.get(type_name).ok_or_else(|| {
            Diagnostic::error(
                "unknown data source",
                format!("this provider has no data source {type_name:?}"),
            )
            .into()
        })
    }
}

/// The schemas a provider serves, keyed by type name.
#[derive(Debug, Clone)]
pub struct ServedSchemas {
    pub provider: Schema,
    pub resources: BTreeMap<String, Schema>,
    pub data_sources: BTreeMap<String, Schema>,
    pub functions: BTreeMap<String, Signature>,
}

fn capabilities() -> pb::ServerCapabilities {
    pb::ServerCapabilities {
        plan_destroy: true,
        get_provider_schema_optional: true,
        move_resource_state: false,
        generate_resource_config: false,
    }
}

/// Runs a handler so that a panic becomes an `internal-error:` diagnostic and `StopProvider`
/// interrupts it; the process keeps serving either way.
async fn guarded<T, F>(
    stop: &watch::Sender<bool>,
    operation: &str,
    fut: F,
) -> Result<T, Diagnostics>
where
    F: Future<Output = Result<T, Diagnostics>>,
{
    let mut stopped = stop.subscribe();
    let run = AssertUnwindSafe(fut).catch_unwind();
    tokio::pin!(run);
    let outcome = tokio::select! {
        result = &mut run => result,
        () = async { drop(stopped.wait_for(|s| *s).await) } => {
            // Resources see the stop through `Context::stopped` too; give them a moment to
            // wind down and report what they already created before the call is abandoned.
            match tokio::time::timeout(STOP_GRACE, &mut run).await {
                Ok(result) => result,
                Err(_) => return Err(Diagnostic::error(
                    "operation interrupted",
                    format!("{operation} was cancelled because Terraform asked the provider to stop"),
                ).into()),
            }
        }
    };
    outcome.unwrap_or_else(|panic| {
        let message = panic_message(panic.as_ref());
        tracing::error!(operation, panic = %message, "handler panicked");
        Err(Diagnostic::internal(format!("{operation} panicked: {message}")).into())
    })
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// The first diagnostic's words, for a function error, which carries text alone.
fn first_text(diags: Diagnostics) -> String {
    diags
        .into_iter()
        .next()
        .map(|d| {
            if d.detail.is_empty() {
                d.summary
            } else {
                d.detail
            }
        })
        .unwrap_or_default()
}

/// How long a stopped operation may take to return its partial result.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

async fn with_timeout<T>(
    timeout: Option<std::time::Duration>,
    what: String,
    fut: impl Future<Output = Result<T, Diagnostics>>,
) -> Result<T, Diagnostics> {
    match timeout {
        None => fut.await,
        Some(limit) => match tokio::time::timeout(limit, fut).await {
            Ok(result) => result,
            Err(_) => Err(Diagnostic::error(
                "operation timed out",
                format!(
                    "{what} did not finish within {}; raise the limit in the resource's \
                     `timeouts` block if it needs longer",
                    timeouts::format_duration(limit)
                ),
            )
            .into()),
        },
    }
}

fn decode(dv: Option<&pb::DynamicValue>, ty: &Type, what: &str) -> Result<Value, Diagnostics> {
    let result = match dv {
        None => return Ok(Value::Null),
        Some(dv) if !dv.msgpack.is_empty() => msgpack::decode(&dv.msgpack, ty),
        Some(dv) if !dv.json.is_empty() => json::from_json_bytes(&dv.json, ty),
        Some(_) => return Ok(Value::Null),
    };
    result.map_err(|e| Diagnostic::internal(format!("cannot decode the {what}: {e}")).into())
}

fn encode(value: &Value, ty: &Type, what: &str) -> Result<pb::DynamicValue, Diagnostics> {
    value
        .conforms_to(ty)
        .map_err(|e| Diagnostic::internal(format!("the {what} does not match the schema: {e}")))?;
    let bytes = msgpack::encode(value, ty)
        .map_err(|e| Diagnostic::internal(format!("cannot encode the {what}: {e}")))?;
    Ok(pb::DynamicValue {
        msgpack: bytes,
        json: Vec::new(),
    })
}

fn null_value() -> pb::DynamicValue {
    pb::DynamicValue {
        msgpack: vec![0xc0],
        json: Vec::new(),
    }
}

/// The diagnostics of a response: the call's warnings, then what its outcome carries.
fn reported(warnings: &Warnings, outcome: Diagnostics) -> Vec<pb::Diagnostic> {
    let mut diags = warnings.take();
    diags.extend(outcome);
    diags_to_proto(diags)
}

/// Splits a phase's diagnostics: errors stop the operation, warnings go to the response.
fn keep_warnings(warnings: &Warnings, diags: Diagnostics) -> Result<(), Diagnostics> {
    if diags.has_errors() {
        return Err(diags);
    }
    warnings.extend(diags);
    Ok(())
}

fn diags_to_proto(diags: Diagnostics) -> Vec<pb::Diagnostic> {
    diags
        .into_iter()
        .map(|d| pb::Diagnostic {
            severity: match d.severity {
                Severity::Error => pb::diagnostic::Severity::Error as i32,
                Severity::Warning => pb::diagnostic::Severity::Warning as i32,
            },
            summary: d.summary,
            detail: d.detail,
            attribute: d.path.filter(|p| !p.is_root()).map(|p| path_to_proto(&p)),
        })
        .collect()
}

fn path_to_proto(path: &AttributePath) -> pb::AttributePath {
    use pb::attribute_path::{Step, step::Selector};
    pb::AttributePath {
        steps: path
            .0
            .iter()
            .map(|s| Step {
                selector: Some(match s {
                    PathStep::Attribute(n) => Selector::AttributeName(n.clone()),
                    PathStep::Key(k) => Selector::ElementKeyString(k.clone()),
                    PathStep::Index(i) => Selector::ElementKeyInt(*i),
                }),
            })
            .collect(),
    }
}

fn function_to_proto(signature: &Signature) -> pb::Function {
    let parameter = |p: &crate::function::Parameter| pb::function::Parameter {
        name: p.name.clone(),
        r#type: p.ty.to_json_bytes(),
        allow_null_value: p.allow_null,
        allow_unknown_values: p.allow_unknown,
        description: p.description.clone(),
        description_kind: pb::StringKind::Markdown as i32,
    };
    pb::Function {
        parameters: signature.parameters.iter().map(parameter).collect(),
        variadic_parameter: signature.variadic.as_ref().map(parameter),
        r#return: Some(pb::function::Return {
            r#type: signature.returns.to_json_bytes(),
        }),
        summary: signature.summary.clone(),
        description: signature.description.clone(),
        description_kind: pb::StringKind::Markdown as i32,
        deprecation_message: signature.deprecation_message.clone().unwrap_or_default(),
    }
}

fn schema_to_proto(schema: &Schema) -> pb::Schema {
    pb::Schema {
        version: schema.version,
        block: Some(block_to_proto(&schema.block)),
    }
}

fn block_to_proto(block: &Block) -> pb::schema::Block {
    use pb::schema::nested_block::NestingMode;
    pb::schema::Block {
        version: 0,
        attributes: block.attributes.iter().map(attribute_to_proto).collect(),
        block_types: block
            .blocks
            .iter()
            .map(|b| pb::schema::NestedBlock {
                type_name: b.type_name.clone(),
                block: Some(block_to_proto(&b.block)),
                nesting: match b.nesting {
                    Nesting::Single => NestingMode::Single,
                    Nesting::List => NestingMode::List,
                    Nesting::Set => NestingMode::Set,
                    Nesting::Map => NestingMode::Map,
                    Nesting::Group => NestingMode::Group,
                } as i32,
                min_items: b.min_items,
                max_items: b.max_items,
            })
            .collect(),
        description: block.description.clone(),
        description_kind: pb::StringKind::Markdown as i32,
        deprecated: block.deprecated,
        deprecation_message: String::new(),
    }
}

fn attribute_to_proto(a: &Attribute) -> pb::schema::Attribute {
    use pb::schema::object::NestingMode;
    // Nested attributes carry `nested_type` and no `type`: Terraform rejects both at once.
    let (ty, nested_type) = match &a.ty {
        AttributeType::Type(t) => (t.to_json_bytes(), None),
        AttributeType::Nested {
            nesting,
            attributes,
        } => (
            Vec::new(),
            Some(pb::schema::Object {
                attributes: attributes.iter().map(attribute_to_proto).collect(),
                nesting: match nesting {
                    ObjectNesting::Single => NestingMode::Single,
                    ObjectNesting::List => NestingMode::List,
                    ObjectNesting::Set => NestingMode::Set,
                    ObjectNesting::Map => NestingMode::Map,
                } as i32,
                // `min_items` and `max_items` are deprecated and never enforced: left unset.
                ..Default::default()
            }),
        ),
    };
    pb::schema::Attribute {
        name: a.name.clone(),
        r#type: ty,
        nested_type,
        description: a.description.clone(),
        required: a.required,
        optional: a.optional,
        computed: a.computed,
        sensitive: a.sensitive,
        description_kind: pb::StringKind::Markdown as i32,
        deprecated: a.deprecated,
        write_only: a.write_only,
        deprecation_message: String::new(),
    }
}

/// Write-only attributes that are set, for the check against clients that would store them.
fn set_write_only_paths(
    block: &Block,
    value: &Value,
    path: &AttributePath,
    out: &mut Vec<AttributePath>,
) {
    for a in &block.attributes {
        if a.write_only && value.get_attr(&a.name).is_some_and(|v| !v.is_null()) {
            out.push(path.clone().attr(&a.name));
        }
    }
    for b in &block.blocks {
        if let Some(v) = value.get_attr(&b.type_name)
            && matches!(b.nesting, Nesting::Single | Nesting::Group)
            && !v.is_null()
        {
            set_write_only_paths(&b.block, v, &path.clone().attr(&b.type_name), out);
        }
    }
}

fn validate_timeouts(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    let Some(block) = config.get_attr("timeouts") else {
        return diags;
    };
    for op in Operation::ALL {
        if let Some(text) = block.get_attr(op.name()).and_then(Value::as_str)
            && let Err(e) = timeouts::parse_duration(text)
        {
            diags.push(
                Diagnostic::error(
                    "invalid timeout",
                    format!("{e}; write a duration such as \"30s\", \"10m\" or \"1h30m\""),
                )
                .at(AttributePath::attrs(["timeouts", op.name()])),
            );
        }
    }
    diags
}

fn capabilities_from(c: Option<&pb::ClientCapabilities>) -> ClientCapabilities {
    ClientCapabilities {
        write_only_attributes_allowed: c.is_some_and(|c| c.write_only_attributes_allowed),
    }
}

type RpcResult<T> = Result<Response<T>, Status>;

/// The server side of a streaming call: any stream of messages, boxed.
type ServerStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The answer to a call of the protocol this provider does not serve: gRPC Unimplemented, with
/// the reason in words (Terraform shows it if it ever makes the call). ARCHITECTURE.md lists
/// these calls with the same reasons.
fn not_served<T>(call: &str, reason: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!("{call}: {reason}")))
}

const NO_IDENTITY: &str = "this provider declares no resource identities yet";
const NO_MOVE: &str = "no resource of this provider can be moved from another resource type";
const NO_GENERATE: &str =
    "this provider does not generate resource configuration (Terraform derives it from state)";
const NO_EPHEMERAL: &str = "this provider has no ephemeral resources yet";
const NO_LIST: &str = "this provider has no list resources yet";
const NO_STATE_STORE: &str = "this provider offers no state store";
const NO_ACTIONS: &str = "this provider has no actions yet";

#[tonic::async_trait]
impl<P: Provider> pb::provider_server::Provider for ProviderService<P> {
    async fn get_metadata(
        &self,
        _request: Request<pb::get_metadata::Request>,
    ) -> RpcResult<pb::get_metadata::Response> {
        Ok(Response::new(pb::get_metadata::Response {
            server_capabilities: Some(capabilities()),
            diagnostics: Vec::new(),
            data_sources: self
                .inner
                .data_sources
                .keys()
                .map(|n| pb::get_metadata::DataSourceMetadata {
                    type_name: n.clone(),
                })
                .collect(),
            resources: self
                .inner
                .resources
                .keys()
                .map(|n| pb::get_metadata::ResourceMetadata {
                    type_name: n.clone(),
                })
                .collect(),
            functions: self
                .inner
                .functions
                .keys()
                .map(|n| pb::get_metadata::FunctionMetadata { name: n.clone() })
                .collect(),
            ..Default::default()
        }))
    }

    async fn get_provider_schema(
        &self,
        _request: Request<pb::get_provider_schema::Request>,
    ) -> RpcResult<pb::get_provider_schema::Response> {
        Ok(Response::new(self.schema_response()))
    }

    async fn get_functions(
        &self,
        _request: Request<pb::get_functions::Request>,
    ) -> RpcResult<pb::get_functions::Response> {
        Ok(Response::new(pb::get_functions::Response {
            functions: self.function_declarations(),
            diagnostics: Vec::new(),
        }))
    }

    async fn validate_provider_config(
        &self,
        request: Request<pb::validate_provider_config::Request>,
    ) -> RpcResult<pb::validate_provider_config::Response> {
        let req = request.into_inner();
        let result = guarded(&self.inner.stop, "ValidateProviderConfig", async {
            let config = decode(
                req.config.as_ref(),
                &self.inner.provider_type,
                "provider configuration",
            )?;
            let mut diags = crate::validate::validate(&self.inner.provider_schema.block, &config);
            diags.extend(self.inner.provider.validate(&config));
            Ok(diags)
        })
        .await;
        let diags = result.unwrap_or_else(|d| d);
        Ok(Response::new(pb::validate_provider_config::Response {
            diagnostics: diags_to_proto(diags),
        }))
    }

    async fn validate_resource_config(
        &self,
        request: Request<pb::validate_resource_config::Request>,
    ) -> RpcResult<pb::validate_resource_config::Response> {
        let req = request.into_inner();
        let result = guarded(&self.inner.stop, "ValidateResourceConfig", async {
            let entry = self.resource(&req.type_name)?;
            let config = decode(req.config.as_ref(), &entry.ty, "resource configuration")?;
            let capabilities = capabilities_from(req.client_capabilities.as_ref());
            Ok(validate_resource_config(
                entry.resource.as_ref(),
                &entry.schema,
                &config,
                capabilities,
            ))
        })
        .await;
        Ok(Response::new(pb::validate_resource_config::Response {
            diagnostics: diags_to_proto(result.unwrap_or_else(|d| d)),
        }))
    }

    async fn validate_data_resource_config(
        &self,
        request: Request<pb::validate_data_resource_config::Request>,
    ) -> RpcResult<pb::validate_data_resource_config::Response> {
        let req = request.into_inner();
        let result = guarded(&self.inner.stop, "ValidateDataResourceConfig", async {
            let entry = self.data_source(&req.type_name)?;
            let config = decode(req.config.as_ref(), &entry.ty, "data source configuration")?;
            let mut diags = crate::validate::validate(&entry.schema.block, &config);
            diags.extend(entry.data_source.validate(&config));
            Ok(diags)
        })
        .await;
        Ok(Response::new(pb::validate_data_resource_config::Response {
            diagnostics: diags_to_proto(result.unwrap_or_else(|d| d)),
        }))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<pb::upgrade_resource_state::Request>,
    ) -> RpcResult<pb::upgrade_resource_state::Response> {
        let req = request.into_inner();
        let result = guarded(&self.inner.stop, "UpgradeResourceState", async {
            let entry = self.resource(&req.type_name)?;
            if req.version > entry.schema.version {
                return Err(Diagnostic::error(
                    "resource instance managed by newer provider version",
                    format!(
                        "the state of this {} was written by a newer provider (schema version {}, \
                         this provider knows up to {}); upgrade the provider",
                        req.type_name, req.version, entry.schema.version
                    ),
                )
                .into());
            }
            let raw = req.raw_state.unwrap_or_default();
            if raw.json.is_empty() {
                if raw.flatmap.is_empty() {
                    return Ok(Value::Null);
                }
                return Err(Diagnostic::error(
                    "unsupported state format",
                    "this state was written in the pre-0.12 flatmap format, which this provider does not read",
                )
                .into());
            }
            let json: serde_json::Value = serde_json::from_slice(&raw.json).map_err(|e| {
                Diagnostic::internal(format!("the stored state is not valid JSON: {e}"))
            })?;
            let upgraded = entry.resource.upgrade(req.version, &json, &entry.ty)?;
            Ok(crate::plan::with_absent_blocks_empty(
                &entry.schema.block,
                &upgraded,
            ))
        })
        .await;
        let entry_ty = self
            .inner
            .resources
            .get(&req.type_name)
            .map(|e| e.ty.clone());
        let (upgraded_state, diagnostics) = match (result, entry_ty) {
            (Ok(state), Some(ty)) => match encode(&state, &ty, "upgraded state") {
                Ok(dv) => (Some(dv), Diagnostics::new()),
                Err(d) => (None, d),
            },
            (Ok(_), None) => (None, Diagnostics::new()),
            (Err(d), _) => (None, d),
        };
        Ok(Response::new(pb::upgrade_resource_state::Response {
            upgraded_state,
            diagnostics: diags_to_proto(diagnostics),
        }))
    }

    async fn configure_provider(
        &self,
        request: Request<pb::configure_provider::Request>,
    ) -> RpcResult<pb::configure_provider::Response> {
        let req = request.into_inner();
        // A debug-mode server is reused across commands; a stop belongs to the previous one.
        self.inner.stop.send_replace(false);
        let warnings = Warnings::default();
        let result = guarded(&self.inner.stop, "ConfigureProvider", async {
            let config = decode(
                req.config.as_ref(),
                &self.inner.provider_type,
                "provider configuration",
            )?;
            let client = self
                .inner
                .provider
                .configure(ConfigureRequest {
                    config: &config,
                    terraform_version: &req.terraform_version,
                    warnings: warnings.clone(),
                })
                .await?;
            let mut slot = self.inner.client.write().map_err(|_| {
                Diagnostics::from(Diagnostic::internal("the client lock is poisoned"))
            })?;
            *slot = Some(Arc::new(client));
            Ok(())
        })
        .await;
        Ok(Response::new(pb::configure_provider::Response {
            diagnostics: reported(&warnings, result.err().unwrap_or_default()),
        }))
    }

    async fn read_resource(
        &self,
        request: Request<pb::read_resource::Request>,
    ) -> RpcResult<pb::read_resource::Response> {
        let req = request.into_inner();
        let warnings = Warnings::default();
        let result = guarded(&self.inner.stop, "ReadResource", async {
            let entry = self.resource(&req.type_name)?;
            let state = decode(req.current_state.as_ref(), &entry.ty, "current state")?;
            if state.is_null() {
                return Ok((null_value(), req.private.clone()));
            }
            let client = self.client()?;
            let timeout =
                timeouts::configured(&state, Operation::Read).or(entry.timeouts.map(|t| t.read));
            let ctx = self.context(timeout, &warnings);
            let read = with_timeout(
                timeout,
                format!("reading {}", req.type_name),
                entry.resource.read(&client, &ctx, &state, &req.private),
            )
            .await?;
            match read {
                None => Ok((null_value(), Vec::new())),
                Some(read) => {
                    if !read.state.is_wholly_known() {
                        return Err(Diagnostic::internal("read returned unknown values").into());
                    }
                    Ok((encode(&read.state, &entry.ty, "read state")?, read.private))
                }
            }
        })
        .await;
        let response = match result {
            Ok((new_state, private)) => pb::read_resource::Response {
                new_state: Some(new_state),
                private,
                diagnostics: reported(&warnings, Diagnostics::new()),
                ..Default::default()
            },
            Err(d) => pb::read_resource::Response {
                // Keep the object in state: an error is not evidence that it is gone.
                new_state: req.current_state.clone(),
                private: req.private.clone(),
                diagnostics: reported(&warnings, d),
                ..Default::default()
            },
        };
        Ok(Response::new(response))
    }

    async fn plan_resource_change(
        &self,
        request: Request<pb::plan_resource_change::Request>,
    ) -> RpcResult<pb::plan_resource_change::Response> {
        let req = request.into_inner();
        let warnings = Warnings::default();
        let result = guarded(&self.inner.stop, "PlanResourceChange", async {
            let entry = self.resource(&req.type_name)?;
            let prior = decode(req.prior_state.as_ref(), &entry.ty, "prior state")?;
            let proposed = decode(req.proposed_new_state.as_ref(), &entry.ty, "proposed state")?;
            let config = decode(req.config.as_ref(), &entry.ty, "configuration")?;
            if proposed.is_null() {
                return Ok(Plan {
                    planned: Value::Null,
                    requires_replace: Vec::new(),
                    private: req.prior_private.clone(),
                });
            }
            let (planned, requires_replace) =
                default_plan(&entry.schema, &prior, &proposed, &config);
            let mut plan = Plan {
                planned,
                requires_replace,
                private: req.prior_private.clone(),
            };
            let plan_request = PlanRequest {
                prior: &prior,
                config: &config,
                prior_private: &req.prior_private,
                warnings: warnings.clone(),
            };
            // Diagnostics without an error are warnings about a plan that stands.
            if let Err(diags) = entry.resource.modify_plan(&plan_request, &mut plan) {
                keep_warnings(&warnings, diags)?;
            }
            keep_warnings(
                &warnings,
                check_plan(&entry.schema, &prior, &config, &plan.planned),
            )?;
            // Plan-time checks are about what apply will do; a plan that changes nothing does
            // nothing (a referenced object gone since is for refresh to say).
            if !plan.planned.is_null() && plan.planned != prior {
                let client = self.client()?;
                let ctx = self.context(entry.timeouts.map(|t| t.read), &warnings);
                let problems = entry
                    .resource
                    .check_plan(&client, &ctx, &plan.planned)
                    .await;
                keep_warnings(&warnings, problems)?;
            }
            Ok(plan)
        })
        .await;
        let response = match result.and_then(|plan| {
            let ty = &self.resource(&req.type_name)?.ty;
            let planned_state = if plan.planned.is_null() {
                null_value()
            } else {
                encode(&plan.planned, ty, "planned state")?
            };
            Ok(pb::plan_resource_change::Response {
                planned_state: Some(planned_state),
                requires_replace: plan.requires_replace.iter().map(path_to_proto).collect(),
                planned_private: plan.private,
                diagnostics: reported(&warnings, Diagnostics::new()),
                ..Default::default()
            })
        }) {
            Ok(response) => response,
            Err(d) => pb::plan_resource_change::Response {
                diagnostics: reported(&warnings, d),
                ..Default::default()
            },
        };
        Ok(Response::new(response))
    }

    async fn apply_resource_change(
        &self,
        request: Request<pb::apply_resource_change::Request>,
    ) -> RpcResult<pb::apply_resource_change::Response> {
        let req = request.into_inner();
        let warnings = Warnings::default();
        let result = guarded(&self.inner.stop, "ApplyResourceChange", async {
            let entry = self.resource(&req.type_name)?;
            let prior = decode(req.prior_state.as_ref(), &entry.ty, "prior state")?;
            let planned = decode(req.planned_state.as_ref(), &entry.ty, "planned state")?;
            let config = decode(req.config.as_ref(), &entry.ty, "configuration")?;
            let client = self.client()?;
            let type_name = &req.type_name;
            if planned.is_null() {
                let timeout = timeouts::configured(&prior, Operation::Delete)
                    .or(entry.timeouts.map(|t| t.delete));
                let ctx = self.context(timeout, &warnings);
                with_timeout(
                    timeout,
                    format!("deleting {type_name}"),
                    entry
                        .resource
                        .delete(&client, &ctx, &prior, &req.planned_private),
                )
                .await?;
                return Ok((null_value(), Vec::new(), Diagnostics::new()));
            }
            let creating = prior.is_null();
            let (op, default) = if creating {
                (Operation::Create, entry.timeouts.map(|t| t.create))
            } else {
                (Operation::Update, entry.timeouts.map(|t| t.update))
            };
            let timeout = timeouts::configured(&planned, op).or(default);
            let ctx = self.context(timeout, &warnings);
            let apply = ApplyRequest {
                prior: &prior,
                planned: &planned,
                config: &config,
                private: &req.planned_private,
            };
            let fut = async {
                let result = if creating {
                    entry.resource.create(&client, &ctx, apply).await
                } else {
                    entry.resource.update(&client, &ctx, apply).await
                };
                Ok::<_, Diagnostics>(result)
            };
            let what = format!(
                "{} {type_name}",
                if creating { "creating" } else { "updating" }
            );
            let result = with_timeout(timeout, what, fut).await?;
            let mut diagnostics = result.diagnostics;
            let Some(state) = result.state else {
                if !diagnostics.has_errors() {
                    diagnostics.push(Diagnostic::internal(format!(
                        "{type_name} returned neither a state nor an error"
                    )));
                }
                return Err(diagnostics);
            };
            if !diagnostics.has_errors() {
                let violations = check_apply(&planned, &state);
                if violations.has_errors() {
                    return Err(violations);
                }
            }
            let encoded = encode(&state, &entry.ty, "new state")?;
            Ok((encoded, result.private, diagnostics))
        })
        .await;
        let response = match result {
            Ok((new_state, private, diags)) => pb::apply_resource_change::Response {
                new_state: Some(new_state),
                private,
                diagnostics: reported(&warnings, diags),
                ..Default::default()
            },
            Err(d) => pb::apply_resource_change::Response {
                // Without a new state Terraform keeps the prior one, so nothing is forgotten.
                new_state: req.prior_state.clone(),
                private: req.planned_private.clone(),
                diagnostics: reported(&warnings, d),
                ..Default::default()
            },
        };
        Ok(Response::new(response))
    }

    async fn import_resource_state(
        &self,
        request: Request<pb::import_resource_state::Request>,
    ) -> RpcResult<pb::import_resource_state::Response> {
        let req = request.into_inner();
        let warnings = Warnings::default();
        let result = guarded(&self.inner.stop, "ImportResourceState", async {
            let entry = self.resource(&req.type_name)?;
            let client = self.client()?;
            let ctx = self.context(entry.timeouts.map(|t| t.read), &warnings);
            let state = entry.resource.import(&client, &ctx, &req.id).await?;
            encode(&state, &entry.ty, "imported state")
        })
        .await;
        let response = match result {
            Ok(state) => pb::import_resource_state::Response {
                imported_resources: vec![pb::import_resource_state::ImportedResource {
                    type_name: req.type_name.clone(),
                    state: Some(state),
                    ..Default::default()
                }],
                diagnostics: reported(&warnings, Diagnostics::new()),
                ..Default::default()
            },
            Err(d) => pb::import_resource_state::Response {
                diagnostics: reported(&warnings, d),
                ..Default::default()
            },
        };
        Ok(Response::new(response))
    }

    async fn read_data_source(
        &self,
        request: Request<pb::read_data_source::Request>,
    ) -> RpcResult<pb::read_data_source::Response> {
        let req = request.into_inner();
        let warnings = Warnings::default();
        let result = guarded(&self.inner.stop, "ReadDataSource", async {
            let entry = self.data_source(&req.type_name)?;
            let config = decode(req.config.as_ref(), &entry.ty, "data source configuration")?;
            let client = self.client()?;
            let ctx = self.context(None, &warnings);
            let state = entry.data_source.read(&client, &ctx, &config).await?;
            if state.is_null() || !state.is_wholly_known() {
                return Err(Diagnostic::internal(format!(
                    "{} returned a null or partly unknown result",
                    req.type_name
                ))
                .into());
            }
            encode(&state, &entry.ty, "data source state")
        })
        .await;
        let response = match result {
            Ok(state) => pb::read_data_source::Response {
                state: Some(state),
                diagnostics: reported(&warnings, Diagnostics::new()),
                ..Default::default()
            },
            Err(d) => pb::read_data_source::Response {
                diagnostics: reported(&warnings, d),
                ..Default::default()
            },
        };
        Ok(Response::new(response))
    }

    async fn get_resource_identity_schemas(
        &self,
        _request: Request<pb::get_resource_identity_schemas::Request>,
    ) -> RpcResult<pb::get_resource_identity_schemas::Response> {
        not_served("GetResourceIdentitySchemas", NO_IDENTITY)
    }

    async fn upgrade_resource_identity(
        &self,
        _request: Request<pb::upgrade_resource_identity::Request>,
    ) -> RpcResult<pb::upgrade_resource_identity::Response> {
        not_served("UpgradeResourceIdentity", NO_IDENTITY)
    }

    async fn move_resource_state(
        &self,
        _request: Request<pb::move_resource_state::Request>,
    ) -> RpcResult<pb::move_resource_state::Response> {
        not_served("MoveResourceState", NO_MOVE)
    }

    async fn generate_resource_config(
        &self,
        _request: Request<pb::generate_resource_config::Request>,
    ) -> RpcResult<pb::generate_resource_config::Response> {
        not_served("GenerateResourceConfig", NO_GENERATE)
    }

    async fn validate_ephemeral_resource_config(
        &self,
        _request: Request<pb::validate_ephemeral_resource_config::Request>,
    ) -> RpcResult<pb::validate_ephemeral_resource_config::Response> {
        not_served("ValidateEphemeralResourceConfig", NO_EPHEMERAL)
    }

    async fn open_ephemeral_resource(
        &self,
        _request: Request<pb::open_ephemeral_resource::Request>,
    ) -> RpcResult<pb::open_ephemeral_resource::Response> {
        not_served("OpenEphemeralResource", NO_EPHEMERAL)
    }

    async fn renew_ephemeral_resource(
        &self,
        _request: Request<pb::renew_ephemeral_resource::Request>,
    ) -> RpcResult<pb::renew_ephemeral_resource::Response> {
        not_served("RenewEphemeralResource", NO_EPHEMERAL)
    }

    async fn close_ephemeral_resource(
        &self,
        _request: Request<pb::close_ephemeral_resource::Request>,
    ) -> RpcResult<pb::close_ephemeral_resource::Response> {
        not_served("CloseEphemeralResource", NO_EPHEMERAL)
    }

    type ListResourceStream = ServerStream<pb::list_resource::Event>;

    async fn list_resource(
        &self,
        _request: Request<pb::list_resource::Request>,
    ) -> RpcResult<Self::ListResourceStream> {
        not_served("ListResource", NO_LIST)
    }

    async fn validate_list_resource_config(
        &self,
        _request: Request<pb::validate_list_resource_config::Request>,
    ) -> RpcResult<pb::validate_list_resource_config::Response> {
        not_served("ValidateListResourceConfig", NO_LIST)
    }

    async fn call_function(
        &self,
        request: Request<pb::call_function::Request>,
    ) -> RpcResult<pb::call_function::Response> {
        let req = request.into_inner();
        let response = match self.call_function(&req.name, &req.arguments) {
            Ok(result) => pb::call_function::Response {
                result: Some(result),
                error: None,
            },
            Err(e) => pb::call_function::Response {
                result: None,
                error: Some(pb::FunctionError {
                    text: e.text,
                    function_argument: e.argument.and_then(|i| i64::try_from(i).ok()),
                }),
            },
        };
        Ok(Response::new(response))
    }

    async fn validate_state_store_config(
        &self,
        _request: Request<pb::validate_state_store::Request>,
    ) -> RpcResult<pb::validate_state_store::Response> {
        not_served("ValidateStateStoreConfig", NO_STATE_STORE)
    }

    async fn configure_state_store(
        &self,
        _request: Request<pb::configure_state_store::Request>,
    ) -> RpcResult<pb::configure_state_store::Response> {
        not_served("ConfigureStateStore", NO_STATE_STORE)
    }

    type ReadStateBytesStream = ServerStream<pb::read_state_bytes::Response>;

    async fn read_state_bytes(
        &self,
        _request: Request<pb::read_state_bytes::Request>,
    ) -> RpcResult<Self::ReadStateBytesStream> {
        not_served("ReadStateBytes", NO_STATE_STORE)
    }

    async fn write_state_bytes(
        &self,
        _request: Request<tonic::Streaming<pb::write_state_bytes::RequestChunk>>,
    ) -> RpcResult<pb::write_state_bytes::Response> {
        not_served("WriteStateBytes", NO_STATE_STORE)
    }

    async fn lock_state(
        &self,
        _request: Request<pb::lock_state::Request>,
    ) -> RpcResult<pb::lock_state::Response> {
        not_served("LockState", NO_STATE_STORE)
    }

    async fn unlock_state(
        &self,
        _request: Request<pb::unlock_state::Request>,
    ) -> RpcResult<pb::unlock_state::Response> {
        not_served("UnlockState", NO_STATE_STORE)
    }

    async fn get_states(
        &self,
        _request: Request<pb::get_states::Request>,
    ) -> RpcResult<pb::get_states::Response> {
        not_served("GetStates", NO_STATE_STORE)
    }

    async fn delete_state(
        &self,
        _request: Request<pb::delete_state::Request>,
    ) -> RpcResult<pb::delete_state::Response> {
        not_served("DeleteState", NO_STATE_STORE)
    }

    async fn plan_action(
        &self,
        _request: Request<pb::plan_action::Request>,
    ) -> RpcResult<pb::plan_action::Response> {
        not_served("PlanAction", NO_ACTIONS)
    }

    type InvokeActionStream = ServerStream<pb::invoke_action::Event>;

    async fn invoke_action(
        &self,
        _request: Request<pb::invoke_action::Request>,
    ) -> RpcResult<Self::InvokeActionStream> {
        not_served("InvokeAction", NO_ACTIONS)
    }

    async fn validate_action_config(
        &self,
        _request: Request<pb::validate_action_config::Request>,
    ) -> RpcResult<pb::validate_action_config::Response> {
        not_served("ValidateActionConfig", NO_ACTIONS)
    }

    async fn stop_provider(
        &self,
        _request: Request<pb::stop_provider::Request>,
    ) -> RpcResult<pb::stop_provider::Response> {
        tracing::info!("StopProvider: cancelling in-flight operations");
        self.inner.stop.send_replace(true);
        Ok(Response::new(pb::stop_provider::Response::default()))
    }
}
