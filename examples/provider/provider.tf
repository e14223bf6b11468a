terraform {
  required_providers {
    batchai = {
      source = "batchai/batchai"
    }
  }
}

# Without an `azure` block everything runs on the local platform: nodes are agent processes on
# this machine and file servers are directories under `local.root`.
provider "batchai" {
  local {
    root = "/var/lib/batchai"
  }
}
