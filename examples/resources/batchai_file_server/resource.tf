resource "batchai_file_server" "data" {
  name    = "data"
  vm_size = "Standard_D2s_v3"

  data_disks {
    disk_count           = 2
    disk_size_gb         = 128
    storage_account_type = "Premium_LRS"
  }

  ssh_configuration {
    user_account_settings {
      admin_user_name           = "batchai"
      admin_user_ssh_public_key = file("~/.ssh/id_ed25519.pub")
    }
  }

  timeouts {
    create = "20m"
  }
}

output "data_mount_point" {
  value = batchai_file_server.data.mount_settings.mount_point
}
