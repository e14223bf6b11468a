# Quickstart: shared storage and a 2-node cluster that mounts it, on the local platform.
# Run it with `cargo xtask quickstart` (tear it down with `cargo xtask quickstart destroy`).
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
