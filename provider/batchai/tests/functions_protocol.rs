//! The provider's functions over the protocol: the real tonic server in process on a loopback
//! port, a gRPC client, and no `ConfigureProvider` (Terraform may call functions before it).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use tfplug::testing::ProviderClient;
use tfplug::testing::proto as pb;
use tfplug::value::{Type, Value, msgpack};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;

async fn client() -> ProviderClient<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = tfplug::serve::router(
        tfplug::ProviderService::new(batchai::BatchAi),
        Arc::new(tokio::sync::Notify::new()),
    );
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    ProviderClient::connect(format!("http://{address}"))
        .await
        .unwrap()
}

fn dv(value: &Value, ty: &Type) -> pb::DynamicValue {
    pb::DynamicValue {
        msgpack: msgpack::encode(value, ty).unwrap(),
        json: Vec::new(),
    }
}

fn string(text: &str) -> pb::DynamicValue {
    dv(&Value::string(text), &Type::String)
}

/// A string in a `dynamic` slot.
fn dynamic_string(text: &str) -> pb::DynamicValue {
    dv(
        &Value::Dynamic(Type::String, Box::new(Value::string(text))),
        &Type::Dynamic,
    )
}

/// An object in a `dynamic` slot, as Terraform sends the `job` argument.
fn dynamic_object(attrs: Vec<(&str, Value, Type)>) -> pb::DynamicValue {
    let ty = Type::object(attrs.iter().map(|(k, _, t)| (*k, t.clone())));
    let value = Value::Object(
        attrs
            .into_iter()
            .map(|(k, v, _)| (k.to_owned(), v))
            .collect(),
    );
    dv(&Value::Dynamic(ty, Box::new(value)), &Type::Dynamic)
}

async fn call(
    client: &mut ProviderClient<Channel>,
    name: &str,
    arguments: Vec<pb::DynamicValue>,
) -> pb::call_function::Response {
    client
        .call_function(pb::call_function::Request {
            name: name.to_owned(),
            arguments,
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn the_three_functions_are_declared_everywhere_terraform_looks() {
    let mut client = client().await;
    let functions = client
        .get_functions(pb::get_functions::Request {})
        .await
        .unwrap()
        .into_inner();
    let mut names: Vec<&String> = functions.functions.keys().collect();
    names.sort();
    assert_eq!(names, ["job_output_path", "parse_id", "vm_size"]);
    let job_output_path = &functions.functions["job_output_path"];
    assert_eq!(job_output_path.parameters[0].r#type, b"\"dynamic\"");
    assert!(!job_output_path.parameters[0].allow_unknown_values);
    assert!(!job_output_path.summary.is_empty());

    let schema = client
        .get_provider_schema(pb::get_provider_schema::Request {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(schema.functions.len(), 3);
    let metadata = client
        .get_metadata(pb::get_metadata::Request {})
        .await
        .unwrap()
        .into_inner();
    let mut names: Vec<&str> = metadata.functions.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["job_output_path", "parse_id", "vm_size"]);
}

#[tokio::test]
async fn calls_return_values_or_errors_on_the_argument_at_fault() {
    let mut client = client().await;
    let parsed = call(
        &mut client,
        "parse_id",
        vec![string("azure/clusters/gpu/jobs/train")],
    )
    .await;
    assert!(parsed.error.is_none(), "{:?}", parsed.error);
    let ty = Type::object(
        [
            "platform",
            "kind",
            "cluster_name",
            "job_name",
            "file_server_name",
        ]
        .map(|k| (k, Type::String)),
    );
    let value = msgpack::decode(&parsed.result.unwrap().msgpack, &ty).unwrap();
    assert_eq!(
        value.get_attr("platform").and_then(Value::as_str),
        Some("azure")
    );
    assert_eq!(
        value.get_attr("job_name").and_then(Value::as_str),
        Some("train")
    );

    let size = call(&mut client, "vm_size", vec![string("Standard_NC24rs_v3")]).await;
    let ty = Type::object([
        ("name", Type::String),
        ("vcpus", Type::Number),
        ("memory_gib", Type::Number),
        ("gpus", Type::Number),
        ("gpu_model", Type::String),
        ("interconnect", Type::String),
    ]);
    let value = msgpack::decode(&size.result.unwrap().msgpack, &ty).unwrap();
    assert_eq!(value.get_attr("gpus"), Some(&Value::number(4)));
    assert_eq!(
        value.get_attr("interconnect").and_then(Value::as_str),
        Some("InfiniBand FDR")
    );

    let job = dynamic_object(vec![
        (
            "job_output_directory_path_segment",
            Value::string("gpu/jobs/train/u1"),
            Type::String,
        ),
        (
            "output_directories",
            Value::List(vec![Value::Object(
                [
                    ("id".to_owned(), Value::string("OUT")),
                    ("path_prefix".to_owned(), Value::string("/out")),
                    ("path_suffix".to_owned(), Value::Null),
                ]
                .into(),
            )]),
            Type::list(Type::object([
                ("id", Type::String),
                ("path_prefix", Type::String),
                ("path_suffix", Type::String),
            ])),
        ),
    ]);
    let path = call(
        &mut client,
        "job_output_path",
        vec![job.clone(), string("OUT")],
    )
    .await;
    assert!(path.error.is_none(), "{:?}", path.error);
    let value = msgpack::decode(&path.result.unwrap().msgpack, &Type::String).unwrap();
    assert_eq!(value, Value::string("/out/gpu/jobs/train/u1"));

    // (function, arguments, argument at fault, words of the error)
    let cases = [
        (
            "parse_id",
            vec![string("gpu")],
            0,
            "is not an ID this provider issues",
        ),
        (
            "vm_size",
            vec![string("Standard_NC6s_v9")],
            0,
            "unknown VM size",
        ),
        (
            "job_output_path",
            vec![
                dynamic_string("local/clusters/gpu/jobs/train"),
                string("OUT"),
            ],
            0,
            "a job ID does not determine output paths",
        ),
        (
            "job_output_path",
            vec![job, string("MODEL")],
            1,
            "has no output directory \"MODEL\"",
        ),
    ];
    for (name, arguments, index, words) in cases {
        let response = call(&mut client, name, arguments).await;
        let error = response
            .error
            .unwrap_or_else(|| panic!("{name} gave no error"));
        assert_eq!(
            error.function_argument,
            Some(index),
            "{name}: {}",
            error.text
        );
        assert!(error.text.contains(words), "{name}: {}", error.text);
        assert!(response.result.is_none(), "{name}");
    }
}
