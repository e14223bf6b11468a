//! The typed API resource authors implement: a provider, its resources and data sources, in
//! terms of schemas, [`Value`]s and [`Diagnostics`], never protocol messages.
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;

use crate::diag::{Diagnostic, Diagnostics, Warnings};
use crate::schema::Schema;
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
    pub requires_replace: Vec<crate::diag::AttributePath>,
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

/// The outcome of create or update: with an error and a state, Terraform saves the partial
/// object (tainted after a create), so nothing that exists is forgotten.
#[derive(Debug, Default)]
pub struct ApplyResult {
    pub state: Option<Value>,
    pub private: Vec<u8>,
    pub diagnostics: Diagnostics,
}

impl ApplyResult {
    pub fn ok(state: Value) -> Self {
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
}

/// The current object as read from the platform.
#[derive(Debug)]
pub struct ReadResult {
    pub state: Value,
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

    fn resources(&self) -> Vec<Box<dyn Resource<Self::Client>>>;
    fn data_sources(&self) -> Vec<Box<dyn DataSource<Self::Client>>>;
}

/// A managed resource. Planning is pure; I/O happens in create, read, update, delete and import.
pub trait Resource<C>: Send + Sync {
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
        crate::value::json::from_json(raw, current).map_err(|e| {
            Diagnostic::error(
                "cannot read stored state",
                format!(
                    "the state of this {} does not match its schema: {e}",
                    self.type_name()
                ),
            )
            .into()
        })
    }
}

/// A data source: read-only, evaluated at plan time when its configuration is known.
pub trait DataSource<C>: Send + Sync {
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
