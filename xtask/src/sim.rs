//! `cargo xtask sim up [--state DIR]` / `sim down [--state DIR]`: the ARM simulator of
//! `acceptance/sim` (see its README), run detached, with its Python environment installed into
//! the shared cache and Azurite found or installed as for the tests. `up` writes
//! `target/sim/env`, `target/sim/provider.tf` and `target/sim/ca.pem`; `down` stops the
//! simulator, its nodes' processes and its network namespaces.
use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::{azurite, repo, run};

/// How long the simulator may take to say it serves (it starts Azurite, about a second).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// `sim up|down [--state DIR]`.
pub fn sim(args: &[String]) -> anyhow::Result<()> {
    let (action, rest) = args
        .split_first()
        .map_or(("", &[][..]), |(a, r)| (a.as_str(), r));
    let state = match rest {
        [] => out_dir().join("state"),
        [flag, dir] if flag == "--state" => PathBuf::from(dir),
        _ => bail!("usage: cargo xtask sim up|down [--state DIR]"),
    };
    match action {
        "up" => up(&state),
        "down" => down(&state),
        _ => bail!("usage: cargo xtask sim up|down [--state DIR]"),
    }
}

/// `target/sim` of the clone: where `up` writes the env file, provider block and CA.
fn out_dir() -> PathBuf {
    repo().join("target/sim")
}

fn sim_dir() -> PathBuf {
    repo().join("acceptance/sim")
}

/// Installs the simulator's Python environment into the cache (idempotent: a warm run only
/// checks a marker) and returns its interpreter.
pub fn python() -> anyhow::Result<PathBuf> {
    let out = Command::new("python3")
        .arg(sim_dir().join("install.py"))
        .stderr(Stdio::inherit())
        .output()
        .context("run python3 (needed to install the ARM simulator's environment)")?;
    if !out.status.success() {
        bail!("installing the ARM simulator's Python environment failed");
    }
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if path.is_empty() {
        bail!("acceptance/sim/install.py printed no interpreter path");
    }
    Ok(PathBuf::from(path))
}

/// Runs the simulator's own tests (Microsoft's SDK against it) with `azurite`.
pub fn test(azurite: &Path) -> anyhow::Result<()> {
    let python = python()?;
    run(Command::new(python)
        .args(["-m", "pytest", "-q"])
        .current_dir(sim_dir())
        .env(control_blob::azurite::ENV, azurite))
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn up(state: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(state).with_context(|| format!("create {}", state.display()))?;
    let state = state
        .canonicalize()
        .with_context(|| format!("resolve {}", state.display()))?;
    let ready_file = state.join("ready.json");
    let running = std::fs::read_to_string(state.join("sim.pid"))
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .filter(|pid| pid_alive(*pid));
    if let Some(pid) = running {
        eprintln!(
            "xtask: the simulator of {} is already up (pid {pid})",
            state.display()
        );
    } else {
        let python = python()?;
        let azurite = azurite::ensure()?;
        let _ = std::fs::remove_file(&ready_file);
        let log = std::fs::File::create(state.join("sim.log"))?;
        let mut child = Command::new(python)
            .args(["-m", "batchai_sim", "serve", "--state"])
            .arg(&state)
            .arg("--ready-file")
            .arg(&ready_file)
            .current_dir(sim_dir())
            .env(control_blob::azurite::ENV, &azurite)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: Ctrl-C in this terminal later does not stop it.
            .process_group(0)
            .spawn()
            .context("start the ARM simulator")?;
        let deadline = Instant::now() + START_TIMEOUT;
        while !ready_file.exists() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the ARM simulator exited with {status} before serving; its log:\n{}",
                    std::fs::read_to_string(state.join("sim.log")).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "the ARM simulator did not serve within {} s; see {}",
                    START_TIMEOUT.as_secs(),
                    state.join("sim.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let ready: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&ready_file)
            .with_context(|| format!("read {}", ready_file.display()))?,
    )
    .context("parse the simulator's ready file")?;
    write_outputs(&ready)?;
    let field = |name: &str| ready[name].as_str().unwrap_or_default().to_owned();
    eprintln!(
        "xtask: the ARM simulator serves {} (network: {}); `source {}` and use {}",
        field("endpoint"),
        ready["network"]["mode"].as_str().unwrap_or("?"),
        out_dir().join("env").display(),
        out_dir().join("provider.tf").display()
    );
    Ok(())
}

/// `target/sim/env`, `provider.tf` and `ca.pem` from the simulator's ready file.
fn write_outputs(ready: &serde_json::Value) -> anyhow::Result<()> {
    let out = out_dir();
    std::fs::create_dir_all(&out)?;
    let field = |name: &str| ready[name].as_str().unwrap_or_default().to_owned();
    let ca = out.join("ca.pem");
    std::fs::copy(field("caPath"), &ca).context("copy the simulator's CA")?;
    let mut env =
        String::from("# written by `cargo xtask sim up`: the ARM simulator's credentials\n");
    for (name, value) in [
        ("ARM_SUBSCRIPTION_ID", field("subscriptionId")),
        ("ARM_TENANT_ID", field("tenantId")),
        ("ARM_CLIENT_ID", field("clientId")),
        ("ARM_CLIENT_SECRET", field("clientSecret")),
        ("ARM_METADATA_HOSTNAME", field("metadataHost")),
        ("BATCHAI_TEST_CA_CERTIFICATE", ca.display().to_string()),
        ("BATCHAI_SIM_ENDPOINT", field("endpoint")),
        ("BATCHAI_SIM_STATE", field("stateDir")),
        // The README's azure example takes where things are as variables.
        ("TF_VAR_resource_group_name", field("resourceGroup")),
        ("TF_VAR_location", field("location")),
        (
            "TF_VAR_storage_account_name",
            ready["storageAccounts"][0]
                .as_str()
                .unwrap_or("mlctrl")
                .to_owned(),
        ),
        ("TF_VAR_subnet_id", outbound_subnet(ready)),
    ] {
        writeln!(env, "export {name}='{value}'")?;
    }
    std::fs::write(out.join("env"), env)?;
    let provider = format!(
        "# written by `cargo xtask sim up`; credentials come from target/sim/env\nprovider \"batchai\" {{\n  azure {{\n    subscription_id      = \"{}\"\n    resource_group_name  = \"{}\"\n    location             = \"{}\"\n    storage_account_name = \"{}\"\n    metadata_host        = \"{}\"\n  }}\n}}\n",
        field("subscriptionId"),
        field("resourceGroup"),
        field("location"),
        ready["storageAccounts"][0].as_str().unwrap_or("mlctrl"),
        field("metadataHost"),
    );
    std::fs::write(out.join("provider.tf"), provider)?;
    Ok(())
}

/// The simulator's subnet with default outbound access (the nodes download the agent).
fn outbound_subnet(ready: &serde_json::Value) -> String {
    ready["subnets"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["defaultOutboundAccess"] == true))
        .and_then(|s| s["id"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn down(state: &Path) -> anyhow::Result<()> {
    if !state.exists() {
        eprintln!("xtask: no simulator state at {}", state.display());
        return Ok(());
    }
    let python = python()?;
    run(Command::new(python)
        .args(["-m", "batchai_sim", "down", "--state"])
        .arg(state)
        .current_dir(sim_dir()))?;
    for name in ["env", "provider.tf"] {
        let _ = std::fs::remove_file(out_dir().join(name));
    }
    Ok(())
}
