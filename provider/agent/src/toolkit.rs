//! How each Batch AI toolkit spreads a job over its nodes: which processes a node starts, with
//! which command and which rank variables. A pure function of the job and its layout, so every
//! toolkit's launch semantics are table-tested without starting anything.
use std::collections::BTreeMap;

use control::jobs::{Script, Toolkit};

/// One process a node starts (through `bash -c`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// Names its log files: `stdout-<label>.txt`, `stderr-<label>.txt`.
    pub label: String,
    pub command: String,
    /// Added to the job's environment for this process only.
    pub env: BTreeMap<String, String>,
}

/// What a node runs for one attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePlan {
    /// Processes whose exits decide the node's report.
    pub required: Vec<Proc>,
    /// Processes that serve the others (TensorFlow parameter servers): stopped when the attempt
    /// ends, their exit codes do not count.
    pub background: Vec<Proc>,
}

/// Where a node sits in its job.
#[derive(Debug, Clone)]
pub struct Layout<'a> {
    /// The attempt's nodes, master first.
    pub nodes: &'a [String],
    /// This node's position in `nodes`.
    pub index: usize,
    /// Ports reserved for the attempt's rendezvous (see [`ports_needed`]).
    pub ports: &'a [u16],
    /// The address peers reach each other on.
    pub address: &'a str,
    /// The OpenMPI hostfile (`AZ_BATCHAI_MPI_HOST_FILE`).
    pub host_file: &'a str,
    /// `mpirun` with the platform's launch options; the toolkit appends hostfile, ranks and
    /// command.
    pub mpirun: &'a str,
}

/// Quotes `text` for a POSIX shell.
pub fn sh_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\'', r#"'\''"#))
}

/// Turns a path-like field into one shell word in which the job's environment variables
/// (`$NAME` and `${NAME}`) expand as the shell that runs the command expands them (bash on the
/// host, bash in the container, or the master's shell for `mpirun`), an unset one to nothing,
/// and nothing else happens: no word splitting, no globbing, no command substitution. Literal
/// runs are single-quoted; each reference becomes `"${NAME}"`. Only environment variable names
/// expand: `$1`, `$$`, `$(...)`, `${NAME:-x}` and a trailing `$` stay literal, since a path
/// field is not a script.
pub fn sh_path(text: &str) -> String {
    fn is_name_start(c: char) -> bool {
        c == '_' || c.is_ascii_alphabetic()
    }
    fn is_name(c: char) -> bool {
        c == '_' || c.is_ascii_alphanumeric()
    }
    fn flush(literal: &mut String, word: &mut String) {
        if !literal.is_empty() {
            word.push_str(&sh_quote(literal));
            literal.clear();
        }
    }
    let mut word = String::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        literal.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end)
                    if braced[..end].starts_with(is_name_start)
                        && braced[..end].chars().all(is_name) =>
                {
                    (&braced[..end], end + 2)
                }
                _ => ("", 0),
            }
        } else {
            let end = after.find(|c| !is_name(c)).unwrap_or(after.len());
            if after.starts_with(is_name_start) {
                (&after[..end], end)
            } else {
                ("", 0)
            }
        };
        if name.is_empty() {
            literal.push('$');
            rest = after;
            continue;
        }
        flush(&mut literal, &mut word);
        word.push_str(&format!("\"${{{name}}}\""));
        rest = &after[consumed..];
    }
    literal.push_str(rest);
    flush(&mut literal, &mut word);
    if word.is_empty() {
        word.push_str("''");
    }
    word
}

fn python(script: &Script, args: Option<&str>) -> String {
    let interpreter = script
        .python_interpreter_path
        .as_deref()
        .unwrap_or("python3");
    let command = format!(
        "{} {}",
        sh_path(interpreter),
        sh_path(&script.python_script_file_path)
    );
    with_args(command, args)
}

/// `command` followed by the user's arguments, which the node's shell interprets.
fn with_args(mut command: String, args: Option<&str>) -> String {
    if let Some(args) = args.filter(|a| !a.trim().is_empty()) {
        command.push(' ');
        command.push_str(args);
    }
    command
}

/// How many ranks a toolkit starts in all.
pub fn process_count(toolkit: &Toolkit, node_count: u32) -> u32 {
    let explicit = match toolkit {
        Toolkit::CustomMpi { process_count, .. }
        | Toolkit::Horovod { process_count, .. }
        | Toolkit::Chainer { process_count, .. }
        | Toolkit::Cntk { process_count, .. }
        | Toolkit::Pytorch { process_count, .. }
        | Toolkit::Deepspeed { process_count, .. }
        | Toolkit::Caffe { process_count, .. } => *process_count,
        Toolkit::Tensorflow { worker_count, .. } => *worker_count,
        Toolkit::CustomToolkit { .. } | Toolkit::Caffe2 { .. } => Some(1),
    };
    explicit.unwrap_or(node_count).max(1)
}

/// TensorFlow's parameter server count: one for distributed runs unless set.
fn parameter_servers(toolkit: &Toolkit, node_count: u32) -> u32 {
    match toolkit {
        Toolkit::Tensorflow {
            parameter_server_count,
            worker_count,
            ..
        } => parameter_server_count.unwrap_or(if node_count > 1 || worker_count.unwrap_or(1) > 1 {
            1
        } else {
            0
        }),
        _ => 0,
    }
}

/// Ports the scheduler reserves for an attempt: PyTorch's `MASTER_PORT`, one per TensorFlow
/// task.
pub fn ports_needed(toolkit: &Toolkit, node_count: u32) -> usize {
    // Exhaustive, so a new toolkit says whether its ranks meet at a rendezvous port.
    match toolkit {
        Toolkit::Pytorch { .. } | Toolkit::Deepspeed { .. } => 1,
        Toolkit::Tensorflow { .. } => {
            (process_count(toolkit, node_count) + parameter_servers(toolkit, node_count)) as usize
        }
        Toolkit::CustomToolkit { .. }
        | Toolkit::CustomMpi { .. }
        | Toolkit::Horovod { .. }
        | Toolkit::Chainer { .. }
        | Toolkit::Cntk { .. }
        | Toolkit::Caffe { .. }
        | Toolkit::Caffe2 { .. } => 0,
    }
}

/// Ranks per node when `total` ranks are spread over `nodes`, the first nodes taking the rest.
fn per_node(total: u32, nodes: usize) -> Vec<u32> {
    let nodes = u32::try_from(nodes.max(1)).unwrap_or(1);
    (0..nodes)
        .map(|i| total / nodes + u32::from(i < total % nodes))
        .collect()
}

/// The OpenMPI hostfile: every node with its share of the ranks as slots.
pub fn host_file(nodes: &[String], ranks: u32) -> String {
    nodes
        .iter()
        .zip(per_node(ranks, nodes.len()))
        .map(|(node, slots)| format!("{node} slots={}\n", slots.max(1)))
        .collect()
}

/// Whether a toolkit launches through `mpirun` on the master node.
pub fn uses_mpi(toolkit: &Toolkit, node_count: u32) -> bool {
    match toolkit {
        Toolkit::CustomMpi { .. }
        | Toolkit::Horovod { .. }
        | Toolkit::Chainer { .. }
        | Toolkit::Cntk { .. } => true,
        Toolkit::Caffe { .. } => process_count(toolkit, node_count) > 1,
        Toolkit::Pytorch {
            communication_backend,
            ..
        } => communication_backend
            .as_deref()
            .is_some_and(|b| b.eq_ignore_ascii_case("mpi")),
        Toolkit::CustomToolkit { .. }
        | Toolkit::Tensorflow { .. }
        | Toolkit::Caffe2 { .. }
        | Toolkit::Deepspeed { .. } => false,
    }
}

/// The command a toolkit runs once per rank (or once, for master-only toolkits).
fn rank_command(toolkit: &Toolkit) -> String {
    match toolkit {
        Toolkit::CustomToolkit { command_line } | Toolkit::CustomMpi { command_line, .. } => {
            command_line.clone()
        }
        Toolkit::Horovod { script, .. }
        | Toolkit::Chainer { script, .. }
        | Toolkit::Pytorch { script, .. }
        | Toolkit::Caffe2 { script } => python(script, script.command_line_args.as_deref()),
        Toolkit::Cntk {
            language_type,
            config_file_path,
            script,
            ..
        } => match (language_type.as_str(), config_file_path) {
            ("brainscript", Some(config)) => with_args(
                format!("cntk configFile={}", sh_path(config)),
                script.command_line_args.as_deref(),
            ),
            _ => python(script, script.command_line_args.as_deref()),
        },
        Toolkit::Caffe {
            config_file_path,
            script,
            ..
        } => match config_file_path {
            Some(config) => with_args(
                format!("caffe train --solver={}", sh_path(config)),
                script.command_line_args.as_deref(),
            ),
            None => python(script, script.command_line_args.as_deref()),
        },
        Toolkit::Tensorflow { script, .. } => python(script, None),
        Toolkit::Deepspeed {
            script,
            deepspeed_config_path,
            ..
        } => {
            let deepspeed = format!(
                "--deepspeed --deepspeed_config {}",
                sh_path(deepspeed_config_path)
            );
            // Before the script's own arguments, which a trailing `# comment` could end.
            let args = match script.command_line_args.as_deref() {
                Some(args) if !args.trim().is_empty() => format!("{deepspeed} {args}"),
                _ => deepspeed,
            };
            python(script, Some(&args))
        }
    }
}

fn env(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// What this node runs for the attempt.
pub fn plan(toolkit: &Toolkit, layout: &Layout<'_>) -> NodePlan {
    let node_count = u32::try_from(layout.nodes.len()).unwrap_or(u32::MAX);
    let master = layout.index == 0;
    if uses_mpi(toolkit, node_count) {
        // The master starts every rank through mpirun; the other nodes only host them.
        if !master {
            return NodePlan::default();
        }
        let ranks = process_count(toolkit, node_count);
        let command = format!(
            "{} --hostfile {} -np {ranks} {}",
            layout.mpirun,
            sh_quote(layout.host_file),
            rank_command(toolkit)
        );
        return NodePlan {
            required: vec![Proc {
                label: "master".to_owned(),
                command,
                env: BTreeMap::new(),
            }],
            background: Vec::new(),
        };
    }
    match toolkit {
        // DeepSpeed's `init_distributed` reads the same rendezvous variables as PyTorch's.
        Toolkit::Pytorch { .. } | Toolkit::Deepspeed { .. } => pytorch(toolkit, layout, node_count),
        Toolkit::Tensorflow { .. } => tensorflow(toolkit, layout, node_count),
        _ if master => NodePlan {
            required: vec![Proc {
                label: "master".to_owned(),
                command: rank_command(toolkit),
                env: env(&[("AZ_BATCHAI_TASK_INDEX", "0".to_owned())]),
            }],
            background: Vec::new(),
        },
        _ => NodePlan::default(),
    }
}

fn pytorch(toolkit: &Toolkit, layout: &Layout<'_>, node_count: u32) -> NodePlan {
    let world = process_count(toolkit, node_count);
    let shares = per_node(world, layout.nodes.len());
    let first: u32 = shares[..layout.index].iter().sum();
    let port = layout
        .ports
        .first()
        .copied()
        .unwrap_or_default()
        .to_string();
    let backend = match toolkit {
        Toolkit::Pytorch {
            communication_backend: Some(b),
            ..
        } => b.to_ascii_lowercase(),
        _ => "gloo".to_owned(),
    };
    let required = (0..shares[layout.index])
        .map(|local| {
            let rank = first + local;
            Proc {
                label: if rank == 0 {
                    "master".to_owned()
                } else {
                    format!("rank-{rank}")
                },
                command: rank_command(toolkit),
                env: env(&[
                    ("RANK", rank.to_string()),
                    ("WORLD_SIZE", world.to_string()),
                    ("LOCAL_RANK", local.to_string()),
                    ("LOCAL_WORLD_SIZE", shares[layout.index].to_string()),
                    ("NODE_RANK", layout.index.to_string()),
                    ("MASTER_ADDR", layout.address.to_owned()),
                    ("MASTER_PORT", port.clone()),
                    ("AZ_BATCHAI_TASK_INDEX", rank.to_string()),
                    (
                        "AZ_BATCHAI_PYTORCH_INIT_METHOD",
                        format!("tcp://{}:{port}", layout.address),
                    ),
                    ("AZ_BATCHAI_PYTORCH_BACKEND", backend.clone()),
                ]),
            }
        })
        .collect();
    NodePlan {
        required,
        background: Vec::new(),
    }
}

fn tensorflow(toolkit: &Toolkit, layout: &Layout<'_>, node_count: u32) -> NodePlan {
    let Toolkit::Tensorflow {
        script,
        master_command_line_args,
        worker_command_line_args,
        parameter_server_command_line_args,
        ..
    } = toolkit
    else {
        return NodePlan::default();
    };
    let workers = process_count(toolkit, node_count) as usize;
    let servers = parameter_servers(toolkit, node_count) as usize;
    let host = |i: usize| {
        format!(
            "{}:{}",
            layout.address,
            layout.ports.get(i).copied().unwrap_or_default()
        )
    };
    // Parameter servers take the first ports, workers the rest; both go round-robin over nodes.
    let ps_hosts: Vec<String> = (0..servers).map(host).collect();
    let worker_hosts: Vec<String> = (servers..servers + workers).map(host).collect();
    let cluster = serde_json::json!({ "ps": ps_hosts, "worker": worker_hosts });
    let count = layout.nodes.len().max(1);
    let task = |kind: &str, index: usize, args: Option<&str>| {
        let tf_config = serde_json::json!({
            "cluster": cluster,
            "task": { "type": kind, "index": index },
            "environment": "cloud",
        });
        Proc {
            label: if kind == "worker" && index == 0 {
                "master".to_owned()
            } else {
                format!("{kind}-{index}")
            },
            command: python(script, args),
            env: env(&[
                ("TF_CONFIG", tf_config.to_string()),
                ("AZ_BATCHAI_PS_HOSTS", ps_hosts.join(",")),
                ("AZ_BATCHAI_WORKER_HOSTS", worker_hosts.join(",")),
                ("AZ_BATCHAI_TASK_INDEX", index.to_string()),
                ("AZ_BATCHAI_TASK_TYPE", kind.to_owned()),
            ]),
        }
    };
    let required = (0..workers)
        .filter(|i| i % count == layout.index)
        .map(|i| {
            // Batch AI passed the master's arguments to worker 0 and the workers' to the rest.
            let args = if i == 0 {
                master_command_line_args
                    .as_deref()
                    .or(worker_command_line_args.as_deref())
            } else {
                worker_command_line_args
                    .as_deref()
                    .or(master_command_line_args.as_deref())
            };
            task("worker", i, args)
        })
        .collect();
    let background = (0..servers)
        .filter(|i| i % count == layout.index)
        .map(|i| task("ps", i, parameter_server_command_line_args.as_deref()))
        .collect();
    NodePlan {
        required,
        background,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(path: &str, args: Option<&str>) -> Script {
        Script {
            python_script_file_path: path.into(),
            python_interpreter_path: None,
            command_line_args: args.map(Into::into),
        }
    }

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node-{i}")).collect()
    }

    fn layout<'a>(nodes: &'a [String], index: usize, ports: &'a [u16]) -> Layout<'a> {
        Layout {
            nodes,
            index,
            ports,
            address: "127.0.0.1",
            host_file: "/tmp/hosts",
            mpirun: "mpirun",
        }
    }

    /// (label, command, selected env) per process, for compact expectations.
    fn summary(plan: &NodePlan, keys: &[&str]) -> Vec<(String, String, Vec<String>)> {
        plan.required
            .iter()
            .chain(&plan.background)
            .map(|p| {
                let env = keys
                    .iter()
                    .map(|k| p.env.get(*k).cloned().unwrap_or_default())
                    .collect();
                (p.label.clone(), p.command.clone(), env)
            })
            .collect()
    }

    #[test]
    fn master_only_toolkits_run_once_on_the_master() {
        let nodes = nodes(2);
        let cases = [
            Toolkit::CustomToolkit {
                command_line: "echo hi".into(),
            },
            Toolkit::Caffe2 {
                script: script("train.py", Some("--x 1")),
            },
            Toolkit::Caffe {
                config_file_path: Some("solver.prototxt".into()),
                script: script("", None),
                process_count: Some(1),
            },
        ];
        let want = [
            "echo hi",
            "python3 train.py --x 1",
            "caffe train --solver=solver.prototxt",
        ];
        for (toolkit, want) in cases.iter().zip(want) {
            let master = plan(toolkit, &layout(&nodes, 0, &[]));
            assert_eq!(master.required.len(), 1, "{}", toolkit.block());
            assert_eq!(master.required[0].command, want);
            assert_eq!(plan(toolkit, &layout(&nodes, 1, &[])), NodePlan::default());
        }
    }

    #[test]
    fn mpi_toolkits_launch_every_rank_from_the_master() {
        let nodes = nodes(2);
        let cases = [
            (
                Toolkit::CustomMpi {
                    command_line: "hostname".into(),
                    process_count: None,
                },
                "mpirun --hostfile /tmp/hosts -np 2 hostname",
            ),
            (
                Toolkit::Horovod {
                    script: script("/s/h v.py", Some("--epochs 1")),
                    process_count: Some(4),
                },
                "mpirun --hostfile /tmp/hosts -np 4 python3 '/s/h v.py' --epochs 1",
            ),
            (
                Toolkit::Chainer {
                    script: script("c.py", None),
                    process_count: None,
                },
                "mpirun --hostfile /tmp/hosts -np 2 python3 c.py",
            ),
            (
                Toolkit::Cntk {
                    language_type: "brainscript".into(),
                    config_file_path: Some("a.cntk".into()),
                    script: script("", Some("x=1")),
                    process_count: None,
                },
                "mpirun --hostfile /tmp/hosts -np 2 cntk configFile=a.cntk x=1",
            ),
            (
                Toolkit::Caffe {
                    config_file_path: None,
                    script: script("c.py", None),
                    process_count: Some(2),
                },
                "mpirun --hostfile /tmp/hosts -np 2 python3 c.py",
            ),
            (
                Toolkit::Pytorch {
                    script: script("p.py", None),
                    process_count: None,
                    communication_backend: Some("MPI".into()),
                },
                "mpirun --hostfile /tmp/hosts -np 2 python3 p.py",
            ),
        ];
        for (toolkit, want) in cases {
            let master = plan(&toolkit, &layout(&nodes, 0, &[]));
            assert_eq!(master.required.len(), 1, "{}", toolkit.block());
            assert_eq!(master.required[0].command, want, "{}", toolkit.block());
            let worker = plan(&toolkit, &layout(&nodes, 1, &[]));
            assert_eq!(worker, NodePlan::default(), "{}", toolkit.block());
        }
        assert_eq!(host_file(&nodes, 3), "node-1 slots=2\nnode-2 slots=1\n");
        assert_eq!(host_file(&nodes, 1), "node-1 slots=1\nnode-2 slots=1\n");
    }

    #[test]
    fn pytorch_ranks_and_rendezvous() {
        let nodes = nodes(2);
        let toolkit = Toolkit::Pytorch {
            script: script("r.py", None),
            process_count: Some(3),
            communication_backend: None,
        };
        let keys = [
            "RANK",
            "WORLD_SIZE",
            "LOCAL_RANK",
            "MASTER_ADDR",
            "MASTER_PORT",
        ];
        let on = |i| summary(&plan(&toolkit, &layout(&nodes, i, &[29500])), &keys);
        let row = |label: &str, rank: &str, local: &str| {
            (
                label.to_owned(),
                "python3 r.py".to_owned(),
                vec![
                    rank.to_owned(),
                    "3".to_owned(),
                    local.to_owned(),
                    "127.0.0.1".to_owned(),
                    "29500".to_owned(),
                ],
            )
        };
        assert_eq!(on(0), [row("master", "0", "0"), row("rank-1", "1", "1")]);
        assert_eq!(on(1), [row("rank-2", "2", "0")]);
        assert_eq!(ports_needed(&toolkit, 2), 1);
    }

    #[test]
    fn deepspeed_ranks_meet_as_pytorch_ranks_with_its_config() {
        let nodes = nodes(2);
        let toolkit = Toolkit::Deepspeed {
            script: script("ds.py", Some("--epochs 1")),
            deepspeed_config_path: "$AZ_BATCHAI_MOUNT_ROOT/ds config.json".into(),
            process_count: None,
        };
        let keys = ["RANK", "WORLD_SIZE", "MASTER_PORT"];
        let command = "python3 ds.py --deepspeed --deepspeed_config \
                       \"${AZ_BATCHAI_MOUNT_ROOT}\"'/ds config.json' --epochs 1";
        let on = |i| summary(&plan(&toolkit, &layout(&nodes, i, &[29500])), &keys);
        let row = |label: &str, rank: &str| {
            (
                label.to_owned(),
                command.to_owned(),
                vec![rank.to_owned(), "2".to_owned(), "29500".to_owned()],
            )
        };
        assert_eq!(on(0), [row("master", "0")]);
        assert_eq!(on(1), [row("rank-1", "1")]);
        assert_eq!(ports_needed(&toolkit, 2), 1);
        assert!(!uses_mpi(&toolkit, 2));
    }

    #[test]
    fn tensorflow_tasks_and_tf_config() {
        let nodes = nodes(2);
        let toolkit = Toolkit::Tensorflow {
            script: script("tf.py", None),
            master_command_line_args: Some("--master".into()),
            worker_command_line_args: Some("--worker".into()),
            parameter_server_command_line_args: Some("--ps".into()),
            worker_count: None,
            parameter_server_count: None,
        };
        assert_eq!(ports_needed(&toolkit, 2), 3);
        let ports = [2000, 2001, 2002];
        let keys = [
            "AZ_BATCHAI_TASK_INDEX",
            "AZ_BATCHAI_PS_HOSTS",
            "AZ_BATCHAI_WORKER_HOSTS",
        ];
        let hosts = |i: &str| {
            vec![
                i.to_owned(),
                "127.0.0.1:2000".to_owned(),
                "127.0.0.1:2001,127.0.0.1:2002".to_owned(),
            ]
        };
        let master = plan(&toolkit, &layout(&nodes, 0, &ports));
        assert_eq!(
            summary(&master, &keys),
            [
                (
                    "master".to_owned(),
                    "python3 tf.py --master".to_owned(),
                    hosts("0")
                ),
                (
                    "ps-0".to_owned(),
                    "python3 tf.py --ps".to_owned(),
                    hosts("0")
                ),
            ]
        );
        assert_eq!(
            master.background.len(),
            1,
            "the parameter server is background"
        );
        let tf: serde_json::Value =
            serde_json::from_str(&master.required[0].env["TF_CONFIG"]).unwrap_or_default();
        assert_eq!(
            tf["task"],
            serde_json::json!({"type": "worker", "index": 0})
        );
        assert_eq!(tf["cluster"]["worker"][1], "127.0.0.1:2002");
        let second = plan(&toolkit, &layout(&nodes, 1, &ports));
        assert_eq!(
            summary(&second, &keys),
            [(
                "worker-1".to_owned(),
                "python3 tf.py --worker".to_owned(),
                hosts("1")
            )]
        );
    }

    #[test]
    fn paths_expand_variables_and_nothing_else() {
        // (path, shell word, what bash makes of it with A="x y", B="*", EMPTY unset)
        let cases = [
            ("/plain/t.py", "/plain/t.py", "/plain/t.py"),
            ("$A/t.py", r#""${A}"/t.py"#, "x y/t.py"),
            ("${A}B", r#""${A}"B"#, "x yB"),
            ("$AB", r#""${AB}""#, ""),
            ("/d/$B", r#"/d/"${B}""#, "/d/*"),
            ("$EMPTY/t.py", r#""${EMPTY}"/t.py"#, "/t.py"),
            ("/a b/it's.py", r#"'/a b/it'\''s.py'"#, "/a b/it's.py"),
            ("$1/x", "'$1/x'", "$1/x"),
            ("$$", "'$$'", "$$"),
            ("/x$", "'/x$'", "/x$"),
            ("$(touch /tmp/no)", "'$(touch /tmp/no)'", "$(touch /tmp/no)"),
            ("`id`", "'`id`'", "`id`"),
            ("${A:-z}", "'${A:-z}'", "${A:-z}"),
            ("${A", "'${A'", "${A"),
            ("/d/*.py", "'/d/*.py'", "/d/*.py"),
            ("$A$A", r#""${A}""${A}""#, "x yx y"),
            ("", "''", ""),
        ];
        for (path, word, expanded) in cases {
            assert_eq!(sh_path(path), word, "{path:?}");
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(format!("printf '%s|' {word}"))
                .env("A", "x y")
                .env("B", "*")
                .env_remove("EMPTY")
                .env_remove("AB")
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .unwrap_or_else(|e| panic!("bash: {e}"));
            // One word, exactly: no splitting, no globbing.
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("{expanded}|"),
                "{path:?}"
            );
        }
    }

    #[test]
    fn toolkit_paths_expand_job_variables() {
        let toolkit = Toolkit::Caffe {
            config_file_path: Some("$AZ_BATCHAI_INPUT_DATA/solver.prototxt".into()),
            script: script("", None),
            process_count: Some(1),
        };
        let nodes = nodes(1);
        assert_eq!(
            plan(&toolkit, &layout(&nodes, 0, &[])).required[0].command,
            r#"caffe train --solver="${AZ_BATCHAI_INPUT_DATA}"/solver.prototxt"#
        );
        let mut s = script("${AZ_BATCHAI_JOB_TEMP}/t.py", Some("--x $Y"));
        s.python_interpreter_path = Some("$AZ_BATCHAI_MOUNT_ROOT/venv/bin/python".into());
        let toolkit = Toolkit::Horovod {
            script: s,
            process_count: Some(2),
        };
        assert_eq!(
            plan(&toolkit, &layout(&nodes, 0, &[])).required[0].command,
            r#"mpirun --hostfile /tmp/hosts -np 2 "${AZ_BATCHAI_MOUNT_ROOT}"/venv/bin/python "${AZ_BATCHAI_JOB_TEMP}"/t.py --x $Y"#
        );
    }

    #[test]
    fn quoting() {
        let cases = [
            ("plain-1.py", "plain-1.py"),
            ("a b", "'a b'"),
            ("it's", r#"'it'\''s'"#),
            ("", "''"),
        ];
        for (input, want) in cases {
            assert_eq!(sh_quote(input), want);
        }
    }
}
