//! Unit tests of `batchai_cluster`: its schema, validation as Terraform runs it, plan-time
//! warnings and IDs.
use tfplug::{AttributePath, Context, Resource, Value};

use super::plan::{gpu_warning, machine_gpus};
use super::*;

#[test]
fn schema_is_valid() {
    let schema = tfplug::server::resource_schema::<Client>(&ClusterResource);
    assert_eq!(schema.validate(), Ok(()));
}

fn obj(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn config(scale: Value, mounts: Value) -> Value {
    obj(vec![
        ("name", Value::string("gpu")),
        ("vm_size", Value::string("Standard_NC6")),
        ("scale_settings", scale),
        ("mount_volumes", mounts),
    ])
}

fn manual(n: i64) -> Value {
    obj(vec![
        ("manual", obj(vec![("target_node_count", Value::number(n))])),
        ("auto_scale", Value::Null),
    ])
}

#[test]
fn validation_points_at_the_attribute() {
    let both = obj(vec![
        ("manual", obj(vec![("target_node_count", Value::number(1))])),
        (
            "auto_scale",
            obj(vec![
                ("minimum_node_count", Value::number(0)),
                ("maximum_node_count", Value::number(2)),
            ]),
        ),
    ]);
    let inverted = obj(vec![
        ("manual", Value::Null),
        (
            "auto_scale",
            obj(vec![
                ("minimum_node_count", Value::number(3)),
                ("maximum_node_count", Value::number(2)),
            ]),
        ),
    ]);
    let escaping = obj(vec![(
        "host_directory",
        Value::List(vec![obj(vec![
            ("path", Value::string("/tmp")),
            ("relative_mount_path", Value::string("../x")),
        ])]),
    )]);
    let cases: Vec<(Value, Option<AttributePath>)> = vec![
        (config(manual(2), Value::Null), None),
        (
            config(manual(-1), Value::Null),
            Some(AttributePath::attrs([
                "scale_settings",
                "manual",
                "target_node_count",
            ])),
        ),
        (
            config(both, Value::Null),
            Some(AttributePath::attrs(["scale_settings"])),
        ),
        (
            config(inverted, Value::Null),
            Some(AttributePath::attrs([
                "scale_settings",
                "auto_scale",
                "minimum_node_count",
            ])),
        ),
        (
            config(manual(1), escaping),
            Some(
                AttributePath::attrs(["mount_volumes", "host_directory"])
                    .index(0)
                    .attr("relative_mount_path"),
            ),
        ),
    ];
    let setup_logs = |prefix: &str| {
        let mut cfg = config(manual(1), Value::Null);
        if let Value::Object(fields) = &mut cfg {
            fields.insert(
                "setup_task".to_owned(),
                obj(vec![
                    ("command_line", Value::string("true")),
                    ("std_out_err_path_prefix", Value::string(prefix)),
                ]),
            );
        }
        cfg
    };
    let prefix_at = AttributePath::attrs(["setup_task", "std_out_err_path_prefix"]);
    let mut cases = cases;
    cases.extend([
        (setup_logs("$AZ_BATCHAI_MOUNT_ROOT/logs"), None),
        (setup_logs("../../.."), Some(prefix_at.clone())),
        (
            setup_logs("$AZ_BATCHAI_MOUNT_ROOT/../.."),
            Some(prefix_at.clone()),
        ),
        (setup_logs("$AZ_BATCHAI_JOB_MOUNT_ROOT/x"), Some(prefix_at)),
    ]);
    for (cfg, want) in cases {
        let diags = crate::resources::validate_all(&ClusterResource, &cfg);
        assert_eq!(
            diags.0.first().and_then(|d| d.path.clone()),
            want,
            "{diags}"
        );
    }
}

#[test]
fn scale_settings_need_exactly_one_block_before_their_values_are_known() {
    let diagnostics = |scale: Value| -> Vec<(String, String)> {
        crate::resources::validate_all(&ClusterResource, &config(scale, Value::Null))
            .into_iter()
            .map(|d| (d.summary, d.path.unwrap_or_default().to_string()))
            .collect()
    };
    let unknown_count = obj(vec![("target_node_count", Value::unknown())]);
    let auto = obj(vec![
        ("minimum_node_count", Value::number(0)),
        ("maximum_node_count", Value::number(2)),
    ]);
    let invalid = vec![(
        "invalid scale_settings".to_owned(),
        "scale_settings".to_owned(),
    )];
    let both = obj(vec![
        ("manual", unknown_count.clone()),
        ("auto_scale", auto),
    ]);
    assert_eq!(diagnostics(both), invalid);
    let neither = obj(vec![("manual", Value::Null), ("auto_scale", Value::Null)]);
    assert_eq!(diagnostics(neither), invalid);
    // A `dynamic` block whose presence is not known yet is judged later.
    let not_known_yet = obj(vec![
        ("manual", Value::unknown()),
        ("auto_scale", Value::Null),
    ]);
    assert_eq!(diagnostics(not_known_yet), vec![]);
    let one = obj(vec![("manual", unknown_count), ("auto_scale", Value::Null)]);
    assert_eq!(diagnostics(one), vec![]);
}

#[test]
fn plans_show_the_defaults_apply_uses() {
    let schema = tfplug::server::resource_schema::<Client>(&ClusterResource);
    let auto = obj(vec![
        ("manual", Value::Null),
        (
            "auto_scale",
            obj(vec![
                ("minimum_node_count", Value::number(0)),
                ("maximum_node_count", Value::number(2)),
            ]),
        ),
    ]);
    let cases: [(Value, &[&str], Value); 4] = [
        (manual(1), &["vm_priority"], Value::string("dedicated")),
        (
            manual(1),
            &["scale_settings", "manual", "node_deallocation_option"],
            Value::string("requeue"),
        ),
        (
            auto.clone(),
            &["scale_settings", "auto_scale", "initial_node_count"],
            Value::number(0),
        ),
        (
            auto,
            &["scale_settings", "auto_scale", "idle_timeout"],
            Value::string("10m"),
        ),
    ];
    for (scale, path, want) in cases {
        let cfg = config(scale, Value::Null);
        let (planned, _) = tfplug::plan::default_plan(&schema, &Value::Null, &cfg, &cfg);
        assert_eq!(
            crate::resources::value_at(&planned, path),
            Some(&want),
            "{path:?}"
        );
    }
}

/// A planned new cluster of `nodes` nodes of `vm_size`.
fn new_cluster(vm_size: &str, nodes: i64, gpus_per_node: Option<i64>) -> Value {
    let mut planned = config(manual(nodes), Value::Null);
    crate::resources::set_path(&mut planned, &["vm_size"], Value::string(vm_size));
    crate::resources::set_path(&mut planned, &["id"], Value::unknown());
    let local = gpus_per_node.map_or(Value::Null, |n| {
        obj(vec![("gpus_per_node", Value::number(n))])
    });
    crate::resources::set_path(&mut planned, &["local_settings"], local);
    planned
}

#[test]
fn gpu_sizes_without_gpus_are_warned_about() {
    let cases = [
        (
            "4-GPU size, no GPU",
            new_cluster("Standard_NC24s_v3", 2, None),
            0,
            true,
        ),
        (
            "enough GPUs",
            new_cluster("Standard_NC24s_v3", 2, None),
            8,
            false,
        ),
        (
            "too few for every node",
            new_cluster("Standard_NC24s_v3", 2, None),
            4,
            true,
        ),
        (
            "CPU size",
            new_cluster("Standard_D2s_v3", 2, None),
            0,
            false,
        ),
        (
            "GPUs turned off",
            new_cluster("Standard_NC24s_v3", 2, Some(0)),
            0,
            false,
        ),
        (
            "GPUs asked for",
            new_cluster("Standard_D2s_v3", 1, Some(2)),
            1,
            true,
        ),
    ];
    for (name, planned, available, want) in cases {
        let warning = gpu_warning(&planned, available);
        assert_eq!(warning.is_some(), want, "{name}");
        if let Some(w) = warning {
            assert_eq!(w.severity, tfplug::Severity::Warning, "{name}");
            assert_eq!(w.path, Some(AttributePath::attrs(["vm_size"])), "{name}");
            assert!(
                w.detail.contains("BATCHAI_LOCAL_GPU_COUNT"),
                "{name}: {w:?}"
            );
        }
    }
    // An existing cluster (known ID) starts no node, so its plans say nothing.
    let mut existing = new_cluster("Standard_NC24s_v3", 2, None);
    crate::resources::set_path(&mut existing, &["id"], Value::string("local/clusters/gpu"));
    assert!(gpu_warning(&existing, 0).is_none());
}

#[test]
fn check_plan_returns_the_gpu_warning() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let client: Client = std::sync::Arc::new(
        crate::platform::local::platform(dir.path().to_path_buf(), None)
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let planned = new_cluster("Standard_NC24s_v3", 2, None);
    let diags = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .block_on(Resource::check_plan(
            &ClusterResource,
            &client,
            &Context::background(),
            &planned,
        ));
    let warned = diags.iter().any(|d| {
        d.severity == tfplug::Severity::Warning && d.path == Some(AttributePath::attrs(["vm_size"]))
    });
    assert_eq!(warned, machine_gpus() < 8, "{diags}");
    assert!(!diags.has_errors(), "{diags}");
}

#[test]
fn ids_round_trip() {
    let name = Name::parse("gpu").unwrap_or_else(|e| panic!("{e}"));
    for platform in ["local", "azure"] {
        let id = cluster_id(platform, &name);
        assert_eq!(id, format!("{platform}/clusters/gpu"));
        assert_eq!(parse_id(&id), Ok(name.clone()));
    }
    assert!(parse_id("local/fileServers/gpu").is_err());
    assert!(parse_id("aws/clusters/gpu").is_err());
    assert!(parse_id("clusters/gpu").is_err());
    // An ID of the other platform parses (validation cannot know the provider's), and is
    // refused where the provider's platform is known.
    let refused = crate::resources::check_platform("local/clusters/gpu", "azure")
        .err()
        .map(|d| d.detail);
    assert!(
        refused
            .as_deref()
            .is_some_and(|d| d.contains("azure platform")),
        "{refused:?}"
    );
    assert!(crate::resources::check_platform("azure/clusters/gpu", "azure").is_ok());
}
