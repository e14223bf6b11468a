//! GPUs: how many an Azure VM size has, how many this machine has, and a machine-wide
//! allocation so local nodes get disjoint devices through `CUDA_VISIBLE_DEVICES`.
use std::collections::BTreeMap;
use std::path::Path;

use control::records::keys;
use control::{Condition, Store};
use serde::{Deserialize, Serialize};

use crate::AgentError;

/// GPUs per VM for Azure's GPU sizes (NC, ND, NV series; K80 to H100 generations). Sizes are
/// matched case-insensitively, with or without the `Standard_` prefix.
const GPU_SIZES: &[(&str, u32)] = &[
    // NC (K80), NCv2 (P100), NCv3 (V100)
    ("nc6", 1),
    ("nc12", 2),
    ("nc24", 4),
    ("nc24r", 4),
    ("nc6s_v2", 1),
    ("nc12s_v2", 2),
    ("nc24s_v2", 4),
    ("nc24rs_v2", 4),
    ("nc6s_v3", 1),
    ("nc12s_v3", 2),
    ("nc24s_v3", 4),
    ("nc24rs_v3", 4),
    // NCasT4_v3 (T4)
    ("nc4as_t4_v3", 1),
    ("nc8as_t4_v3", 1),
    ("nc16as_t4_v3", 1),
    ("nc64as_t4_v3", 4),
    // NC A100 v4, NCads H100 v5
    ("nc24ads_a100_v4", 1),
    ("nc48ads_a100_v4", 2),
    ("nc96ads_a100_v4", 4),
    ("nc40ads_h100_v5", 1),
    ("nc80adis_h100_v5", 2),
    // ND (P40), NDv2 (V100), ND A100 v4, ND H100 v5
    ("nd6s", 1),
    ("nd12s", 2),
    ("nd24s", 4),
    ("nd24rs", 4),
    ("nd40rs_v2", 8),
    ("nd96asr_v4", 8),
    ("nd96amsr_a100_v4", 8),
    ("nd96isr_h100_v5", 8),
    // NV (M60), NVv3 (M60)
    ("nv6", 1),
    ("nv12", 2),
    ("nv24", 4),
    ("nv12s_v3", 1),
    ("nv24s_v3", 2),
    ("nv48s_v3", 4),
];

/// GPUs a VM of `vm_size` has on Azure; 0 for sizes without GPUs.
pub fn gpus_for_vm_size(vm_size: &str) -> u32 {
    let lower = vm_size.to_ascii_lowercase();
    let name = lower.strip_prefix("standard_").unwrap_or(&lower);
    GPU_SIZES
        .iter()
        .find(|(size, _)| *size == name)
        .map_or(0, |(_, n)| *n)
}

/// NVIDIA GPUs on this machine, from `nvidia-smi -L`; 0 when there is no driver.
pub fn detect_gpus() -> u32 {
    count_gpus(Path::new("nvidia-smi"), NVIDIA_SMI_TIMEOUT)
}

/// How long `nvidia-smi` may take: a driver in a bad state can hang it, and a plan or a node's
/// start must not hang with it.
const NVIDIA_SMI_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The GPUs `program -L` lists; none when it is missing, fails or does not answer in time.
fn count_gpus(program: &Path, timeout: std::time::Duration) -> u32 {
    use std::io::Read as _;
    let Ok(mut child) = std::process::Command::new(program)
        .arg("-L")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        return 0;
    };
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            _ => {
                tracing::warn!(program = %program.display(), "GPU detection did not answer in time; counting no GPUs");
                let _ = child.kill();
                let _ = child.wait();
                return 0;
            }
        }
    };
    let mut out = String::new();
    if !status.success()
        || child
            .stdout
            .take()
            .is_none_or(|mut s| s.read_to_string(&mut out).is_err())
    {
        return 0;
    }
    u32::try_from(out.lines().filter(|l| l.starts_with("GPU ")).count()).unwrap_or(0)
}

/// Which node holds each GPU index on this machine.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Allocations {
    format: u32,
    /// GPU index → `cluster/node`.
    held: BTreeMap<u32, String>,
}

/// Picks up to `want` free indices below `available`, lowest first.
pub fn pick_free(available: u32, held: &BTreeMap<u32, String>, want: u32) -> Vec<u32> {
    (0..available)
        .filter(|i| !held.contains_key(i))
        .take(usize::try_from(want).unwrap_or(0))
        .collect()
}

/// Allocates GPUs for a node with compare-and-swap, so concurrent launches never share one.
/// Returns fewer than `want` when the machine has fewer free.
pub fn allocate(
    store: &dyn Store,
    key: &str,
    owner: &str,
    available: u32,
    want: u32,
) -> Result<Vec<u32>, AgentError> {
    if want == 0 || available == 0 {
        return Ok(Vec::new());
    }
    loop {
        let current = store.get(key)?;
        let (mut alloc, condition) = match &current {
            Some(v) => (
                control::records::decode::<Allocations>("gpu allocations", &v.data)?,
                Condition::IfMatch(v.etag.clone()),
            ),
            None => (Allocations::default(), Condition::IfNoneExists),
        };
        let picked = pick_free(available, &alloc.held, want);
        for i in &picked {
            alloc.held.insert(*i, owner.to_owned());
        }
        alloc.format = control::records::FORMAT;
        match store.put(key, &control::records::encode(&alloc), condition, None) {
            Ok(_) => return Ok(picked),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Where the GPUs of this machine are allocated: beside a directory store (which only this
/// machine reaches) the one machine-wide table, in a store that machines share a table per
/// machine, since GPUs belong to the machine and not to the store.
pub fn allocation_key(shared_store: bool) -> String {
    if shared_store {
        format!("hosts/{}/gpus", crate::host::identity())
    } else {
        keys::GPU_ALLOCATIONS.to_owned()
    }
}

/// Frees every GPU `owner` holds in the table at `key`.
pub fn release_at(store: &dyn Store, key: &str, owner: &str) -> Result<(), AgentError> {
    control::records::update(store, key, "gpu allocations", |a: &mut Allocations| {
        let before = a.held.len();
        a.held.retain(|_, holder| holder != owner);
        a.held.len() != before
    })?;
    Ok(())
}

/// Frees every GPU `owner` (`<cluster>/<node>`) holds, wherever its node allocated them: the
/// machine-wide table and, when its record says where it ran, that machine's table.
pub fn release(store: &dyn Store, owner: &str) -> Result<(), AgentError> {
    release_at(store, keys::GPU_ALLOCATIONS, owner)
}

/// [`release`] for a node whose record is at hand, including the table of its machine.
pub fn release_node(store: &dyn Store, node: &control::records::NodeRecord) {
    let owner = format!("{}/{}", node.cluster, node.id);
    let _ = release(store, &owner);
    if let Some(host) = &node.host {
        let _ = release_at(store, &format!("hosts/{host}/gpus"), &owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_detection_counts_listed_gpus_and_never_hangs() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let script = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap_or_else(|e| panic!("{e}"));
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("{e}"));
            p
        };
        let two = script(
            "two",
            "echo 'GPU 0: A (UUID: x)'; echo 'GPU 1: A (UUID: y)'",
        );
        let hung = script("hung", "exec sleep 60");
        let broken = script("broken", "echo 'GPU 0: A'; exit 9");
        let short = std::time::Duration::from_millis(300);
        assert_eq!(count_gpus(&two, short * 10), 2);
        assert_eq!(count_gpus(&hung, short), 0);
        assert_eq!(count_gpus(&broken, short * 10), 0);
        assert_eq!(count_gpus(&dir.path().join("missing"), short), 0);
    }

    #[test]
    fn vm_sizes() {
        let cases = [
            ("Standard_NC6", 1),
            ("standard_nc24rs_v3", 4),
            ("Standard_ND96isr_H100_v5", 8),
            ("NC4as_T4_v3", 1),
            ("Standard_D2s_v3", 0),
            ("", 0),
        ];
        for (size, gpus) in cases {
            assert_eq!(gpus_for_vm_size(size), gpus, "{size}");
        }
    }

    #[test]
    fn picks_lowest_free_indices() {
        let held: BTreeMap<u32, String> = [(0, "a".to_owned()), (2, "b".to_owned())].into();
        assert_eq!(pick_free(4, &held, 2), vec![1, 3]);
        assert_eq!(pick_free(4, &held, 5), vec![1, 3]);
        assert_eq!(pick_free(0, &held, 1), Vec::<u32>::new());
    }
}
