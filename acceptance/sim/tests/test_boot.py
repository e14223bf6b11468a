"""Every instance boots as a real node: its cloud-init subset runs, it reaches IMDS and
storage, and eviction and deletion end its processes."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError

from batchai_sim.pki import decode_jwt

from .conftest import SIM_ROOT, Sim, SimCredential, custom_data, unique, vmss_body, wait_for

# The node side of the tests: what a bootstrap does, with only python3 (on the host's PATH).
PROBE = r'''
import json, os, ssl, sys, time, urllib.error, urllib.request
root = os.environ["BATCHAI_ROOTFS"]
imds = os.environ.get("BATCHAI_IMDS_ENDPOINT", "http://169.254.169.254")
out = os.path.join(root, "out")
os.makedirs(out, exist_ok=True)

def call(path, method="GET", body=None):
    request = urllib.request.Request(imds + path, method=method, data=body, headers={"Metadata": "true"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()

def save(name, value):
    with open(os.path.join(out, name + ".tmp"), "w") as handle:
        json.dump(value, handle)
    os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name + ".json"))

save("env", {"rootfs": root, "cwd": os.getcwd(), "imds": os.environ.get("BATCHAI_IMDS_ENDPOINT"), "path": os.environ["PATH"]})
save("instance", json.loads(call("/metadata/instance?api-version=2021-02-01")))
config = json.load(open(os.path.join(root, "etc/probe.json")))
if config.get("blob"):
    token = json.loads(call("/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://storage.azure.com/"))
    save("token", token)
    context = ssl.create_default_context(cafile=os.path.join(root, "etc/ca.pem"))
    request = urllib.request.Request(config["blob"] + "?comp=list", headers={"Authorization": "Bearer " + token["access_token"], "x-ms-version": "2025-11-05"})
    try:
        status = urllib.request.urlopen(request, context=context, timeout=10).status
    except urllib.error.HTTPError as error:
        status = error.code
    save("storage", {"status": status})
while True:
    doc = json.loads(call("/metadata/scheduledevents?api-version=2020-07-01"))
    for event in doc["Events"]:
        if event["EventType"] == "Preempt" and config.get("ack"):
            save("preempt", event)
            call("/metadata/scheduledevents?api-version=2020-07-01", "POST", json.dumps({"StartRequests": [{"EventId": event["EventId"]}]}).encode())
    time.sleep(0.2)
'''


def probe_data(sim: Sim | None, blob: str | None, ack: bool = True) -> str:
    files = [
        {"path": "/opt/probe.py", "content": base64.b64encode(PROBE.encode()).decode(), "encoding": "b64", "permissions": "0755", "owner": "root:root"},
        {"path": "/etc/probe.json", "content": json.dumps({"blob": blob, "ack": ack})},
    ]
    if sim is not None:
        files.append({"path": "/etc/ca.pem", "content": Path(sim.ca).read_text()})
    runcmd = [
        "echo booting in $(pwd)",
        ["sh", "-c", 'sleep 1000 & echo $! > "$BATCHAI_ROOTFS/sleeper.pid"'],
        # paths under the rootfs, as the provider's bootstrap writes them
        'exec python3 "$BATCHAI_ROOTFS/opt/probe.py"',
    ]
    return custom_data(files, runcmd)


def read(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of ours is as dead as it gets
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_instances_boot_reach_imds_and_storage_and_are_evicted(sim: Sim, settings):
    sim.ctl("POST", "config", {"evictionTimeout": 600})
    compute = sim.compute()
    identity = sim.identity(unique("nodes"))
    name = unique("boot")
    blob = sim.storage().storage_accounts.get_properties(sim.rg, "mlctrl").primary_endpoints.blob
    compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, name, vmss_body(sim, capacity=2, identity_id=identity["id"], data=probe_data(sim, blob))).result()
    nodes = sim.nodes()
    first, second = nodes[f"{name}_0"], nodes[f"{name}_1"]
    root = Path(first["dir"]) / "rootfs"
    out = root / "out"
    storage = wait_for("the node's storage probe", lambda: read(out / "storage.json"), timeout=60)
    assert storage["status"] == 200
    token = read(out / "token.json")
    _, claims = decode_jwt(token["access_token"])
    assert claims["aud"] == "https://storage.azure.com/"
    assert claims["appid"] == identity["clientId"] and claims["oid"] == identity["principalId"]
    assert claims["iss"] == f"https://sts.windows.net/{sim.ready['tenantId']}/"
    instance = read(out / "instance.json")
    assert instance["compute"]["name"] == f"{name}_0" and instance["compute"]["vmScaleSetName"] == name
    assert instance["compute"]["priority"] == "Spot"
    assert instance["network"]["interface"][0]["ipv4"]["ipAddress"][0]["privateIpAddress"] == first["address"]
    env = read(out / "env.json")
    assert env["rootfs"] == str(root) and env["cwd"] == str(root) and "/usr/bin" in env["path"]
    if sim.ready["network"]["mode"] == "namespaces":
        assert env["imds"] is None and first["namespace"] and first["address"] != second["address"]
    assert (root / "opt/probe.py").stat().st_mode & 0o777 == 0o755
    assert "booting in " + str(root) in (Path(first["dir"]) / "boot.log").read_text()

    sleeper = int(wait_for("the sleeper", lambda: (root / "sleeper.pid").exists() and (root / "sleeper.pid").read_text().strip()))
    assert alive(sleeper)
    compute.virtual_machine_scale_set_vms.simulate_eviction(sim.rg, name, "0")
    event = wait_for("the Preempt event", lambda: read(out / "preempt.json"))
    assert event["Resources"] == [f"{name}_0"] and event["EventStatus"] == "Scheduled"
    # acknowledged: evicted now, not after the 600 s notice
    wait_for("the eviction", lambda: [vm.instance_id for vm in compute.virtual_machine_scale_set_vms.list(sim.rg, name)] == ["1"], timeout=30)
    wait_for("the evicted node's processes to end", lambda: not alive(sleeper), timeout=15)
    assert compute.virtual_machine_scale_sets.get(sim.rg, name).sku.capacity == 2

    other_root = Path(second["dir"]) / "rootfs"
    other = int(wait_for("the second sleeper", lambda: (other_root / "sleeper.pid").exists() and (other_root / "sleeper.pid").read_text().strip()))
    compute.virtual_machine_scale_sets.begin_delete(sim.rg, name).result()
    wait_for("the deleted node's processes to end", lambda: not alive(other), timeout=15)


def test_an_unacknowledged_eviction_happens_at_not_before(sim: Sim, settings):
    compute = sim.compute()
    name = unique("evict")
    compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, name, vmss_body(sim, capacity=1, data=probe_data(sim, None, ack=False))).result()
    sim.ctl("POST", f"resourceGroups/{sim.rg}/vmss/{name}/instances/0/evict", {"notice": 1})
    wait_for("the eviction", lambda: list(compute.virtual_machine_scale_set_vms.list(sim.rg, name)) == [], timeout=30)
    compute.virtual_machine_scale_sets.begin_delete(sim.rg, name).result()


def test_custom_data_outside_the_subset_fails_the_instance(sim: Sim):
    compute = sim.compute()
    name = unique("bad")
    data = custom_data(runcmd=["true"], extra="packages: [nfs-common]\n")
    with pytest.raises(HttpResponseError) as error:
        compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, name, vmss_body(sim, capacity=1, data=data)).result()
    assert error.value.error.code == "OSProvisioningClientError"
    assert "packages" in error.value.message
    vm = next(iter(compute.virtual_machine_scale_set_vms.list(sim.rg, name, expand="instanceView")))
    assert vm.provisioning_state == "Failed"
    assert vm.instance_view.statuses[0].code == "ProvisioningState/failed/OSProvisioningClientError"
    compute.virtual_machine_scale_sets.begin_delete(sim.rg, name).result()


def test_without_namespaces_imds_comes_through_an_endpoint_variable(tmp_path):
    """The fallback for machines without root or `ip netns`."""
    ready_file = tmp_path / "ready.json"
    env = dict(os.environ, PYTHONPATH=str(SIM_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchai_sim", "serve", "--state", str(tmp_path / "state"), "--ready-file", str(ready_file), "--no-netns", "--no-azurite", "--provision-delay", "0.2", "--parent-pid", str(os.getpid())],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for("the second simulator", ready_file.exists, timeout=60)
        ready = json.loads(ready_file.read_text())
        assert ready["network"]["mode"] == "processes"
        from .conftest import Sim as SimClient

        other = SimClient(ready, None, tmp_path)
        compute = other.compute()
        compute.virtual_machine_scale_sets.begin_create_or_update(other.rg, "plain", vmss_body(other, capacity=1, data=probe_data(None, None))).result()
        node = other.nodes()["plain_0"]
        out = Path(node["dir"]) / "rootfs/out"
        env_seen = wait_for("the probe", lambda: read(out / "env.json"))
        assert env_seen["imds"] == node["imdsEndpoint"] and env_seen["imds"].startswith("http://127.0.0.1:")
        instance = wait_for("instance metadata", lambda: read(out / "instance.json"))
        assert instance["compute"]["name"] == "plain_0"
        sleeper = int(wait_for("the sleeper", lambda: (out.parent / "sleeper.pid").exists() and (out.parent / "sleeper.pid").read_text().strip()))
        compute.virtual_machine_scale_sets.begin_delete(other.rg, "plain").result()
        wait_for("the node's processes to end", lambda: not alive(sleeper), timeout=15)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
