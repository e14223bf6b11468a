# Quickstart: shared storage, a 2-node cluster that mounts it, and a job that trains a small
# model on it and reports its accuracy, all on the local platform.
# Run it with `cargo xtask quickstart`; tear it down with `cargo xtask quickstart destroy`.
# By hand: `cargo xtask install` (builds the provider and copies it into
# ~/.terraform.d/plugins, where init finds it), then `terraform init` and `terraform apply` in
# this directory (or `tofu init`, `tofu apply`). After installing a new build of the same
# version, delete .terraform.lock.hcl here before init (it records the old build's hash).
terraform {
  required_providers {
    batchai = {
      source = "batchai/batchai"
    }
  }
}

provider "batchai" {
  local {
    # Keep everything this example creates next to it.
    root = "${abspath(path.module)}/.batchai"
  }
}

resource "batchai_file_server" "data" {
  name    = "quickstart-data"
  vm_size = "Standard_D2s_v3"

  data_disks {
    disk_count           = 2
    disk_size_gb         = 64
    storage_account_type = "Standard_LRS"
  }
}

resource "batchai_cluster" "train" {
  name    = "quickstart"
  vm_size = "Standard_D2s_v3"

  scale_settings {
    manual {
      target_node_count = 2
    }
  }

  # Runs on every node before it takes work; here it leaves a mark on the shared storage.
  setup_task {
    command_line = "echo \"$AZ_BATCHAI_NODE_ID ready with $AZ_BATCHAI_NUM_GPUS GPUs\" > $AZ_BATCHAI_MOUNT_ROOT/data/$AZ_BATCHAI_NODE_ID.ready"
  }

  mount_volumes {
    file_server {
      file_server_id      = batchai_file_server.data.id
      relative_mount_path = "data"
    }
  }
}

# Trains a small neural network (pure Python, no packages needed) on one node of the cluster.
# The script is copied to the shared storage by job preparation, writes its model to the
# output directory and appends its metrics to $BATCHAI_METRICS_FILE.
resource "batchai_job" "train" {
  name       = "quickstart-train"
  cluster_id = batchai_cluster.train.id
  node_count = 1

  job_preparation {
    command_line = "mkdir -p $AZ_BATCHAI_MOUNT_ROOT/data/scripts && cp ${abspath(path.module)}/train.py $AZ_BATCHAI_MOUNT_ROOT/data/scripts/"
  }

  custom_toolkit {
    command_line = "python3 $AZ_BATCHAI_MOUNT_ROOT/data/scripts/train.py --epochs 60 --seed 42"
  }

  output_directories {
    id          = "MODEL"
    path_prefix = "$AZ_BATCHAI_MOUNT_ROOT/data/outputs"
  }

  std_out_err_path_prefix = "$AZ_BATCHAI_MOUNT_ROOT/data/logs"

  constraints {
    max_wall_clock_time = "10m"
  }
}

output "accuracy" {
  description = "Test accuracy the training job reported through $BATCHAI_METRICS_FILE."
  value       = batchai_job.train.metrics["accuracy"]
}

output "model_directory" {
  description = "Where the trained model and its metrics are, on the file server's export."
  value       = "${batchai_file_server.data.mount_settings.mount_point}/outputs/${batchai_job.train.job_output_directory_path_segment}"
}

output "file_server_id" {
  value = batchai_file_server.data.id
}

output "mount_point" {
  description = "The export the cluster mounts; on the local platform a directory you can open."
  value       = batchai_file_server.data.mount_settings.mount_point
}

output "cluster_nodes" {
  value = batchai_cluster.train.node_state_counts
}
