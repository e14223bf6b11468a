//! The typed API resource authors implement: a provider, its resources and data sources, in
//! terms of typed models ([`Resource`], [`DataSource`]) or, underneath, schemas and [`Value`]s
//! ([`DynResource`], [`DynDataSource`]), never protocol messages.
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;

use crate::diag::{AttributePath, Diagnostic, Diagnostics, Warnings};
use crate::model::{self, Model};
use crate::plan::null_write_only;
use crate::schema::{Block, Nesting, Schema};
use crate::value::{Type, Value};

/// A boxed future, so traits with async operations stay object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Per-call context: cancellation by `StopProvider`, the operation's deadline, and where its
/// warnings go.
#[derive(Debug, Clone)]
pub struct Context {
    stop: Option<watch::Receiver<bool>>,
    /// How long the operation may take, from the resource's `timeouts` block or its default.
    pub timeout: Option<Duration>,
    warnings: Warnings,
}

impl Context {
    pub(crate) fn new(
        stop: watch::Receiver<bool>,
        timeout: Option<Duration>,
        warnings: Warnings,
    ) -> Self {
        Self {
            stop: Some(stop),
            timeout,
            warnings,
        }
    }

    /// A context that is never stopped, for tests and tools.
    pub fn background() -> Self {
        Self {
            stop: None,
            timeout: None,
            warnings: Warnings::default(),
        }
    }

    /// Reports a warning with the operation's response, whether it succeeds or fails.
    pub fn warn(&self, diagnostic: Diagnostic) {
        self.warnings.push(diagnostic);
    }

    /// What was reported through [`Context::warn`] so far (tests and tools).
    pub fn take_warnings(&self) -> Diagnostics {
        self.warnings.take()
    }

    /// True once Terraform asked the provider to stop (Ctrl-C).
    pub fn is_stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Runs `work` until it finishes, the operation's deadline less `margin` passes, or
    /// Terraform asks the provider to stop, whichever comes first. A resource that waits for
    /// something it created uses this so it can still return what exists (a partial state)
    /// instead of being dropped by the framework's own deadline.
    pub async fn bounded<T>(
        &self,
        margin: Duration,
        work: impl Future<Output = T>,
    ) -> Result<T, Interrupted> {
        let budget = self.timeout.map(|t| t.saturating_sub(margin));
        tokio::select! {
            done = work => Ok(done),
            () = async {
                match budget {
                    Some(b) => tokio::time::sleep(b).await,
                    None => std::future::pending().await,
                }
            } => Err(Interrupted::Deadline),
            () = self.stopped() => Err(Interrupted::Stopped),
        }
    }

    /// Resolves when Terraform asks the provider to stop; select on it in long waits.
    pub async fn stopped(&self) {
        match &self.stop {
            Some(rx) => {
                let mut rx = rx.clone();
                // An error means the server is gone, which is as final as a stop.
                let _ = rx.wait_for(|stopped| *stopped).await;
            }
            None => std::future::pending().await,
        }
    }
}

/// Why [`Context::bounded`] gave up on its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// The operation's timeout (less the margin) ran out.
    Deadline,
    /// Terraform asked the provider to stop (Ctrl-C).
    Stopped,
}

/// What `ConfigureProvider` hands the provider.
#[derive(Debug)]
pub struct ConfigureRequest<'a> {
    pub config: &'a Value,
    pub terraform_version: &'a str,
    /// Warnings for the user while configuration still succeeds.
    pub warnings: Warnings,
}

/// What Terraform can do, as it told the provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCapabilities {
    /// Terraform ≥ 1.11 and OpenTofu ≥ 1.11 accept write-only attributes; older CLIs would
    /// store their values in state.
    pub write_only_attributes_allowed: bool,
}

/// Input to `PlanResourceChange` once the framework's default plan has been made.
#[derive(Debug)]
pub struct PlanRequest<'a> {
    /// Null when the object is about to be created.
    pub prior: &'a Value,
    pub config: &'a Value,
    pub prior_private: &'a [u8],
    /// Warnings about this plan; errors are returned from `modify_plan` instead.
    pub warnings: Warnings,
}

/// The planned new state, which attribute changes force replacement, and private data.
#[derive(Debug, Clone)]
pub struct Plan {
    pub planned: Value,
    pub requires_replace: Vec<AttributePath>,
    pub private: Vec<u8>,
}

/// Input to create and update.
#[derive(Debug)]
pub struct ApplyRequest<'a> {
    /// Null on create.
    pub prior: &'a Value,
    pub planned: &'a Value,
    pub config: &'a Value,
    pub private: &'a [u8],
}

/// Input to a typed create or update: the plan as the resource's model.
#[derive(Debug)]
pub struct Apply<'a, M> {
    /// `None` on create.
    pub prior: Option<M>,
    /// What to create or update to: the configuration with declared defaults, write-only
    /// values from the configuration, prior values of unchanged computed attributes, and
    /// `None` for what the plan left unknown.
    pub planned: M,
    pub private: &'a [u8],
}

/// The outcome of create or update: with an error and a state, Terraform saves the partial
/// object (tainted after a create), so nothing that exists is forgotten.
#[derive(Debug)]
pub struct ApplyResult<S = Value> {
    pub state: Option<S>,
    pub private: Vec<u8>,
    pub diagnostics: Diagnostics,
}

impl<S> Default for ApplyResult<S> {
    fn default() -> Self {
        Self {
            state: None,
            private: Vec::new(),
            diagnostics: Diagnostics::new(),
        }
    }
}

impl<S> ApplyResult<S> {
    pub fn ok(state: S) -> Self {
        Self {
            state: Some(state),
            ..Self::default()
        }
    }

    pub fn failed(diagnostics: impl Into<Diagnostics>) -> Self {
        Self {
            diagnostics: diagnostics.into(),
            ..Self::default()
        }
    }

    /// A state that exists despite errors (a job that failed, a wait cut short).
    pub fn partial(state: S, diagnostics: Diagnostics) -> Self {
        Self {
            state: Some(state),
            private: Vec::new(),
            diagnostics,
        }
    }

    /// `Ok` as a saved state, `Err` as a failure without one.
    pub fn from_result(result: Result<S, Diagnostics>) -> Self {
        match result {
            Ok(state) => Self::ok(state),
            Err(d) => Self::failed(d),
        }
    }
}

/// The current object as read from the platform.
#[derive(Debug)]
pub struct ReadResult<S = Value> {
    pub state: S,
    pub private: Vec<u8>,
}

/// Default durations for the operations of a `timeouts` block.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutDefaults {
    pub create: Duration,
    pub read: Duration,
    pub update: Duration,
    pub delete: Duration,
}

/// A Terraform provider: its configuration schema, how it configures its client, and what it
/// offers.
pub trait Provider: Send + Sync + 'static {
    /// What configuration produces and every resource operation receives.
    type Client: Send + Sync + 'static;

    /// The provider's local name, the prefix of its resource types (`batchai`).
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;

    /// Checks configuration without I/O; values may be unknown.
    fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }

    /// Builds the client. Called once per Terraform command (more than once in debug mode).
    fn configure<'a>(
        &'a self,
        request: ConfigureRequest<'a>,
    ) -> BoxFuture<'a, Result<Self::Client, Diagnostics>>;

    fn resources(&self) -> Vec<Box<dyn DynResource<Self::Client>>>;
    fn data_sources(&self) -> Vec<Box<dyn DynDataSource<Self::Client>>>;

    /// Provider-defined functions; pure, so they take nothing from configuration.
    fn functions(&self) -> Vec<Box<dyn crate::function::Function>> {
        Vec::new()
    }
}

/// A managed resource, in terms of its typed model: the schema is the model's (declared with
/// `#[derive(Model)]`), declared validators and defaults are run by the framework, and CRUD
/// receives and returns models. Planning is pure and works on [`Value`]s, which may be unknown;
/// I/O happens in create, read, update, delete and import.
pub trait Resource<C>: Send + Sync + 'static {
    type Model: Model + Clone;

    fn type_name(&self) -> &'static str;

    /// The state schema version; stored state with a lower version goes through `upgrade`.
    fn version(&self) -> i64 {
        0
    }

    /// Default durations of the `timeouts` block the framework adds; none without one.
    fn timeouts(&self) -> Option<TimeoutDefaults> {
        None
    }

    /// Checks beyond the declared ones; values may be unknown.
    fn validate(&self, _config: &Value, _capabilities: ClientCapabilities) -> Diagnostics {
        Diagnostics::new()
    }

    /// Adjusts the framework's default plan; must stay a pure function.
    fn modify_plan(&self, _request: &PlanRequest<'_>, _plan: &mut Plan) -> Result<(), Diagnostics> {
        Ok(())
    }

    /// Read-only checks of a plan against the platform; see [`DynResource::check_plan`].
    fn check_plan<'a>(
        &'a self,
        _client: &'a C,
        _ctx: &'a Context,
        _planned: &'a Value,
    ) -> BoxFuture<'a, Diagnostics> {
        Box::pin(async { Diagnostics::new() })
    }

    fn create<'a>(
        &'a self,
        client: &'a C,
        ctx: &'a Context,
        request: Apply<'a, Self::Model>,
    ) -> BoxFuture<'a, ApplyResult<Self::Model>>;

    /// `Ok(None)` means the object no longer exists; Terraform then plans to create it again.
    fn read<'a>(
        &'a self,
        client: &'a C,
        ctx: &'a Context,
        state: Self::Model,
        private: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<ReadResult<Self::Model>>, Diagnostics>>;

    /// Updates in place. The default accepts the plan as is, which suits resources whose only
    /// in-place changes are to provider-side settings such as `timeouts`.
    fn update<'a>(
        &'a self,
        _client: &'a C,
        _ctx: &'a Context,
        request: Apply<'a, Self::Model>,
    ) -> BoxFuture<'a, ApplyResult<Self::Model>> {
        let private = request.private.to_vec();
        Box::pin(async move {
            ApplyResult {
                state: Some(request.planned),
                private,
                diagnostics: Diagnostics::new(),
            }
        })
    }

    fn delete<'a>(
        &'a self,
        client: &'a C,
        ctx: &'a Context,
        state: Self::Model,
        private: &'a [u8],
    ) -> BoxFuture<'a, Result<(), Diagnostics>>;

    /// Builds the state of an existing object from its ID; Terraform reads it right after.
    fn import<'a>(
        &'a self,
        _client: &'a C,
        _ctx: &'a Context,
        _id: &'a str,
    ) -> BoxFuture<'a, Result<Self::Model, Diagnostics>> {
        let name = self.type_name();
        Box::pin(async move {
            Err(
                Diagnostic::error("import not supported", format!("{name} cannot be imported"))
                    .into(),
            )
        })
    }

    /// Upgrades state stored under an older schema version; see [`DynResource::upgrade`].
    fn upgrade(
        &self,
        version: i64,
        raw: &serde_json::Value,
        current: &Type,
    ) -> Result<Value, Diagnostics> {
        let _ = version;
        current_state(self.type_name(), raw, current)
    }
}

/// Stored state read as the current schema.
fn current_state(
    type_name: &str,
    raw: &serde_json::Value,
    current: &Type,
) -> Result<Value, Diagnostics> {
    crate::value::json::from_json(raw, current).map_err(|e| {
        Diagnostic::error(
            "cannot read stored state",
            format!("the state of this {type_name} does not match its schema: {e}"),
        )
        .into()
    })
}

/// Attributes the framework adds to every resource's schema and keeps itself.
const FRAMEWORK_ATTRIBUTES: [&str; 1] = ["timeouts"];

impl<C: Send + Sync + 'static, R: Resource<C>> DynResource<C> for R {
    fn type_name(&self) -> &'static str {
        Resource::type_name(self)
    }

    fn schema(&self) -> Schema {
        Schema::new(self.version(), R::Model::block())
    }

    fn timeouts(&self) -> Option<TimeoutDefaults> {
        Resource::timeouts(self)
    }

    fn validate(&self, config: &Value, capabilities: ClientCapabilities) -> Diagnostics {
        let mut diags = model::check_numbers::<R::Model>(config, &full_type::<C, R>(self));
        diags.extend(Resource::validate(self, config, capabilities));
        diags
    }

    fn modify_plan(&self, request: &PlanRequest<'_>, plan: &mut Plan) -> Result<(), Diagnostics> {
        Resource::modify_plan(self, request, plan)
    }

    fn check_plan<'a>(
        &'a self,
        client: &'a C,
        ctx: &'a Context,
        planned: &'a Value,
    ) -> BoxFuture<'a, Diagnostics> {
        Resource::check_plan(self, client, ctx, planned)
    }

    fn create<'a>(
        &'a self,
        client: &'a C,
        ctx: &'a Context,
        request: ApplyRequest<'a>,
    ) -> BoxFuture<'a, ApplyResult> {
        Box::pin(async move {
            let ty = full_type::<C, R>(self);
            let typed = match typed_apply::<R::Model>(&request, &ty) {
                Ok(t) => t,
                Err(d) => return ApplyResult::failed(d),
            };
            let result = Resource::create(self, client, ctx, typed).await;
            erase_apply(result, request.planned, &ty)
        })
    }

    fn read<'a>(
        &'a self,
        client: &'a C,
        ctx: &'a Context,
        state: &'a Value,
        private: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<ReadResult>, Diagnostics>> {
        Box::pin(async move {
            let ty = full_type::<C, R>(self);
            let model: R::Model = model::decode(state, &ty)?;
            let Some(read) = Resource::read(self, client, ctx, model, private).await? else {
                return Ok(None);
            };
            let mut value = model::encode(&read.state, &ty)?;
            keep_framework_attributes(&mut value, state);
            Ok(Some(ReadResult {
                state: value,
                private: read.private,
            }))
        })
    }

    fn update<'a>(
        &'a self,
        client: &'a C,
        ctx: &'a Context,
        request: ApplyRequest<'a>,
    ) -> BoxFuture<'a, ApplyResult> {
        Box::pin(async move {
            let ty = full_type::<C, R>(self);
            let typed = match typed_apply::<R::Model>(&request, &ty) {
                Ok(t) => t,
                Err(d) => return ApplyResult::failed(d),
            };
            let result = Resource::update(self, client, ctx, typed).await;
            erase_apply(result, request.planned, &ty)
        })
    }

    fn delete<'a>(
        &'a self,
        client: &'a C,
        ctx: &'a Context,
        prior: &'a Value,
        private: &'a [u8],
    ) -> BoxFuture<'a, Result<(), Diagnostics>> {
        Box::pin(async move {
            let model: R::Model = model::decode(prior, &full_type::<C, R>(self))?;
            Resource::delete(self, client, ctx, model, private).await
        })
    }

    fn import<'a>(
        &'a self,
        client: &'a C,
        ctx: &'a Context,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Value, Diagnostics>> {
        Box::pin(async move {
            let model = Resource::import(self, client, ctx, id).await?;
            let ty = full_type::<C, R>(self);
            let value = model::encode(&model, &ty)?;
            Ok(null_write_only(&R::Model::block(), &value))
        })
    }

    fn upgrade(
        &self,
        version: i64,
        raw: &serde_json::Value,
        current: &Type,
    ) -> Result<Value, Diagnostics> {
        Resource::upgrade(self, version, raw, current)
    }
}

/// The type of the served schema, with the framework's `timeouts` block.
fn full_type<C: Send + Sync + 'static, R: Resource<C>>(resource: &R) -> Type {
    crate::server::resource_schema::<C>(resource).implied_type()
}

/// The typed request: the planned value with unknowns as null and write-only values taken
/// from the configuration (plans never hold them).
fn typed_apply<'a, M: Model>(
    request: &ApplyRequest<'a>,
    ty: &Type,
) -> Result<Apply<'a, M>, Diagnostics> {
    let mut planned = request.planned.unknown_as_null();
    with_write_only(&M::block(), &mut planned, request.config);
    let prior = if request.prior.is_null() {
        None
    } else {
        Some(model::decode(request.prior, ty)?)
    };
    Ok(Apply {
        prior,
        planned: model::decode(&planned, ty)?,
        private: request.private,
    })
}

/// The untyped result: the model encoded, write-only values nulled (they never reach state)
/// and the framework's attributes as planned.
fn erase_apply<M: Model>(result: ApplyResult<M>, planned: &Value, ty: &Type) -> ApplyResult {
    let ApplyResult {
        state,
        private,
        mut diagnostics,
    } = result;
    let state = state.and_then(|m| match model::encode(&m, ty) {
        Ok(value) => {
            let mut value = null_write_only(&M::block(), &value);
            keep_framework_attributes(&mut value, planned);
            Some(value)
        }
        Err(d) => {
            diagnostics.extend(d);
            None
        }
    });
    ApplyResult {
        state,
        private,
        diagnostics,
    }
}

fn keep_framework_attributes(value: &mut Value, from: &Value) {
    if let Value::Object(attrs) = value {
        for name in FRAMEWORK_ATTRIBUTES {
            if let Some(v) = from.get_attr(name) {
                attrs.insert(name.to_owned(), v.clone());
            }
        }
    }
}

/// Puts the configuration's write-only values (unknowns as null) into `planned`, at any depth.
fn with_write_only(block: &Block, planned: &mut Value, config: &Value) {
    let Value::Object(attrs) = planned else {
        return;
    };
    for a in block.attributes.iter().filter(|a| a.write_only) {
        if let Some(v) = attrs.get_mut(&a.name) {
            *v = config
                .get_attr(&a.name)
                .map_or(Value::Null, Value::unknown_as_null);
        }
    }
    for b in &block.blocks {
        let (Some(v), Some(c)) = (attrs.get_mut(&b.type_name), config.get_attr(&b.type_name))
        else {
            continue;
        };
        match (b.nesting, v, c) {
            (Nesting::Single | Nesting::Group, v, c) => with_write_only(&b.block, v, c),
            (Nesting::List, Value::List(items), Value::List(cs)) => {
                for (item, c) in items.iter_mut().zip(cs) {
                    with_write_only(&b.block, item, c);
                }
            }
            (Nesting::Map, Value::Map(items), Value::Map(cs)) => {
                for (k, item) in items.iter_mut() {
                    if let Some(c) = cs.get(k) {
                        with_write_only(&b.block, item, c);
                    }
                }
            }
            // Sets cannot hold write-only attributes (the schema's validity rules).
            _ => {}
        }
    }
}

/// A typed data source: the model is the configuration in and the state out.
pub trait DataSource<C>: Send + Sync + 'static {
    type Model: Model;

    fn type_name(&self) -> &'static str;

    /// Checks beyond the declared ones; values may be unknown.
    fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }

    fn read<'a>(
        &'a self,
        client: &'a C,
        ctx: &'a Context,
        config: Self::Model,
    ) -> BoxFuture<'a, Result<Self::Model, Diagnostics>>;
}

impl<C: Send + Sync + 'static, D: DataSource<C>> DynDataSource<C> for D {
    fn type_name(&self) -> &'static str {
        DataSource::type_name(self)
    }

    fn schema(&self) -> Schema {
        Schema::new(0, D::Model::block())
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = model::check_numbers::<D::Model>(config, &D::Model::block().implied_type());
        diags.extend(DataSource::validate(self, config));
        diags
    }

    fn read<'a>(
        &'a self,
        client: &'a C,
        ctx: &'a Context,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<Value, Diagnostics>> {
        Box::pin(async move {
            let ty = D::Model::block().implied_type();
            let model: D::Model = model::decode(config, &ty)?;
            let state = DataSource::read(self, client, ctx, model).await?;
            model::encode(&state, &ty)
        })
    }
}

/// A managed resource in terms of [`Value`]s, as the server calls it; implement [`Resource`]
/// instead unless the resource has no typed model (protocol tests). Planning is pure; I/O
/// happens in create, read, update, delete and import.
pub trait DynResource<C>: Send + Sync {
    fn type_name(&self) -> &'static str;
    /// The schema without the `timeouts` block; the framework adds it when
    /// [`Resource::timeouts`] returns defaults.
    fn schema(&self) -> Schema;

    fn timeouts(&self) -> Option<TimeoutDefaults> {
        None
    }

    /// Checks configuration without I/O; values may be unknown.
    fn validate(&self, _config: &Value, _capabilities: ClientCapabilities) -> Diagnostics {
        Diagnostics::new()
    }

    /// Adjusts the framework's default plan (see [`crate::plan`]); must stay a pure function.
    fn modify_plan(&self, _request: &PlanRequest<'_>, _plan: &mut Plan) -> Result<(), Diagnostics> {
        Ok(())
    }

    /// Read-only checks of a plan against the platform (references to objects that must exist),
    /// so mistakes surface at plan time with the attribute path instead of failing at apply.
    /// Runs after planning; must not change anything.
    fn check_plan<'a>(
        &'a self,
        _client: &'a C,
        _ctx: &'a Context,
        _planned: &'a Value,
    ) -> BoxFuture<'a, Diagnostics> {
        Box::pin(async { Diagnostics::new() })
    }

    fn create<'a>(
        &'a self,
        client: &'a C,
        ctx: &'a Context,
        request: ApplyRequest<'a>,
    ) -> BoxFuture<'a, ApplyResult>;

    /// `Ok(None)` means the object no longer exists; Terraform then plans to create it again.
    fn read<'a>(
        &'a self,
        client: &'a C,
        ctx: &'a Context,
        state: &'a Value,
        private: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<ReadResult>, Diagnostics>>;

    /// Updates in place. The default accepts the plan as is, which suits resources whose only
    /// in-place changes are to provider-side settings such as `timeouts`.
    fn update<'a>(
        &'a self,
        _client: &'a C,
        _ctx: &'a Context,
        request: ApplyRequest<'a>,
    ) -> BoxFuture<'a, ApplyResult> {
        let state = request.planned.clone();
        let private = request.private.to_vec();
        Box::pin(async move {
            ApplyResult {
                state: Some(state),
                private,
                diagnostics: Diagnostics::new(),
            }
        })
    }

    fn delete<'a>(
        &'a self,
        client: &'a C,
        ctx: &'a Context,
        prior: &'a Value,
        private: &'a [u8],
    ) -> BoxFuture<'a, Result<(), Diagnostics>>;

    /// Builds the state of an existing object from its ID; Terraform reads it right after.
    fn import<'a>(
        &'a self,
        _client: &'a C,
        _ctx: &'a Context,
        _id: &'a str,
    ) -> BoxFuture<'a, Result<Value, Diagnostics>> {
        let name = self.type_name();
        Box::pin(async move {
            Err(
                Diagnostic::error("import not supported", format!("{name} cannot be imported"))
                    .into(),
            )
        })
    }

    /// Upgrades state stored under an older schema version (JSON as in the state file) to the
    /// current schema. The default accepts only the current version.
    fn upgrade(
        &self,
        version: i64,
        raw: &serde_json::Value,
        current: &Type,
    ) -> Result<Value, Diagnostics> {
        let _ = version;
        current_state(self.type_name(), raw, current)
    }
}

/// A data source in terms of [`Value`]s: read-only, evaluated at plan time when its
/// configuration is known. Implement [`DataSource`] instead unless it has no typed model.
pub trait DynDataSource<C>: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;

    fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }

    fn read<'a>(
        &'a self,
        client: &'a C,
        ctx: &'a Context,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<Value, Diagnostics>>;
}
