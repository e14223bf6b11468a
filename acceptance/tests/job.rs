//! End to end: real Terraform CLIs drive `batchai_job` on local clusters: every toolkit's launch
//! semantics, priority and gang scheduling, backfill that never starves a large job, wall-clock
//! limits, retries, a node killed mid-job, fifty jobs in one apply, termination on destroy,
//! write-only secrets, containers, auto-scale fed by jobs, import and drift, and the quickstart.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use batchai_acceptance::{
    Cli, Workspace, alive, clis, fixture, for_every_cli, newest_cli, planned_actions, repo,
    resource_values, wait_for, walk,
};
use control::jobs::{JobState, JobStatus};
use control::records::{ErrorCode, NodeRecord, keys};

use serde_json::Value as Json;

fn cluster(nodes: u32) -> String {
    batchai_acceptance::cluster_c(nodes, "")
}

fn job(name: &str, body: &str) -> String {
    batchai_acceptance::job_on_c(name, body)
}

fn store(ws: &Workspace) -> anyhow::Result<std::sync::Arc<dyn control::Store>> {
    ws.store()
}

/// The status of job `name` on cluster `c`.
fn status(ws: &Workspace, name: &str) -> anyhow::Result<Option<JobStatus>> {
    status_on(ws, "c", name)
}

fn status_on(ws: &Workspace, cluster: &str, name: &str) -> anyhow::Result<Option<JobStatus>> {
    batchai_acceptance::job_status(ws, cluster, name)
}

fn wait_state(ws: &Workspace, name: &str, want: JobState, limit: Duration) -> anyhow::Result<()> {
    wait_for(
        &format!("job {name} to be {}", want.as_str()),
        limit,
        || Ok(status(ws, name)?.is_some_and(|s| s.state == want)),
    )
}

fn nodes(ws: &Workspace) -> anyhow::Result<Vec<NodeRecord>> {
    batchai_acceptance::node_records(ws, "c")
}

fn job_values(state: &Json, name: &str) -> anyhow::Result<Json> {
    resource_values(state, &format!("batchai_job.{name}"))
        .cloned()
        .with_context(|| format!("no batchai_job.{name} in state"))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every envdump record below `dir`.
fn records_in(dir: &Path) -> Vec<Json> {
    walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|p| serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok())
        .collect()
}

fn env<'a>(record: &'a Json, key: &str) -> &'a str {
    record
        .pointer(&format!("/env/{key}"))
        .and_then(Json::as_str)
        .unwrap_or("")
}

/// The values of `key` over `records`, sorted.
fn values(records: &[Json], key: &str) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(|r| env(r, key).to_owned()).collect();
    v.sort();
    v
}

fn distinct(records: &[Json], key: &str) -> usize {
    records
        .iter()
        .map(|r| env(r, key))
        .collect::<BTreeSet<_>>()
        .len()
}

fn results_dir(ws: &Workspace, job: &str) -> PathBuf {
    ws.path().join("out").join(job)
}

fn outputs(ws: &Workspace, job: &str) -> String {
    format!(
        r#"  output_directories {{
    id          = "RESULTS"
    path_prefix = "{}"
  }}"#,
        results_dir(ws, job).display()
    )
}

fn dump(script: &Path, args: &str) -> String {
    format!(
        "python_script_file_path = \"{}\"\n    command_line_args = \"{args}\"",
        script.display()
    )
}

#[test]
fn every_toolkit_launches_with_its_documented_environment() -> anyhow::Result<()> {
    if !mpirun_available() {
        anyhow::bail!(
            "mpirun is not on PATH: install Debian's openmpi-bin (`cargo xtask test` does)"
        );
    }
    let ws = Workspace::new(&newest_cli())?;
    let d = fixture("envdump.py");
    let data = ws.path().join("data");
    std::fs::create_dir_all(&data)?;
    let rendezvous = repo().join("examples/jobs/pytorch/rendezvous.py");
    let common = |name: &str| {
        format!(
            "  node_count = 2\n  environment_variables = {{ GREETING = \"hello\" }}\n  input_directories {{\n    id   = \"DATA\"\n    path = \"{}\"\n  }}\n{}",
            data.display(),
            outputs(&ws, name)
        )
    };
    let toolkits: [(&str, String); 11] = [
        (
            "custom",
            format!(
                "custom_toolkit {{\n    command_line = \"python3 {} --tag custom\"\n  }}",
                d.display()
            ),
        ),
        (
            "mpi",
            format!(
                "custom_mpi {{\n    command_line = \"python3 {} --tag mpi\"\n    process_count = 4\n  }}",
                d.display()
            ),
        ),
        (
            "horovod",
            format!("horovod {{\n    {}\n  }}", dump(&d, "--tag horovod")),
        ),
        (
            "chainer",
            format!("chainer {{\n    {}\n  }}", dump(&d, "--tag chainer")),
        ),
        (
            "cntk",
            format!("cntk {{\n    {}\n  }}", dump(&d, "--tag cntk")),
        ),
        (
            "caffe",
            format!(
                "caffe {{\n    {}\n    process_count = 2\n  }}",
                dump(&d, "--tag caffe")
            ),
        ),
        (
            "caffe2",
            format!("caffe2 {{\n    {}\n  }}", dump(&d, "--tag caffe2")),
        ),
        (
            "pytorch",
            format!(
                "pytorch {{\n    {}\n    process_count = 3\n  }}",
                dump(&d, "--tag pytorch")
            ),
        ),
        (
            "rendezvous",
            format!(
                "pytorch {{\n    python_script_file_path = \"{}\"\n    communication_backend = \"gloo\"\n  }}",
                rendezvous.display()
            ),
        ),
        (
            "tensorflow",
            format!(
                "tensorflow {{\n    python_script_file_path = \"{}\"\n    master_command_line_args = \"--tag master\"\n    worker_command_line_args = \"--tag worker\"\n    parameter_server_command_line_args = \"--tag ps\"\n  }}",
                d.display()
            ),
        ),
        (
            "prep",
            format!(
                "job_preparation {{\n    command_line = \"echo prepared-on-$AZ_BATCHAI_NODE_ID >> {}/prep.txt\"\n  }}\n  custom_toolkit {{\n    command_line = \"python3 {} --tag prep\"\n  }}",
                ws.path().display(),
                d.display()
            ),
        ),
    ];
    std::fs::write(data.join("input.txt"), "from-the-host")?;
    let mut config = cluster(2);
    config.push_str(&job(
        "mounted",
        &format!(
            "  mount_volumes {{\n    host_directory {{\n      path                = \"{}\"\n      relative_mount_path = \"extra\"\n    }}\n  }}\n{}\n  custom_toolkit {{\n    command_line = \"cat $AZ_BATCHAI_JOB_MOUNT_ROOT/extra/input.txt > $AZ_BATCHAI_OUTPUT_RESULTS/copied.txt\"\n  }}",
            data.display(),
            outputs(&ws, "mounted")
        ),
    ));
    for (name, toolkit) in &toolkits {
        config.push_str(&job(name, &format!("{}\n  {toolkit}", common(name))));
    }
    ws.write_config(&config)?;
    ws.init()?;
    ws.apply()?;

    let get = |name: &str| records_in(&results_dir(&ws, name));
    let all_nodes: BTreeSet<String> = nodes(&ws)?.into_iter().map(|n| n.id).collect();
    ensure!(
        all_nodes.len() == 2,
        "the cluster should have 2 nodes: {all_nodes:?}"
    );

    // custom_toolkit: once, on the master, with the whole Batch AI environment.
    let custom = get("custom");
    ensure!(
        custom.len() == 1,
        "custom_toolkit ran {} times",
        custom.len()
    );
    let r = &custom[0];
    ensure!(
        env(r, "AZ_BATCHAI_NODE_ID") == env(r, "AZ_BATCHAI_JOB_MASTER_NODE"),
        "not on the master: {r}"
    );
    for key in [
        "AZ_BATCHAI_MOUNT_ROOT",
        "AZ_BATCHAI_JOB_MOUNT_ROOT",
        "AZ_BATCHAI_JOB_TEMP",
        "AZ_BATCHAI_JOB_TEMP_DIR",
        "AZ_BATCHAI_SHARED_JOB_TEMP",
        "AZ_BATCHAI_STDOUTERR_DIR",
        "AZ_BATCHAI_MPI_HOST_FILE",
        "AZ_BATCHAI_NUM_GPUS",
        "AZ_BATCHAI_TASK_INDEX",
        "AZ_BATCHAI_OUTPUT_RESULTS",
        "BATCHAI_METRICS_FILE",
    ] {
        ensure!(
            !env(r, key).is_empty(),
            "custom_toolkit did not see {key}: {r}"
        );
    }
    ensure!(
        env(r, "AZ_BATCHAI_INPUT_DATA") == data.display().to_string(),
        "input: {r}"
    );
    ensure!(env(r, "GREETING") == "hello", "environment_variables: {r}");
    ensure!(
        env(r, "CUDA_VISIBLE_DEVICES").is_empty(),
        "no GPUs here: {r}"
    );
    ensure!(
        r.get("cwd").and_then(Json::as_str) == Some(env(r, "AZ_BATCHAI_JOB_TEMP")),
        "a job runs in its temp directory: {r}"
    );

    // MPI toolkits: every rank started by mpirun, spread over both nodes per the hostfile.
    for (name, ranks) in [
        ("mpi", 4),
        ("horovod", 2),
        ("chainer", 2),
        ("cntk", 2),
        ("caffe", 2),
    ] {
        let rs = get(name);
        let want: Vec<String> = (0..ranks).map(|r| r.to_string()).collect();
        let mut got = values(&rs, "OMPI_COMM_WORLD_RANK");
        got.sort_by_key(|r| r.parse::<u32>().unwrap_or(0));
        ensure!(got == want, "{name}: ranks {got:?}, want {want:?}");
        ensure!(
            distinct(&rs, "AZ_BATCHAI_NODE_ID") == 2,
            "{name}: ranks not on both nodes: {rs:?}"
        );
        ensure!(
            values(&rs, "OMPI_COMM_WORLD_SIZE")
                .iter()
                .all(|s| *s == ranks.to_string()),
            "{name}: size"
        );
        for r in &rs {
            // Each rank sees the node it runs on, not the master's.
            let node = env(r, "AZ_BATCHAI_NODE_ID");
            ensure!(
                env(r, "AZ_BATCHAI_MOUNT_ROOT").contains(&format!("/{node}/")),
                "{name}: {r}"
            );
        }
    }
    let mpi = get("mpi");
    for node in &all_nodes {
        let on = mpi
            .iter()
            .filter(|r| env(r, "AZ_BATCHAI_NODE_ID") == node)
            .count();
        ensure!(on == 2, "custom_mpi: {on} ranks on {node}, want 2");
    }

    // caffe2: the master only.
    ensure!(
        get("caffe2").len() == 1,
        "caffe2 ran {} times",
        get("caffe2").len()
    );

    // PyTorch: 3 ranks over 2 nodes (2 + 1) with the rendezvous variables.
    let pt = get("pytorch");
    ensure!(
        values(&pt, "RANK") == ["0", "1", "2"],
        "pytorch ranks: {:?}",
        values(&pt, "RANK")
    );
    ensure!(values(&pt, "WORLD_SIZE") == ["3", "3", "3"], "world size");
    ensure!(
        distinct(&pt, "MASTER_PORT") == 1 && distinct(&pt, "MASTER_ADDR") == 1,
        "one rendezvous"
    );
    let node_of = |rank: &str| {
        pt.iter()
            .find(|r| env(r, "RANK") == rank)
            .map(|r| {
                (
                    env(r, "AZ_BATCHAI_NODE_ID").to_owned(),
                    env(r, "LOCAL_RANK").to_owned(),
                )
            })
            .unwrap_or_default()
    };
    let (n0, l0) = node_of("0");
    let (n1, l1) = node_of("1");
    let (n2, l2) = node_of("2");
    ensure!(
        n0 == n1 && n0 != n2,
        "ranks 0,1 share a node, 2 is on the other: {n0} {n1} {n2}"
    );
    ensure!(
        (l0.as_str(), l1.as_str(), l2.as_str()) == ("0", "1", "0"),
        "local ranks {l0} {l1} {l2}"
    );

    // The rendezvous example meets its peer over TCP.
    let meet = results_dir(&ws, "rendezvous");
    let found: Vec<PathBuf> = walk(&meet)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("rank-"))
        .collect();
    ensure!(found.len() == 2, "rendezvous wrote {found:?}");

    // TensorFlow: worker 0 with the master's arguments, worker 1, one parameter server.
    let tf = get("tensorflow");
    let by_tag: BTreeMap<String, &Json> = tf
        .iter()
        .map(|r| {
            (
                r.get("tag").and_then(Json::as_str).unwrap_or("").to_owned(),
                r,
            )
        })
        .collect();
    ensure!(
        by_tag.keys().cloned().collect::<Vec<_>>() == ["master", "ps", "worker"],
        "tensorflow tasks: {:?}",
        by_tag.keys()
    );
    for (tag, kind, index) in [
        ("master", "worker", 0),
        ("worker", "worker", 1),
        ("ps", "ps", 0),
    ] {
        let r = by_tag[tag];
        let config: Json = serde_json::from_str(env(r, "TF_CONFIG"))?;
        ensure!(
            config["task"] == serde_json::json!({"type": kind, "index": index}),
            "{tag}: {config}"
        );
        ensure!(
            config["cluster"]["worker"].as_array().map(Vec::len) == Some(2),
            "{tag}: {config}"
        );
        ensure!(
            config["cluster"]["ps"].as_array().map(Vec::len) == Some(1),
            "{tag}: {config}"
        );
        ensure!(
            env(r, "AZ_BATCHAI_TASK_INDEX") == index.to_string(),
            "{tag} task index"
        );
        ensure!(
            env(r, "AZ_BATCHAI_WORKER_HOSTS").split(',').count() == 2,
            "{tag} worker hosts"
        );
    }
    ensure!(
        env(by_tag["master"], "AZ_BATCHAI_NODE_ID") != env(by_tag["worker"], "AZ_BATCHAI_NODE_ID"),
        "the workers are on different nodes"
    );

    // A job-level mount is there for the run, and gone afterwards.
    let copied = walk(&results_dir(&ws, "mounted"))
        .into_iter()
        .find(|p| p.ends_with("copied.txt"))
        .context("the mounted job wrote nothing")?;
    ensure!(
        std::fs::read_to_string(copied)? == "from-the-host",
        "job mount content"
    );
    let leftovers: Vec<PathBuf> = walk(&ws.platform_root().join("clusters"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("jobmounts/mounted/extra"))
        .collect();
    ensure!(
        leftovers.is_empty(),
        "job mounts outlived the job: {leftovers:?}"
    );

    // Job preparation ran on both of the job's nodes before the toolkit.
    let prepared = lines(&ws.path().join("prep.txt"));
    ensure!(prepared.len() == 2, "job preparation ran {prepared:?}");

    // Everything succeeded once, and a second plan is empty.
    let state = ws.state_json()?;
    for (name, _) in &toolkits {
        let v = job_values(&state, name)?;
        ensure!(
            v["execution_state"] == "succeeded" && v["attempts"] == 1,
            "{name}: {v}"
        );
    }
    ensure!(
        ws.plan_exit_code()? == 0,
        "a finished job must not plan a change"
    );
    Ok(())
}

fn mpirun_available() -> bool {
    std::process::Command::new("mpirun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A job that waits until `release` exists, after leaving `started`.
fn gate(ws: &Workspace, name: &str) -> String {
    format!(
        "touch {dir}/{name}.started; while [ ! -e {dir}/{name}.release ]; do sleep 0.1; done",
        dir = ws.path().display()
    )
}

fn release(ws: &Workspace, name: &str) -> anyhow::Result<()> {
    std::fs::write(ws.path().join(format!("{name}.release")), "")?;
    Ok(())
}

fn started(ws: &Workspace, name: &str) -> anyhow::Result<()> {
    let marker = ws.path().join(format!("{name}.started"));
    wait_for(
        &format!("job {name} to start"),
        Duration::from_secs(60),
        || Ok(marker.exists()),
    )
}

fn record(ws: &Workspace, name: &str) -> String {
    format!("echo {name} >> {}/order.txt", ws.path().display())
}

#[test]
fn queued_jobs_start_by_priority_and_whole_gangs() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let blocker = job(
        "blocker",
        &format!(
            "  node_count = 2\n  wait_for_completion = false\n  custom_toolkit {{\n    command_line = \"{}\"\n  }}",
            gate(&ws, "blocker")
        ),
    );
    ws.write_config(&(cluster(2) + &blocker))?;
    ws.init()?;
    ws.apply()?;
    started(&ws, "blocker")?;

    let mut config = cluster(2) + &blocker;
    for (name, priority) in [("low", "low"), ("normal", "normal"), ("high", "high")] {
        config.push_str(&job(
            name,
            &format!(
                "  node_count = 2\n  scheduling_priority = \"{priority}\"\n  wait_for_completion = false\n  custom_toolkit {{\n    command_line = \"{}\"\n  }}",
                record(&ws, name)
            ),
        ));
    }
    ws.write_config(&config)?;
    ws.apply()?;
    // The cluster is full: nothing else may start, not even on part of it.
    for name in ["low", "normal", "high"] {
        ensure!(
            status(&ws, name)?.is_some_and(|s| s.state == JobState::Queued),
            "{name} started early"
        );
    }
    release(&ws, "blocker")?;
    let order = ws.path().join("order.txt");
    wait_for("all three jobs", Duration::from_secs(60), || {
        Ok(lines(&order).len() == 3)
    })?;
    ensure!(
        lines(&order) == ["high", "normal", "low"],
        "order: {:?}",
        lines(&order)
    );
    Ok(())
}

#[test]
fn backfill_never_delays_the_large_job_at_the_head() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let long = job(
        "long",
        &format!(
            "  wait_for_completion = false\n  custom_toolkit {{\n    command_line = \"{}\"\n  }}",
            gate(&ws, "long")
        ),
    );
    ws.write_config(&(cluster(2) + &long))?;
    ws.init()?;
    ws.apply()?;
    started(&ws, "long")?;

    // `big` needs both nodes and waits for `long`; `fits` ends before `long` can (its wall
    // clock is shorter) so it may use the free node; `delays` could still run when `long`
    // ends and would hold up `big`, so it must wait.
    let mut config = cluster(2) + &long;
    config.push_str(&job(
        "big",
        &format!(
            "  node_count = 2\n  wait_for_completion = false\n  custom_toolkit {{\n    command_line = \"{}\"\n  }}",
            record(&ws, "big")
        ),
    ));
    for (name, limit) in [("fits", "10m"), ("delays", "30.00:00:00")] {
        config.push_str(&job(
            name,
            &format!(
                "  wait_for_completion = false\n  depends_on = [batchai_job.big]\n  constraints {{\n    max_wall_clock_time = \"{limit}\"\n  }}\n  custom_toolkit {{\n    command_line = \"{}\"\n  }}",
                record(&ws, name)
            ),
        ));
    }
    ws.write_config(&config)?;
    ws.apply()?;
    let order = ws.path().join("order.txt");
    wait_for("the backfilled job", Duration::from_secs(60), || {
        Ok(!lines(&order).is_empty())
    })?;
    wait_state(&ws, "fits", JobState::Succeeded, Duration::from_secs(30))?;
    ensure!(lines(&order) == ["fits"], "order: {:?}", lines(&order));
    ensure!(
        status(&ws, "delays")?.is_some_and(|s| s.state == JobState::Queued),
        "`delays` must wait for `big`"
    );
    release(&ws, "long")?;
    wait_for("every job", Duration::from_secs(60), || {
        Ok(lines(&order).len() == 3)
    })?;
    ensure!(
        lines(&order) == ["fits", "big", "delays"],
        "order: {:?}",
        lines(&order)
    );
    Ok(())
}

#[test]
fn limits_retries_and_failures_are_reported() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let mut config = cluster(2);
    config.push_str(&job(
        "overrun",
        "  constraints {\n    max_wall_clock_time = \"2s\"\n  }\n  custom_toolkit {\n    command_line = \"sleep 60\"\n  }",
    ));
    let retry = "  retry {\n    max_retries = 2\n    retry_on_exit_codes = [3]\n  }";
    config.push_str(&job(
        "flaky",
        &format!(
            "{retry}\n  custom_toolkit {{\n    command_line = \"if [ $AZ_BATCHAI_JOB_ATTEMPT = 1 ]; then exit 3; fi; echo fine\"\n  }}"
        ),
    ));
    config.push_str(&job(
        "broken",
        &format!(
            "{retry}\n  custom_toolkit {{\n    command_line = \"sleep 300 & echo $! > {}/background.pid; echo boom-on-stderr >&2; exit 4\"\n  }}",
            ws.path().display()
        ),
    ));
    // Longer than the node's process polling takes to reach its ceiling (a regression once).
    config.push_str(&job(
        "patient",
        "  timeouts {\n    create = \"2m\"\n  }\n  custom_toolkit {\n    command_line = \"sleep 6\"\n  }",
    ));
    config.push_str(&job(
        "unprepared",
        "  job_preparation {\n    command_line = \"echo no-dataset-here >&2; exit 9\"\n  }\n  custom_toolkit {\n    command_line = \"echo never\"\n  }",
    ));
    ws.write_config(&config)?;
    ws.init()?;
    let out = ws.run(&["apply", "-auto-approve", "-no-color"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "failed jobs must fail the apply");
    ensure!(
        stderr.contains("JobPreparationFailed") && stderr.contains("no-dataset-here"),
        "job preparation failure and its log:\n{stderr}"
    );
    ensure!(
        stderr.contains("JobWallClockTimeExceeded"),
        "wall clock error missing:\n{stderr}"
    );
    ensure!(
        stderr.contains("max_wall_clock_time (00:00:02)"),
        "the limit is quoted:\n{stderr}"
    );
    ensure!(
        stderr.contains("exit code: 4") && stderr.contains("boom-on-stderr"),
        "exit code and stderr tail:\n{stderr}"
    );
    ensure!(stderr.contains("stderr-"), "log paths are named:\n{stderr}");

    let state = ws.state_json()?;
    let flaky = job_values(&state, "flaky")?;
    ensure!(
        flaky["execution_state"] == "succeeded" && flaky["attempts"] == 2,
        "flaky: {flaky}"
    );
    let broken = job_values(&state, "broken")?;
    ensure!(
        broken["execution_state"] == "failed"
            && broken["attempts"] == 1
            && broken["exit_code"] == 4,
        "an unlisted exit code is not retried: {broken}"
    );
    let overrun = job_values(&state, "overrun")?;
    ensure!(overrun["execution_state"] == "failed", "overrun: {overrun}");
    ensure!(
        overrun["errors"][0]["code"] == "JobWallClockTimeExceeded",
        "overrun errors: {}",
        overrun["errors"]
    );

    // Failed jobs are tainted: the next plan runs them again, the good one stays.
    let patient = job_values(&state, "patient")?;
    ensure!(
        patient["execution_state"] == "succeeded",
        "patient: {patient}"
    );
    // The failing job's background process went with it.
    let background: u32 = std::fs::read_to_string(ws.path().join("background.pid"))?
        .trim()
        .parse()?;
    ensure!(
        !alive(background),
        "a background process of a failed job outlived it"
    );
    let unprepared = job_values(&state, "unprepared")?;
    ensure!(
        unprepared["execution_state"] == "failed" && unprepared["exit_code"] == 9,
        "unprepared: {unprepared}"
    );

    // A path that escapes its mount root is refused at validation, at the attribute.
    let bad = Workspace::new(&newest_cli())?;
    bad.write_config(&(cluster(1) + &job(
        "escape",
        "  output_directories {\n    id          = \"OUT\"\n    path_prefix = \"$AZ_BATCHAI_MOUNT_ROOT/../../etc\"\n  }\n  custom_toolkit {\n    command_line = \"true\"\n  }",
    )))?;
    bad.init()?;
    let out = bad.run(&["validate", "-json", "-no-color"])?;
    let report: Json = serde_json::from_slice(&out.stdout)?;
    let diag = report["diagnostics"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["summary"] == "invalid path"))
        .cloned()
        .context("no diagnostic for the escaping path")?;
    ensure!(
        diag["detail"]
            .as_str()
            .is_some_and(|d| d.contains("escapes"))
            && diag["range"]["filename"] == "main.tf",
        "diagnostic: {diag}"
    );

    let plan = ws.plan_json()?;
    for name in ["broken", "overrun", "unprepared"] {
        let actions = planned_actions(&plan, &format!("batchai_job.{name}"));
        ensure!(
            actions == ["delete", "create"],
            "{name} should be replaced: {actions:?}"
        );
    }
    ensure!(
        planned_actions(&plan, "batchai_job.flaky") == ["no-op"],
        "flaky stays"
    );
    Ok(())
}

#[test]
fn a_job_on_a_killed_node_finishes_elsewhere() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let dir = ws.path().display().to_string();
    let command = format!(
        "echo $AZ_BATCHAI_NODE_ID > {dir}/attempt-$AZ_BATCHAI_JOB_ATTEMPT; \
         if [ $AZ_BATCHAI_JOB_ATTEMPT = 1 ]; then echo $$ > {dir}/first.pid; exec sleep 600; fi; \
         echo trained > $AZ_BATCHAI_OUTPUT_RESULTS/model.txt"
    );
    let body = format!(
        "  wait_for_completion = false\n{}\n  custom_toolkit {{\n    command_line = \"{command}\"\n  }}",
        outputs(&ws, "survivor")
    );
    ws.write_config(&(cluster(2) + &job("survivor", &body)))?;
    ws.init()?;
    ws.apply()?;
    let first = ws.path().join("attempt-1");
    wait_for("the first attempt", Duration::from_secs(60), || {
        Ok(first.exists())
    })?;
    let victim = std::fs::read_to_string(&first)?.trim().to_owned();
    let pid = nodes(&ws)?
        .into_iter()
        .find(|n| n.id == victim)
        .and_then(|n| n.pid)
        .context("the node running the job has no PID")?;
    let job_pid: u32 = std::fs::read_to_string(ws.path().join("first.pid"))?
        .trim()
        .parse()?;
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;

    // Lost after 10 s without heartbeats; the job goes back to the queue and runs again.
    wait_state(
        &ws,
        "survivor",
        JobState::Succeeded,
        Duration::from_secs(120),
    )?;
    let second = std::fs::read_to_string(ws.path().join("attempt-2"))?
        .trim()
        .to_owned();
    ensure!(
        second != victim,
        "the second attempt ran on the killed node {victim}"
    );
    ensure!(
        !alive(job_pid),
        "the first attempt's process {job_pid} outlived its node"
    );
    let model = walk(&results_dir(&ws, "survivor"));
    ensure!(
        model.iter().any(|p| p.ends_with("model.txt")),
        "outputs: {model:?}"
    );

    ws.ok(&["apply", "-refresh-only", "-auto-approve", "-no-color"])?;
    let v = job_values(&ws.state_json()?, "survivor")?;
    ensure!(
        v["execution_state"] == "succeeded" && v["attempts"] == 2,
        "survivor: {v}"
    );
    ensure!(
        v["errors"].as_array().is_some_and(Vec::is_empty),
        "a lost node is not a failure: {v}"
    );
    ensure!(ws.plan_exit_code()? == 0, "nothing to change afterwards");
    Ok(())
}

#[test]
fn fifty_jobs_in_one_apply_each_run_exactly_once() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let ran = ws.path().join("ran.txt");
    let config = cluster(2)
        + &format!(
            r#"resource "batchai_job" "many" {{
  count      = 50
  name       = "many-${{count.index}}"
  cluster_id = batchai_cluster.c.id
  custom_toolkit {{
    command_line = "echo $AZ_BATCHAI_JOB_NAME >> {}"
  }}
}}
"#,
            ran.display()
        );
    ws.write_config(&config)?;
    ws.init()?;
    ws.ok(&["apply", "-auto-approve", "-no-color", "-parallelism=10"])?;
    let runs = lines(&ran);
    let unique: BTreeSet<&String> = runs.iter().collect();
    ensure!(
        runs.len() == 50 && unique.len() == 50,
        "{} runs of {} jobs",
        runs.len(),
        unique.len()
    );
    let state = ws.state_json()?;
    for i in 0..50 {
        let v =
            resource_values(&state, &format!("batchai_job.many[{i}]")).context("missing job")?;
        // Each ran once (above). A hand-over the scheduler had to undo (its snapshot of a node
        // went stale before the node record's compare-and-swap) uses an attempt number without
        // running anything, which a polled blob store's slower view occasionally causes.
        let attempts = v["attempts"].as_u64().unwrap_or(0);
        ensure!(
            v["execution_state"] == "succeeded" && (1..=2).contains(&attempts),
            "many[{i}]: {v}"
        );
    }
    Ok(())
}

#[test]
fn destroy_terminates_a_running_job() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let pid_file = ws.path().join("job.pid");
    let body = format!(
        "  wait_for_completion = false\n  custom_toolkit {{\n    command_line = \"echo '{{\\\"progress\\\": 0.5}}' >> $BATCHAI_METRICS_FILE; echo $$ > {}; exec sleep 600\"\n  }}",
        pid_file.display()
    );
    ws.write_config(&(cluster(1) + &job("endless", &body)))?;
    ws.init()?;
    ws.apply()?;
    wait_for("the job to start", Duration::from_secs(60), || {
        Ok(pid_file.exists())
    })?;
    let pid: u32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
    ensure!(alive(pid), "the job should be running");
    // A refresh shows the running job and what it reported so far (its master publishes
    // metrics to the store as they change, so a refresh may come before the first values).
    let mut v = serde_json::Value::Null;
    for _ in 0..20 {
        ws.ok(&["apply", "-refresh-only", "-auto-approve", "-no-color"])?;
        v = job_values(&ws.state_json()?, "endless")?;
        ensure!(v["execution_state"] == "running", "{v}");
        if v["metrics"]["progress"] == 0.5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    ensure!(v["metrics"]["progress"] == 0.5, "live metrics: {v}");
    ensure!(ws.plan_exit_code()? == 0, "a running job plans no change");

    // Only the job goes: the cluster stays, so this checks the job's own termination.
    ws.write_config(&cluster(1))?;
    ws.apply()?;
    ensure!(
        !alive(pid),
        "destroying the job left its process {pid} running"
    );
    ensure!(
        status(&ws, "endless")?.is_none(),
        "the job's records remain"
    );
    ensure!(
        nodes(&ws)?.iter().all(|n| n.job.is_none()),
        "a node still holds the job"
    );
    Ok(())
}

#[test]
fn secrets_never_reach_state_or_logs() -> anyhow::Result<()> {
    const SECRET: &str = "hunter2-c0ffee-5ecret";
    let body = |ws: &Workspace| {
        format!(
            "  node_count = 2\n  secrets_wo = {{ TOKEN = \"{SECRET}\" }}\n  secrets_wo_version = 1\n{}\n  custom_toolkit {{\n    command_line = \"printf %s $TOKEN | tr a-z b-za > $AZ_BATCHAI_OUTPUT_RESULTS/shifted.txt\"\n  }}",
            outputs(ws, "secret")
        )
    };
    for cli in clis() {
        if cli.at_least(1, 11) {
            continue;
        }
        // CLIs without write-only support get a diagnostic instead of a stored secret.
        let ws = Workspace::new(&cli)?;
        ws.write_config(&(cluster(1) + &job("secret", &body(&ws))))?;
        let out = ws.run(&["validate", "-no-color"])?;
        let text = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "{cli}: validate should fail");
        ensure!(
            text.contains("write-only attribute needs a newer Terraform"),
            "{cli}: {text}"
        );
    }

    let mut ws = Workspace::new(&newest_cli())?;
    let log = ws.path().join("terraform.log");
    ws.env("TF_LOG", "trace");
    ws.env("TF_LOG_PATH", &log.display().to_string());
    ws.write_config(&(cluster(2) + &job("secret", &body(&ws))))?;
    ws.init()?;
    ws.apply()?;
    let shifted: String = SECRET
        .chars()
        .map(|c| match c {
            'z' => 'a',
            'a'..='y' => char::from(c as u8 + 1),
            other => other,
        })
        .collect();
    let seen = walk(&results_dir(&ws, "secret"))
        .into_iter()
        .find(|p| p.ends_with("shifted.txt"))
        .map(std::fs::read_to_string)
        .transpose()?
        .unwrap_or_default();
    ensure!(seen == shifted, "the job did not see the secret: {seen:?}");
    ensure!(
        store(&ws)?
            .get(&keys::job_secrets("c", "secret"))?
            .is_none(),
        "secrets must be removed once the job ended"
    );
    // Nowhere on disk: state, Terraform's trace log, the store, agent and job logs.
    let mut checked = 0;
    for path in walk(ws.path()) {
        if path == ws.path().join("main.tf") {
            // The configuration is where the user wrote it.
            continue;
        }
        let bytes = std::fs::read(&path).unwrap_or_default();
        checked += 1;
        ensure!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret is in {}",
            path.display()
        );
    }
    // And in the store, wherever it is (a blob container holds no files here).
    let store = store(&ws)?;
    for key in store.list("")? {
        let Some(value) = store.get(&key)? else {
            continue;
        };
        checked += 1;
        ensure!(
            !value
                .data
                .windows(SECRET.len())
                .any(|w| w == SECRET.as_bytes()),
            "the secret is in the store at {key}"
        );
    }
    ensure!(
        checked > 10 && log.exists(),
        "too few files checked ({checked})"
    );
    Ok(())
}

#[test]
fn container_jobs_fail_clearly_without_a_runtime() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let body = "  container_settings {\n    image_source_registry {\n      image = \"python:3.12-slim\"\n    }\n    shm_size = \"1g\"\n  }\n  custom_toolkit {\n    command_line = \"echo inside\"\n  }";
    ws.write_config(&(cluster(1) + &job("boxed", body)))?;
    ws.init()?;
    let out = ws.run(&["apply", "-auto-approve", "-no-color"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the job should fail");
    ensure!(
        stderr.contains("ContainerRuntimeUnavailable") && stderr.contains("cannot run containers"),
        "the error must say why:\n{stderr}"
    );
    Ok(())
}

#[test]
fn auto_scale_grows_for_queued_jobs_and_shrinks_when_idle() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let config = r#"resource "batchai_cluster" "c" {
  name    = "c"
  vm_size = "Standard_D2s_v3"
  scale_settings {
    auto_scale {
      minimum_node_count = 0
      maximum_node_count = 2
      idle_timeout       = "2s"
    }
  }
}
"#
    .to_owned()
        + &job(
            "wide",
            "  node_count = 2\n  custom_toolkit {\n    command_line = \"echo $AZ_BATCHAI_JOB_NODE_COUNT\"\n  }",
        );
    ws.write_config(&config)?;
    ws.init()?;
    ws.apply()?;
    let v = job_values(&ws.state_json()?, "wide")?;
    ensure!(v["execution_state"] == "succeeded", "wide: {v}");
    wait_for(
        "the cluster to shrink to 0",
        Duration::from_secs(60),
        || Ok(nodes(&ws)?.is_empty()),
    )?;
    Ok(())
}

#[test]
fn jobs_import_detect_drift_and_keep_their_result() {
    for_every_cli(|cli: &Cli| {
        let ws = Workspace::new(cli)?;
        let config = cluster(1)
            + &job(
                "hello",
                "  custom_toolkit {\n    command_line = \"echo '{\\\"score\\\": 0.5}' >> $BATCHAI_METRICS_FILE\"\n  }",
            );
        let output = "output \"score\" {\n  value = batchai_job.hello.metrics[\"score\"]\n}\n";
        ws.write_config(&(config.clone() + output))?;
        ws.init()?;
        ws.apply()?;
        let score = ws.ok(&["output", "-raw", "score"])?;
        ensure!(score.trim() == "0.5", "metrics output: {score:?}");
        ensure!(
            ws.plan_exit_code()? == 0,
            "a finished job must not plan a change"
        );

        let other = ws.sibling()?;
        other.write_config(&config)?;
        other.init()?;
        other.ok(&[
            "import",
            "-no-color",
            "batchai_cluster.c",
            "local/clusters/c",
        ])?;
        other.ok(&[
            "import",
            "-no-color",
            "batchai_job.hello",
            "local/clusters/c/jobs/hello",
        ])?;
        ensure!(
            other.plan_exit_code()? == 0,
            "import must give an empty plan"
        );

        // wait_for_completion changes in place: the job is not run again.
        ws.write_config(
            &(config.replace(
                "  custom_toolkit {",
                "  wait_for_completion = false\n  custom_toolkit {",
            ) + output),
        )?;
        let plan = ws.plan_json()?;
        ensure!(
            planned_actions(&plan, "batchai_job.hello") == ["update"],
            "wait_for_completion must update in place"
        );
        ws.apply()?;
        let v = job_values(&ws.state_json()?, "hello")?;
        ensure!(
            v["attempts"] == 1 && v["wait_for_completion"] == false,
            "the job ran again: {v}"
        );

        // Removed behind Terraform's back: the next plan creates it again.
        let store = store(&ws)?;
        for key in store.list("clusters/c/jobs/hello/")? {
            store.delete(&key, control::Condition::Always, None)?;
        }
        let plan = ws.plan_json()?;
        ensure!(
            planned_actions(&plan, "batchai_job.hello") == ["create"],
            "drift is not detected"
        );
        Ok(())
    });
}

#[test]
fn the_quickstart_trains_a_model_and_reports_its_accuracy() -> anyhow::Result<()> {
    let ws = apply_example("examples/quickstart")?;
    let accuracy: f64 = ws.ok(&["output", "-raw", "accuracy"])?.trim().parse()?;
    ensure!(accuracy >= 0.9, "accuracy {accuracy}");
    let model = PathBuf::from(ws.ok(&["output", "-raw", "model_directory"])?.trim());
    ensure!(
        model.join("model.json").is_file(),
        "no model in {}",
        model.display()
    );
    ws.ok(&["destroy", "-auto-approve", "-no-color"])?;
    Ok(())
}

/// Copies an example directory into a workspace (its provider block keeps its platform root
/// next to it) and applies it as written.
fn apply_example(dir: &str) -> anyhow::Result<Workspace> {
    let mut ws = Workspace::new(&newest_cli())?;
    let example = repo().join(dir);
    for entry in std::fs::read_dir(&example)? {
        let path = entry?.path();
        let keep = path.extension().is_some_and(|e| e == "tf" || e == "py");
        if keep && let Some(name) = path.file_name() {
            std::fs::copy(&path, ws.path().join(name))?;
        }
    }
    ws.root = ws.path().join(".batchai");
    // Examples configure the provider themselves: the directory store under the root.
    ws.control_store = None;
    ws.init()?;
    ws.apply()?;
    Ok(ws)
}

#[test]
fn the_job_examples_run_as_written() -> anyhow::Result<()> {
    if !mpirun_available() {
        anyhow::bail!(
            "mpirun is not on PATH: install Debian's openmpi-bin (`cargo xtask test` does)"
        );
    }
    let mpi = apply_example("examples/jobs/mpi")?;
    let results = PathBuf::from(mpi.ok(&["output", "-raw", "results"])?.trim());
    let ranks: Vec<String> = (0..4)
        .map(|r| std::fs::read_to_string(results.join(format!("rank-{r}.txt"))).unwrap_or_default())
        .collect();
    let nodes: BTreeSet<&str> = ranks
        .iter()
        .filter_map(|line| line.split("node=").nth(1).map(str::trim))
        .collect();
    ensure!(nodes.len() == 2, "4 ranks on 2 nodes, got {ranks:?}");
    mpi.ok(&["destroy", "-auto-approve", "-no-color"])?;

    let ddp = apply_example("examples/jobs/pytorch")?;
    let world = ddp.ok(&["output", "-raw", "world_size"])?;
    ensure!(world.trim() == "4", "world size {world:?}");
    ddp.ok(&["destroy", "-auto-approve", "-no-color"])?;
    Ok(())
}

#[test]
fn scale_down_acts_on_running_jobs_per_deallocation_option() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let dir = ws.path().display().to_string();
    let config = |nodes: u32| {
        let mut text = String::new();
        for (name, option) in [
            ("rq", "requeue"),
            ("tm", "terminate"),
            ("wt", "waitforjobcompletion"),
        ] {
            text.push_str(&format!(
                r#"resource "batchai_cluster" "{name}" {{
  name    = "{name}"
  vm_size = "Standard_D2s_v3"
  scale_settings {{
    manual {{
      target_node_count        = {nodes}
      node_deallocation_option = "{option}"
    }}
  }}
}}
resource "batchai_job" "{name}" {{
  name                = "{name}"
  cluster_id          = batchai_cluster.{name}.id
  wait_for_completion = false
  custom_toolkit {{
    command_line = "touch {dir}/{name}-$AZ_BATCHAI_JOB_ATTEMPT.started; if [ $AZ_BATCHAI_JOB_ATTEMPT = 1 ]; then while [ ! -e {dir}/{name}.release ]; do sleep 0.1; done; fi"
  }}
}}
"#
            ));
        }
        text
    };
    ws.write_config(&config(1))?;
    ws.init()?;
    ws.apply()?;
    for name in ["rq", "tm", "wt"] {
        let marker = ws.path().join(format!("{name}-1.started"));
        wait_for(&format!("{name} to start"), Duration::from_secs(60), || {
            Ok(marker.exists())
        })?;
    }
    // Each cluster's job has the cluster's name.
    let job_status = |cluster: &str| status_on(&ws, cluster, cluster);

    // Scale every cluster to zero while its job runs.
    ws.write_config(&config(0))?;
    let mut apply = ws.spawn(&["apply", "-auto-approve", "-input=false", "-no-color"])?;
    wait_for("requeue and terminate", Duration::from_secs(60), || {
        let rq = job_status("rq")?.is_some_and(|s| s.state == JobState::Queued);
        let tm = job_status("tm")?.is_some_and(|s| s.state == JobState::Failed);
        Ok(rq && tm)
    })?;
    let tm = job_status("tm")?.context("tm status")?;
    ensure!(
        tm.errors
            .iter()
            .any(|e| e.code == ErrorCode::NodeDeallocated),
        "terminate must say why: {:?}",
        tm.errors
    );
    let wt = job_status("wt")?.context("wt status")?;
    ensure!(
        wt.state == JobState::Running,
        "waitforjobcompletion stopped the job: {wt:?}"
    );
    ensure!(
        apply.try_wait()?.is_none(),
        "the scale-down must wait for the running job"
    );
    std::fs::write(ws.path().join("wt.release"), "")?;
    let finished = apply.wait()?;
    ensure!(finished.success(), "scale-down apply failed: {finished}");
    let wt = job_status("wt")?.context("wt status")?;
    ensure!(
        wt.state == JobState::Succeeded && wt.attempts == 1,
        "wt: {wt:?}"
    );

    // The requeued job runs again once the cluster has a node; a retry was not used.
    ws.write_config(&config(1))?;
    ws.apply()?;
    wait_for("the requeued job", Duration::from_secs(60), || {
        Ok(job_status("rq")?.is_some_and(|s| s.state == JobState::Succeeded))
    })?;
    let rq = job_status("rq")?.context("rq status")?;
    ensure!(rq.attempts == 2 && rq.retries == 0, "rq: {rq:?}");
    Ok(())
}

#[test]
fn plan_names_a_missing_cluster_and_refuses_option_images() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    ws.write_config(
        r#"resource "batchai_job" "lost" {
  name       = "lost"
  cluster_id = "local/clusters/nope"
  custom_toolkit {
    command_line = "true"
  }
}
"#,
    )?;
    ws.init()?;
    let out = ws.run(&["plan", "-no-color"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("cluster not found"),
        "{stderr}"
    );
    ensure!(stderr.contains("cluster_id"), "{stderr}");

    ws.write_config(&(cluster(1)
        + &job(
            "flag",
            "  custom_toolkit {\n    command_line = \"true\"\n  }\n  container_settings {\n    image_source_registry {\n      image = \"--privileged\"\n    }\n  }",
        )))?;
    let out = ws.run(&["plan", "-no-color"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("invalid image"),
        "{stderr}"
    );
    ensure!(stderr.contains("image = \"--privileged\""), "{stderr}");
    Ok(())
}

#[test]
fn the_log_directory_is_in_state_while_the_job_runs() -> anyhow::Result<()> {
    let mut ws = Workspace::new(&newest_cli())?;
    // A 4-GPU size on a machine without GPUs: the nodes run, with no GPU, and say so in state.
    ws.env("BATCHAI_LOCAL_GPU_COUNT", "0");
    let body = format!(
        "  wait_for_completion     = false\n  std_out_err_path_prefix = \"$AZ_BATCHAI_MOUNT_ROOT/data/logs\"\n  custom_toolkit {{\n    command_line = \"echo hello-log; {}\"\n  }}",
        gate(&ws, "logged")
    );
    let config = format!(
        r#"resource "batchai_file_server" "data" {{
  name    = "data"
  vm_size = "Standard_D2s_v3"
  data_disks {{
    disk_count           = 1
    disk_size_gb         = 10
    storage_account_type = "Standard_LRS"
  }}
}}

resource "batchai_cluster" "c" {{
  name    = "c"
  vm_size = "Standard_NC24s_v3"
  scale_settings {{
    manual {{
      target_node_count = 2
    }}
  }}
  mount_volumes {{
    file_server {{
      file_server_id      = batchai_file_server.data.id
      relative_mount_path = "data"
    }}
  }}
}}

{}
{}"#,
        job("logged", &body),
        job(
            "plain",
            "  custom_toolkit {\n    command_line = \"echo plain-log\"\n  }"
        )
    );
    ws.write_config(&config)?;
    ws.init()?;
    ws.apply()?;
    let state = ws.state_json()?;
    let cluster = resource_values(&state, "batchai_cluster.c").context("no cluster")?;
    let node_gpus: Vec<&Json> = cluster["nodes"]
        .as_array()
        .context("no nodes in state")?
        .iter()
        .map(|n| &n["gpus"])
        .collect();
    ensure!(node_gpus == [&Json::Array(vec![]); 2], "{cluster}");

    let logged = job_values(&state, "logged")?;
    let segment = logged["job_output_directory_path_segment"]
        .as_str()
        .context("no segment")?;
    let dir = PathBuf::from(
        logged["std_out_err_directory"]
            .as_str()
            .context("no log dir")?,
    );
    // Through the mount, on the file server's export: the same path from every node.
    let want = ws
        .platform_root()
        .join("fileservers/data/export/logs")
        .join(segment)
        .join("stdouterr");
    ensure!(dir == want, "{} != {}", dir.display(), want.display());
    started(&ws, "logged")?;
    // The master process of a one-node job is labelled with its node's ID.
    let master = |job: &str| -> anyhow::Result<String> {
        status(&ws, job)?
            .and_then(|s| s.nodes.first().cloned())
            .context("no node ran the job")
    };
    ensure!(
        lines(&dir.join(format!("stdout-{}.txt", master("logged")?))) == ["hello-log"],
        "while it runs: {:?}",
        walk(&dir)
    );
    release(&ws, "logged")?;
    wait_state(&ws, "logged", JobState::Succeeded, Duration::from_secs(60))?;

    let plain = job_values(&state, "plain")?;
    let dir = PathBuf::from(
        plain["std_out_err_directory"]
            .as_str()
            .context("no log dir")?,
    );
    ensure!(
        dir.starts_with(ws.platform_root().join("jobs")),
        "default prefix: {}",
        dir.display()
    );
    ensure!(
        lines(&dir.join(format!("stdout-{}.txt", master("plain")?))) == ["plain-log"],
        "{:?}",
        walk(&dir)
    );
    ws.ok(&["destroy", "-auto-approve", "-no-color"])?;
    Ok(())
}
