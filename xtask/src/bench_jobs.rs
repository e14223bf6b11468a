//! Job benchmarks on a 4-node local cluster: dispatch latency (queued to running) and
//! throughput of no-op jobs, through the control store directly and through Terraform.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use batchai::names::Name;
use batchai::platform::Platform as _;
use control::jobs::{JobSpec, JobState, Priority, Retry, Toolkit};
use control::records::{ClusterSpec, DeallocationOption, FORMAT, Scale, keys};
use control::{DirStore, Store as _};

const NODES: u32 = 4;

fn percentile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

fn no_op(name: &str, cluster: &str, marks: &Path) -> JobSpec {
    JobSpec {
        format: FORMAT,
        name: name.to_owned(),
        cluster: cluster.to_owned(),
        uid: name.to_owned(),
        created_ms: control::records::now_ms(),
        node_count: 1,
        priority: Priority::Normal,
        // The process notes when it began, so latency is measured to a running process; with
        // a shell builtin, so that the note costs no process of its own.
        toolkit: Toolkit::CustomToolkit {
            command_line: format!("echo $EPOCHREALTIME > {}/{name}", marks.display()),
        },
        job_preparation: None,
        environment_variables: BTreeMap::new(),
        has_secrets: false,
        input_directories: Vec::new(),
        output_directories: Vec::new(),
        std_out_err_path_prefix: marks.join("logs").display().to_string(),
        mounts: Vec::new(),
        max_wall_clock_ms: 60_000,
        max_unschedulable_ms: control::jobs::DEFAULT_MAX_UNSCHEDULABLE_MS,
        termination_grace_ms: control::jobs::DEFAULT_TERMINATION_GRACE_MS,
        retry: Retry::default(),
        container: None,
    }
}

/// Milliseconds from queued to the job's process running, read from its mark (bash's
/// `$EPOCHREALTIME`: seconds with six decimals, after a `.` or a `,` as the locale has it).
fn started_after_ms(marks: &Path, name: &str, queued_ms: u64) -> Option<f64> {
    let seconds: f64 = std::fs::read_to_string(marks.join(name))
        .ok()?
        .trim()
        .replace(',', ".")
        .parse()
        .ok()?;
    Some(seconds * 1e3 - queued_ms as f64)
}

/// With `BATCHAI_BENCH_KEEP` set, stops after the store-direct part and leaves the cluster
/// running with its logs and records, for a post-mortem.
pub fn job_bench(binary: &Path) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("batchai-jobbench-{}", std::process::id()));
    let kept = store_direct(binary, &dir, None, 100, &[1, 8], 200)?;
    if kept {
        return Ok(());
    }
    terraform_bench(binary, &dir)?;
    let _ = std::fs::remove_dir_all(&dir);
    request_rates()?;
    azurite_bench(binary)
}

/// The same figures with the control store in a container of an Azurite (installed by `cargo
/// xtask test`), side by side with the directory store's: fewer jobs, since a store without
/// change notifications is polled (every 2 s).
fn azurite_bench(binary: &Path) -> anyhow::Result<()> {
    use control_blob::azurite::Azurite;
    let azurite = match Azurite::start() {
        Ok(a) => a,
        Err(e) => {
            println!("job figures with the Azurite store: not measured ({e})");
            return Ok(());
        }
    };
    let location = agent::store::StoreLocation {
        url: azurite.container_url("jobbench"),
        credential: Some(agent::store::Credential::AccountKey(
            control_blob::azurite::ACCOUNT_KEY.to_owned(),
        )),
    };
    let opened = agent::store::open_checked(&location).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = std::env::temp_dir().join(format!("batchai-jobbench-az-{}", std::process::id()));
    store_direct(binary, &dir, Some(opened.clone()), 20, &[8], 60)?;
    let _ = std::fs::remove_dir_all(&dir);
    // Requests per node counted against Azurite itself.
    let work = std::env::temp_dir().join(format!("batchai-ratebench-az-{}", std::process::id()));
    let fresh = agent::store::open_checked(&agent::store::StoreLocation {
        url: azurite.container_url("ratebench"),
        ..location
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let window = rates_window()?;
    if window > 0 {
        let measured = agent::measure::count_requests(
            fresh.store,
            &work,
            agent::Rates::STANDARD,
            Duration::from_secs(window),
        )
        .map_err(|e| anyhow::anyhow!("{e}"));
        let _ = std::fs::remove_dir_all(&work);
        print_rates("an Azurite blob store", window, measured?);
    }
    Ok(())
}

/// Latency (`latency_n` jobs one at a time) and throughput (`count` jobs per entry of
/// `submitters`) through the control store on a 4-node local cluster under `dir`, with `store`
/// (a directory store under `dir` when `None`). True when the cluster was kept for a
/// post-mortem (`BATCHAI_BENCH_KEEP`).
fn store_direct(
    binary: &Path,
    dir: &Path,
    store: Option<agent::store::OpenedStore>,
    latency_n: usize,
    submitters: &[usize],
    count: usize,
) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let which = if store.is_some() {
        "Azurite store"
    } else {
        "directory store"
    };
    let marks = dir.join("marks");
    std::fs::create_dir_all(&marks)?;
    let platform = batchai::platform::local::platform_with_agent_binary(
        dir.join("root"),
        binary.to_path_buf(),
        store,
    )?;
    let cluster = "jobs";
    let spec = ClusterSpec {
        format: FORMAT,
        name: cluster.into(),
        uid: "bench".into(),
        vm_size: "Standard_D2s_v3".into(),
        vm_priority: "dedicated".into(),
        scale: Scale::Manual {
            target_node_count: NODES,
            node_deallocation_option: DeallocationOption::Requeue,
        },
        setup_task: None,
        mounts: Vec::new(),
        gpus_per_node: 0,
        deleting: false,
        scale_generation: 0,
    };
    runtime
        .block_on(platform.create_cluster(&spec, &Default::default(), &serde_json::Value::Null))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cluster_name = Name::parse(cluster).map_err(anyhow::Error::msg)?;
    let no_secrets = batchai::platform::JobSecrets::default();

    // Latency: one job at a time on an idle cluster.
    let mut dispatch = Vec::new();
    let mut running = Vec::new();
    for i in 0..latency_n {
        let name = format!("lat-{i}");
        let view = runtime
            .block_on(platform.submit_job(
                &no_op(&name, cluster, &marks),
                &no_secrets,
                &serde_json::Value::Null,
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let job = Name::parse(&name).map_err(anyhow::Error::msg)?;
        let done = runtime
            .block_on(platform.wait_job(&cluster_name, &job, true))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if done.status.state != JobState::Succeeded {
            bail!(
                "job {name} ended {:?}: {:?}",
                done.status.state,
                done.status.errors
            );
        }
        let queued = view.status.queued_ms;
        dispatch.push(
            done.status
                .start_ms
                .unwrap_or(queued)
                .saturating_sub(queued) as f64,
        );
        running.push(started_after_ms(&marks, &name, queued).context("no start mark")?);
    }
    println!(
        "job dispatch, {which} ({NODES} nodes, n={latency_n}, one at a time): queued to dispatched p50 {:.0} ms, p99 {:.0} ms; queued to process running p50 {:.0} ms, p99 {:.0} ms",
        percentile(&mut dispatch, 0.5),
        percentile(&mut dispatch, 0.99),
        percentile(&mut running, 0.5),
        percentile(&mut running, 0.99),
    );

    // Throughput: no-op jobs submitted one after another, then by 8 callers at once, as
    // Terraform applies with its default -parallelism=10: the first is bound by how fast one
    // caller submits, the second by the cluster.
    for &submitters in submitters {
        let prefix = format!("tp{submitters}");
        let (total, submitted) = throughput(
            &platform,
            cluster,
            &marks,
            platform.store(),
            &prefix,
            count,
            submitters,
        )?;
        let how = if submitters == 1 {
            "submitted one after another".to_owned()
        } else {
            format!("submitted by {submitters} callers at once")
        };
        println!(
            "job throughput, {which} ({NODES} nodes): {count} no-op jobs {how} in {:.2} s = {:.1} jobs/s (submitting took {:.2} s)",
            total.as_secs_f64(),
            count as f64 / total.as_secs_f64(),
            submitted.as_secs_f64()
        );
    }
    if std::env::var_os("BATCHAI_BENCH_KEEP").is_some() {
        println!("kept {}", dir.display());
        return Ok(true);
    }
    runtime
        .block_on(platform.delete_cluster(&cluster_name))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(false)
}

/// Submits `count` no-op jobs `<prefix>-<i>` from `submitters` threads at once and waits until
/// every one ran and succeeded. Returns the time from the first submission to the last job's
/// end, and the time submitting took.
fn throughput(
    platform: &batchai::control_plane::ControlPlane,
    cluster: &str,
    marks: &Path,
    store: &dyn control::Store,
    prefix: &str,
    count: usize,
    submitters: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let no_secrets = batchai::platform::JobSecrets::default();
    let started = Instant::now();
    std::thread::scope(|scope| {
        let callers: Vec<_> = (0..submitters)
            .map(|caller| {
                let no_secrets = &no_secrets;
                scope.spawn(move || -> anyhow::Result<()> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    for i in (caller..count).step_by(submitters) {
                        let name = format!("{prefix}-{i}");
                        runtime
                            .block_on(platform.submit_job(
                                &no_op(&name, cluster, marks),
                                no_secrets,
                                &serde_json::Value::Null,
                            ))
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for caller in callers {
            caller
                .join()
                .map_err(|_| anyhow::anyhow!("a submitter panicked"))??;
        }
        anyhow::Ok(())
    })?;
    let submitted = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    // Every job's process leaves a mark when it runs; the last job is done shortly after the
    // last mark. Watching marks costs one directory listing, not 200 status reads, so the
    // measurement does not steal CPU from what it measures.
    let mark = format!("{prefix}-");
    loop {
        let marked = std::fs::read_dir(marks)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&mark))
            .count();
        if marked == count {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {marked} of {count} jobs ran");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut unfinished = Vec::new();
    for i in 0..count {
        let key = keys::job_status(cluster, &format!("{prefix}-{i}"));
        loop {
            let v = store.get(&key)?.context("job status missing")?;
            let s: control::jobs::JobStatus = control::records::decode("job status", &v.data)?;
            if s.state.is_terminal() {
                if s.state != JobState::Succeeded {
                    unfinished.push(i);
                }
                break;
            }
            if Instant::now() > deadline {
                bail!("job {prefix}-{i} did not finish");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    if !unfinished.is_empty() {
        bail!("jobs {unfinished:?} of {prefix} did not succeed");
    }
    Ok((started.elapsed(), submitted))
}

/// How long each request-counting window lasts (`BATCHAI_BENCH_RATES_WINDOW_S`, 60 s by
/// default; 0 skips the counts).
fn rates_window() -> anyhow::Result<u64> {
    match std::env::var("BATCHAI_BENCH_RATES_WINDOW_S") {
        Ok(v) => Ok(v.parse().context("BATCHAI_BENCH_RATES_WINDOW_S")?),
        Err(_) => Ok(60),
    }
}

/// Requests per node per minute on a store without change notifications, counted for real:
/// two nodes in-process at the agent's rates, idle for a window, then each running a job. The
/// store is a directory whose notifications are hidden, so the nodes poll as they would a blob
/// container.
fn request_rates() -> anyhow::Result<()> {
    let window = rates_window()?;
    if window == 0 {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("batchai-ratebench-{}", std::process::id()));
    let store = DirStore::open(dir.join("store"))?;
    let measured = agent::measure::count_requests(
        std::sync::Arc::new(store),
        &dir,
        agent::Rates::STANDARD,
        Duration::from_secs(window),
    )
    .map_err(|e| anyhow::anyhow!("{e}"));
    let _ = std::fs::remove_dir_all(&dir);
    print_rates("a store without change notifications", window, measured?);
    Ok(())
}

fn print_rates(which: &str, window: u64, measured: Vec<agent::measure::NodeRequests>) {
    let per_minute = |r: &control::store::Requests| {
        let scale = |n: u64| n as f64 * 60.0 / window as f64;
        format!(
            "{:.0} ({:.0} get, {:.0} put, {:.0} lease, {:.0} list, {:.0} delete)",
            scale(r.total()),
            scale(r.get),
            scale(r.put),
            scale(r.lease),
            scale(r.list),
            scale(r.delete)
        )
    };
    for node in measured {
        println!(
            "requests per minute to {which}, {}{} ({window} s windows): idle {}; running a job {}",
            node.node,
            if node.scheduler {
                " (also the scheduler, of 2 nodes)"
            } else {
                ""
            },
            per_minute(&node.idle),
            per_minute(&node.busy)
        );
    }
}

/// Queued to dispatched, in milliseconds, of jobs `<prefix>-0..count` on cluster `c`.
fn dispatch_latencies(store: &DirStore, prefix: &str, count: usize) -> anyhow::Result<Vec<f64>> {
    (0..count)
        .map(|i| {
            let v = store
                .get(&keys::job_status("c", &format!("{prefix}-{i}")))?
                .context("job status missing")?;
            let s: control::jobs::JobStatus = control::records::decode("job status", &v.data)?;
            Ok(s.start_ms
                .unwrap_or(s.queued_ms)
                .saturating_sub(s.queued_ms) as f64)
        })
        .collect()
}

/// 100 no-op jobs in one `terraform apply -parallelism=10` on a 4-node cluster that exists.
fn terraform_bench(binary: &Path, dir: &Path) -> anyhow::Result<()> {
    let terraform = crate::find_terraform()?;
    let work = dir.join("terraform");
    std::fs::create_dir_all(&work)?;
    let bin_dir = binary.parent().context("binary has no directory")?;
    let rc = work.join("terraformrc");
    crate::write_dev_overrides(&rc, bin_dir)?;
    let root = work.join("root");
    let header = format!(
        "terraform {{\n  required_providers {{\n    batchai = {{ source = \"batchai/batchai\" }}\n  }}\n}}\nprovider \"batchai\" {{\n  local {{ root = \"{}\" }}\n}}\nresource \"batchai_cluster\" \"c\" {{\n  name    = \"c\"\n  vm_size = \"Standard_D2s_v3\"\n  scale_settings {{\n    manual {{ target_node_count = {NODES} }}\n  }}\n}}\n",
        root.display()
    );
    let jobs = "resource \"batchai_job\" \"noop\" {\n  count      = 100\n  name       = \"noop-${count.index}\"\n  cluster_id = batchai_cluster.c.id\n  custom_toolkit {\n    command_line = \"true\"\n  }\n}\n";
    let tf = |args: &[&str]| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let out = Command::new(&terraform)
            .args(args)
            .current_dir(&work)
            .env("TF_CLI_CONFIG_FILE", &rc)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .output()?;
        if !out.status.success() {
            bail!(
                "terraform {args:?} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(started.elapsed())
    };
    if terraform.to_string_lossy().contains("1.15") || terraform.to_string_lossy().contains("tofu")
    {
        std::fs::write(work.join("main.tf"), &header)?;
        tf(&["init", "-input=false"])?;
    }
    std::fs::write(work.join("main.tf"), &header)?;
    tf(&["apply", "-auto-approve", "-input=false"])?;
    std::fs::write(work.join("main.tf"), header.clone() + jobs)?;
    let elapsed = tf(&["apply", "-auto-approve", "-input=false", "-parallelism=10"])?;
    let store = DirStore::open(root.join("store"))?;
    let mut latency = dispatch_latencies(&store, "noop", 100)?;
    println!(
        "jobs through Terraform ({NODES} nodes, -parallelism=10): 100 no-op jobs applied in {:.2} s = {:.1} jobs/s; queued to dispatched (including waits for a free node) p50 {:.0} ms, p99 {:.0} ms",
        elapsed.as_secs_f64(),
        100.0 / elapsed.as_secs_f64(),
        percentile(&mut latency, 0.5),
        percentile(&mut latency, 0.99),
    );
    // Latency through Terraform: one job at a time, so no job waits for a free node.
    let serial = "resource \"batchai_job\" \"one\" {\n  count      = 20\n  name       = \"one-${count.index}\"\n  cluster_id = batchai_cluster.c.id\n  custom_toolkit {\n    command_line = \"true\"\n  }\n}\n";
    std::fs::write(work.join("main.tf"), header.clone() + jobs + serial)?;
    tf(&["apply", "-auto-approve", "-input=false", "-parallelism=1"])?;
    let mut serial_latency = dispatch_latencies(&store, "one", 20)?;
    println!(
        "jobs through Terraform, one at a time (-parallelism=1, n=20): queued to dispatched p50 {:.0} ms, p99 {:.0} ms",
        percentile(&mut serial_latency, 0.5),
        percentile(&mut serial_latency, 0.99),
    );
    tf(&["destroy", "-auto-approve", "-input=false"])?;
    Ok(())
}
