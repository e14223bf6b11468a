resource "batchai_file_server" "data" {
  name    = "data"
  vm_size = "Standard_D2s_v3"

  data_disks {
    disk_count           = 2
    disk_size_gb         = 128
    storage_account_type = "Premium_LRS"
  }
}

resource "batchai_cluster" "gpu" {
  name    = "gpu"
  vm_size = "Standard_NC24s_v3" # 4 GPUs per node

  scale_settings {
    auto_scale {
      minimum_node_count = 0
      maximum_node_count = 4
      initial_node_count = 1
      idle_timeout       = "15m"
    }
  }

  setup_task {
    command_line            = "pip install --user -r $AZ_BATCHAI_MOUNT_ROOT/data/requirements.txt"
    environment_variables   = { PIP_DISABLE_PIP_VERSION_CHECK = "1" }
    std_out_err_path_prefix = "/var/log/batchai"
  }

  mount_volumes {
    file_server {
      file_server_id      = batchai_file_server.data.id
      relative_mount_path = "data"
    }
  }
}

output "nodes" {
  value = batchai_cluster.gpu.node_state_counts
}
