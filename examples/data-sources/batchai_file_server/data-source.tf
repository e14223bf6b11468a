data "batchai_file_server" "shared" {
  name = "data"
}

output "shared_export" {
  value = data.batchai_file_server.shared.mount_settings.mount_point
}
