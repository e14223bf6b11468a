# Quickstart: shared storage on the local platform. Run it with `cargo xtask quickstart`
# (and tear it down with `cargo xtask quickstart destroy`).
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

output "file_server_id" {
  value = batchai_file_server.data.id
}

output "mount_point" {
  description = "The export clusters mount; on the local platform a directory you can open."
  value       = batchai_file_server.data.mount_settings.mount_point
}

output "capacity_gb" {
  value = batchai_file_server.data.capacity_gb
}
