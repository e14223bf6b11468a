# A file server is imported by its ID, `local/fileServers/<name>` on the local platform.
# The admin password is never read back, so set it again in configuration if you use one.
terraform import batchai_file_server.data local/fileServers/data
