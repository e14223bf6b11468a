# A 2-node MPI job: OpenMPI's mpirun starts 4 ranks, 2 on each node, with the hostfile in
# $AZ_BATCHAI_MPI_HOST_FILE. Each rank writes which node it ran on to the results directory.
# Needs `mpirun` on the nodes (Debian/Ubuntu: `apt-get install openmpi-bin`).
#
# Run it with `cargo xtask example mpi`; tear it down with `cargo xtask example mpi destroy`.
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

resource "batchai_cluster" "mpi" {
  name    = "mpi"
  vm_size = "Standard_D2s_v3"

  scale_settings {
    manual {
      target_node_count = 2
    }
  }
}

resource "batchai_job" "hello" {
  name       = "mpi-hello"
  cluster_id = batchai_cluster.mpi.id
  node_count = 2

  custom_mpi {
    command_line  = "python3 ${abspath(path.module)}/hello.py"
    process_count = 4
  }

  output_directories {
    id          = "RESULTS"
    path_prefix = "${abspath(path.module)}/.batchai/outputs"
  }
}

output "results" {
  description = "One rank-<R>.txt per rank, naming the node it ran on."
  value       = "${abspath(path.module)}/.batchai/outputs/${batchai_job.hello.job_output_directory_path_segment}"
}
