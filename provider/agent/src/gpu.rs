//! GPUs: how many an Azure VM size has, how many this machine has, and a machine-wide
//! allocation so local nodes get disjoint devices through `CUDA_VISIBLE_DEVICES`.
use std::collections::BTreeMap;
use std::path::Path;

use control::records::keys;
use control::{Condition, Store};
use serde::{Deserialize, Serialize};

use crate::AgentError;

/// What an Azure VM size offers: the one table of sizes the agent, the provider's plan-time
/// checks and the `vm_size` function read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmSize {
    /// Lowercase, without the `Standard_` prefix.
    pub name: &'static str,
    pub vcpus: u32,
    pub memory_gib: u32,
    pub gpus: u32,
    /// Empty for sizes without GPUs.
    pub gpu_model: &'static str,
    /// The low-latency network between VMs (RDMA) the size has, or `none`.
    pub interconnect: &'static str,
}

const fn size(
    name: &'static str,
    vcpus: u32,
    memory_gib: u32,
    gpus: u32,
    gpu_model: &'static str,
    interconnect: &'static str,
) -> VmSize {
    VmSize {
        name,
        vcpus,
        memory_gib,
        gpus,
        gpu_model,
        interconnect,
    }
}

const NONE: &str = "none";
const IB_FDR: &str = "InfiniBand FDR";
const IB_EDR: &str = "InfiniBand EDR";
const IB_HDR: &str = "InfiniBand HDR";
const IB_NDR: &str = "InfiniBand NDR";

/// Azure's GPU sizes (NC, ND, NV series; K80 to H100 generations) and the general-purpose and
/// HPC sizes clusters and file servers commonly use, as Azure documents them. Sizes are matched
/// case-insensitively, with or without the `Standard_` prefix.
pub const VM_SIZES: &[VmSize] = &[
    // NC (K80): each GPU is half a K80 card.
    size("nc6", 6, 56, 1, "Tesla K80", NONE),
    size("nc12", 12, 112, 2, "Tesla K80", NONE),
    size("nc24", 24, 224, 4, "Tesla K80", NONE),
    size("nc24r", 24, 224, 4, "Tesla K80", IB_FDR),
    // NCv2 (P100)
    size("nc6s_v2", 6, 112, 1, "Tesla P100", NONE),
    size("nc12s_v2", 12, 224, 2, "Tesla P100", NONE),
    size("nc24s_v2", 24, 448, 4, "Tesla P100", NONE),
    size("nc24rs_v2", 24, 448, 4, "Tesla P100", IB_FDR),
    // NCv3 (V100)
    size("nc6s_v3", 6, 112, 1, "Tesla V100", NONE),
    size("nc12s_v3", 12, 224, 2, "Tesla V100", NONE),
    size("nc24s_v3", 24, 448, 4, "Tesla V100", NONE),
    size("nc24rs_v3", 24, 448, 4, "Tesla V100", IB_FDR),
    // NCasT4_v3 (T4)
    size("nc4as_t4_v3", 4, 28, 1, "Tesla T4", NONE),
    size("nc8as_t4_v3", 8, 56, 1, "Tesla T4", NONE),
    size("nc16as_t4_v3", 16, 110, 1, "Tesla T4", NONE),
    size("nc64as_t4_v3", 64, 440, 4, "Tesla T4", NONE),
    // NC A100 v4, NCads H100 v5
    size("nc24ads_a100_v4", 24, 220, 1, "A100 80GB PCIe", NONE),
    size("nc48ads_a100_v4", 48, 440, 2, "A100 80GB PCIe", NONE),
    size("nc96ads_a100_v4", 96, 880, 4, "A100 80GB PCIe", NONE),
    size("nc40ads_h100_v5", 40, 320, 1, "H100 NVL", NONE),
    size("nc80adis_h100_v5", 80, 640, 2, "H100 NVL", NONE),
    // ND (P40), NDv2 (V100), ND A100 v4, NDm A100 v4, ND H100 v5
    size("nd6s", 6, 112, 1, "Tesla P40", NONE),
    size("nd12s", 12, 224, 2, "Tesla P40", NONE),
    size("nd24s", 24, 448, 4, "Tesla P40", NONE),
    size("nd24rs", 24, 448, 4, "Tesla P40", IB_FDR),
    size("nd40rs_v2", 40, 672, 8, "Tesla V100 32GB SXM2", IB_EDR),
    size("nd96asr_v4", 96, 900, 8, "A100 40GB SXM4", IB_HDR),
    size("nd96amsr_a100_v4", 96, 1900, 8, "A100 80GB SXM4", IB_HDR),
    size("nd96isr_h100_v5", 96, 1900, 8, "H100 80GB SXM5", IB_NDR),
    // NV (M60), NVv3 (M60)
    size("nv6", 6, 56, 1, "Tesla M60", NONE),
    size("nv12", 12, 112, 2, "Tesla M60", NONE),
    size("nv24", 24, 224, 4, "Tesla M60", NONE),
    size("nv12s_v3", 12, 112, 1, "Tesla M60", NONE),
    size("nv24s_v3", 24, 224, 2, "Tesla M60", NONE),
    size("nv48s_v3", 48, 448, 4, "Tesla M60", NONE),
    // General purpose (Dsv3, Dsv5), for file servers and CPU clusters
    size("d2s_v3", 2, 8, 0, "", NONE),
    size("d4s_v3", 4, 16, 0, "", NONE),
    size("d8s_v3", 8, 32, 0, "", NONE),
    size("d16s_v3", 16, 64, 0, "", NONE),
    size("d2s_v5", 2, 8, 0, "", NONE),
    size("d4s_v5", 4, 16, 0, "", NONE),
    size("d8s_v5", 8, 32, 0, "", NONE),
    size("d16s_v5", 16, 64, 0, "", NONE),
    // HPC (HC, HBv3) for CPU-only MPI
    size("hc44rs", 44, 352, 0, "", IB_EDR),
    size("hb120rs_v3", 120, 448, 0, "", IB_HDR),
];

/// The table's entry for `vm_size` (any case, with or without `Standard_`); none for a size
/// the table does not know.
pub fn vm_size(vm_size: &str) -> Option<&'static VmSize> {
    let lower = vm_size.trim().to_ascii_lowercase();
    let name = lower.strip_prefix("standard_").unwrap_or(&lower);
    VM_SIZES.iter().find(|size| size.name == name)
}

/// Azure's spelling of a known size, `Standard_NC6s_v3`, from its table name.
pub fn azure_name(size: &VmSize) -> String {
    let mut out = String::from("Standard_");
    for (i, part) in size.name.split('_').enumerate() {
        if i > 0 {
            out.push('_');
        }
        // The first part is the family and size (`NC24ads`: upper-case family letters, the
        // count, lower-case feature letters); later parts are versions (`v3`) or GPU names
        // (`A100`, `H100`, `T4`).
        if i == 0 {
            let digits = part
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(part.len());
            out.push_str(&part[..digits].to_ascii_uppercase());
            out.push_str(&part[digits..]);
        } else if part.starts_with('v') && part[1..].chars().all(|c| c.is_ascii_digit()) {
            out.push_str(part);
        } else {
            out.push_str(&part.to_ascii_uppercase());
        }
    }
    out
}

/// The known sizes nearest to `vm_size` by spelling, best first, at most `limit`, for an error
/// about a size the table does not know.
pub fn nearest_sizes(vm_size: &str, limit: usize) -> Vec<String> {
    let lower = vm_size.trim().to_ascii_lowercase();
    let name = lower.strip_prefix("standard_").unwrap_or(&lower);
    let mut scored: Vec<(usize, &VmSize)> = VM_SIZES
        .iter()
        .map(|size| (edit_distance(name, size.name), size))
        .collect();
    scored.sort_by_key(|(distance, size)| (*distance, size.name));
    scored
        .into_iter()
        .take(limit)
        .map(|(_, size)| azure_name(size))
        .collect()
}

/// Levenshtein distance over bytes (size names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// GPUs a VM of `vm_size` has on Azure; 0 for sizes without GPUs and sizes the table does not
/// know.
pub fn gpus_for_vm_size(vm_size: &str) -> u32 {
    self::vm_size(vm_size).map_or(0, |size| size.gpus)
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
    fn the_size_table_is_consistent_and_spelled_as_azure_does() {
        let mut names = std::collections::BTreeSet::new();
        for size in VM_SIZES {
            assert!(names.insert(size.name), "{} twice", size.name);
            assert_eq!(size.name, size.name.to_ascii_lowercase());
            assert_eq!(size.gpus == 0, size.gpu_model.is_empty(), "{}", size.name);
            assert!(size.vcpus > 0 && size.memory_gib > 0, "{}", size.name);
            assert_eq!(vm_size(&azure_name(size)), Some(size), "{}", size.name);
        }
        let spelled = |name: &str| vm_size(name).map(azure_name);
        let cases = [
            ("nc24ads_a100_v4", "Standard_NC24ads_A100_v4"),
            ("STANDARD_ND96ISR_H100_V5", "Standard_ND96isr_H100_v5"),
            (" nc4as_t4_v3 ", "Standard_NC4as_T4_v3"),
            ("Standard_HB120rs_v3", "Standard_HB120rs_v3"),
        ];
        for (input, want) in cases {
            assert_eq!(spelled(input).as_deref(), Some(want), "{input}");
        }
        let h100 =
            vm_size("Standard_ND96isr_H100_v5").map(|s| (s.vcpus, s.memory_gib, s.interconnect));
        assert_eq!(h100, Some((96, 1900, "InfiniBand NDR")));
    }

    #[test]
    fn unknown_sizes_get_the_nearest_known_ones() {
        let cases: [(&str, &str); 3] = [
            ("Standard_NC6s_v4", "Standard_NC6s_v3"),
            ("nc24ads_a100", "Standard_NC24ads_A100_v4"),
            ("Standard_D2s_v4", "Standard_D2s_v3"),
        ];
        for (input, near) in cases {
            let nearest = nearest_sizes(input, 3);
            assert_eq!(nearest.len(), 3);
            assert!(nearest.iter().any(|n| n == near), "{input}: {nearest:?}");
        }
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn picks_lowest_free_indices() {
        let held: BTreeMap<u32, String> = [(0, "a".to_owned()), (2, "b".to_owned())].into();
        assert_eq!(pick_free(4, &held, 2), vec![1, 3]);
        assert_eq!(pick_free(4, &held, 5), vec![1, 3]);
        assert_eq!(pick_free(0, &held, 1), Vec::<u32>::new());
    }
}
