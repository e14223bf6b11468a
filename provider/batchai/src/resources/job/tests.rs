//! Unit tests of `batchai_job`: its schema, declared validation, plan checks and IDs.
use tfplug::Type;

use super::*;

#[test]
fn schema_is_valid() {
    assert!(
        tfplug::server::resource_schema::<Client>(&JobResource)
            .validate()
            .is_ok()
    );
}

#[test]
fn an_interrupted_wait_says_whether_the_job_ran() {
    let queued = interrupted("j", Some(JobState::Queued)).detail;
    assert!(
        queued.contains("was still queued") && !queued.contains("ran"),
        "{queued}"
    );
    for state in [Some(JobState::Running), None] {
        let running = interrupted("j", state).detail;
        assert!(running.contains("was running"), "{running}");
    }
}

fn obj(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn base(extra: Vec<(&str, Value)>) -> Value {
    let mut pairs = vec![
        ("name", Value::string("train")),
        ("cluster_id", Value::string("local/clusters/gpu")),
    ];
    pairs.extend(extra);
    obj(pairs)
}

fn cmd(line: &str) -> Value {
    obj(vec![("command_line", Value::string(line))])
}

/// The attribute paths of every error, rendered.
fn error_paths(config: &Value) -> Vec<String> {
    crate::resources::validate_all(&JobResource, config)
        .iter()
        .map(|d| d.path.as_ref().map(ToString::to_string).unwrap_or_default())
        .collect()
}

#[test]
fn validation_points_at_the_attribute() {
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        ("ok", base(vec![("custom_toolkit", cmd("true"))]), vec![]),
        ("no toolkit", base(vec![]), vec!["(root)"]),
        (
            "two toolkits",
            base(vec![("custom_toolkit", cmd("a")), ("custom_mpi", cmd("b"))]),
            vec!["custom_mpi"],
        ),
        (
            "node count",
            base(vec![
                ("custom_toolkit", cmd("a")),
                ("node_count", Value::number(0)),
            ]),
            vec!["node_count"],
        ),
        (
            "priority",
            base(vec![
                ("custom_toolkit", cmd("a")),
                ("scheduling_priority", Value::string("urgent")),
            ]),
            vec!["scheduling_priority"],
        ),
        (
            "escaping log path",
            base(vec![
                ("custom_toolkit", cmd("a")),
                (
                    "std_out_err_path_prefix",
                    Value::string("$AZ_BATCHAI_MOUNT_ROOT/../../etc"),
                ),
            ]),
            vec!["std_out_err_path_prefix"],
        ),
        (
            "output id and path",
            base(vec![
                ("custom_toolkit", cmd("a")),
                (
                    "output_directories",
                    Value::List(vec![obj(vec![
                        ("id", Value::string("MODEL-1")),
                        ("path_prefix", Value::string("relative")),
                        ("path_suffix", Value::Null),
                    ])]),
                ),
            ]),
            vec![
                "output_directories[0].id",
                "output_directories[0].path_prefix",
            ],
        ),
        (
            "wall clock",
            base(vec![
                ("custom_toolkit", cmd("a")),
                (
                    "constraints",
                    obj(vec![("max_wall_clock_time", Value::string("soon"))]),
                ),
            ]),
            vec!["constraints.max_wall_clock_time"],
        ),
        (
            "grace periods",
            base(vec![
                ("custom_toolkit", cmd("a")),
                (
                    "constraints",
                    obj(vec![("termination_grace_period", Value::string("2h"))]),
                ),
            ]),
            vec!["constraints.termination_grace_period"],
        ),
        (
            "caffe needs one entry point",
            base(vec![(
                "caffe",
                obj(vec![
                    ("config_file_path", Value::Null),
                    ("python_script_file_path", Value::Null),
                ]),
            )]),
            vec!["caffe"],
        ),
    ];
    let image = |image: &str| {
        base(vec![
            ("custom_toolkit", cmd("a")),
            (
                "container_settings",
                obj(vec![(
                    "image_source_registry",
                    obj(vec![("image", Value::string(image))]),
                )]),
            ),
        ])
    };
    let image_path = "container_settings.image_source_registry.image";
    let mut cases = cases;
    cases.extend([
        ("image", image("python:3.12"), vec![]),
        ("registry image", image("ghcr.io/a/b@sha256:0f"), vec![]),
        ("image as a flag", image("--privileged"), vec![image_path]),
        (
            "image with a space",
            image("python:3.12 -v /:/x"),
            vec![image_path],
        ),
        ("image with a newline", image("python\n"), vec![image_path]),
        ("empty image", image(""), vec![image_path]),
    ]);
    for (name, config, want) in cases {
        assert_eq!(error_paths(&config), want, "{name}");
    }
}

#[test]
fn wall_clock_errors_say_what_to_write_once() {
    let config = base(vec![
        ("custom_toolkit", cmd("a")),
        (
            "constraints",
            obj(vec![("max_wall_clock_time", Value::string("soon"))]),
        ),
    ]);
    let diags = crate::resources::validate_all(&JobResource, &config);
    let detail = diags.iter().map(|d| d.detail.clone()).collect::<String>();
    assert_eq!(detail.matches("write").count(), 1, "{detail}");
}

#[test]
fn check_plan_names_a_missing_cluster() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let client: Client = std::sync::Arc::new(
        crate::platform::local::platform(dir.path().to_path_buf(), None)
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let check = |planned: Value| {
        runtime.block_on(JobResource.check_plan(&client, &Context::background(), &planned))
    };
    let missing = check(base(vec![
        ("custom_toolkit", cmd("a")),
        ("node_count", Value::number(1)),
    ]));
    let errors: Vec<_> = missing
        .iter()
        .filter(|d| d.severity == tfplug::Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{missing}");
    assert_eq!(errors[0].path, Some(AttributePath::attrs(["cluster_id"])));
    assert!(errors[0].detail.contains("no cluster gpu"), "{missing}");
    // A cluster created in the same plan has no ID yet: nothing to look up.
    let mut created = base(vec![("custom_toolkit", cmd("a"))]);
    crate::resources::set_path(&mut created, &["cluster_id"], Value::unknown());
    assert!(check(created).is_empty());
}

#[test]
fn ids_round_trip() {
    assert_eq!(
        job_id("azure", "gpu", "train"),
        "azure/clusters/gpu/jobs/train"
    );
    let id = job_id("local", "gpu", "train");
    assert_eq!(id, "local/clusters/gpu/jobs/train");
    let parsed = parse_id(&id).map(|(c, j)| (c.to_string(), j.to_string()));
    assert_eq!(parsed, Ok(("gpu".to_owned(), "train".to_owned())));
    assert!(parse_id("local/clusters/gpu").is_err());
    assert!(parse_id("local/clusters/gpu/jobs/a/b").is_err());
    // The messages users see.
    let message = |id: &str| parse_id(id).map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(
        message("local/clusters/gpu"),
        Err(
            "\"local/clusters/gpu\" is not a job ID; IDs look like \"<platform>/clusters/<cluster>/jobs/<job>\", where the platform is local or azure"
                .to_owned()
        )
    );
    assert_eq!(
        message("local/clusters/gpu/jobs/a b"),
        Err(
            "\"a b\" contains ' '; a name may contain only letters, digits, '-' and '_'".to_owned()
        )
    );
}

#[test]
fn image_errors_say_what_is_wrong() {
    let message = |image: &str| model::check_image(image).map_err(|e| e.to_string());
    assert_eq!(message("python:3.12"), Ok(()));
    assert_eq!(
        message("--privileged"),
        Err("\"--privileged\" starts with `-`, which the container runtime would take as an option; name an image, e.g. \"python:3.12\"".to_owned())
    );
    assert_eq!(
        message("a b"),
        Err(
            "\"a b\" contains whitespace or control characters, which no image reference has"
                .to_owned()
        )
    );
    assert_eq!(
        message(""),
        Err("the image is empty; name one, e.g. \"python:3.12\"".to_owned())
    );
}

/// `config` as Terraform sends it: every attribute of the resource's type (the framework's
/// `timeouts` block included), null where not set.
fn complete(config: Value, ty: &Type) -> Value {
    match (config, ty) {
        (Value::Object(mut set), Type::Object(attrs)) => Value::Object(
            attrs
                .iter()
                .map(|(name, ty)| {
                    let value = set.remove(name).unwrap_or(Value::Null);
                    (name.clone(), complete(value, ty))
                })
                .collect(),
        ),
        (Value::List(items), Type::List(ty)) => {
            Value::List(items.into_iter().map(|v| complete(v, ty)).collect())
        }
        (value, _) => value,
    }
}

/// A name, a configuration, and the (summary, path) of each diagnostic it must get.
type Case = (&'static str, Value, Vec<(&'static str, &'static str)>);

#[test]
fn checks_across_attributes_point_at_the_attribute() {
    let ty = tfplug::server::resource_schema::<Client>(&JobResource).implied_type();
    let cntk = |language: Value, config: Option<&str>, script: Option<&str>| {
        let path = |p: Option<&str>| p.map_or(Value::Null, Value::string);
        obj(vec![
            ("language_type", language),
            ("config_file_path", path(config)),
            ("python_script_file_path", path(script)),
        ])
    };
    let tensorflow = |ps: i64| {
        obj(vec![
            ("python_script_file_path", Value::string("t.py")),
            ("parameter_server_count", Value::number(ps)),
        ])
    };
    let inputs = |ids: &[&str]| {
        let items = ids
            .iter()
            .map(|id| {
                obj(vec![
                    ("id", Value::string(*id)),
                    ("path", Value::string("/d")),
                ])
            })
            .collect();
        ("input_directories", Value::List(items))
    };
    let cases: Vec<Case> = vec![
        (
            "duplicate input id",
            base(vec![("custom_toolkit", cmd("a")), inputs(&["A", "B", "A"])]),
            vec![("duplicate directory id", "input_directories[2].id")],
        ),
        (
            "brainscript without its file",
            base(vec![(
                "cntk",
                cntk(Value::string("BrainScript"), None, Some("t.py")),
            )]),
            vec![("missing config_file_path", "cntk.config_file_path")],
        ),
        (
            "python (the default) without its script",
            base(vec![("cntk", cntk(Value::Null, Some("c.cntk"), None))]),
            vec![(
                "missing python_script_file_path",
                "cntk.python_script_file_path",
            )],
        ),
        (
            "a language not known yet",
            base(vec![("cntk", cntk(Value::unknown(), None, None))]),
            vec![],
        ),
        (
            "more parameter servers than nodes",
            base(vec![
                ("tensorflow", tensorflow(3)),
                ("node_count", Value::number(2)),
            ]),
            vec![(
                "invalid parameter_server_count",
                "tensorflow.parameter_server_count",
            )],
        ),
        (
            "more parameter servers than the default node",
            base(vec![("tensorflow", tensorflow(2))]),
            vec![(
                "invalid parameter_server_count",
                "tensorflow.parameter_server_count",
            )],
        ),
        (
            "a node count not known yet",
            base(vec![
                ("tensorflow", tensorflow(2)),
                ("node_count", Value::unknown()),
            ]),
            vec![],
        ),
    ];
    for (name, config, want) in cases {
        let got: Vec<(String, String)> =
            crate::resources::validate_all(&JobResource, &complete(config, &ty))
                .iter()
                .map(|d| {
                    let path = d.path.as_ref().map(ToString::to_string);
                    (d.summary.clone(), path.unwrap_or_default())
                })
                .collect();
        let want: Vec<(String, String)> = want
            .into_iter()
            .map(|(s, p)| (s.to_owned(), p.to_owned()))
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn records_stored_for_import_read_back() {
    // As an earlier version stored it: a toolkit block without its unset fields, and
    // `timeouts`.
    let earlier = serde_json::json!({
        "id": null, "name": "train", "cluster_id": "local/clusters/gpu", "node_count": 2,
        "scheduling_priority": "normal", "custom_toolkit": null, "caffe2": null,
        "horovod": {"python_script_file_path": "t.py", "process_count": 4},
        "input_directories": [], "output_directories": [], "wait_for_completion": true,
        "constraints": {"max_wall_clock_time": "1h", "max_unschedulable_time": "00:05:00"},
        "secrets_wo": null, "timeouts": null,
    });
    let model: JobModel =
        serde_json::from_value(earlier).unwrap_or_else(|e| panic!("earlier record: {e}"));
    let horovod = control::jobs::Toolkit::Horovod {
        script: control::jobs::Script {
            python_script_file_path: "t.py".to_owned(),
            python_interpreter_path: None,
            command_line_args: None,
        },
        process_count: Some(4),
    };
    assert_eq!(model.toolkits.toolkit(), Ok(horovod.clone()));
    // What this version stores reads back the same, and fits the resource's type.
    let again: JobModel = serde_json::from_value(resource_record(&model))
        .unwrap_or_else(|e| panic!("stored record: {e}"));
    assert_eq!(again.toolkits.toolkit(), Ok(horovod));
    assert_eq!(again.node_count, Some(2));
    let ty = tfplug::server::resource_schema::<Client>(&JobResource).implied_type();
    assert!(tfplug::model::encode(&again, &ty).is_ok());
}

#[test]
fn a_job_that_needs_a_newer_agent_is_refused_on_a_cluster_of_older_ones() {
    let node = |id: &str, state: records::NodeState, features: &[&str]| records::NodeRecord {
        state,
        features: features.iter().map(|f| (*f).to_owned()).collect(),
        ..records::NodeRecord::launching("c", id, 0)
    };
    let view = |nodes| ClusterView {
        spec: records::ClusterSpec {
            format: records::FORMAT,
            name: "c".to_owned(),
            uid: "u".to_owned(),
            vm_size: "Standard_D2s_v3".to_owned(),
            vm_priority: "dedicated".to_owned(),
            scale: records::Scale::Manual {
                target_node_count: 2,
                node_deallocation_option: records::DeallocationOption::Requeue,
            },
            setup_task: None,
            mounts: Vec::new(),
            gpus_per_node: 0,
            deleting: false,
            scale_generation: 0,
        },
        nodes,
        resource: serde_json::Value::Null,
        creation_time: String::new(),
        desired_node_count: 2,
        failing_since_ms: None,
        launch_error: None,
    };
    let deepspeed = JobModel {
        toolkits: toolkit::Toolkits {
            deepspeed: Some(toolkit::DeepspeedModel::default()),
            ..Default::default()
        },
        ..Default::default()
    };
    let plain = JobModel {
        toolkits: toolkit::Toolkits {
            custom_toolkit: Some(toolkit::CustomToolkitModel::default()),
            ..Default::default()
        },
        ..Default::default()
    };
    let current = control::jobs::FEATURES;
    let old = view(vec![
        node("node-0", records::NodeState::Idle, &[]),
        node("node-1", records::NodeState::Idle, current),
        // Not registered yet: it will run this version.
        node("node-2", records::NodeState::Launching, &[]),
    ]);
    let refused = agents_can_run(&old, &deepspeed).err().unwrap_or_default();
    assert_eq!(refused.0.len(), 1, "{refused}");
    assert_eq!(refused.0[0].path, Some(AttributePath::attrs(["deepspeed"])));
    assert!(
        refused.0[0].detail.contains("node-0") && !refused.0[0].detail.contains("node-1"),
        "{refused}"
    );
    assert!(
        agents_can_run(&old, &plain).is_ok(),
        "a plain job runs anywhere"
    );
    let new = view(vec![node("node-0", records::NodeState::Idle, current)]);
    assert!(agents_can_run(&new, &deepspeed).is_ok());
}
