//! End to end: what a node does with a job's paths and processes. Every toolkit's path fields
//! expand the job's variables (`$VAR`, `${VAR}`) as the node's shell would; a failure quotes the
//! failing MPI rank, only the last attempt, and no secret; a wall-clock failure names its logs;
//! a link planted on a share cannot carry a later job's output out of it; and processes a job
//! detaches (`setsid`, a double fork) end with the job and with the cluster.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use batchai_acceptance::{
    Workspace, alive, cluster_c as cluster, job_on_c as job, newest_cli, resource_values, wait_for,
    walk,
};
use serde_json::Value as Json;

fn job_values(state: &Json, name: &str) -> anyhow::Result<Json> {
    resource_values(state, &format!("batchai_job.{name}"))
        .cloned()
        .with_context(|| format!("no batchai_job.{name} in state"))
}

fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The script every Python toolkit runs: it records the path it was started as.
const TRAIN: &str = r#"import os, sys
tag = sys.argv[sys.argv.index("--tag") + 1]
out = os.environ["AZ_BATCHAI_OUTPUT_OUT"]
with open(os.path.join(out, "%s-%d.txt" % (tag, os.getpid())), "w") as f:
    f.write(sys.argv[0])
"#;

/// Stand-ins for the `cntk` and `caffe` binaries: they fail unless the configuration file they
/// are given exists, and record its path.
fn fake_tool(name: &str, strip: &str, arg: usize) -> String {
    format!(
        "#!/bin/sh\nf=\"${{{arg}#{strip}}}\"\n[ -f \"$f\" ] || {{ echo \"no such file: $f\" >&2; exit 2; }}\nprintf %s \"$f\" > \"$AZ_BATCHAI_OUTPUT_OUT/{name}-$$.txt\"\n"
    )
}

/// (tag, path it ran as) for every record job `name` wrote.
fn ran_as(data: &Path, name: &str) -> Vec<(String, String)> {
    walk(&data.join("out/c/jobs").join(name))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .filter_map(|p| {
            let tag = p.file_name()?.to_str()?.rsplit_once('-')?.0.to_owned();
            Some((tag, std::fs::read_to_string(&p).ok()?))
        })
        .collect()
}

fn mpirun_available() -> bool {
    std::process::Command::new("mpirun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn every_toolkit_expands_job_variables_in_its_paths() -> anyhow::Result<()> {
    ensure!(
        mpirun_available(),
        "mpirun is not on PATH: install Debian's openmpi-bin (`cargo xtask test` does)"
    );
    let mut ws = Workspace::new(&newest_cli())?;
    let code = ws.path().join("code");
    let data = ws.path().join("data");
    let bin = ws.path().join("bin");
    std::fs::create_dir_all(&data)?;
    for script in [
        code.join("train.py"),
        code.join("my dir/train.py"),
        data.join("train.py"),
    ] {
        write_executable(&script, TRAIN)?;
    }
    write_executable(&code.join("py"), "#!/bin/sh\nexec python3 \"$@\"\n")?;
    std::fs::write(code.join("model.cntk"), "command = train\n")?;
    std::fs::write(code.join("solver.prototxt"), "base_lr: 0.01\n")?;
    write_executable(&bin.join("cntk"), &fake_tool("cntk", "configFile=", 1))?;
    write_executable(&bin.join("caffe"), &fake_tool("caffe", "--solver=", 2))?;
    let path = std::env::var("PATH").unwrap_or_default();
    ws.env("PATH", &format!("{}:{path}", bin.display()));

    let common = |nodes: u32| {
        format!(
            "  node_count = {nodes}\n  input_directories {{\n    id   = \"CODE\"\n    path = \"{}\"\n  }}\n  output_directories {{\n    id          = \"OUT\"\n    path_prefix = \"$AZ_BATCHAI_MOUNT_ROOT/data/out\"\n  }}\n",
            code.display()
        )
    };
    let python = |path: &str, tag: &str| {
        format!("python_script_file_path = \"{path}\"\n    command_line_args = \"--tag {tag}\"")
    };
    // (job, node count, toolkit block, tag, what the path must expand to, records expected)
    let code_dir = code.display().to_string();
    let data_dir = data.display().to_string();
    let jobs: Vec<(&str, u32, String, &str, String, usize)> = vec![
        (
            "pytorch",
            2,
            format!(
                "pytorch {{\n    {}\n  }}",
                python("$AZ_BATCHAI_MOUNT_ROOT/data/train.py", "pytorch")
            ),
            "pytorch",
            "/mounts/data/train.py".to_owned(),
            2,
        ),
        (
            "tensorflow",
            1,
            // `$${...}` is HCL for a literal `${...}`; the space must not split the word.
            "tensorflow {\n    python_script_file_path = \"$${AZ_BATCHAI_INPUT_CODE}/my dir/train.py\"\n    master_command_line_args = \"--tag tensorflow\"\n  }".to_owned(),
            "tensorflow",
            format!("{code_dir}/my dir/train.py"),
            1,
        ),
        (
            "horovod",
            2,
            format!(
                "horovod {{\n    {}\n  }}",
                python("$AZ_BATCHAI_INPUT_CODE/train.py", "horovod")
            ),
            "horovod",
            format!("{code_dir}/train.py"),
            2,
        ),
        (
            "chainer",
            1,
            format!(
                "mount_volumes {{\n    host_directory {{\n      path                = \"{code_dir}\"\n      relative_mount_path = \"code\"\n    }}\n  }}\n  chainer {{\n    {}\n  }}",
                python("$AZ_BATCHAI_JOB_MOUNT_ROOT/code/train.py", "chainer")
            ),
            "chainer",
            "/jobmounts/chainer/code/train.py".to_owned(),
            1,
        ),
        (
            "cntk",
            1,
            format!(
                "cntk {{\n    {}\n    python_interpreter_path = \"$AZ_BATCHAI_INPUT_CODE/py\"\n  }}",
                python("$AZ_BATCHAI_MOUNT_ROOT/data/train.py", "cntk")
            ),
            "cntk",
            "/mounts/data/train.py".to_owned(),
            1,
        ),
        (
            "brainscript",
            1,
            "cntk {\n    language_type    = \"brainscript\"\n    config_file_path = \"$AZ_BATCHAI_INPUT_CODE/model.cntk\"\n  }".to_owned(),
            "cntk",
            format!("{code_dir}/model.cntk"),
            1,
        ),
        (
            "caffe",
            1,
            format!(
                "job_preparation {{\n    command_line = \"cp {code_dir}/train.py $AZ_BATCHAI_JOB_TEMP/\"\n  }}\n  caffe {{\n    {}\n  }}",
                python("$${AZ_BATCHAI_JOB_TEMP}/train.py", "caffe")
            ),
            "caffe",
            "/jobtemp/caffe/train.py".to_owned(),
            1,
        ),
        (
            "solver",
            1,
            "caffe {\n    config_file_path = \"$${AZ_BATCHAI_INPUT_CODE}/solver.prototxt\"\n  }".to_owned(),
            "caffe",
            format!("{code_dir}/solver.prototxt"),
            1,
        ),
        (
            "caffe2",
            1,
            format!(
                "caffe2 {{\n    {}\n    python_interpreter_path = \"$${{AZ_BATCHAI_INPUT_CODE}}/py\"\n  }}",
                python("$AZ_BATCHAI_MOUNT_ROOT/data/train.py", "caffe2")
            ),
            "caffe2",
            "/mounts/data/train.py".to_owned(),
            1,
        ),
        (
            // The control: a command line was always interpreted by the shell.
            "mpi",
            2,
            "custom_mpi {\n    command_line  = \"python3 $AZ_BATCHAI_INPUT_CODE/train.py --tag mpi\"\n    process_count = 2\n  }".to_owned(),
            "mpi",
            format!("{code_dir}/train.py"),
            2,
        ),
    ];
    let mut config = cluster(
        2,
        &format!(
            "  mount_volumes {{\n    host_directory {{\n      path                = \"{data_dir}\"\n      relative_mount_path = \"data\"\n    }}\n  }}"
        ),
    );
    for (name, nodes, toolkit, ..) in &jobs {
        config.push_str(&job(name, &format!("{}  {toolkit}", common(*nodes))));
    }
    ws.write_config(&config)?;
    ws.init()?;
    let out = ws.run(&["apply", "-auto-approve", "-input=false", "-no-color"])?;
    ensure!(
        out.status.success(),
        "every job should succeed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = ws.state_json()?;
    for (name, _, _, tag, want, count) in &jobs {
        let values = job_values(&state, name)?;
        ensure!(values["execution_state"] == "succeeded", "{name}: {values}");
        let runs = ran_as(&data, name);
        ensure!(
            runs.len() == *count,
            "{name} should have run {count} time(s): {runs:?}"
        );
        for (got_tag, path) in &runs {
            ensure!(
                got_tag == tag && path.ends_with(want.as_str()) && !path.contains('$'),
                "{name} ran as {path:?} ({got_tag}); want a path ending in {want:?}"
            );
        }
    }
    Ok(())
}

/// The last error of failed job `name` in state (a retried job has one per attempt).
fn last_error(state: &Json, name: &str) -> anyhow::Result<Json> {
    let values = job_values(state, name)?;
    ensure!(values["execution_state"] == "failed", "{name}: {values}");
    values["errors"]
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .with_context(|| format!("{name} has no errors: {values}"))
}

#[test]
fn failures_quote_the_cause_and_never_a_secret() -> anyhow::Result<()> {
    ensure!(
        mpirun_available(),
        "mpirun is not on PATH: install Debian's openmpi-bin (`cargo xtask test` does)"
    );
    const SECRET: &str = "s3cr3t-d0g-f00d";
    let ws = Workspace::new(&newest_cli())?;
    let data = ws.path().join("data");
    let elsewhere = ws.path().join("elsewhere");
    std::fs::create_dir_all(&data)?;
    std::fs::create_dir_all(&elsewhere)?;
    let mut config = cluster(
        2,
        &format!(
            "  mount_volumes {{\n    host_directory {{\n      path                = \"{}\"\n      relative_mount_path = \"data\"\n    }}\n  }}",
            data.display()
        ),
    );
    // Rank 1 fails; rank 0 would still be running. mpirun's summary alone is ten lines.
    config.push_str(&job(
        "ranks",
        "  node_count = 2\n  custom_mpi {\n    command_line  = \"sh -c 'if [ $OMPI_COMM_WORLD_RANK = 1 ]; then echo rank-one-broke >&2; exit 3; fi; sleep 5'\"\n    process_count = 2\n  }",
    ));
    // On a cluster of its own, so that both attempts run on its one node and append to one
    // stderr file.
    config.push_str(
        r#"resource "batchai_cluster" "one" {
  name    = "one"
  vm_size = "Standard_D2s_v3"
  scale_settings {
    manual {
      target_node_count = 1
    }
  }
}

resource "batchai_job" "retried" {
  name       = "retried"
  cluster_id = batchai_cluster.one.id
  retry {
    max_retries = 1
  }
  custom_toolkit {
    command_line = "echo attempt-$AZ_BATCHAI_JOB_ATTEMPT-failed >&2; exit 3"
  }
}
"#,
    );
    config.push_str(&job(
        "leaky",
        &format!(
            "  secrets_wo = {{ TOKEN = \"{SECRET}\" }}\n  secrets_wo_version = 1\n  custom_toolkit {{\n    command_line = \"echo token=$TOKEN >&2; exit 5\"\n  }}"
        ),
    ));
    config.push_str(&job(
        "overrun",
        "  constraints {\n    max_wall_clock_time = \"2s\"\n  }\n  custom_toolkit {\n    command_line = \"echo still-going >&2; sleep 60\"\n  }",
    ));
    // An earlier job plants a link on the share; a later one must not write through it.
    config.push_str(&job(
        "planter",
        &format!(
            "  custom_toolkit {{\n    command_line = \"ln -s {} $AZ_BATCHAI_MOUNT_ROOT/data/planted\"\n  }}",
            elsewhere.display()
        ),
    ));
    config.push_str(&job(
        "victim",
        "  depends_on = [batchai_job.planter]\n  output_directories {\n    id          = \"OUT\"\n    path_prefix = \"$AZ_BATCHAI_MOUNT_ROOT/data/planted\"\n  }\n  custom_toolkit {\n    command_line = \"echo written > $AZ_BATCHAI_OUTPUT_OUT/x.txt\"\n  }",
    ));
    ws.write_config(&config)?;
    ws.init()?;
    let out = ws.run(&["apply", "-auto-approve", "-input=false", "-no-color"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "failed jobs must fail the apply");
    ensure!(
        !stderr.contains(SECRET),
        "the secret is in the diagnostics:\n{stderr}"
    );
    ensure!(
        stderr.contains("attempt-2-failed") && !stderr.contains("attempt-1-failed"),
        "the retried job's diagnostic quotes its last attempt only:\n{stderr}"
    );
    let state = ws.state_json()?;
    ensure!(
        !state.to_string().contains(SECRET),
        "the secret is in state"
    );

    let ranks = last_error(&state, "ranks")?;
    let tail = ranks["details"]["stderr_tail"].as_str().unwrap_or("");
    ensure!(
        tail.contains("rank-one-broke") && !tail.contains("Primary job"),
        "the failing rank's own stderr, not mpirun's summary: {ranks}"
    );
    ensure!(
        ranks["details"]["rank"] == "1"
            && ranks["details"]["stderr_path"]
                .as_str()
                .is_some_and(|p| p.ends_with("rank.1/stderr")),
        "the failing rank and its log: {ranks}"
    );

    let retried = last_error(&state, "retried")?;
    let tail = retried["details"]["stderr_tail"].as_str().unwrap_or("");
    ensure!(
        tail.contains("attempt-2-failed") && !tail.contains("attempt-1-failed"),
        "only the last attempt's stderr: {retried}"
    );

    let leaky = last_error(&state, "leaky")?;
    ensure!(
        leaky["details"]["stderr_tail"] == "token=***",
        "the secret is redacted from the tail: {leaky}"
    );

    let overrun = last_error(&state, "overrun")?;
    let message = overrun["message"].as_str().unwrap_or("");
    ensure!(
        overrun["code"] == "JobWallClockTimeExceeded"
            && message.contains("stderr-")
            && overrun["details"]["stderr_path"]
                .as_str()
                .is_some_and(|p| Path::new(p).exists())
            && overrun["details"]["stderr_tail"] == "still-going",
        "a wall-clock failure names its logs: {overrun}"
    );

    let victim = last_error(&state, "victim")?;
    ensure!(
        victim["code"] == "JobPreparationFailed"
            && victim["message"]
                .as_str()
                .is_some_and(|m| m.contains("through a link")),
        "a planted link is refused: {victim}"
    );
    ensure!(
        walk(&elsewhere).is_empty(),
        "nothing is written through the link: {:?}",
        walk(&elsewhere)
    );
    Ok(())
}

fn pid_in(path: &Path) -> anyhow::Result<u32> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("read {}", path.display()))?
        .trim()
        .parse()?)
}

fn wait_for_file(path: &Path) -> anyhow::Result<()> {
    wait_for(
        &format!("{} to be written", path.display()),
        Duration::from_secs(60),
        || Ok(std::fs::read_to_string(path).is_ok_and(|t| !t.trim().is_empty())),
    )
}

/// `setsid sleep` and a double-forked `sleep`, their PIDs written to `<dir>/<name>-{a,b}.pid`.
fn detach(dir: &Path, name: &str) -> String {
    let pid = |which: &str| {
        dir.join(format!("{name}-{which}.pid"))
            .display()
            .to_string()
    };
    format!(
        "setsid sleep 1000 > /dev/null 2>&1 & echo $! > {a}; (setsid sh -c 'sleep 1000 & echo $! > {b}' > /dev/null 2>&1 &); sleep 0.5",
        a = pid("a"),
        b = pid("b")
    )
}

#[test]
fn detached_processes_end_with_their_job_and_their_cluster() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let dir = ws.path().to_path_buf();
    let pids = |name: &str| -> Vec<PathBuf> {
        ["a", "b"]
            .iter()
            .map(|w| dir.join(format!("{name}-{w}.pid")))
            .collect()
    };
    let setup = format!(
        "  setup_task {{\n    command_line = \"{}\"\n    std_out_err_path_prefix = \"$AZ_BATCHAI_MOUNT_ROOT/setuplogs\"\n  }}",
        detach(&dir, "setup")
    );
    let config = cluster(1, &setup)
        + &job(
            "finished",
            &format!(
                "  custom_toolkit {{\n    command_line = \"{}\"\n  }}",
                detach(&dir, "finished")
            ),
        )
        + &job(
            "running",
            &format!(
                "  depends_on = [batchai_job.finished]\n  wait_for_completion = false\n  custom_toolkit {{\n    command_line = \"{}; sleep 1000\"\n  }}",
                detach(&dir, "running")
            ),
        );
    ws.write_config(&config)?;
    ws.init()?;
    ws.apply()?;
    // The setup task's log prefix is expanded on the node, not taken as a relative directory.
    let logs: Vec<PathBuf> = walk(&ws.root)
        .into_iter()
        .filter(|p| p.ends_with("stdout.txt") && p.to_string_lossy().contains("/setuplogs/c/"))
        .collect();
    ensure!(
        logs.len() == 1 && logs[0].to_string_lossy().contains("/mounts/setuplogs/c/"),
        "setup logs below the mount root: {logs:?}"
    );
    ensure!(
        !walk(&ws.root)
            .iter()
            .any(|p| p.to_string_lossy().contains("$AZ_BATCHAI_MOUNT_ROOT")),
        "a literal $AZ_BATCHAI_MOUNT_ROOT directory was created"
    );
    // The finished job's detached processes went when it ended.
    for path in pids("finished") {
        let pid = pid_in(&path)?;
        ensure!(!alive(pid), "{} ({pid}) outlived its job", path.display());
    }
    // The running job's and the setup task's live until the cluster goes.
    let mut survivors = Vec::new();
    for path in pids("running").into_iter().chain(pids("setup")) {
        wait_for_file(&path)?;
        let pid = pid_in(&path)?;
        ensure!(alive(pid), "{} ({pid}) should still run", path.display());
        survivors.push((path, pid));
    }
    ws.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
    for (path, pid) in survivors {
        ensure!(
            !alive(pid),
            "{} ({pid}) outlived its cluster",
            path.display()
        );
    }
    Ok(())
}
