"""The simulator driven by Microsoft's own Python SDK clients and pollers."""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from batchai_sim.pki import sign_jwt

from .conftest import Sim, custom_data, unique, vmss_body, wait_for


def instance_ids(sim: Sim, name: str) -> list[str]:
    return [vm.instance_id for vm in sim.compute().virtual_machine_scale_set_vms.list(sim.rg, name, expand="instanceView")]


def test_scale_set_lifecycle_with_the_sdk_poller(sim: Sim):
    compute = sim.compute()
    identity = sim.identity(unique("nodes"))
    name = unique("vmss")
    vmss = compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, name, vmss_body(sim, capacity=3, identity_id=identity["id"])).result()
    assert vmss.provisioning_state == "Succeeded"
    assert vmss.sku.capacity == 3
    assert vmss.identity.user_assigned_identities[identity["id"]].client_id == identity["clientId"]
    # custom data is write-only, as in Azure
    assert vmss.virtual_machine_profile.os_profile.custom_data is None

    seq = sim.last_seq()
    vms = list(compute.virtual_machine_scale_set_vms.list(sim.rg, name, expand="instanceView"))
    assert [vm.name for vm in vms] == [f"{name}_0", f"{name}_1", f"{name}_2"]
    assert [vm.os_profile.computer_name for vm in vms] == ["node000000", "node000001", "node000002"]
    assert {s.code for s in vms[0].instance_view.statuses} == {"ProvisioningState/succeeded", "PowerState/running"}
    pages = [r for r in sim.requests_since(seq) if r["path"].endswith("/virtualMachines")]
    assert len(pages) == 2, pages  # page size 2: the SDK followed nextLink once

    compute.virtual_machine_scale_sets.begin_update(sim.rg, name, {"sku": {"capacity": 5}}).result()
    assert instance_ids(sim, name) == ["0", "1", "2", "3", "4"]
    compute.virtual_machine_scale_sets.begin_delete_instances(sim.rg, name, {"instanceIds": ["1", "3"]}).result()
    assert instance_ids(sim, name) == ["0", "2", "4"]
    assert compute.virtual_machine_scale_sets.get(sim.rg, name).sku.capacity == 3
    # shrinking removes the highest instance IDs
    compute.virtual_machine_scale_sets.begin_update(sim.rg, name, {"sku": {"capacity": 1}}).result()
    assert instance_ids(sim, name) == ["0"]
    # growing again never reuses an ID
    compute.virtual_machine_scale_sets.begin_update(sim.rg, name, {"sku": {"capacity": 2}}).result()
    assert instance_ids(sim, name) == ["0", "5"]

    compute.virtual_machine_scale_sets.begin_delete(sim.rg, name).result()
    with pytest.raises(ResourceNotFoundError):
        compute.virtual_machine_scale_sets.get(sim.rg, name)


def test_a_vm_with_data_disks_and_a_nic_goes_away_in_one_delete(sim: Sim):
    compute, network = sim.compute(), sim.network()
    name = unique("fs")
    body = {
        "location": "westeurope",
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_D4s_v5"},
            "osProfile": {"computerName": name, "adminUsername": "batchai", "customData": custom_data(runcmd=["echo nfs"]),
                          "linuxConfiguration": {"disablePasswordAuthentication": True, "ssh": {"publicKeys": [{"path": "/home/batchai/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAA"}]}}},
            "storageProfile": {
                "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
                "osDisk": {"createOption": "FromImage", "deleteOption": "Delete", "managedDisk": {"storageAccountType": "Premium_LRS"}},
                "dataDisks": [
                    {"lun": i, "createOption": "Empty", "diskSizeGB": 128, "deleteOption": "Delete", "managedDisk": {"storageAccountType": "Premium_LRS"}}
                    for i in range(2)
                ],
            },
            "networkProfile": {
                "networkApiVersion": "2022-11-01",
                "networkInterfaceConfigurations": [
                    {"name": "nic", "properties": {"primary": True, "deleteOption": "Delete", "ipConfigurations": [{"name": "ip", "properties": {"subnet": {"id": sim.subnet_id()}}}]}}
                ],
            },
        },
    }
    vm = compute.virtual_machines.begin_create_or_update(sim.rg, name, body).result()
    assert vm.provisioning_state == "Succeeded"
    assert [d.lun for d in vm.storage_profile.data_disks] == [0, 1]
    assert all(d.managed_disk.id and d.delete_option == "Delete" for d in vm.storage_profile.data_disks)
    nic_id = vm.network_profile.network_interfaces[0].id
    nic_name = nic_id.rsplit("/", 1)[1]
    nic = network.network_interfaces.get(sim.rg, nic_name)
    address = nic.ip_configurations[0].private_ip_address
    assert address == sim.nodes()[name]["address"]
    assert nic.virtual_machine.id.lower().endswith(f"/virtualmachines/{name}".lower())
    view = compute.virtual_machines.get(sim.rg, name, expand="instanceView")
    assert "ProvisioningState/succeeded" in {s.code for s in view.instance_view.statuses}
    # the disks are there for the node, as Azure's udev links would be
    rootfs = sim.state / "vms" / name / "rootfs"
    assert sorted(p.name for p in (rootfs / "dev/disk/azure/scsi1").iterdir()) == ["lun0", "lun1"]

    compute.virtual_machines.begin_delete(sim.rg, name).result()
    with pytest.raises(ResourceNotFoundError):
        compute.virtual_machines.get(sim.rg, name)
    # its OS disk went with it
    wait_for("the VM's disk to go", lambda: not rootfs.exists())
    with pytest.raises(ResourceNotFoundError):
        network.network_interfaces.get(sim.rg, nic_name)


def test_storage_accounts_keys_and_containers(sim: Sim):
    storage = sim.storage()
    account = storage.storage_accounts.get_properties(sim.rg, "mlctrl")
    blob = account.primary_endpoints.blob
    assert blob.startswith("https://") and blob.endswith("/mlctrl/")
    # A quirk of the TypeSpec models: they are mappings, so `.keys` is dict.keys; index instead.
    keys = storage.storage_accounts.list_keys(sim.rg, "mlctrl")["keys"]
    assert [k["keyName"] for k in keys] == ["key1", "key2"] and keys[0]["value"] != keys[1]["value"]
    name = unique("ctl")
    created = storage.blob_containers.create(sim.rg, "mlctrl", name, {"properties": {"publicAccess": "None"}})
    assert created.name == name
    assert storage.blob_containers.get(sim.rg, "mlctrl", name).public_access == "None"
    # the container is real: Azurite lists it for the account key
    listing = requests.get(f"{blob}?comp=list", headers={"Authorization": f"Bearer {sim_storage_token(sim)}", "x-ms-version": "2025-11-05"}, verify=sim.ca, timeout=30)
    assert listing.status_code == 200 and f"<Name>{name}</Name>" in listing.text
    # a new account goes through Location polling (202)
    spare = sim.ready["spareStorageAccounts"][0]
    made = storage.storage_accounts.begin_create(sim.rg, spare, {"location": "westeurope", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}}).result()
    assert made.provisioning_state == "Succeeded"
    with pytest.raises(HttpResponseError) as error:
        storage.storage_accounts.begin_create(sim.rg, "notdeclared", {"location": "westeurope", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}}).result()
    assert error.value.status_code == 400


def sim_storage_token(sim: Sim) -> str:
    """A storage token as a node gets it, from a VM's IMDS is not at hand here: the Entra endpoint."""
    return sim.credential.get_token("https://storage.azure.com/.default").token


def test_identities_and_role_assignments(sim: Sim):
    msi, authz = sim.msi(), sim.authorization()
    name = unique("id")
    identity = msi.user_assigned_identities.create_or_update(sim.rg, name, {"location": "westeurope"})
    uuid.UUID(identity.client_id), uuid.UUID(identity.principal_id)
    assert identity.tenant_id == sim.ready["tenantId"]
    assert msi.user_assigned_identities.get(sim.rg, name).principal_id == identity.principal_id
    scope = f"/subscriptions/{sim.sub}/resourceGroups/{sim.rg}/providers/Microsoft.Storage/storageAccounts/mlctrl/blobServices/default/containers/c"
    role = f"/subscriptions/{sim.sub}/providers/Microsoft.Authorization/roleDefinitions/ba92f5b4-2d11-453d-a403-e96b0029c9fe"
    params = {"properties": {"roleDefinitionId": role, "principalId": identity.principal_id, "principalType": "ServicePrincipal"}}
    assignment = authz.role_assignments.create(scope, str(uuid.uuid4()), params)
    assert assignment.principal_id == identity.principal_id and assignment.scope == scope
    with pytest.raises(HttpResponseError) as error:
        authz.role_assignments.create(scope, str(uuid.uuid4()), params)
    assert error.value.status_code == 409 and error.value.error.code == "RoleAssignmentExists"
    params["properties"]["principalId"] = str(uuid.uuid4())
    with pytest.raises(HttpResponseError) as error:
        authz.role_assignments.create(scope, str(uuid.uuid4()), params)
    assert error.value.error.code == "PrincipalNotFound"
    msi.user_assigned_identities.delete(sim.rg, name)
    with pytest.raises(ResourceNotFoundError):
        msi.user_assigned_identities.get(sim.rg, name)


def test_skus_usages_and_subnets(sim: Sim, settings):
    compute, network = sim.compute(), sim.network()
    skus = {s.name: s for s in compute.resource_skus.list(filter="location eq 'westeurope'")}
    a100 = skus["Standard_NC24ads_A100_v4"]
    assert {c.name: c.value for c in a100.capabilities}["vCPUs"] == "24"
    assert a100.restrictions == []
    sim.ctl("POST", "config", {"restrictedSkus": ["Standard_NC6s_v3"]})
    skus = {s.name: s for s in compute.resource_skus.list(filter="location eq 'westeurope'")}
    assert skus["Standard_NC6s_v3"].restrictions[0].reason_code == "NotAvailableForSubscription"

    def usage() -> dict:
        return {u.name.value: (u.current_value, u.limit) for u in compute.usage.list("westeurope")}

    before = usage()
    name = unique("q")
    compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, name, vmss_body(sim, capacity=2, size="Standard_D4s_v5", spot=False)).result()
    after = usage()
    assert after["standardDSv5Family"][0] == before["standardDSv5Family"][0] + 8
    assert after["cores"][0] == before["cores"][0] + 8
    # quota: 5 regular A100 nodes are 120 vCPUs over the family's 96
    with pytest.raises(HttpResponseError) as error:
        compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, unique("q"), vmss_body(sim, capacity=5, spot=False)).result()
    assert error.value.error.code == "OperationNotAllowed" and "quota" in error.value.message
    sim.ctl("POST", "config", {"quotas": {"standardNCADSA100v4Family": 240}})
    compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, unique("q"), vmss_body(sim, capacity=5, spot=False)).result()
    sim.ctl("POST", "config", {"quotas": {"standardNCADSA100v4Family": 96}})

    default = network.subnets.get(sim.rg, "sim-vnet", "default")
    private = network.subnets.get(sim.rg, "sim-vnet", "private")
    assert default.default_outbound_access is True and private.default_outbound_access is False
    compute.virtual_machine_scale_sets.begin_delete(sim.rg, name).result()


def put_vmss_raw(sim: Sim, body: dict, **kwargs) -> requests.Response:
    path = f"/subscriptions/{sim.sub}/resourceGroups/{sim.rg}/providers/Microsoft.Compute/virtualMachineScaleSets/{unique('raw')}"
    return sim.arm("PUT", path, body, api="2026-04-01", **kwargs)


@pytest.mark.parametrize(
    "mutate, target",
    [
        (lambda b: b["properties"]["virtualMachineProfile"]["osProfile"].update(computerNamePrefx="x"), "properties.virtualMachineProfile.osProfile.computerNamePrefx"),
        (lambda b: b["properties"].update(provisioningState="Succeeded"), "properties.provisioningState"),
        (lambda b: b["sku"].update(capacity="2"), "sku.capacity"),
        (lambda b: b.pop("location"), "location"),
        (lambda b: b["properties"]["virtualMachineProfile"].update(evictionPolicy="Evict"), "properties.virtualMachineProfile.evictionPolicy"),
    ],
)
def test_bad_request_bodies_are_400_naming_the_path(sim: Sim, mutate, target):
    body = vmss_body(sim)
    mutate(body)
    response = put_vmss_raw(sim, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["target"] == target and target in error["message"]
    assert response.headers["x-ms-request-id"]


def test_references_must_exist(sim: Sim):
    body = vmss_body(sim, identity_id=f"/subscriptions/{sim.sub}/resourceGroups/{sim.rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nobody")
    response = put_vmss_raw(sim, body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "FailedIdentityOperation"
    body = vmss_body(sim)
    body["properties"]["virtualMachineProfile"]["networkProfile"]["networkInterfaceConfigurations"][0]["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"] += "x"
    response = put_vmss_raw(sim, body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "InvalidResourceReference"
    body = vmss_body(sim)
    body["properties"]["virtualMachineProfile"]["osProfile"]["customData"] = "not base64!"
    assert put_vmss_raw(sim, body).json()["error"]["code"] == "InvalidParameter"


def test_authentication_and_api_versions(sim: Sim):
    path = f"/subscriptions/{sim.sub}/resourceGroups/{sim.rg}/providers/Microsoft.Network/virtualNetworks/sim-vnet/subnets/default"
    ok = sim.arm("GET", path, api="2026-03-01", headers={"x-ms-correlation-request-id": "corr-1"})
    assert ok.status_code == 200 and ok.headers["x-ms-correlation-request-id"] == "corr-1"
    assert sim.arm("GET", path, api="2026-03-01", token=None).json()["error"]["code"] == "AuthenticationFailed"
    forged = sign_jwt(sim.client_key, {"aud": "https://management.azure.com/", "tid": sim.ready["tenantId"], "exp": time.time() + 600})
    response = sim.arm("GET", path, api="2026-03-01", token=forged)
    assert response.status_code == 401 and response.json()["error"]["code"] == "InvalidAuthenticationToken"
    storage_token = sim.credential.get_token("https://storage.azure.com/.default").token
    assert sim.arm("GET", path, api="2026-03-01", token=storage_token).status_code == 401
    assert sim.arm("GET", path, api="2024-05-01").json()["error"]["code"] == "NoRegisteredProviderFound"
    assert sim.arm("GET", path).json()["error"]["code"] == "MissingApiVersionParameter"
    vmss_path = f"/subscriptions/{sim.sub}/resourceGroups/{sim.rg}/providers/Microsoft.Compute/virtualMachineScaleSets/absent"
    absent = sim.arm("GET", vmss_path, api="2026-04-01")
    assert absent.status_code == 404 and absent.json()["error"]["code"] == "ResourceNotFound"
    assert "Microsoft.Compute/GetVMScaleSet3Min;" in absent.headers["x-ms-ratelimit-remaining-resource"]
    other_rg = vmss_path.replace(f"/resourceGroups/{sim.rg}/", "/resourceGroups/elsewhere/")
    assert sim.arm("GET", other_rg, api="2026-04-01").json()["error"]["code"] == "ResourceGroupNotFound"


def token_request(sim: Sim, **form) -> requests.Response:
    data = {"grant_type": "client_credentials", "client_id": sim.ready["clientId"], "scope": "https://management.azure.com/.default", **form}
    return requests.post(f"{sim.endpoint}{sim.ready['tenantId']}/oauth2/v2.0/token", data=data, verify=sim.ca, timeout=30)


def test_the_token_endpoint_checks_secrets_and_assertions(sim: Sim):
    assert token_request(sim, client_secret="wrong").status_code == 401
    assert token_request(sim, client_secret=sim.ready["clientSecret"], client_id=str(uuid.uuid4())).status_code == 400
    jwt_bearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    oidc = sim.ctl("POST", "oidc-token", {}).json()["token"]
    response = token_request(sim, client_assertion_type=jwt_bearer, client_assertion=oidc)
    assert response.status_code == 200 and response.json()["token_type"] == "Bearer"
    stranger = sim.ctl("POST", "oidc-token", {"subject": "repo:someone/else:ref:refs/heads/main"}).json()["token"]
    assert token_request(sim, client_assertion_type=jwt_bearer, client_assertion=stranger).status_code == 401
    cid = sim.ready["clientId"]
    claims = {"iss": cid, "sub": cid, "aud": f"{sim.endpoint}{sim.ready['tenantId']}/oauth2/v2.0/token", "exp": int(time.time()) + 600, "jti": str(uuid.uuid4())}
    signed = sign_jwt(sim.client_key, claims)
    assert token_request(sim, client_assertion_type=jwt_bearer, client_assertion=signed).status_code == 200
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = sign_jwt(rsa.generate_private_key(public_exponent=65537, key_size=2048), claims)
    assert token_request(sim, client_assertion_type=jwt_bearer, client_assertion=other).status_code == 401
    metadata = requests.get(f"{sim.endpoint}metadata/endpoints?api-version=2022-09-01", verify=sim.ca, timeout=30).json()
    assert metadata["resourceManager"] == sim.endpoint and metadata["authentication"]["loginEndpoint"] == sim.endpoint
