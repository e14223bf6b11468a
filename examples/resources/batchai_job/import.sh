# Jobs are imported by ID: local/clusters/<cluster>/jobs/<job>. Write-only secrets are not
# stored anywhere Terraform can read them back, so an imported job shows none.
terraform import batchai_job.train local/clusters/gpu/jobs/resnet-ddp
