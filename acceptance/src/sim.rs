//! The ARM simulator (`acceptance/sim`) for the end-to-end suites on the azure platform: one per
//! test process, started on first use with its own Azurite and stopped when the process ends
//! (`--parent-pid`), with a control API for faults, the request log and evictions.
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value as Json;

/// A running simulator, as its ready file describes it.
#[derive(Debug)]
pub struct Sim {
    pub endpoint: String,
    pub metadata_host: String,
    pub ca_path: String,
    pub subscription_id: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub resource_group: String,
    pub location: String,
    pub storage_account: String,
    /// A subnet with default outbound access.
    pub subnet_id: String,
    pub state: PathBuf,
    /// The blob endpoint of `storage_account` (`https://host:port/account/`) and its key.
    pub blob_endpoint: String,
    storage_key: String,
    /// Every storage account's key (the simulator made them; a test hands them to
    /// `account_key`).
    pub storage_keys: std::collections::BTreeMap<String, String>,
    /// Every storage account's blob endpoint.
    pub blob_endpoints: std::collections::BTreeMap<String, String>,
    _dir: tempfile::TempDir,
}

static SHARED: OnceLock<Result<Sim, String>> = OnceLock::new();

impl Sim {
    /// This process's simulator, started on first use.
    pub fn shared() -> &'static Sim {
        SHARED
            .get_or_init(|| Sim::start().map_err(|e| format!("{e:#}")))
            .as_ref()
            .unwrap_or_else(|e| panic!("start the ARM simulator: {e}"))
    }

    fn start() -> anyhow::Result<Sim> {
        let sim_dir = crate::repo().join("acceptance/sim");
        let installed = Command::new("python3")
            .arg(sim_dir.join("install.py"))
            .stderr(Stdio::inherit())
            .output()
            .context("run acceptance/sim/install.py")?;
        if !installed.status.success() {
            bail!("acceptance/sim/install.py failed ({})", installed.status);
        }
        let python = String::from_utf8_lossy(&installed.stdout).trim().to_owned();
        let dir = tempfile::Builder::new().prefix("armsim").tempdir()?;
        let ready_file = dir.path().join("ready.json");
        let log = std::fs::File::create(dir.path().join("sim.log"))?;
        let mut child = Command::new(&python)
            .args(["-m", "batchai_sim", "serve", "--state"])
            .arg(dir.path().join("state"))
            .arg("--ready-file")
            .arg(&ready_file)
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .current_dir(&sim_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start the ARM simulator")?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ready_file.exists() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the simulator exited with {status}: {}",
                    std::fs::read_to_string(dir.path().join("sim.log")).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the simulator did not serve within 120 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The simulator stops itself when this process ends; the child handle is let go.
        std::mem::forget(child);
        let ready: Json = serde_json::from_str(&std::fs::read_to_string(&ready_file)?)?;
        let text = |v: &Json| v.as_str().unwrap_or_default().to_owned();
        let subnet_id = ready["subnets"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["defaultOutboundAccess"] == true))
            .map(|s| text(&s["id"]))
            .unwrap_or_default();
        Ok(Sim {
            endpoint: text(&ready["endpoint"]),
            metadata_host: text(&ready["metadataHost"]),
            ca_path: text(&ready["caPath"]),
            subscription_id: text(&ready["subscriptionId"]),
            tenant_id: text(&ready["tenantId"]),
            client_id: text(&ready["clientId"]),
            client_secret: text(&ready["clientSecret"]),
            resource_group: text(&ready["resourceGroup"]),
            location: text(&ready["location"]),
            storage_account: text(&ready["storageAccounts"][0]),
            subnet_id,
            state: PathBuf::from(text(&ready["stateDir"])),
            blob_endpoint: text(&ready["blobEndpoints"][text(&ready["storageAccounts"][0])]),
            storage_key: text(&ready["storageKeys"][text(&ready["storageAccounts"][0])]),
            blob_endpoints: ready["blobEndpoints"]
                .as_object()
                .map(|e| e.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                .unwrap_or_default(),
            storage_keys: ready["storageKeys"]
                .as_object()
                .map(|keys| keys.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                .unwrap_or_default(),
            _dir: dir,
        })
    }

    /// The provider block for the simulator, with the control store in `container`.
    pub fn provider_block(&self, container: &str) -> String {
        format!(
            "provider \"batchai\" {{\n  azure {{\n    subscription_id      = \"{}\"\n    resource_group_name  = \"{}\"\n    location             = \"{}\"\n    storage_account_name = \"{}\"\n    container_name       = \"{container}\"\n    metadata_host        = \"{}\"\n  }}\n}}\n\n",
            self.subscription_id,
            self.resource_group,
            self.location,
            self.storage_account,
            self.metadata_host
        )
    }

    /// The control container `container` of the simulator's storage account, read with its
    /// account key, for what the nodes kept there.
    pub fn blobs(&self, container: &str) -> anyhow::Result<control_blob::BlobStore> {
        Ok(control_blob::BlobStore::open_trusting(
            &format!("{}{container}", self.blob_endpoint),
            control_blob::Credential::AccountKey(self.storage_key.clone()),
            Some(std::path::Path::new(&self.ca_path)),
        )?)
    }

    /// Container `container` of the simulator's storage account `account`.
    pub fn blobs_in(
        &self,
        account: &str,
        container: &str,
    ) -> anyhow::Result<control_blob::BlobStore> {
        let (Some(endpoint), Some(key)) = (
            self.blob_endpoints.get(account),
            self.storage_keys.get(account),
        ) else {
            bail!("the simulator serves no storage account {account}");
        };
        Ok(control_blob::BlobStore::open_trusting(
            &format!("{endpoint}{container}"),
            control_blob::Credential::AccountKey(key.clone()),
            Some(std::path::Path::new(&self.ca_path)),
        )?)
    }

    /// The environment Terraform runs with: the service principal (as azurerm reads it) and
    /// the test CA.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("ARM_TENANT_ID", &self.tenant_id),
            ("ARM_CLIENT_ID", &self.client_id),
            ("ARM_CLIENT_SECRET", &self.client_secret),
            ("BATCHAI_TEST_CA_CERTIFICATE", &self.ca_path),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
    }

    /// A call to the control API (`/_sim/...`), with curl.
    pub fn control(&self, method: &str, path: &str, body: Option<&Json>) -> anyhow::Result<Json> {
        let url = format!("{}_sim/{path}", self.endpoint);
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--fail-with-body",
            "--cacert",
            &self.ca_path,
            "-X",
            method,
        ])
        .arg(&url);
        if let Some(body) = body {
            cmd.args(["-H", "content-type: application/json", "--data-binary"])
                .arg(body.to_string());
        }
        let out = cmd.output().context("run curl")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "{method} {url}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if text.trim().is_empty() {
            return Ok(Json::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {url}: {text}"))
    }

    /// The simulator's nodes (VMs and scale set instances) whose name starts with `prefix`.
    pub fn nodes(&self, prefix: &str) -> anyhow::Result<Vec<Json>> {
        let all = self.control("GET", "nodes", None)?;
        Ok(all["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n["name"].as_str().is_some_and(|s| s.starts_with(prefix)))
            .collect())
    }

    /// ARM requests logged since `seq` (all kinds but the control API), as (method, path,
    /// status).
    pub fn requests_since(&self, seq: u64) -> anyhow::Result<Vec<Json>> {
        let log = self.control("GET", &format!("requests?since={seq}&kind=arm"), None)?;
        Ok(log["requests"].as_array().cloned().unwrap_or_default())
    }

    /// The sequence number of the last logged request.
    pub fn last_seq(&self) -> anyhow::Result<u64> {
        let log = self.control("GET", "requests?kind=arm", None)?;
        Ok(log["requests"]
            .as_array()
            .and_then(|r| r.last())
            .and_then(|r| r["seq"].as_u64())
            .unwrap_or(0))
    }
}

/// A workspace whose provider is on the shared simulator, with the newest CLI.
pub fn workspace() -> crate::Workspace {
    crate::Workspace::on_azure(&crate::newest_cli())
        .unwrap_or_else(|e| panic!("an azure workspace: {e:#}"))
}

/// A `batchai_cluster "c"` named `name` of size `Standard_D4s_v5` in the simulator's subnet
/// with outbound access, with `extra` inside its block and `scale` inside `scale_settings`.
pub fn cluster(name: &str, extra: &str, scale: &str) -> String {
    format!(
        r#"resource "batchai_cluster" "c" {{
  name      = "{name}"
  vm_size   = "Standard_D4s_v5"
  subnet_id = "{subnet}"
{extra}
  scale_settings {{
{scale}
  }}
}}
"#,
        subnet = Sim::shared().subnet_id
    )
}

/// `scale_settings` content: a manual scale of `count` nodes.
pub fn manual(count: u32) -> String {
    format!("    manual {{\n      target_node_count = {count}\n    }}")
}

/// The names of the scale set instances (`<prefix>_<id>`) that are not on their way out.
pub fn live_instances(prefix: &str) -> Vec<String> {
    Sim::shared()
        .nodes(&format!("{prefix}_"))
        .unwrap_or_else(|e| panic!("list the simulator's nodes: {e:#}"))
        .iter()
        .filter(|n| n["state"] != "Deleting")
        .filter_map(|n| n["name"].as_str().map(str::to_owned))
        .collect()
}
