# A PyTorch-style multi-node job without torch: 2 nodes, 4 ranks. Each node starts its ranks with
# RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set; rendezvous.py checks them and
# meets its peers over TCP, as torch.distributed's env:// rendezvous would.
#
# Run it with `cargo xtask example pytorch`; tear it down with `cargo xtask example pytorch destroy`.
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
    root = "${abspath(path.module)}/.batchai"
  }
}

resource "batchai_cluster" "ddp" {
  name    = "ddp"
  vm_size = "Standard_D2s_v3"

  scale_settings {
    manual {
      target_node_count = 2
    }
  }
}

resource "batchai_job" "rendezvous" {
  name       = "ddp-rendezvous"
  cluster_id = batchai_cluster.ddp.id
  node_count = 2

  pytorch {
    python_script_file_path = "${abspath(path.module)}/rendezvous.py"
    process_count           = 4
    communication_backend   = "gloo"
  }

  output_directories {
    id          = "RESULTS"
    path_prefix = "${abspath(path.module)}/.batchai/outputs"
  }
}

output "world_size" {
  description = "What rank 0 reported through $BATCHAI_METRICS_FILE after meeting every peer."
  value       = batchai_job.rendezvous.metrics["world_size"]
}
