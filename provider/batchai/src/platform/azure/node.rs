//! A node on an Azure VM: `terraform-provider-batchai agent azure --config <node.json>`, as the
//! bootstrap starts it. The VM's name (from the instance metadata service) is the node's name;
//! the store and Resource Manager are reached with the VM's managed identity; and the platform's
//! scheduled events are watched once a second, so that a Spot eviction requeues the node's work
//! at once and is then acknowledged (the VM goes without waiting out the notice).
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use control::Condition;
use control::records::{self, NodeRecord, keys};
use control_blob::imds::{self, Imds, ManagedIdentity};

use super::ScaleSetLauncher;
use super::bootstrap::{CONFIG_PATH, NodeConfig, TEST_CA_PATH};

/// How often the node asks for scheduled events (Azure gives a Spot VM 30 s of notice).
const EVENTS_EVERY: Duration = Duration::from_secs(1);
/// How long the node waits for the instance metadata service after boot.
const IMDS_PATIENCE: Duration = Duration::from_secs(300);

/// Runs this VM's node until it is drained, removed, evicted or stopped.
pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("read the node configuration {}", config_path.display()))?;
    let config: NodeConfig = serde_json::from_str(&text)
        .with_context(|| format!("parse the node configuration {}", config_path.display()))?;
    let rootfs = rootfs_of(config_path);
    trust_test_ca(&rootfs);

    let imds = Imds::from_env()?;
    let instance = retry_for(IMDS_PATIENCE, "read the instance metadata", || {
        let imds = imds.clone();
        imds::blocking(async move { imds.instance().await })
    })?;
    let Some(id) = super::instance_id(&instance.name) else {
        anyhow::bail!(
            "this VM ({}) is not a scale set instance: its name has no instance ID",
            instance.name
        );
    };
    let node = super::node_name(&config.cluster, id);
    tracing::info!(node = %node, cluster = %config.cluster, "starting on Azure");

    let identity = ManagedIdentity::new(imds.clone(), Some(config.identity_client_id.clone()));
    let location = agent::store::StoreLocation {
        url: config.store_url.clone(),
        credential: Some(agent::store::Credential::ManagedIdentity {
            client_id: Some(config.identity_client_id.clone()),
        }),
    };
    // One store, two uses: the records, and the copies of job files on this VM's disk, which
    // goes with the VM.
    let blob = location.open_blob()?;
    let store: Arc<dyn control::Store> = Arc::new(blob.clone());
    // The launcher wrote the record when it grew the scale set; a node that boots before that
    // pass finished writes it itself (the same record).
    let key = keys::node(&config.cluster, &node);
    let record = NodeRecord::launching(&config.cluster, &node, records::now_ms());
    retry_for(IMDS_PATIENCE, "register the node", || {
        match store.put(
            &key,
            &records::encode(&record),
            Condition::IfNoneExists,
            None,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.is_conflict() => Ok(()),
            Err(e) => Err(e),
        }
    })?;

    let arm = arm::ArmClient::new(
        &config.resource_manager,
        config.subscription_id.clone(),
        identity,
        config.arm_scope.clone(),
        arm::ArmClientOptions {
            ca_certificate_pem: test_ca(&rootfs).map(String::into_bytes),
            ..Default::default()
        },
    )?;
    // A scheduling pass runs in the node's loop, between heartbeats (6 s apart, stale after
    // 20 s): each launcher call gets 5 s and is tried again next pass when it runs out.
    let launcher =
        ScaleSetLauncher::new(arm, config.resource_group.clone(), Duration::from_secs(5));

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("install signal handlers")?;
    }
    let evicted = Arc::new(AtomicBool::new(false));
    let pending = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (imds, vm, stop, evicted, pending, done) = (
            imds.clone(),
            instance.name.clone(),
            stop.clone(),
            evicted.clone(),
            pending.clone(),
            done.clone(),
        );
        std::thread::spawn(move || watch_events(&imds, &vm, &stop, &evicted, &pending, &done))
    };

    let args = agent::NodeArgs {
        store: location,
        cluster: config.cluster.clone(),
        node: node.clone(),
        work_dir: under(&rootfs, &config.work_dir),
        local_root: None,
        exe: std::env::current_exe().context("find this binary")?,
        evicted: evicted.clone(),
        keep_files: Some(blob),
        mount_identity: Some(config.identity_client_id.clone()),
    };
    let result = agent::node::run_node_with(&args, store, &launcher, &stop, agent::Rates::STANDARD);
    done.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    // The work is back in the queue: let the platform take the VM now rather than at the
    // notice's end.
    let ids = std::mem::take(&mut *pending.lock().unwrap_or_else(PoisonError::into_inner));
    if !ids.is_empty() {
        let acknowledged = imds::blocking(async move { imds.acknowledge(&ids).await });
        if let Err(e) = acknowledged {
            tracing::warn!(error = %e, "acknowledge the eviction");
        }
    }
    // A node that left for any other reason (scaled in, drained, stopped) takes its VM with
    // it: an agent that systemd started again would only join as a node nobody asked for. Until
    // the deletion is accepted the agent stays (and does nothing), for the same reason.
    if !evicted.load(Ordering::SeqCst) {
        loop {
            match launcher.delete_instance(&config.cluster, &node) {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "delete this node's instance; trying again in 30 s");
                    std::thread::sleep(Duration::from_secs(30));
                }
            }
        }
    }
    result?;
    Ok(())
}

/// Polls the scheduled events until the node is done; on an event that ends this VM (`vm`, its
/// Azure name: a Spot eviction, a termination) it asks the node to requeue its work and leave.
fn watch_events(
    imds: &Imds,
    vm: &str,
    stop: &AtomicBool,
    evicted: &AtomicBool,
    pending: &Mutex<Vec<String>>,
    done: &AtomicBool,
) {
    let mut complained = false;
    while !done.load(Ordering::SeqCst) {
        let (i, n) = (imds.clone(), vm.to_owned());
        match imds::blocking(async move { i.scheduled_events(&n).await }) {
            Ok(events) => {
                complained = false;
                let ending: Vec<String> = events
                    .iter()
                    .filter(|e| e.ends_the_vm())
                    .map(|e| e.event_id.clone())
                    .collect();
                if !ending.is_empty() && !evicted.load(Ordering::SeqCst) {
                    tracing::warn!(vm, events = ?ending, "the platform is taking this VM away: requeueing its work");
                    *pending.lock().unwrap_or_else(PoisonError::into_inner) = ending;
                    evicted.store(true, Ordering::SeqCst);
                    stop.store(true, Ordering::SeqCst);
                }
            }
            Err(e) if !complained => {
                complained = true;
                tracing::warn!(error = %e, "read the scheduled events");
            }
            Err(_) => {}
        }
        std::thread::sleep(EVENTS_EVERY);
    }
}

/// Calls `attempt` until it succeeds or `patience` has passed, then fails with its last error.
fn retry_for<T, E: std::fmt::Display>(
    patience: Duration,
    what: &str,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    let mut nap = Duration::from_millis(200);
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(e) if start.elapsed() >= patience => {
                anyhow::bail!("{what}: {e} (still failing after {} s)", patience.as_secs())
            }
            Err(e) => tracing::warn!(error = %e, "{what}; trying again"),
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_secs(5));
    }
}

/// The directory the node's paths are under: `BATCHAI_ROOTFS` when the simulator boots the VM,
/// else what the configuration's path says (it is always `<rootfs>/etc/batchai/node.json`).
fn rootfs_of(config_path: &Path) -> PathBuf {
    if let Some(root) = std::env::var_os("BATCHAI_ROOTFS").filter(|v| !v.is_empty()) {
        return PathBuf::from(root);
    }
    let shown = config_path.to_string_lossy();
    PathBuf::from(shown.strip_suffix(CONFIG_PATH).unwrap_or(""))
}

/// `path` (absolute on the VM) under `rootfs`.
fn under(rootfs: &Path, path: &str) -> PathBuf {
    if rootfs.as_os_str().is_empty() {
        PathBuf::from(path)
    } else {
        rootfs.join(path.trim_start_matches('/'))
    }
}

fn test_ca(rootfs: &Path) -> Option<String> {
    std::fs::read_to_string(under(rootfs, TEST_CA_PATH)).ok()
}

/// Makes the store's HTTP client trust the test CA the provider passed on (test-only).
#[allow(unsafe_code)]
fn trust_test_ca(rootfs: &Path) {
    let path = under(rootfs, TEST_CA_PATH);
    if path.is_file() {
        // SAFETY: called at start-up, before this process starts any thread, so nothing reads
        // the environment concurrently.
        unsafe { std::env::set_var(control_blob::http::TEST_CA_VAR, &path) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_under_the_rootfs_in_the_simulator_and_absolute_on_a_vm() {
        assert_eq!(
            under(Path::new(""), "/mnt/batchai"),
            PathBuf::from("/mnt/batchai")
        );
        assert_eq!(
            under(Path::new("/sim/vms/gpu_0/rootfs"), "/mnt/batchai"),
            PathBuf::from("/sim/vms/gpu_0/rootfs/mnt/batchai")
        );
    }
}
