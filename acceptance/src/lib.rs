//! Shared helpers for the end-to-end suite: locating real Terraform CLIs, building the provider,
//! and running Terraform commands in throwaway working directories, with `dev_overrides` or
//! with the provider installed as `cargo xtask install` does under a home of their own.
pub mod sim;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use anyhow::{Context as _, bail};
use serde_json::Value as Json;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Builds the provider binary once per test process and returns the directory holding it.
pub fn provider_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--package",
                "batchai",
                "--bin",
                "terraform-provider-batchai",
            ])
            .current_dir(repo())
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "building terraform-provider-batchai failed"
        );
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("target"));
        target.join("debug")
    })
}

/// The provider binary itself.
pub fn provider_binary() -> PathBuf {
    provider_dir().join("terraform-provider-batchai")
}

/// A Terraform (or OpenTofu) CLI to test with.
#[derive(Debug, Clone)]
pub struct Cli {
    pub path: PathBuf,
    /// `1.15.5`, `1.0.3`, ...
    pub version: String,
    pub tofu: bool,
}

impl Cli {
    /// True for versions at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        let mut parts = self
            .version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (a, b) >= (major, minor)
    }
}

impl std::fmt::Display for Cli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.tofu { "tofu" } else { "terraform" };
        write!(f, "{name} {} ({})", self.version, self.path.display())
    }
}

fn cli_version(path: &Path) -> Option<Cli> {
    let out = Command::new(path)
        .args(["version", "-json"])
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let json: Json = serde_json::from_slice(&out.stdout).ok()?;
    let version = json.get("terraform_version")?.as_str()?.to_owned();
    let tofu = String::from_utf8_lossy(&out.stdout).contains("tofu")
        || path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("tofu"));
    Some(Cli {
        path: path.to_path_buf(),
        version,
        tofu,
    })
}

/// Every CLI to test against: `TF_ACC_TERRAFORM_PATH` (a PATH-style list) when set; otherwise
/// the CLIs `acceptance/tools/install_clis.py` installed plus any `terraform`/`tofu` on PATH.
/// Fails (never skips) when there is none.
pub fn clis() -> Vec<Cli> {
    static CLIS: OnceLock<Vec<Cli>> = OnceLock::new();
    CLIS.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(list) = std::env::var_os("TF_ACC_TERRAFORM_PATH") {
            candidates.extend(std::env::split_paths(&list));
        } else {
            let tools = repo().join("acceptance/.tools/bin");
            if let Ok(entries) = std::fs::read_dir(&tools) {
                let mut found: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
                found.sort();
                candidates.extend(found);
            }
            if let Some(path) = std::env::var_os("PATH") {
                for dir in std::env::split_paths(&path) {
                    for name in ["terraform", "tofu"] {
                        let p = dir.join(name);
                        if p.is_file() {
                            candidates.push(p);
                        }
                    }
                }
            }
        }
        let mut clis: Vec<Cli> = Vec::new();
        for path in candidates {
            if let Some(cli) = cli_version(&path)
                && !clis.iter().any(|c| c.version == cli.version && c.tofu == cli.tofu) {
                    clis.push(cli);
                }
        }
        assert!(
            !clis.is_empty(),
            "no Terraform CLI found: run `python3 acceptance/tools/install_clis.py` or set TF_ACC_TERRAFORM_PATH"
        );
        clis
    })
    .clone()
}

/// Runs `test` against every CLI and fails with every CLI's error, not just the first.
pub fn for_every_cli(test: impl Fn(&Cli) -> anyhow::Result<()>) {
    let mut failures = Vec::new();
    for cli in clis() {
        eprintln!("--- {cli}");
        if let Err(e) = test(&cli) {
            failures.push(format!("{cli}: {e:#}"));
        }
    }
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n\n"));
}

/// The newest CLI found, for tests that need only one.
pub fn newest_cli() -> Cli {
    let mut all = clis();
    all.sort_by_key(|c| {
        c.version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    });
    all.pop().unwrap_or_else(|| panic!("no Terraform CLI"))
}

/// A throwaway Terraform working directory wired to the freshly built provider.
#[derive(Debug)]
pub struct Workspace {
    pub cli: Cli,
    pub dir: tempfile::TempDir,
    /// The local platform root the configurations use.
    pub root: PathBuf,
    /// The CLI configuration: `dev_overrides`, or another that [`Workspace::with_cli_config`]
    /// names; `None` for a workspace whose CLIs run with no CLI configuration at all and find the
    /// provider installed under [`Workspace::home`].
    cli_config: Option<PathBuf>,
    /// The home directory the CLIs run with, in a clean environment (no plugin cache, no XDG
    /// directories, no CLI configuration but `cli_config`), when the provider is installed
    /// (see [`Workspace::installed`]) or comes from a mirror.
    pub home: Option<PathBuf>,
    extra_env: Vec<(String, String)>,
    /// Whether this workspace created `root` (a sibling shares it and must not clean it up).
    owns_root: bool,
    /// The blob container the provider keeps its control store in, in the Azurite pass
    /// (`BATCHAI_ACC_AZURITE`); `None` for the directory store under `root`.
    pub control_store: Option<BlobStoreTarget>,
    /// On the azure platform (the simulator's), the control store's container; `None` on the
    /// local platform.
    pub azure_container: Option<String>,
}

/// A blob container of the Azurite the second end-to-end pass runs against.
#[derive(Debug, Clone)]
pub struct BlobStoreTarget {
    pub container_url: String,
    pub account_key: String,
}

/// The environment variable that selects the control store every workspace's provider uses:
/// unset for the directory store under the workspace's root, `azurite` for a fresh container of
/// an Azurite this test process starts (`BATCHAI_AZURITE` says where Azurite is installed).
/// `cargo xtask test` runs the cluster and job suites a second time with it set.
pub const STORE_VAR: &str = "BATCHAI_ACC_STORE";

/// A fresh container of this process's Azurite when [`STORE_VAR`] asks for one.
fn azurite_container() -> Option<BlobStoreTarget> {
    match std::env::var(STORE_VAR).ok().as_deref() {
        None | Some("" | "dir") => None,
        Some("azurite") => {
            use control_blob::azurite::{ACCOUNT_KEY, Azurite};
            let azurite = Azurite::shared().unwrap_or_else(|e| {
                panic!("{STORE_VAR}=azurite needs Azurite: {e}; run `cargo xtask test`, which installs it")
            });
            Some(BlobStoreTarget {
                container_url: azurite.container_url(&Azurite::unique_container("acc")),
                account_key: ACCOUNT_KEY.to_owned(),
            })
        }
        Some(other) => panic!("{STORE_VAR}={other:?}: write `dir` or `azurite`"),
    }
}

impl Workspace {
    pub fn new(cli: &Cli) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("tfacc").tempdir()?;
        let root = dir.path().join("root");
        let cli_config = dir.path().join("terraformrc");
        // `batchai/batchai` is on each CLI's own default registry.
        let registry = if cli.tofu {
            "registry.opentofu.org"
        } else {
            "registry.terraform.io"
        };
        std::fs::write(
            &cli_config,
            format!(
                "provider_installation {{\n  dev_overrides {{\n    \"{registry}/batchai/batchai\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
                provider_dir().display()
            ),
        )?;
        let control_store = azurite_container();
        Ok(Self {
            cli: cli.clone(),
            dir,
            root,
            cli_config: Some(cli_config),
            home: None,
            extra_env: Vec::new(),
            owns_root: true,
            control_store,
            azure_container: None,
        })
    }

    /// A workspace whose CLI finds the provider as a user's does after `cargo xtask install`:
    /// installed (by the same code) into `.terraform.d/plugins` of a home directory of its own,
    /// and run with that home, no CLI configuration file, no plugin cache and no `dev_overrides`,
    /// so `init` installs it from that implicit local mirror.
    pub fn installed(cli: &Cli) -> anyhow::Result<Self> {
        let mut ws = Self::new(cli)?;
        let home = ws.dir.path().join("home");
        ws.install_into(&home, &provider_binary())?;
        ws.cli_config = None;
        ws.home = Some(home);
        Ok(ws)
    }

    /// A workspace whose CLIs run with a home of their own (nothing installed in it) and the
    /// CLI configuration `config`, e.g. a `network_mirror`, instead of `dev_overrides`.
    pub fn with_cli_config(cli: &Cli, config: &str) -> anyhow::Result<Self> {
        let mut ws = Self::new(cli)?;
        let path = ws.dir.path().join("cli.tfrc");
        std::fs::write(&path, config)?;
        let home = ws.dir.path().join("home");
        std::fs::create_dir_all(&home)?;
        ws.cli_config = Some(path);
        ws.home = Some(home);
        Ok(ws)
    }

    /// Installs `binary` as the provider's current version into `home`'s local mirror.
    pub fn install_into(
        &self,
        home: &Path,
        binary: &Path,
    ) -> anyhow::Result<xtask::release::Installed> {
        xtask::release::install(
            binary,
            &xtask::release::plugins_dir(home),
            &xtask::release::version(&repo())?,
            &xtask::release::current_platform(),
        )
    }

    /// A workspace whose provider uses the azure platform of this process's ARM simulator,
    /// with a control container of its own.
    pub fn on_azure(cli: &Cli) -> anyhow::Result<Self> {
        let sim = sim::Sim::shared();
        let mut ws = Self::new(cli)?;
        ws.control_store = None;
        ws.azure_container = Some(format!(
            "acc{}{}",
            std::process::id(),
            ws.dir
                .path()
                .file_name()
                .map(|n| n.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
        ));
        ws.extra_env.extend(sim.env());
        Ok(ws)
    }

    /// Where the local platform keeps this workspace's nodes, exports and default job logs:
    /// the root, or with a blob control store the store's own directory below it.
    pub fn platform_root(&self) -> PathBuf {
        match &self.control_store {
            Some(blob) => self.root.join("stores").join(
                agent::store::StoreLocation {
                    url: blob.container_url.clone(),
                    credential: None,
                }
                .dir_name(),
            ),
            None => self.root.clone(),
        }
    }

    /// The control store this workspace's provider uses.
    pub fn store(&self) -> anyhow::Result<std::sync::Arc<dyn control::Store>> {
        let location = match &self.control_store {
            Some(blob) => agent::store::StoreLocation {
                url: blob.container_url.clone(),
                credential: Some(agent::store::Credential::AccountKey(
                    blob.account_key.clone(),
                )),
            },
            None => agent::store::StoreLocation::dir(self.root.join("store")),
        };
        Ok(agent::store::open_checked(&location)?.store)
    }

    /// Another working directory sharing this one's platform root (for imports).
    pub fn sibling(&self) -> anyhow::Result<Self> {
        let mut other = Self::new(&self.cli)?;
        other.root = self.root.clone();
        other.owns_root = false;
        if self.home.is_some() {
            other.cli_config = None;
            other.home = self.home.clone();
        }
        other.control_store = self.control_store.clone();
        other.azure_container = self.azure_container.clone();
        if other.azure_container.is_some() {
            other.extra_env.extend(sim::Sim::shared().env());
        }
        Ok(other)
    }

    pub fn env(&mut self, key: &str, value: &str) {
        self.extra_env.push((key.to_owned(), value.to_owned()));
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `main.tf`: the provider block pointing at this workspace's root (and control
    /// store), then `body`.
    pub fn write_config(&self, body: &str) -> anyhow::Result<()> {
        let store = self.control_store.as_ref().map_or_else(String::new, |blob| {
            format!(
                "    control_store {{\n      blob_container_url = \"{}\"\n      account_key        = \"{}\"\n    }}\n",
                blob.container_url, blob.account_key
            )
        });
        let provider = match &self.azure_container {
            Some(container) => sim::Sim::shared().provider_block(container),
            None => format!(
                "provider \"batchai\" {{\n  local {{\n    root = \"{}\"\n{store}  }}\n}}\n\n",
                self.root.display()
            ),
        };
        let header = format!(
            "terraform {{\n  required_providers {{\n    batchai = {{\n      source = \"batchai/batchai\"\n    }}\n  }}\n}}\n\n{provider}"
        );
        std::fs::write(self.dir.path().join("main.tf"), header + body)?;
        Ok(())
    }

    /// The CLI with `args` in this workspace's directory and environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.cli.path);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .env_remove("TF_LOG")
            .env_remove("TF_REATTACH_PROVIDERS");
        if let Some(home) = &self.home {
            // A clean CLI setup: only what a fresh user account has.
            for var in [
                "TF_CLI_CONFIG_FILE",
                "TOFU_CLI_CONFIG_FILE",
                "TF_PLUGIN_CACHE_DIR",
                "TF_DATA_DIR",
                "TF_CLI_ARGS",
                "TF_CLI_ARGS_init",
                "TF_CLI_ARGS_apply",
                "XDG_CONFIG_HOME",
                "XDG_DATA_HOME",
                "XDG_CACHE_HOME",
            ] {
                cmd.env_remove(var);
            }
            cmd.env("HOME", home);
        }
        if let Some(config) = &self.cli_config {
            cmd.env("TF_CLI_CONFIG_FILE", config);
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs the CLI with `args` and returns its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        let out = self
            .command(args)
            .output()
            .with_context(|| format!("run {} {args:?}", self.cli))?;
        Ok(out)
    }

    /// Runs the CLI with `args` and `input` on its standard input (`console` reads expressions
    /// there), and returns its output, whatever the exit status.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> anyhow::Result<Output> {
        use std::io::Write as _;
        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("start {} {args:?}", self.cli))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes())?;
        }
        child
            .wait_with_output()
            .with_context(|| format!("run {} {args:?}", self.cli))
    }

    /// Starts the CLI with `args` without waiting, output discarded (for interrupting it).
    pub fn spawn(&self, args: &[&str]) -> anyhow::Result<std::process::Child> {
        self.command(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("start {} {args:?}", self.cli))
    }

    /// Runs the CLI and fails with its output unless it exits 0.
    pub fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!(
                "{} {args:?} failed ({}):\n{}\n{}",
                self.cli,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `init` where the CLI supports it alongside `dev_overrides`; older CLIs try to reach the
    /// registry for the overridden provider, and with overrides in effect init is not needed.
    /// With the provider installed (no overrides) init is what installs it, on every CLI.
    pub fn init(&self) -> anyhow::Result<()> {
        if self.home.is_some() || (self.cli.at_least(1, 15) && !self.cli.tofu) {
            self.ok(&["init", "-input=false", "-no-color"])?;
        }
        Ok(())
    }

    pub fn apply(&self) -> anyhow::Result<String> {
        self.ok(&["apply", "-auto-approve", "-input=false", "-no-color"])
    }

    /// `plan -detailed-exitcode`: 0 = no changes, 2 = changes; anything else fails.
    pub fn plan_exit_code(&self) -> anyhow::Result<i32> {
        let out = self.run(&["plan", "-detailed-exitcode", "-input=false", "-no-color"])?;
        match out.status.code() {
            Some(code @ (0 | 2)) => Ok(code),
            _ => bail!(
                "{} plan failed ({}):\n{}\n{}",
                self.cli,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// Saves a plan and returns `terraform show -json` of it.
    pub fn plan_json(&self) -> anyhow::Result<Json> {
        self.ok(&["plan", "-out=tfplan", "-input=false", "-no-color"])?;
        let text = self.ok(&["show", "-json", "tfplan"])?;
        Ok(serde_json::from_str(&text)?)
    }

    /// `terraform show -json` of the current state.
    pub fn state_json(&self) -> anyhow::Result<Json> {
        let text = self.ok(&["show", "-json"])?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// The state values of the resource at `address` in `terraform show -json` output.
pub fn resource_values<'a>(state: &'a Json, address: &str) -> Option<&'a Json> {
    state
        .pointer("/values/root_module/resources")?
        .as_array()?
        .iter()
        .find(|r| r.get("address").and_then(Json::as_str) == Some(address))?
        .get("values")
}

/// The values of the resource at `address` in the workspace's state, `null` when it has none.
pub fn state_of(ws: &Workspace, address: &str) -> Json {
    ws.state_json()
        .ok()
        .and_then(|state| resource_values(&state, address).cloned())
        .unwrap_or(Json::Null)
}

/// The planned actions for `address` in a `show -json` plan, e.g. `["delete", "create"]`.
pub fn planned_actions(plan: &Json, address: &str) -> Vec<String> {
    plan.get("resource_changes")
        .and_then(Json::as_array)
        .and_then(|changes| {
            changes
                .iter()
                .find(|c| c.get("address").and_then(Json::as_str) == Some(address))
        })
        .and_then(|c| c.pointer("/change/actions"))
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for Workspace {
    /// A failed test may leave node agents running; they must not outlive it.
    fn drop(&mut self) {
        if self.owns_root {
            kill_agents_under(&self.root);
            // And what their jobs and setup tasks detached (`setsid`, double forks).
            agent::launcher::stop_marked(
                &format!("{}/", self.root.display()),
                std::time::Duration::ZERO,
            );
        }
    }
}

/// Kills every node agent process whose `--root` is `root`, with everything it started.
pub fn kill_agents_under(root: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let root = root.to_string_lossy().into_owned();
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_agent = args.iter().any(|a| *a == b"agent");
        // `--root R` as older schedulers start nodes; `--local-root R` (or a store's directory
        // below R) and `--work-dir` below R as this version does.
        let under_root = args.windows(2).any(|w| {
            (w[0] == b"--root" && w[1] == root.as_bytes())
                || (matches!(w[0], b"--local-root" | b"--work-dir")
                    && Path::new(&*String::from_utf8_lossy(w[1])).starts_with(&root))
        });
        if is_agent && under_root {
            // An agent leads its session; its jobs run in process groups of their own.
            let _ = Command::new("pkill").args(["-KILL", "-s", &pid]).status();
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    }
}

/// True while `pid` runs (a zombie has exited; it only waits for its parent).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or_default()
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Polls `check` every 200 ms until it holds, failing after `limit`. Tests wait for outcomes
/// this way; they never assert how long something took.
pub fn wait_for(
    what: &str,
    limit: std::time::Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check()? {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    bail!("timed out waiting for {what}")
}

/// A file under `acceptance/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    repo().join("acceptance/fixtures").join(name)
}

/// The node records of `cluster` in the workspace's control store.
pub fn node_records(
    ws: &Workspace,
    cluster: &str,
) -> anyhow::Result<Vec<control::records::NodeRecord>> {
    let store = ws.store()?;
    let mut out = Vec::new();
    for key in store.list(&control::records::keys::nodes_prefix(cluster))? {
        if let Some(v) = store.get(&key)? {
            out.push(control::records::decode("node record", &v.data)?);
        }
    }
    Ok(out)
}

/// Every file below `dir`, following directory links (a mount is a link).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A manual-scale cluster `c` of `nodes` nodes (no GPUs), with `extra` inside its block.
pub fn cluster_c(nodes: u32, extra: &str) -> String {
    format!(
        r#"resource "batchai_cluster" "c" {{
  name    = "c"
  vm_size = "Standard_D2s_v3"
  scale_settings {{
    manual {{
      target_node_count = {nodes}
    }}
  }}
{extra}
}}
"#
    )
}

/// A job on cluster `c` with `body` inside its block.
pub fn job_on_c(name: &str, body: &str) -> String {
    format!(
        r#"resource "batchai_job" "{name}" {{
  name       = "{name}"
  cluster_id = batchai_cluster.c.id
{body}
}}
"#
    )
}

/// The status record of job `name` on `cluster` in the workspace's control store.
pub fn job_status(
    ws: &Workspace,
    cluster: &str,
    name: &str,
) -> anyhow::Result<Option<control::jobs::JobStatus>> {
    let store = ws.store()?;
    let Some(v) = store.get(&control::records::keys::job_status(cluster, name))? else {
        return Ok(None);
    };
    Ok(Some(control::records::decode("job status", &v.data)?))
}

/// Terraform's log (its stderr) for a `plan` of an empty configuration with the newest CLI,
/// with `env` set: what the provider logs on start-up and shutdown.
pub fn empty_plan_log(env: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut ws = Workspace::new(&newest_cli())?;
    for (key, value) in env {
        ws.env(key, value);
    }
    ws.write_config("")?;
    ws.init()?;
    let out = ws.run(&["plan", "-no-color"])?;
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}
