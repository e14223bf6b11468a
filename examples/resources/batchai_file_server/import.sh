# A file server is imported by its ID, `<platform>/fileServers/<name>`: `local/fileServers/<name>`
# on the local platform, `azure/fileServers/<name>` on Azure.
# The admin password is never read back, so set it again in configuration if you use one.
terraform import batchai_file_server.data local/fileServers/data
