//! `cargo xtask bench`: whole-process and in-process measurements of the protocol layer.
//!
//! Timings are printed, never asserted: these machines are shared and noisy. The bench re-runs
//! itself as a release build so the in-process figures mean something.
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Entry point from `cargo xtask bench [jobs|store]`: builds in release mode and runs the
/// measurements (only the job ones with `jobs`, only the blob store's with `store`).
pub fn bench(only: Option<&str>) -> anyhow::Result<()> {
    let azurite = crate::azurite::ensure()?;
    if only == Some("azure") {
        // Real Terraform against the simulator, through the acceptance crate's workspaces (a
        // debug provider, as the suites use: the figures are ARM requests and the simulator's
        // own delays, not the provider's CPU).
        return crate::run(
            crate::cargo()
                .args([
                    "run",
                    "--quiet",
                    "--package",
                    "batchai-acceptance",
                    "--example",
                    "azure_bench",
                ])
                .env(control_blob::azurite::ENV, azurite),
        );
    }
    crate::run(crate::cargo().args([
        "build",
        "--release",
        "--package",
        "batchai",
        "--package",
        "xtask",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::repo().join("target"));
    let status = Command::new(target.join("release/xtask"))
        .arg("bench-release")
        .arg(target.join("release/terraform-provider-batchai"))
        .args(only)
        .env(control_blob::azurite::ENV, azurite)
        .status()?;
    if !status.success() {
        bail!("bench failed");
    }
    Ok(())
}

fn stats(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:.2} ms, p10 {:.2} ms, p90 {:.2} ms (n={})",
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.1).as_secs_f64() * 1e3,
        pick(0.9).as_secs_f64() * 1e3,
        samples.len()
    )
}

/// Runs inside the release build of xtask.
pub fn bench_release(binary: &Path, only: Option<&str>) -> anyhow::Result<()> {
    match only {
        Some("jobs") => return crate::bench_jobs::job_bench(binary),
        Some("store") => return crate::bench_store::store_bench(),
        _ => {}
    }
    println!(
        "handshake (AutoMTLS, process start to handshake line): {}",
        handshake(binary, true, 50)?
    );
    println!("handshake (plaintext): {}", handshake(binary, false, 50)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "GetProviderSchema round trip: {}",
        runtime.block_on(schema_round_trip(binary, 500))?
    );
    msgpack_throughput()?;
    cluster_bench(binary)?;
    crate::bench_jobs::job_bench(binary)?;
    crate::bench_store::store_bench()?;
    Ok(())
}

/// A client certificate shaped like Terraform's: ECDSA P-521, self-signed CA, `localhost`.
fn terraform_like_client_cert() -> anyhow::Result<String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512)?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    Ok(params.self_signed(&key)?.pem())
}

fn handshake(binary: &Path, tls: bool, runs: usize) -> anyhow::Result<String> {
    let pem = terraform_like_client_cert()?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut cmd = Command::new(binary);
        cmd.env("TF_PLUGIN_MAGIC_COOKIE", tfplug::serve::MAGIC_COOKIE_VALUE)
            .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if tls {
            cmd.env("PLUGIN_CLIENT_CERT", &pem);
        } else {
            cmd.env_remove("PLUGIN_CLIENT_CERT");
        }
        let started = Instant::now();
        let mut child = cmd.spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
        samples.push(started.elapsed());
        let _ = child.kill();
        let _ = child.wait();
        if !line.starts_with("1|6|unix|") {
            bail!("unexpected handshake line {line:?}");
        }
    }
    Ok(stats(samples))
}

async fn schema_round_trip(binary: &Path, runs: usize) -> anyhow::Result<String> {
    use tfplug::testing::{ProviderClient, proto};
    let mut child = Command::new(binary)
        .env("TF_PLUGIN_MAGIC_COOKIE", tfplug::serve::MAGIC_COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "6")
        .env_remove("PLUGIN_CLIENT_CERT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    let socket = line
        .split('|')
        .nth(3)
        .context("no socket in handshake")?
        .to_owned();
    let channel = tonic::transport::Endpoint::try_from("http://[::]:1")?
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await?;
    let mut client = ProviderClient::new(channel).max_decoding_message_size(256 << 20);
    let mut samples = Vec::with_capacity(runs);
    let mut size = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let response = client
            .get_provider_schema(proto::get_provider_schema::Request {})
            .await?;
        samples.push(started.elapsed());
        size = prost::Message::encoded_len(response.get_ref());
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(format!("{} ({size} bytes)", stats(samples)))
}

fn msgpack_throughput() -> anyhow::Result<()> {
    use tfplug::value::{Type, Value, msgpack};
    // A large state: 20 000 nodes with a handful of attributes each, like a big cluster.
    let node = Type::object([
        ("id", Type::String),
        ("state", Type::String),
        ("gpus", Type::Number),
        ("heartbeat", Type::String),
        ("labels", Type::map(Type::String)),
    ]);
    let ty = Type::object([("nodes", Type::list(node)), ("name", Type::String)]);
    let nodes = (0..20_000)
        .map(|i| {
            Value::Object(
                [
                    ("id".to_owned(), Value::string(format!("node-{i:05}"))),
                    ("state".to_owned(), Value::string("idle")),
                    ("gpus".to_owned(), Value::number(i64::from(i % 8))),
                    (
                        "heartbeat".to_owned(),
                        Value::string("2026-11-27T00:00:00Z"),
                    ),
                    (
                        "labels".to_owned(),
                        Value::Map([("pool".to_owned(), Value::string("a100"))].into()),
                    ),
                ]
                .into(),
            )
        })
        .collect();
    let value = Value::Object(
        [
            ("nodes".to_owned(), Value::List(nodes)),
            ("name".to_owned(), Value::string("big")),
        ]
        .into(),
    );
    let bytes = msgpack::encode(&value, &ty)?;
    let mb = bytes.len() as f64 / 1e6;
    let runs = 20;
    let mut enc = Vec::new();
    let mut dec = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let b = msgpack::encode(&value, &ty)?;
        enc.push(t.elapsed());
        let t = Instant::now();
        let v = msgpack::decode(&b, &ty)?;
        dec.push(t.elapsed());
        if v != value {
            bail!("msgpack round trip changed the value");
        }
    }
    enc.sort();
    dec.sort();
    let rate = |d: Duration| mb / d.as_secs_f64();
    println!(
        "msgpack on a {mb:.1} MB state: encode {:.0} MB/s, decode {:.0} MB/s (median of {runs})",
        rate(enc[runs / 2]),
        rate(dec[runs / 2])
    );
    Ok(())
}

/// Time from create to every node idle for 1, 8 and 32 local nodes, then the idle agents'
/// memory and CPU.
pub fn cluster_bench(binary: &Path) -> anyhow::Result<()> {
    use batchai::platform::Platform as _;
    use control::records::{ClusterSpec, DeallocationOption, FORMAT, Scale};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("batchai-bench-{}", std::process::id()));
    let platform = batchai::platform::local::platform_with_agent_binary(
        dir.clone(),
        binary.to_path_buf(),
        None,
    )?;
    for nodes in [1u32, 8, 32] {
        let name = format!("bench{nodes}");
        let spec = ClusterSpec {
            format: FORMAT,
            name: name.clone(),
            uid: format!("bench-{nodes}"),
            vm_size: "Standard_D2s_v3".into(),
            vm_priority: "dedicated".into(),
            scale: Scale::Manual {
                target_node_count: nodes,
                node_deallocation_option: DeallocationOption::Requeue,
            },
            setup_task: None,
            mounts: Vec::new(),
            gpus_per_node: 0,
            deleting: false,
            scale_generation: 0,
        };
        let started = Instant::now();
        let view = runtime
            .block_on(platform.create_cluster(&spec, &Default::default(), &serde_json::Value::Null))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let elapsed = started.elapsed();
        let pids: Vec<u32> = view.nodes.iter().filter_map(|n| n.pid).collect();
        println!(
            "cluster of {nodes:>2} nodes: create to all idle {:.0} ms",
            elapsed.as_secs_f64() * 1e3
        );
        if nodes == 8 {
            // Let start-up settle, then sample RSS and CPU over a quiet window.
            std::thread::sleep(Duration::from_secs(3));
            let cpu_before: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
            let window = Duration::from_secs(20);
            std::thread::sleep(window);
            let cpu_after: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
            let rss: Vec<u64> = pids.iter().map(|p| rss_kib(*p)).collect();
            let max_rss = rss.iter().max().copied().unwrap_or(0);
            let ticks_per_s = 100.0; // USER_HZ on Linux
            let per_agent = (cpu_after - cpu_before) as f64
                / ticks_per_s
                / window.as_secs_f64()
                / pids.len().max(1) as f64
                * 100.0;
            println!(
                "idle agent: max RSS {:.1} MiB over {} agents, CPU {per_agent:.2}% of one core each (20 s window)",
                max_rss as f64 / 1024.0,
                pids.len()
            );
        }
        let name = batchai::names::Name::parse(&name).map_err(anyhow::Error::msg)?;
        runtime
            .block_on(platform.delete_cluster(&name))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // Fields after the command: state is [0]; utime and stime are [11] and [12].
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
