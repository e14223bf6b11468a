//! Protocol-level tests: the real tonic server in process, a gRPC client over a unix socket, and
//! a small test provider, for the edge cases Terraform rarely produces on its own.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tfplug::testing::proto as pb;
use tfplug::testing::{GrpcControllerClient, HealthClient, ProviderClient};
use tfplug::value::{Type, Value, msgpack};
use tfplug::{
    ApplyRequest, ApplyResult, Attribute, Block, BoxFuture, ClientCapabilities, ConfigureRequest,
    Context, Diagnostic, Diagnostics, DynDataSource, DynResource, Function, FunctionError,
    NestedBlock, ObjectNesting, Parameter, Plan, PlanRequest, Provider, ReadResult, Schema,
    Signature,
};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint};

/// A resource whose behaviour is steered by its `name`: `slow` sleeps, `panic` panics,
/// `bad-plan` breaks the plan rules, `bad-apply` breaks the apply rules, `warn` warns in every
/// phase (`warn-only` returns its plan warning as the error side of `modify_plan`).
struct Thing {
    applies: Arc<AtomicUsize>,
}

fn thing_schema() -> Schema {
    Schema::new(
        1,
        Block::new(
            vec![
                Attribute::computed("id", Type::String),
                Attribute::required("name", Type::String).force_new(),
                Attribute::optional("size", Type::Number),
                Attribute::optional("secret_wo", Type::String).write_only(),
                Attribute::computed("info", Type::String).nested(
                    ObjectNesting::Single,
                    vec![Attribute::computed("path", Type::String)],
                ),
            ],
            vec![NestedBlock::optional_single(
                "opts",
                Block::new(vec![Attribute::optional("flag", Type::Bool)], vec![]),
            )],
        ),
    )
}

fn name_of(value: &Value) -> &str {
    value
        .get_attr("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The warning a phase reports for a `warn` object, by phase name.
fn phase_warning(phase: &str) -> Diagnostic {
    Diagnostic::warning(
        format!("{phase} warning"),
        format!("reported during {phase}"),
    )
}

fn set(value: &mut Value, name: &str, v: Value) {
    if let Value::Object(m) = value {
        m.insert(name.to_owned(), v);
    }
}

impl DynResource<()> for Thing {
    fn type_name(&self) -> &'static str {
        "test_thing"
    }

    fn schema(&self) -> Schema {
        thing_schema()
    }

    fn validate(&self, config: &Value, _c: ClientCapabilities) -> Diagnostics {
        if config.get_attr("name").and_then(Value::as_str) == Some("panic-validate") {
            panic!("validation exploded");
        }
        if name_of(config) == "warn" {
            return phase_warning("validate").into();
        }
        Diagnostics::new()
    }

    fn modify_plan(&self, request: &PlanRequest<'_>, plan: &mut Plan) -> Result<(), Diagnostics> {
        match name_of(request.config) {
            "bad-plan" => set(&mut plan.planned, "name", Value::string("changed")),
            "warn" => request.warnings.push(phase_warning("modify_plan")),
            "warn-only" => return Err(phase_warning("modify_plan").into()),
            _ => {}
        }
        Ok(())
    }

    fn check_plan<'a>(
        &'a self,
        _c: &'a (),
        ctx: &'a Context,
        planned: &'a Value,
    ) -> BoxFuture<'a, Diagnostics> {
        Box::pin(async move {
            if name_of(planned) != "warn" {
                return Diagnostics::new();
            }
            ctx.warn(phase_warning("check_plan (context)"));
            phase_warning("check_plan").into()
        })
    }

    fn create<'a>(
        &'a self,
        _c: &'a (),
        ctx: &'a Context,
        r: ApplyRequest<'a>,
    ) -> BoxFuture<'a, ApplyResult> {
        Box::pin(async move {
            self.applies.fetch_add(1, Ordering::SeqCst);
            let name = r
                .planned
                .get_attr("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if name.starts_with("slow-") {
                // Every concurrent apply waits until all ten have started: served one at a
                // time, the first would wait for the others forever (bounded here).
                let all_started = async {
                    while self.applies.load(Ordering::SeqCst) < 10 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                };
                tokio::select! {
                    () = all_started => {}
                    () = tokio::time::sleep(Duration::from_secs(20)) => {
                        return ApplyResult::failed(Diagnostic::error("applies ran one at a time", ""));
                    }
                    () = ctx.stopped() => return ApplyResult::failed(Diagnostic::error("stopped", "")),
                }
            }
            if name == "very-slow" {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            if name == "panic" {
                panic!("create exploded");
            }
            if name == "warn" {
                ctx.warn(phase_warning("create"));
            }
            let mut state = r.planned.clone();
            set(&mut state, "id", Value::string(format!("id-{name}")));
            set(
                &mut state,
                "info",
                Value::Object([("path".to_owned(), Value::string("/x"))].into()),
            );
            if name == "bad-apply" {
                set(&mut state, "size", Value::number(999));
            }
            ApplyResult::ok(state)
        })
    }

    fn read<'a>(
        &'a self,
        _c: &'a (),
        ctx: &'a Context,
        s: &'a Value,
        p: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<ReadResult>, Diagnostics>> {
        Box::pin(async move {
            if name_of(s) == "warn" {
                ctx.warn(phase_warning("read"));
            }
            Ok(Some(ReadResult {
                state: s.clone(),
                private: p.to_vec(),
            }))
        })
    }

    fn delete<'a>(
        &'a self,
        _c: &'a (),
        ctx: &'a Context,
        s: &'a Value,
        _p: &'a [u8],
    ) -> BoxFuture<'a, Result<(), Diagnostics>> {
        Box::pin(async move {
            if name_of(s) == "warn" {
                ctx.warn(phase_warning("delete"));
            }
            Ok(())
        })
    }

    fn import<'a>(
        &'a self,
        _c: &'a (),
        ctx: &'a Context,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Value, Diagnostics>> {
        Box::pin(async move {
            ctx.warn(phase_warning("import"));
            let mut state = thing(Value::string(id), Value::Null);
            set(&mut state, "id", Value::string(id));
            Ok(state)
        })
    }

    fn upgrade(
        &self,
        version: i64,
        raw: &serde_json::Value,
        current: &Type,
    ) -> Result<Value, Diagnostics> {
        // Version 0 called the `size` attribute `capacity`.
        let mut raw = raw.clone();
        if version == 0
            && let Some(obj) = raw.as_object_mut()
        {
            let capacity = obj.remove("capacity").unwrap_or(serde_json::Value::Null);
            obj.insert("size".into(), capacity);
        }
        tfplug::value::json::from_json(&raw, current)
            .map_err(|e| Diagnostic::error("bad state", e.to_string()).into())
    }
}

struct Echo;

impl DynDataSource<()> for Echo {
    fn type_name(&self) -> &'static str {
        "test_echo"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new(
                vec![
                    Attribute::required("input", Type::Number),
                    Attribute::computed("output", Type::Number),
                ],
                vec![],
            ),
        )
    }

    fn read<'a>(
        &'a self,
        _c: &'a (),
        ctx: &'a Context,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<Value, Diagnostics>> {
        Box::pin(async move {
            if config.get_attr("input") == Some(&Value::number(7)) {
                ctx.warn(phase_warning("data source read"));
            }
            let mut out = config.clone();
            let input = config.get_attr("input").cloned().unwrap_or(Value::Null);
            set(&mut out, "output", input);
            Ok(out)
        })
    }
}

struct TestProvider {
    applies: Arc<AtomicUsize>,
}

impl Provider for TestProvider {
    type Client = ();

    fn type_name(&self) -> &'static str {
        "test"
    }

    fn schema(&self) -> Schema {
        Schema::new(0, Block::default())
    }

    fn configure<'a>(&'a self, r: ConfigureRequest<'a>) -> BoxFuture<'a, Result<(), Diagnostics>> {
        if r.terraform_version == "0.0.0-warn" {
            r.warnings.push(phase_warning("configure"));
        }
        Box::pin(async { Ok(()) })
    }

    fn resources(&self) -> Vec<Box<dyn DynResource<()>>> {
        vec![Box::new(Thing {
            applies: self.applies.clone(),
        })]
    }

    fn data_sources(&self) -> Vec<Box<dyn DynDataSource<()>>> {
        vec![Box::new(Echo)]
    }

    fn functions(&self) -> Vec<Box<dyn Function>> {
        vec![Box::new(Repeat)]
    }
}

/// `repeat(text, count)`: `text` `count` times. A negative count is argument 1's error, the
/// text `panic` panics and the text `wrong` returns a number where a string is declared.
struct Repeat;

impl Function for Repeat {
    fn name(&self) -> &'static str {
        "repeat"
    }

    fn signature(&self) -> Signature {
        Signature::new(
            "Repeats a text.",
            vec![
                Parameter::new("text", Type::String, "What to repeat."),
                Parameter::new("count", Type::Number, "How often."),
            ],
            Type::String,
        )
    }

    fn call(&self, arguments: &[Value]) -> Result<Value, FunctionError> {
        let text = arguments[0].as_str().unwrap_or_default();
        let count = arguments[1]
            .as_number()
            .and_then(|n| n.as_i64())
            .unwrap_or(-1);
        match text {
            "panic" => panic!("asked to panic"),
            "wrong" => return Ok(Value::number(1)),
            _ => {}
        }
        let count = usize::try_from(count)
            .map_err(|_| FunctionError::argument(1, format!("count {count} is negative")))?;
        Ok(Value::string(text.repeat(count)))
    }
}

struct Harness {
    client: ProviderClient<Channel>,
    channel: Channel,
    applies: Arc<AtomicUsize>,
    shutdown: Arc<tokio::sync::Notify>,
    _dir: tempfile::TempDir,
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("p.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let applies = Arc::new(AtomicUsize::new(0));
    let shutdown = Arc::new(tokio::sync::Notify::new());
    let router = tfplug::serve::router(
        tfplug::ProviderService::new(TestProvider {
            applies: applies.clone(),
        }),
        shutdown.clone(),
    );
    tokio::spawn(router.serve_with_incoming(UnixListenerStream::new(listener)));
    let channel = Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .unwrap();
    let mut client = ProviderClient::new(channel.clone());
    let response = configure(&mut client, "1.15.5").await;
    assert!(
        response.diagnostics.is_empty(),
        "{:?}",
        response.diagnostics
    );
    Harness {
        client,
        channel,
        applies,
        shutdown,
        _dir: dir,
    }
}

/// `ConfigureProvider` with the test provider's empty configuration, as Terraform `version`.
async fn configure(
    client: &mut ProviderClient<Channel>,
    version: &str,
) -> pb::configure_provider::Response {
    client
        .configure_provider(pb::configure_provider::Request {
            terraform_version: version.into(),
            config: Some(dv(
                &Value::Object(Default::default()),
                &Type::object::<[(&str, Type); 0], &str>([]),
            )),
            client_capabilities: None,
        })
        .await
        .unwrap()
        .into_inner()
}

fn thing_type() -> Type {
    tfplug::server::resource_schema::<()>(&Thing {
        applies: Arc::default(),
    })
    .implied_type()
}

fn dv(value: &Value, ty: &Type) -> pb::DynamicValue {
    pb::DynamicValue {
        msgpack: msgpack::encode(value, ty).unwrap(),
        json: Vec::new(),
    }
}

fn undv(dv: Option<pb::DynamicValue>, ty: &Type) -> Value {
    let dv = dv.unwrap_or_default();
    if dv.msgpack.is_empty() {
        return Value::Null;
    }
    msgpack::decode(&dv.msgpack, ty).unwrap()
}

fn thing(name: Value, size: Value) -> Value {
    Value::Object(
        [
            ("id".to_owned(), Value::Null),
            ("name".to_owned(), name),
            ("size".to_owned(), size),
            ("secret_wo".to_owned(), Value::Null),
            ("info".to_owned(), Value::Null),
            ("opts".to_owned(), Value::Null),
        ]
        .into(),
    )
}

impl Harness {
    async fn plan(&mut self, config: &Value) -> pb::plan_resource_change::Response {
        let ty = thing_type();
        self.client
            .plan_resource_change(pb::plan_resource_change::Request {
                type_name: "test_thing".into(),
                prior_state: Some(dv(&Value::Null, &ty)),
                proposed_new_state: Some(dv(config, &ty)),
                config: Some(dv(config, &ty)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn create(&mut self, config: &Value) -> pb::apply_resource_change::Response {
        let plan = self.plan(config).await;
        assert!(plan.diagnostics.is_empty(), "{:?}", plan.diagnostics);
        let prior = dv(&Value::Null, &thing_type());
        self.apply(prior, plan.planned_state, config, plan.planned_private)
            .await
    }

    /// `ApplyResourceChange` of a `test_thing` from `prior` to `planned` under `config`.
    async fn apply(
        &mut self,
        prior: pb::DynamicValue,
        planned: Option<pb::DynamicValue>,
        config: &Value,
        planned_private: Vec<u8>,
    ) -> pb::apply_resource_change::Response {
        self.client
            .apply_resource_change(pb::apply_resource_change::Request {
                type_name: "test_thing".into(),
                prior_state: Some(prior),
                planned_state: planned,
                config: Some(dv(config, &thing_type())),
                planned_private,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }
}

fn summaries(diags: &[pb::Diagnostic]) -> Vec<String> {
    diags
        .iter()
        .map(|d| format!("{}: {}", d.summary, d.detail))
        .collect()
}

#[tokio::test]
async fn schema_uses_nested_type_without_type_and_sets_capabilities() {
    let mut h = start().await;
    let schema = h
        .client
        .get_provider_schema(pb::get_provider_schema::Request {})
        .await
        .unwrap()
        .into_inner();
    let caps = schema.server_capabilities.unwrap();
    assert!(caps.plan_destroy && caps.get_provider_schema_optional);
    let thing = &schema.resource_schemas["test_thing"];
    assert_eq!(thing.version, 1);
    let block = thing.block.as_ref().unwrap();
    let info = block.attributes.iter().find(|a| a.name == "info").unwrap();
    assert!(info.nested_type.is_some() && info.r#type.is_empty());
    assert!(!block.block_types.iter().any(|b| b.type_name == "timeouts"));
    let functions = h
        .client
        .get_functions(pb::get_functions::Request {})
        .await
        .unwrap()
        .into_inner();
    assert!(functions.diagnostics.is_empty());
    let repeat = &functions.functions["repeat"];
    assert_eq!(repeat.parameters.len(), 2);
    assert_eq!(repeat.parameters[1].name, "count");
    assert_eq!(repeat.parameters[1].r#type, b"\"number\"");
    assert_eq!(repeat.r#return.as_ref().unwrap().r#type, b"\"string\"");
    assert_eq!(repeat.summary, "Repeats a text.");
    assert!(schema.functions.contains_key("repeat"));
    let metadata = h
        .client
        .get_metadata(pb::get_metadata::Request {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = metadata.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["repeat"]);
}

/// `CallFunction` before any `ConfigureProvider`: results, argument-indexed errors, panics and
/// results of the wrong type, and the server keeps serving after each.
#[tokio::test]
async fn functions_are_called_without_configuration() {
    let mut h = start().await;
    let mut call = async |name: &str, args: Vec<Value>| {
        let types = [Type::String, Type::Number, Type::String];
        let arguments = args
            .iter()
            .zip(types.iter())
            .map(|(v, t)| dv(v, t))
            .collect();
        h.client
            .call_function(pb::call_function::Request {
                name: name.to_owned(),
                arguments,
            })
            .await
            .unwrap()
            .into_inner()
    };
    let ok = call("repeat", vec![Value::string("ab"), Value::number(3)]).await;
    assert!(ok.error.is_none(), "{:?}", ok.error);
    assert_eq!(undv(ok.result, &Type::String), Value::string("ababab"));

    let negative = call("repeat", vec![Value::string("ab"), Value::number(-2)]).await;
    let error = negative.error.unwrap();
    assert_eq!(error.function_argument, Some(1));
    assert_eq!(error.text, "count -2 is negative");
    assert!(negative.result.is_none());

    let panicked = call("repeat", vec![Value::string("panic"), Value::number(1)]).await;
    let error = panicked.error.unwrap();
    assert_eq!(error.function_argument, None);
    assert!(error.text.contains("asked to panic"), "{}", error.text);

    let wrong = call("repeat", vec![Value::string("wrong"), Value::number(1)]).await;
    assert!(wrong.error.unwrap().text.contains("does not match"));

    let count = call("repeat", vec![Value::string("ab")]).await;
    assert!(
        count
            .error
            .unwrap()
            .text
            .contains("takes 2 argument(s), got 1")
    );

    // What Terraform never sends, answered as Terraform would: unknown in, unknown out, and a
    // null argument refused.
    let unknown = call("repeat", vec![Value::string("ab"), Value::unknown()]).await;
    assert!(unknown.error.is_none());
    assert!(undv(unknown.result, &Type::String).is_unknown());
    let null = call("repeat", vec![Value::Null, Value::number(1)]).await;
    let error = null.error.unwrap();
    assert_eq!(error.function_argument, Some(0));
    assert!(error.text.contains("must not be null"), "{}", error.text);

    let unknown = call("nope", vec![]).await;
    assert!(unknown.error.unwrap().text.contains("no function \"nope\""));

    let bytes = h
        .client
        .call_function(pb::call_function::Request {
            name: "repeat".to_owned(),
            arguments: vec![
                pb::DynamicValue {
                    msgpack: vec![0xc1],
                    json: Vec::new(),
                },
                dv(&Value::number(1), &Type::Number),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bytes.error.unwrap().function_argument, Some(0));
}

/// Every call of protocol 6.10 is declared; those this crate does not serve yet answer gRPC
/// Unimplemented with the call's name and the reason, streaming calls included.
#[tokio::test]
async fn calls_not_served_answer_unimplemented_with_a_reason() {
    let mut h = start().await;
    let statuses = [
        h.client
            .lock_state(pb::lock_state::Request::default())
            .await
            .unwrap_err(),
        h.client
            .get_states(pb::get_states::Request::default())
            .await
            .unwrap_err(),
        h.client
            .read_state_bytes(pb::read_state_bytes::Request::default())
            .await
            .unwrap_err(),
        h.client
            .write_state_bytes(tokio_stream::iter(vec![
                pb::write_state_bytes::RequestChunk::default(),
            ]))
            .await
            .unwrap_err(),
    ];
    for status in &statuses {
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
        assert!(
            status
                .message()
                .contains("this provider offers no state store"),
            "{status:?}"
        );
    }
    let list = h
        .client
        .list_resource(pb::list_resource::Request::default())
        .await
        .unwrap_err();
    assert_eq!(list.code(), tonic::Code::Unimplemented);
    assert!(list.message().starts_with("ListResource: "), "{list:?}");
    let invoke = h
        .client
        .invoke_action(pb::invoke_action::Request::default())
        .await
        .unwrap_err();
    assert_eq!(invoke.code(), tonic::Code::Unimplemented);
    assert!(invoke.message().contains("no actions"), "{invoke:?}");
    // The server keeps serving after them.
    h.client
        .get_metadata(pb::get_metadata::Request {})
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_values_in_config_plan_as_unknown() {
    let mut h = start().await;
    let ty = thing_type();
    let config = thing(Value::string("a"), Value::unknown());
    let validate = h
        .client
        .validate_resource_config(pb::validate_resource_config::Request {
            type_name: "test_thing".into(),
            config: Some(dv(&config, &ty)),
            client_capabilities: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(validate.diagnostics.is_empty());
    let plan = h.plan(&config).await;
    assert!(
        plan.diagnostics.is_empty(),
        "{:?}",
        summaries(&plan.diagnostics)
    );
    let planned = undv(plan.planned_state, &ty);
    assert!(planned.get_attr("size").unwrap().is_unknown());
    assert!(planned.get_attr("id").unwrap().is_unknown());
    assert!(
        planned.get_attr("opts").unwrap().is_null(),
        "a null block stays null"
    );
}

#[tokio::test]
async fn big_numbers_survive_plan_and_apply() {
    let mut h = start().await;
    let ty = thing_type();
    let big = tfplug::Number::parse("1180591620717411303424").unwrap();
    let applied = h
        .create(&thing(Value::string("big"), Value::Number(big.clone())))
        .await;
    assert!(
        applied.diagnostics.is_empty(),
        "{:?}",
        summaries(&applied.diagnostics)
    );
    let state = undv(applied.new_state, &ty);
    assert_eq!(state.get_attr("size"), Some(&Value::Number(big)));
    assert_eq!(state.get_attr("id").and_then(Value::as_str), Some("id-big"));
}

#[tokio::test]
async fn state_from_an_older_schema_version_is_upgraded() {
    let mut h = start().await;
    let ty = thing_type();
    let raw = serde_json::json!({"id": "x", "name": "old", "capacity": 7, "secret_wo": null, "info": null, "opts": null});
    let response = h
        .client
        .upgrade_resource_state(pb::upgrade_resource_state::Request {
            type_name: "test_thing".into(),
            version: 0,
            raw_state: Some(pb::RawState {
                json: serde_json::to_vec_pretty(&raw).unwrap(),
                flatmap: Default::default(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        response.diagnostics.is_empty(),
        "{:?}",
        summaries(&response.diagnostics)
    );
    let state = undv(response.upgraded_state, &ty);
    assert_eq!(state.get_attr("size"), Some(&Value::number(7)));

    let newer = h
        .client
        .upgrade_resource_state(pb::upgrade_resource_state::Request {
            type_name: "test_thing".into(),
            version: 9,
            raw_state: Some(pb::RawState {
                json: b"{}".to_vec(),
                flatmap: Default::default(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(summaries(&newer.diagnostics)[0].contains("newer provider version"));
}

#[tokio::test]
async fn concurrent_rpcs_run_in_parallel() {
    let h = start().await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let mut client = ProviderClient::new(h.channel.clone());
        tasks.push(tokio::spawn(async move {
            let ty = thing_type();
            let config = thing(Value::string(format!("slow-{i}")), Value::Null);
            let plan = client
                .plan_resource_change(pb::plan_resource_change::Request {
                    type_name: "test_thing".into(),
                    prior_state: Some(dv(&Value::Null, &ty)),
                    proposed_new_state: Some(dv(&config, &ty)),
                    config: Some(dv(&config, &ty)),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            client
                .apply_resource_change(pb::apply_resource_change::Request {
                    type_name: "test_thing".into(),
                    prior_state: Some(dv(&Value::Null, &ty)),
                    planned_state: plan.planned_state,
                    config: Some(dv(&config, &ty)),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.diagnostics.is_empty(), "{:?}", summaries(&r.diagnostics));
    }
    assert_eq!(h.applies.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn stop_provider_interrupts_a_slow_apply() {
    let mut h = start().await;
    let mut stopper = ProviderClient::new(h.channel.clone());
    let stop = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stopper
            .stop_provider(pb::stop_provider::Request {})
            .await
            .unwrap();
    });
    let applied = h
        .create(&thing(Value::string("very-slow"), Value::Null))
        .await;
    stop.await.unwrap();
    let text = summaries(&applied.diagnostics).join("\n");
    assert!(text.contains("operation interrupted"), "{text}");
}

#[tokio::test]
async fn a_panic_becomes_an_internal_error_and_the_server_keeps_serving() {
    let mut h = start().await;
    let applied = h.create(&thing(Value::string("panic"), Value::Null)).await;
    let text = summaries(&applied.diagnostics).join("\n");
    assert!(
        text.contains("internal-error") && text.contains("create exploded"),
        "{text}"
    );
    let ok = h.create(&thing(Value::string("after"), Value::Null)).await;
    assert!(
        ok.diagnostics.is_empty(),
        "{:?}",
        summaries(&ok.diagnostics)
    );
}

#[tokio::test]
async fn plan_and_apply_invariants_are_enforced() {
    let mut h = start().await;
    let plan = h.plan(&thing(Value::string("bad-plan"), Value::Null)).await;
    let text = summaries(&plan.diagnostics).join("\n");
    assert!(text.contains("differs from its configuration"), "{text}");
    assert_eq!(
        plan.diagnostics[0]
            .attribute
            .as_ref()
            .map(|p| p.steps.len()),
        Some(1),
        "the diagnostic points at the attribute"
    );
    let applied = h
        .create(&thing(Value::string("bad-apply"), Value::number(1)))
        .await;
    let text = summaries(&applied.diagnostics).join("\n");
    assert!(text.contains("differs from the planned value"), "{text}");
}

#[tokio::test]
async fn write_only_attributes_need_a_capable_client() {
    let mut h = start().await;
    let ty = thing_type();
    let mut config = thing(Value::string("w"), Value::Null);
    set(&mut config, "secret_wo", Value::string("hunter2"));
    for (allowed, want_error) in [(false, true), (true, false)] {
        let response = h
            .client
            .validate_resource_config(pb::validate_resource_config::Request {
                type_name: "test_thing".into(),
                config: Some(dv(&config, &ty)),
                client_capabilities: Some(pb::ClientCapabilities {
                    deferral_allowed: false,
                    write_only_attributes_allowed: allowed,
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            !response.diagnostics.is_empty(),
            want_error,
            "allowed={allowed}"
        );
    }
    let plan = h.plan(&config).await;
    let planned = undv(plan.planned_state, &ty);
    assert!(
        planned.get_attr("secret_wo").unwrap().is_null(),
        "write-only values are planned null"
    );
}

#[tokio::test]
async fn validation_panics_and_unknown_types_are_diagnostics() {
    let mut h = start().await;
    let ty = thing_type();
    let response = h
        .client
        .validate_resource_config(pb::validate_resource_config::Request {
            type_name: "test_thing".into(),
            config: Some(dv(
                &thing(Value::string("panic-validate"), Value::Null),
                &ty,
            )),
            client_capabilities: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(summaries(&response.diagnostics)[0].contains("internal-error"));
    let unknown = h
        .client
        .validate_resource_config(pb::validate_resource_config::Request {
            type_name: "test_nope".into(),
            config: None,
            client_capabilities: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(summaries(&unknown.diagnostics)[0].contains("unknown resource type"));
    let garbage = h
        .client
        .validate_resource_config(pb::validate_resource_config::Request {
            type_name: "test_thing".into(),
            config: Some(pb::DynamicValue {
                msgpack: vec![0xdd, 0xff, 0xff, 0xff, 0xff],
                json: Vec::new(),
            }),
            client_capabilities: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(summaries(&garbage.diagnostics)[0].contains("cannot decode"));
}

#[tokio::test]
async fn data_source_destroy_plan_health_and_shutdown() {
    let mut h = start().await;
    let ty = Type::object([("input", Type::Number), ("output", Type::Number)]);
    let config = Value::Object(
        [
            ("input".to_owned(), Value::number(42)),
            ("output".to_owned(), Value::Null),
        ]
        .into(),
    );
    let read = h
        .client
        .read_data_source(pb::read_data_source::Request {
            type_name: "test_echo".into(),
            config: Some(dv(&config, &ty)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        undv(read.state, &ty).get_attr("output"),
        Some(&Value::number(42))
    );

    // Destroy plans (plan_destroy) come with null proposed state and config.
    let thing_ty = thing_type();
    let prior = thing(Value::string("gone"), Value::Null);
    let destroy = h
        .client
        .plan_resource_change(pb::plan_resource_change::Request {
            type_name: "test_thing".into(),
            prior_state: Some(dv(&prior, &thing_ty)),
            proposed_new_state: Some(pb::DynamicValue {
                msgpack: vec![0xc0],
                json: vec![],
            }),
            config: Some(pb::DynamicValue {
                msgpack: vec![0xc0],
                json: vec![],
            }),
            prior_private: b"private".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(destroy.diagnostics.is_empty());
    assert_eq!(undv(destroy.planned_state, &thing_ty), Value::Null);
    assert_eq!(destroy.planned_private, b"private");

    let mut health = HealthClient::new(h.channel.clone());
    let status = health
        .check(tfplug::testing::health_proto::HealthCheckRequest {
            service: "plugin".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, 1, "SERVING");

    let notified = h.shutdown.clone();
    let waiter = tokio::spawn(async move { notified.notified().await });
    let mut controller = GrpcControllerClient::new(h.channel.clone());
    controller
        .shutdown(tfplug::testing::plugin_proto::Empty {})
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
}

/// Warnings of a response, by summary.
fn warnings(diags: &[pb::Diagnostic]) -> Vec<String> {
    diags
        .iter()
        .filter(|d| d.severity == pb::diagnostic::Severity::Warning as i32)
        .map(|d| d.summary.clone())
        .collect()
}

#[tokio::test]
async fn warnings_from_every_phase_reach_terraform() {
    let mut h = start().await;
    let ty = thing_type();
    let config = thing(Value::string("warn"), Value::Null);

    let validate = h
        .client
        .validate_resource_config(pb::validate_resource_config::Request {
            type_name: "test_thing".into(),
            config: Some(dv(&config, &ty)),
            client_capabilities: None,
        })
        .await
        .unwrap()
        .into_inner();
    let plan = h.plan(&config).await;
    let plan_only = h
        .plan(&thing(Value::string("warn-only"), Value::Null))
        .await;
    assert!(
        plan_only.planned_state.is_some(),
        "a plan with only warnings stands"
    );
    let apply = h
        .apply(
            dv(&Value::Null, &ty),
            plan.planned_state.clone(),
            &config,
            Vec::new(),
        )
        .await;
    let state = apply.new_state.clone();
    let read = h
        .client
        .read_resource(pb::read_resource::Request {
            type_name: "test_thing".into(),
            current_state: state.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let delete = h
        .apply(
            state.unwrap_or_default(),
            Some(dv(&Value::Null, &ty)),
            &Value::Null,
            Vec::new(),
        )
        .await;
    let import = h
        .client
        .import_resource_state(pb::import_resource_state::Request {
            type_name: "test_thing".into(),
            id: "warn".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let echo_ty = Type::object([("input", Type::Number), ("output", Type::Number)]);
    let data = h
        .client
        .read_data_source(pb::read_data_source::Request {
            type_name: "test_echo".into(),
            config: Some(dv(
                &Value::Object(
                    [
                        ("input".to_owned(), Value::number(7)),
                        ("output".to_owned(), Value::Null),
                    ]
                    .into(),
                ),
                &echo_ty,
            )),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let configure = configure(&mut h.client, "0.0.0-warn").await;

    let table: [(&str, &[pb::Diagnostic], &[&str]); 9] = [
        (
            "ValidateResourceConfig",
            &validate.diagnostics,
            &["validate"],
        ),
        (
            "PlanResourceChange",
            &plan.diagnostics,
            &["modify_plan", "check_plan (context)", "check_plan"],
        ),
        (
            "PlanResourceChange (warnings returned as Err)",
            &plan_only.diagnostics,
            &["modify_plan"],
        ),
        (
            "ApplyResourceChange (create)",
            &apply.diagnostics,
            &["create"],
        ),
        ("ReadResource", &read.diagnostics, &["read"]),
        (
            "ApplyResourceChange (delete)",
            &delete.diagnostics,
            &["delete"],
        ),
        ("ImportResourceState", &import.diagnostics, &["import"]),
        ("ReadDataSource", &data.diagnostics, &["data source read"]),
        ("ConfigureProvider", &configure.diagnostics, &["configure"]),
    ];
    for (rpc, diags, phases) in table {
        let want: Vec<String> = phases.iter().map(|p| format!("{p} warning")).collect();
        assert_eq!(warnings(diags), want, "{rpc}: {:?}", summaries(diags));
        assert_eq!(warnings(diags).len(), diags.len(), "{rpc}: only warnings");
    }
    assert!(
        plan.planned_state.is_some() && apply.new_state.is_some(),
        "warnings fail nothing"
    );
    assert_eq!(import.imported_resources.len(), 1);
    assert!(data.state.is_some());
}
