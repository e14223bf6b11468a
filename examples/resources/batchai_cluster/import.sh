# A cluster is imported by its ID, `<platform>/clusters/<name>`: `local/clusters/<name>` on the
# local platform, `azure/clusters/<name>` on Azure.
# Setup task secrets and the admin password are never read back; set them again in configuration.
terraform import batchai_cluster.gpu local/clusters/gpu
