# Jobs are imported by ID: <platform>/clusters/<cluster>/jobs/<job> (local/... on the local
# platform, azure/... on Azure). Write-only secrets are not
# stored anywhere Terraform can read them back, so an imported job shows none.
terraform import batchai_job.train local/clusters/gpu/jobs/resnet-ddp
