//! `xtask gpu-check <provider binary>`: on a machine with NVIDIA GPUs, runs a 2-node
//! `Standard_NC6` cluster (1 GPU per node) and a 2-node job through the local platform, and
//! prints what each node's job process saw: `nvidia-smi -L` filtered by `CUDA_VISIBLE_DEVICES`,
//! and the Batch AI GPU variables. Needs no Terraform, so it runs on a bare GPU machine.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::bail;
use batchai::names::Name;
use batchai::platform::Platform as _;
use control::jobs::{JobSpec, JobState, Priority, Retry, Script, Toolkit};
use control::records::{ClusterSpec, DeallocationOption, FORMAT, Scale};

pub fn gpu_check(binary: &Path) -> anyhow::Result<()> {
    println!(
        "machine GPUs (agent::gpu::detect_gpus): {}",
        agent::gpu::detect_gpus()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("batchai-gpucheck-{}", std::process::id()));
    let out = dir.join("out");
    std::fs::create_dir_all(&out)?;
    let platform = batchai::platform::local::platform_with_agent_binary(
        dir.join("root"),
        std::path::absolute(binary)?,
        None,
    )?;
    let spec = ClusterSpec {
        format: FORMAT,
        name: "gpu".into(),
        uid: "check".into(),
        vm_size: "Standard_NC6".into(),
        vm_priority: "dedicated".into(),
        scale: Scale::Manual {
            target_node_count: 2,
            node_deallocation_option: DeallocationOption::Requeue,
        },
        setup_task: None,
        mounts: Vec::new(),
        gpus_per_node: agent::gpu::gpus_for_vm_size("Standard_NC6"),
        deleting: false,
        scale_generation: 0,
    };
    let view = runtime
        .block_on(platform.create_cluster(&spec, &Default::default(), &serde_json::Value::Null))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for node in &view.nodes {
        println!(
            "node {}: state {:?}, GPUs {:?}",
            node.id, node.state, node.gpus
        );
    }
    let command = format!(
        "echo \"node=$AZ_BATCHAI_NODE_ID rank=$RANK CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES AZ_BATCHAI_NUM_GPUS=$AZ_BATCHAI_NUM_GPUS\" > {out}/$AZ_BATCHAI_NODE_ID.txt; nvidia-smi -L >> {out}/$AZ_BATCHAI_NODE_ID.txt 2>&1; nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader -i $CUDA_VISIBLE_DEVICES >> {out}/$AZ_BATCHAI_NODE_ID.txt 2>&1; true",
        out = out.display()
    );
    std::fs::write(dir.join("probe.sh"), &command)?;
    let job = JobSpec {
        format: FORMAT,
        name: "probe".into(),
        cluster: "gpu".into(),
        uid: "check".into(),
        created_ms: control::records::now_ms(),
        node_count: 2,
        priority: Priority::Normal,
        // PyTorch's launch: one rank per node, each with its node's GPUs.
        toolkit: Toolkit::Pytorch {
            script: Script {
                python_script_file_path: dir.join("probe.sh").display().to_string(),
                python_interpreter_path: Some("bash".into()),
                command_line_args: None,
            },
            process_count: None,
            communication_backend: None,
        },
        job_preparation: None,
        environment_variables: BTreeMap::new(),
        has_secrets: false,
        input_directories: Vec::new(),
        output_directories: Vec::new(),
        std_out_err_path_prefix: dir.join("logs").display().to_string(),
        mounts: Vec::new(),
        max_wall_clock_ms: 120_000,
        max_unschedulable_ms: control::jobs::DEFAULT_MAX_UNSCHEDULABLE_MS,
        termination_grace_ms: control::jobs::DEFAULT_TERMINATION_GRACE_MS,
        retry: Retry::default(),
        container: None,
    };
    runtime
        .block_on(platform.submit_job(
            &job,
            &batchai::platform::JobSecrets::default(),
            &serde_json::Value::Null,
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (cluster, name) = (
        Name::parse("gpu").map_err(anyhow::Error::msg)?,
        Name::parse("probe").map_err(anyhow::Error::msg)?,
    );
    let done = runtime
        .block_on(platform.wait_job(&cluster, &name, true))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "job: {:?}, attempts {}",
        done.status.state, done.status.attempts
    );
    for entry in std::fs::read_dir(&out)? {
        let path = entry?.path();
        println!(
            "--- {}\n{}",
            path.display(),
            std::fs::read_to_string(&path)?
        );
    }
    runtime
        .block_on(platform.delete_cluster(&cluster))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = std::fs::remove_dir_all(&dir);
    if done.status.state != JobState::Succeeded {
        bail!("the probe job failed: {:?}", done.status.errors);
    }
    Ok(())
}
