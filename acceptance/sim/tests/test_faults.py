"""Faults on demand, as Microsoft's SDK sees them."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError

from .conftest import Sim, unique, vmss_body, wait_for


def test_a_429_storm_during_create_converges(sim: Sim, settings):
    compute = sim.compute()
    name = unique("storm")
    # azure-core retries a request 3 times: 3 on the PUT, then 3 on the status polls
    put = sim.ctl("POST", "faults", {"kind": "throttle", "count": 3, "method": "PUT", "path": f"virtualMachineScaleSets/{name}$", "retryAfter": 1}).json()
    poll = sim.ctl("POST", "faults", {"kind": "throttle", "count": 3, "method": "GET", "path": "/operations/", "retryAfter": 1}).json()
    seq = sim.last_seq()
    vmss = compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, name, vmss_body(sim, capacity=2)).result()
    assert vmss.provisioning_state == "Succeeded"
    throttled = [r for r in sim.requests_since(seq) if r["status"] == 429]
    assert [r["fault"] for r in throttled] == [put["id"]] * 3 + [poll["id"]] * 3
    assert [f["count"] for f in sim.ctl("GET", "faults").json()["faults"]] == [0, 0]
    compute.virtual_machine_scale_sets.begin_delete(sim.rg, name).result()


def test_5xx_is_retried_by_the_sdk(sim: Sim, settings):
    sim.ctl("POST", "faults", {"kind": "error", "status": 503, "count": 2, "method": "GET", "path": "subnets/default$"})
    seq = sim.last_seq()
    subnet = sim.network().subnets.get(sim.rg, "sim-vnet", "default")
    assert subnet.name == "default"
    assert [r["status"] for r in sim.requests_since(seq)] == [503, 503, 200]


def test_an_operation_that_ends_failed_leaves_partial_state(sim: Sim, settings):
    compute = sim.compute()
    name = unique("alloc")
    sim.ctl("POST", "faults", {"kind": "fail", "method": "PUT", "path": name, "code": "AllocationFailed", "succeedInstances": 1})
    with pytest.raises(HttpResponseError) as error:
        compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, name, vmss_body(sim, capacity=3)).result()
    assert error.value.error.code == "AllocationFailed"
    states = {vm.instance_id: vm.provisioning_state for vm in compute.virtual_machine_scale_set_vms.list(sim.rg, name, expand="instanceView")}
    assert states == {"0": "Succeeded", "1": "Failed", "2": "Failed"}
    assert compute.virtual_machine_scale_sets.get(sim.rg, name).provisioning_state == "Failed"
    # the next apply converges: remove the failed ones, grow again
    compute.virtual_machine_scale_sets.begin_delete_instances(sim.rg, name, {"instanceIds": ["1", "2"]}).result()
    compute.virtual_machine_scale_sets.begin_update(sim.rg, name, {"sku": {"capacity": 3}}).result()
    assert compute.virtual_machine_scale_sets.get(sim.rg, name).provisioning_state == "Succeeded"
    compute.virtual_machine_scale_sets.begin_delete(sim.rg, name).result()


def test_sku_not_available(sim: Sim, settings):
    sim.ctl("POST", "config", {"restrictedSkus": ["Standard_NC6s_v3"]})
    with pytest.raises(HttpResponseError) as error:
        sim.compute().virtual_machine_scale_sets.begin_create_or_update(sim.rg, unique("sku"), vmss_body(sim, size="Standard_NC6s_v3")).result()
    assert error.value.status_code == 409 and error.value.error.code == "SkuNotAvailable"


def test_slow_provisioning_is_seen_while_polling(sim: Sim, settings):
    compute = sim.compute()
    name = unique("slow")
    sim.ctl("POST", "faults", {"kind": "slow", "method": "PUT", "path": name, "delay": 3})
    poller = compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, name, vmss_body(sim, capacity=1))
    assert compute.virtual_machine_scale_sets.get(sim.rg, name).provisioning_state == "Creating"
    assert [vm.provisioning_state for vm in compute.virtual_machine_scale_set_vms.list(sim.rg, name)] == ["Creating"]
    assert poller.result().provisioning_state == "Succeeded"
    compute.virtual_machine_scale_sets.begin_delete(sim.rg, name).result()


def test_an_instance_deleted_behind_terraforms_back(sim: Sim):
    compute = sim.compute()
    name = unique("gone")
    compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, name, vmss_body(sim, capacity=2)).result()
    assert sim.ctl("POST", f"resourceGroups/{sim.rg}/vmss/{name}/instances/0/delete").status_code == 204
    assert [vm.instance_id for vm in compute.virtual_machine_scale_set_vms.list(sim.rg, name)] == ["1"]
    assert compute.virtual_machine_scale_sets.get(sim.rg, name).sku.capacity == 1
    # deleting it again through ARM is an error the driver has to expect
    with pytest.raises(HttpResponseError) as error:
        compute.virtual_machine_scale_sets.begin_delete_instances(sim.rg, name, {"instanceIds": ["0"]}).result()
    assert error.value.status_code == 400
    compute.virtual_machine_scale_sets.begin_delete(sim.rg, name).result()


def test_simulate_eviction_needs_spot(sim: Sim):
    compute = sim.compute()
    name = unique("reg")
    compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, name, vmss_body(sim, capacity=1, size="Standard_D2s_v5", spot=False)).result()
    with pytest.raises(HttpResponseError) as error:
        compute.virtual_machine_scale_set_vms.simulate_eviction(sim.rg, name, "0")
    assert error.value.status_code == 409
    compute.virtual_machine_scale_sets.begin_delete(sim.rg, name).result()


def test_the_request_log_counts_and_resets(sim: Sim):
    assert sim.ctl("DELETE", "requests").status_code == 204
    assert sim.ctl("GET", "requests?kind=arm").json()["requests"] == []
    sim.network().subnets.get(sim.rg, "sim-vnet", "default")
    entries = sim.ctl("GET", "requests?kind=arm").json()["requests"]
    assert [(e["method"], e["status"]) for e in entries] == [("GET", 200)]
    assert entries[0]["path"].endswith("/subnets/default") and entries[0]["time"] > 0
    assert sim.ctl("GET", "health").json()["status"] == "ok"
    wait_for("token requests in the log", lambda: sim.ctl("GET", "requests?kind=token").json()["requests"] or True)
