"""The request walkers against Microsoft's models, without a server."""

from __future__ import annotations

import copy

import pytest
from azure.mgmt.authorization.v2022_04_01 import models as authz
from azure.mgmt.compute import models as compute
from azure.mgmt.msi.v2024_11_30 import models as msi
from azure.mgmt.network import models as network
from azure.mgmt.storage import models as storage

from batchai_sim.models import validate, walk_all_fields

from .conftest import vmss_body


class _FakeSim:
    def subnet_id(self, outbound: bool = True) -> str:
        return "/subscriptions/s/resourceGroups/training/providers/Microsoft.Network/virtualNetworks/sim-vnet/subnets/default"


BODY = vmss_body(_FakeSim(), identity_id="/subscriptions/s/resourceGroups/training/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nodes")


@pytest.mark.parametrize(
    "model",
    [compute.VirtualMachineScaleSet, compute.VirtualMachine, compute.VirtualMachineScaleSetVM, compute.ResourceSku, network.NetworkInterface, network.Subnet, storage.StorageAccount, storage.BlobContainer, msi.Identity, authz.RoleAssignment],
)
def test_every_field_type_of_the_models_has_a_rule(model):
    assert walk_all_fields(model) >= 1


def test_a_realistic_spot_gpu_scale_set_is_accepted():
    assert validate(BODY, compute.VirtualMachineScaleSet, "create") == []


def paths(problems):
    return {p.path for p in problems}


def test_unknown_keys_wrong_types_read_only_and_missing_required_are_named_by_path():
    body = copy.deepcopy(BODY)
    body["properties"]["virtualMachineProfile"]["osProfile"]["computerNamePrefx"] = "x"
    body["sku"]["capacity"] = "two"
    body["properties"]["provisioningState"] = "Succeeded"
    body["properties"]["overprovision"] = "false"
    del body["location"]
    problems = validate(body, compute.VirtualMachineScaleSet, "create")
    assert paths(problems) == {
        "properties.virtualMachineProfile.osProfile.computerNamePrefx",
        "sku.capacity",
        "properties.provisioningState",
        "properties.overprovision",
        "location",
    }
    assert all(p.code == "InvalidRequestContent" for p in problems)


def test_closed_enums_are_checked_and_vm_sizes_are_open():
    body = copy.deepcopy(BODY)
    body["properties"]["virtualMachineProfile"]["evictionPolicy"] = "Evict"
    problems = validate(body, compute.VirtualMachineScaleSet, "create")
    assert paths(problems) == {"properties.virtualMachineProfile.evictionPolicy"}
    vm = {"location": "westeurope", "properties": {"hardwareProfile": {"vmSize": "Standard_NC24ads_A100_v4"}}}
    assert validate(vm, compute.VirtualMachine, "create") == []


def test_arrays_are_walked_with_their_index():
    body = copy.deepcopy(BODY)
    nic = body["properties"]["virtualMachineProfile"]["networkProfile"]["networkInterfaceConfigurations"][0]
    nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["idd"] = "x"
    problems = validate(body, compute.VirtualMachineScaleSet, "create")
    assert paths(problems) == {"properties.virtualMachineProfile.networkProfile.networkInterfaceConfigurations[0].properties.ipConfigurations[0].properties.subnet.idd"}


def test_update_bodies_use_the_update_model():
    assert validate({"sku": {"capacity": 3}}, compute.VirtualMachineScaleSetUpdate, "update") == []
    assert paths(validate({"location": "westeurope"}, compute.VirtualMachineScaleSetUpdate, "update")) == {"location"}


def test_msrest_models_flattened_properties_read_only_and_required():
    assert validate({"location": "westeurope", "tags": {"a": "b"}}, msi.Identity, "create") == []
    assert paths(validate({"location": "westeurope", "properties": {"clientId": "x"}}, msi.Identity, "create")) == {"properties.clientId"}
    assert paths(validate({"location": "westeurope", "properties": {"colour": "x"}}, msi.Identity, "create")) == {"properties.colour"}
    assert paths(validate({"properties": {"roleDefinitionId": "x"}}, authz.RoleAssignmentCreateParameters, "create")) == {"properties.principalId"}
    assert paths(validate({"properties": {"roleDefinitionId": 5, "principalId": "p"}}, authz.RoleAssignmentCreateParameters, "create")) == {"properties.roleDefinitionId"}


def test_responses_may_carry_read_only_properties_but_no_unknown_ones():
    identity = {"id": "/x", "name": "n", "type": "t", "location": "westeurope", "properties": {"clientId": "c", "principalId": "p", "tenantId": "t"}}
    assert validate(identity, msi.Identity, "response") == []
    identity["properties"]["secret"] = "s"
    assert paths(validate(identity, msi.Identity, "response")) == {"properties.secret"}
