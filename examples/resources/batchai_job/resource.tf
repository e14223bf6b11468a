# A 2-node PyTorch job: each node starts its share of the ranks with RANK, WORLD_SIZE,
# LOCAL_RANK, MASTER_ADDR and MASTER_PORT set. Apply waits for it and fails if it fails.
resource "batchai_job" "train" {
  name                = "resnet-ddp"
  cluster_id          = batchai_cluster.gpu.id
  node_count          = 2
  scheduling_priority = "high"

  pytorch {
    python_script_file_path = "$AZ_BATCHAI_MOUNT_ROOT/data/scripts/train.py"
    command_line_args       = "--epochs 10 --data $AZ_BATCHAI_INPUT_DATASET --out $AZ_BATCHAI_OUTPUT_MODEL"
    process_count           = 8 # 4 GPUs per node
    communication_backend   = "nccl"
  }

  job_preparation {
    command_line = "pip install --user -r $AZ_BATCHAI_MOUNT_ROOT/data/scripts/requirements.txt"
  }

  input_directories {
    id   = "DATASET"
    path = "$AZ_BATCHAI_MOUNT_ROOT/data/imagenet"
  }

  output_directories {
    id          = "MODEL"
    path_prefix = "$AZ_BATCHAI_MOUNT_ROOT/data/outputs"
  }

  std_out_err_path_prefix = "$AZ_BATCHAI_MOUNT_ROOT/data/logs"
  environment_variables   = { NCCL_DEBUG = "INFO" }

  # Never stored in state (Terraform 1.11+); bump the version to submit new values.
  secrets_wo         = { WANDB_API_KEY = var.wandb_api_key }
  secrets_wo_version = 1

  constraints {
    max_wall_clock_time = "1.00:00:00"
  }

  retry {
    max_retries         = 2
    retry_on_exit_codes = [75] # the script's "preempted, resume from checkpoint" code
  }
}

# Other resources can use what the job reported through $BATCHAI_METRICS_FILE.
output "top1_accuracy" {
  value = batchai_job.train.metrics["top1"]
}
