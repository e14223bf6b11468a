"""The simulated Azure: resources, long-running operations, quota, evictions, and the nodes.

All state lives in a :class:`Sim` guarded by one lock; a ticker thread moves resources along
(Creating -> Succeeded, Deleting -> gone, scheduled evictions) and completes operations.
HTTP lives in ``server.py``; this module answers with ``(status, headers, body)``.
"""

from __future__ import annotations

import base64
import copy
import datetime
import email.utils
import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from azure.mgmt.authorization.v2022_04_01 import models as authz_models
from azure.mgmt.compute import models as compute_models
from azure.mgmt.msi.v2024_11_30 import models as msi_models
from azure.mgmt.network import models as network_models
from azure.mgmt.storage import models as storage_models

from . import nodes, nodetools
from .models import validate

COMPUTE = "2026-04-01"
SKUS = "2021-07-01"
NETWORK = "2026-03-01"
STORAGE = "2026-09-01"
# Azure Files' DNS suffix in the public cloud: primaryEndpoints.file and the SMB host.
FILE_SUFFIX = "file.core.windows.net"
MSI = "2024-11-30"
AUTHZ = "2022-04-01"

# name: (vCPUs, GPUs, memory GB, quota family)
SIZES = {
    "Standard_NC24ads_A100_v4": (24, 1, 220, "standardNCADSA100v4Family"),
    "Standard_ND96asr_v4": (96, 8, 900, "standardNDASv4_A100Family"),
    "Standard_NC6s_v3": (6, 1, 112, "standardNCSv3Family"),
    "Standard_NC4as_T4_v3": (4, 1, 28, "standardNCASv3_T4Family"),
    "Standard_D4s_v5": (4, 0, 16, "standardDSv5Family"),
    "Standard_D2s_v5": (2, 0, 8, "standardDSv5Family"),
}
FAMILY_NAMES = {
    "standardNCADSA100v4Family": "Standard NCADS_A100_v4 Family vCPUs",
    "standardNDASv4_A100Family": "Standard NDASv4_A100 Family vCPUs",
    "standardNCSv3Family": "Standard NCSv3 Family vCPUs",
    "standardNCASv3_T4Family": "Standard NCASv3_T4 Family vCPUs",
    "standardDSv5Family": "Standard DSv5 Family vCPUs",
}
DEFAULT_QUOTAS = {
    "cores": 350,
    "lowPriorityCores": 500,
    "standardNCADSA100v4Family": 96,
    "standardNDASv4_A100Family": 0,
    "standardNCSv3Family": 48,
    "standardNCASv3_T4Family": 64,
    "standardDSv5Family": 100,
}


class ArmError(Exception):
    """An ARM error answer: status, code, message, target."""

    def __init__(self, status: int, code: str, message: str, target: str | None = None, details: list | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.target, self.details = status, code, message, target, details or []

    def body(self) -> dict:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target:
            error["target"] = self.target
        if self.details:
            error["details"] = self.details
        return {"error": error}


def now_iso(t: float | None = None) -> str:
    return datetime.datetime.fromtimestamp(t if t is not None else time.time(), datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def rfc1123(t: float) -> str:
    return email.utils.formatdate(t, usegmt=True)


def base36(n: int, width: int = 6) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out.rjust(width, "0")


@dataclass
class Config:
    subscription_id: str = "5a1b0000-0000-4000-8000-00000000b0a1"
    tenant_id: str = "7e4a0000-0000-4000-8000-00000000b0a1"
    client_id: str = "c11e0000-0000-4000-8000-00000000b0a1"
    client_secret: str = "sim-secret"
    client_certificate: Path | None = None
    oidc_subject: str = "repo:batchai/terraform-provider-batchai:ref:refs/heads/main"
    location: str = "westeurope"
    resource_groups: list[str] = field(default_factory=lambda: ["training"])
    provision_delay: float = 1.0
    delete_delay: float = 0.5
    eviction_timeout: float = 30.0
    page_size: int = 2
    retry_after: int = 1
    storage_accounts: list[str] = field(default_factory=lambda: ["mlctrl", "mldata"])
    spare_storage_accounts: list[str] = field(default_factory=lambda: ["mlspare"])
    quotas: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))
    restricted_skus: list[str] = field(default_factory=list)
    # (vnet, subnet, defaultOutboundAccess)
    subnets: list[tuple[str, str, bool]] = field(
        default_factory=lambda: [("sim-vnet", "default", True), ("sim-vnet", "private", False)]
    )
    enforce_rate_limits: bool = False


@dataclass
class Fault:
    kind: str  # throttle | error | fail | slow
    method: str | None = None
    path: str | None = None
    count: int | None = 1
    retry_after: int = 1
    status: int = 500
    code: str = ""
    message: str = ""
    succeed_instances: int = 0
    delay: float = 0.0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def matches(self, method: str, path: str) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        if self.method and not re.fullmatch(self.method, method, re.IGNORECASE):
            return False
        if self.path and not re.search(self.path, path, re.IGNORECASE):
            return False
        return True

    def describe(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "", 0, 0.0) or k == "count"}


@dataclass
class Operation:
    id: str
    provider: str
    api_version: str
    watch: Callable[[], tuple[str, dict | None] | None]
    start: float = field(default_factory=time.time)
    end: float | None = None
    status: str = "InProgress"
    error: dict | None = None
    result: Callable[[], dict | None] | None = None


@dataclass
class Instance:
    vmss: "Vmss"
    iid: int
    model_version: int
    custom_data: str | None
    state: str = "Creating"
    ready_at: float = 0.0
    gone_at: float = 0.0
    fail: tuple[str, str] | None = None
    boot_error: str | None = None
    vm_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: float = field(default_factory=time.time)
    node: nodes.Node | None = None
    address: str = ""

    @property
    def name(self) -> str:
        return f"{self.vmss.name}_{self.iid}"


@dataclass
class Vmss:
    rg: str
    name: str
    body: dict
    capacity: int
    state: str = "Creating"
    next_id: int = 0
    model_version: int = 1
    instances: dict[int, Instance] = field(default_factory=dict)
    unique_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: float = field(default_factory=time.time)
    etag: int = 1
    deleting_at: float | None = None
    current_op: str | None = None


@dataclass
class Vm:
    rg: str
    name: str
    body: dict
    nic_id: str
    nic_name: str
    state: str = "Creating"
    ready_at: float = 0.0
    gone_at: float = 0.0
    fail: tuple[str, str] | None = None
    boot_error: str | None = None
    vm_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: float = field(default_factory=time.time)
    node: nodes.Node | None = None
    address: str = ""
    disks: list[dict] = field(default_factory=list)


@dataclass
class Event:
    id: str
    target: str  # VM name as IMDS shows it
    not_before: float
    status: str = "Scheduled"
    acknowledged: bool = False


def _arm_id(sub: str, rg: str, provider: str, *parts: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{provider}/" + "/".join(parts)


class Sim:
    def __init__(self, config: Config, state_dir: Path, pki: Any, network: nodes.Network | None, azurite: Any):
        self.config = config
        self.state_dir = state_dir
        self.pki = pki
        self.network = network
        self.azurite = azurite
        self.lock = threading.RLock()
        self.sim_id = uuid.uuid4().hex[:10]
        self.vmss: dict[tuple[str, str], Vmss] = {}
        self.vms: dict[tuple[str, str], Vm] = {}
        self.nics: dict[tuple[str, str], dict] = {}
        self.identities: dict[tuple[str, str], dict] = {}
        self.role_assignments: dict[str, dict] = {}
        self.storage: dict[str, dict] = {}
        self.containers: dict[tuple[str, str], dict] = {}
        self.operations: dict[str, Operation] = {}
        self.events: dict[str, Event] = {}
        self.incarnation = 1
        self.faults: list[Fault] = []
        self.imds_handler: type | None = None  # set by the server
        self.storage_keys: dict[str, list[str]] = {}
        for name in config.storage_accounts + config.spare_storage_accounts:
            self.storage_keys[name] = [
                base64.b64encode(uuid.uuid4().bytes * 4).decode(),
                base64.b64encode(uuid.uuid4().bytes * 4).decode(),
            ]
        for name in config.storage_accounts:
            self.storage[name] = self._new_storage_account(config.resource_groups[0], name, {}, "Succeeded")
        self.stopping = threading.Event()
        self.ticker = threading.Thread(target=self._tick_forever, name="ticker", daemon=True)
        # Every node's PATH: the tool stand-ins (apt-get, mdadm, mkfs.ext4, mount, exportfs, blobfuse2,
        # systemctl) first, then the machine's own directories.
        self.node_path = f"{nodetools.install(state_dir / 'nodebin')}:{nodes.PATH}"
        # What the storage stand-ins (mount -t cifs, blobfuse2) check against: storage.json.
        self.publish_storage()

    # --- plumbing ------------------------------------------------------------------------

    def attach_azurite(self, azurite: Any) -> None:
        self.azurite = azurite
        with self.lock:
            for account in self.storage.values():
                account["properties"]["primaryEndpoints"]["blob"] = azurite.endpoint(account["name"])
            self.publish_storage()

    def start(self) -> None:
        self.ticker.start()

    def sub(self) -> str:
        return self.config.subscription_id

    def check_rg(self, sub: str, rg: str) -> str:
        if sub.lower() != self.sub().lower():
            raise ArmError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
        for known in self.config.resource_groups:
            if known.lower() == rg.lower():
                return known
        raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")

    def check_body(self, body: Any, model: type, mode: str) -> None:
        if body is None:
            raise ArmError(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized: the body is empty.")
        problems = validate(body, model, mode)
        if problems:
            first = problems[0]
            details = [{"code": p.code, "target": p.path, "message": p.message} for p in problems]
            status_code = 400
            raise ArmError(status_code, first.code, first.message, first.path, details if len(details) > 1 else None)

    def check_response(self, body: Any, model: type) -> Any:
        problems = validate(body, model, "response")
        if problems:
            raise AssertionError(
                f"simulator response does not match {model.__module__}.{model.__name__}: "
                + "; ".join(map(str, problems))
            )
        return body

    def take_fault(self, kind: str, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.kind == kind and fault.matches(method, path):
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
        return None

    def new_operation(self, provider: str, api_version: str, watch: Callable, result: Callable | None = None) -> Operation:
        op = Operation(id=str(uuid.uuid4()), provider=provider, api_version=api_version, watch=watch, result=result)
        self.operations[op.id] = op
        return op

    def op_headers(self, host: str, op: Operation, location: bool, async_op: bool = True) -> dict[str, str]:
        base = f"https://{host}/subscriptions/{self.sub()}/providers/{op.provider}/locations/{self.config.location}"
        kind = "asyncoperations" if op.provider == "Microsoft.Storage" else "operations"
        headers = {"Retry-After": str(self.config.retry_after)}
        if async_op:
            headers["Azure-AsyncOperation"] = f"{base}/{kind}/{op.id}?api-version={op.api_version}"
        if location:
            headers["Location"] = f"{base}/{kind}/{op.id}?monitor=true&api-version={op.api_version}"
        return headers

    def operation_status(self, op_id: str, monitor: bool, host: str) -> tuple[int, dict, Any]:
        with self.lock:
            op = self.operations.get(op_id)
            if op is None:
                raise ArmError(404, "ResourceNotFound", f"The operation '{op_id}' was not found.")
            if monitor:
                if op.status == "InProgress":
                    return 202, self.op_headers(host, op, location=True, async_op=False), None
                if op.status == "Failed":
                    return 409, {}, {"error": op.error}
                result = op.result() if op.result else None
                return (200 if result is not None else 204), {}, result
            doc: dict[str, Any] = {"startTime": now_iso(op.start), "status": op.status, "name": op.id}
            if op.end:
                doc["endTime"] = now_iso(op.end)
            if op.error:
                doc["error"] = op.error
            headers = {"Retry-After": str(self.config.retry_after)} if op.status == "InProgress" else {}
            return 200, headers, doc

    # --- the ticker ----------------------------------------------------------------------

    def _tick_forever(self) -> None:
        while not self.stopping.wait(0.1):
            try:
                self.tick()
            except Exception as error:  # noqa: BLE001 - a tick must never kill the ticker
                print(f"batchai-sim: tick failed: {error!r}", flush=True)

    def tick(self) -> None:
        t = time.time()
        kill: list[nodes.Node] = []
        with self.lock:
            for vmss in list(self.vmss.values()):
                for inst in list(vmss.instances.values()):
                    if inst.state == "Creating" and t >= inst.ready_at:
                        if inst.fail:
                            inst.state = "Failed"
                            if inst.node:
                                kill.append(inst.node)
                        elif inst.boot_error:
                            inst.state = "Failed"
                            inst.fail = ("OSProvisioningClientError", inst.boot_error)
                        else:
                            inst.state = "Succeeded"
                    elif inst.state == "Deleting" and t >= inst.gone_at:
                        del vmss.instances[inst.iid]
                if vmss.deleting_at is not None and not vmss.instances and t >= vmss.deleting_at:
                    del self.vmss[(vmss.rg.lower(), vmss.name.lower())]
            for key, vm in list(self.vms.items()):
                if vm.state == "Creating" and t >= vm.ready_at:
                    if vm.fail:
                        vm.state = "Failed"
                    elif vm.boot_error:
                        vm.state = "Failed"
                        vm.fail = ("OSProvisioningClientError", vm.boot_error)
                    else:
                        vm.state = "Succeeded"
                elif vm.state == "Deleting" and t >= vm.gone_at:
                    del self.vms[key]
                    self._delete_vm_children(vm)
            for account in self.storage.values():
                if account["properties"]["provisioningState"] == "Creating" and t >= account["_ready_at"]:
                    account["properties"]["provisioningState"] = "Succeeded"
            for event in list(self.events.values()):
                if event.acknowledged or t >= event.not_before:
                    kill.extend(self._evict(event))
            for op in self.operations.values():
                if op.status == "InProgress":
                    outcome = op.watch()
                    if outcome is not None:
                        op.status, op.error = outcome
                        op.end = t
        for node in kill:
            threading.Thread(target=node.kill, daemon=True).start()

    # --- nodes ---------------------------------------------------------------------------

    def _start_node(self, owner: Instance | Vm, name: str, custom_data: str | None, disks: list[dict]) -> None:
        assert self.imds_handler is not None
        directory = self.state_dir / "vms" / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "boot.log").write_bytes(b"")

        def failed(message: str) -> None:
            with self.lock:
                owner.boot_error = message

        node = nodes.Node(name, directory, f"{self.sim_id}/{name}", self.network, self.imds_handler, failed)
        node.sim_owner = owner  # type: ignore[attr-defined]
        node.path = self.node_path
        node.data_disks = [f"/dev/disk/azure/scsi1/lun{d['lun']}" for d in disks]
        owner.node = node
        if self.network is not None:
            node.namespace, node.address = self.network.reserve(name)
        owner.address = node.address
        extra = [(f"/dev/disk/azure/scsi1/lun{d['lun']}", b"", 0o644) for d in disks]

        def run() -> None:
            try:
                node.prepare_network()
            except OSError as error:
                failed(f"network setup: {error}")
                return
            if node.killed:
                return
            node.boot(custom_data, extra)

        threading.Thread(target=run, name=f"boot-{name}", daemon=True).start()

    def node_owner(self, node: nodes.Node) -> Instance | Vm | None:
        return getattr(node, "sim_owner", None)

    def nodes_view(self) -> list[dict]:
        with self.lock:
            owners: list[Instance | Vm] = [i for s in self.vmss.values() for i in s.instances.values()]
            owners += list(self.vms.values())
            out = []
            for owner in owners:
                node = owner.node
                name = owner.name
                out.append(
                    {
                        "name": name,
                        "state": owner.state,
                        "address": owner.address,
                        "namespace": node.namespace if node else None,
                        "imdsEndpoint": node.imds_endpoint if node else None,
                        "dir": str(node.dir) if node else None,
                        "boot": node.status if node else None,
                        "bootError": owner.boot_error,
                        **(node.tools_view() if node else nodes.Node.empty_tools_view()),
                    }
                )
            return out

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            all_nodes = [i.node for s in self.vmss.values() for i in s.instances.values()]
            all_nodes += [v.node for v in self.vms.values()]
        threads = [threading.Thread(target=n.kill) for n in all_nodes if n is not None]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)

    # --- quota and SKUs --------------------------------------------------------------------

    def _usage(self) -> dict[str, int]:
        used = {name: 0 for name in self.config.quotas}
        def add(size: str, count: int, spot: bool) -> None:
            cores = SIZES.get(size, (0, 0, 0, ""))[0] * count
            if spot:
                used["lowPriorityCores"] = used.get("lowPriorityCores", 0) + cores
            else:
                used["cores"] = used.get("cores", 0) + cores
                family = SIZES[size][3] if size in SIZES else ""
                used[family] = used.get(family, 0) + cores
        for vmss in self.vmss.values():
            profile = vmss.body.get("properties", {}).get("virtualMachineProfile", {})
            live = [i for i in vmss.instances.values() if i.state != "Deleting"]
            add(vmss.body["sku"]["name"], len(live), profile.get("priority") in ("Spot", "Low"))
        for vm in self.vms.values():
            props = vm.body.get("properties", {})
            add(props.get("hardwareProfile", {}).get("vmSize", ""), 1, props.get("priority") in ("Spot", "Low"))
        return used

    def _check_size(self, size: str, target: str) -> None:
        if size not in SIZES:
            raise ArmError(
                400,
                "InvalidParameter",
                f"The requested VM size {size} is not available in the current region. The sizes available in the current region are: {', '.join(SIZES)}.",
                target,
            )
        if size in self.config.restricted_skus:
            raise ArmError(
                409,
                "SkuNotAvailable",
                f"The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {size}' is currently not available in location '{self.config.location}'. Please try another size or deploy to a different location or different zone.",
            )

    def _check_quota(self, size: str, extra: int, spot: bool) -> None:
        if extra <= 0:
            return
        cores = SIZES[size][0] * extra
        used = self._usage()
        names = ["lowPriorityCores"] if spot else ["cores", SIZES[size][3]]
        for name in names:
            limit = self.config.quotas.get(name, 0)
            if used.get(name, 0) + cores > limit:
                label = "Low-priority" if spot else name
                raise ArmError(
                    409,
                    "OperationNotAllowed",
                    f"Operation could not be completed as it results in exceeding approved {label} Cores quota. Additional details - Deployment Model: Resource Manager, Location: {self.config.location}, Current Limit: {limit}, Current Usage: {used.get(name, 0)}, Additional Required: {cores}, (Minimum) New Limit Required: {used.get(name, 0) + cores}.",
                )

    def skus(self) -> dict:
        value = []
        for size, (cpus, gpus, mem, family) in SIZES.items():
            restrictions = []
            if size in self.config.restricted_skus:
                restrictions.append(
                    {
                        "type": "Location",
                        "values": [self.config.location],
                        "restrictionInfo": {"locations": [self.config.location]},
                        "reasonCode": "NotAvailableForSubscription",
                    }
                )
            caps = [
                ("vCPUs", str(cpus)),
                ("MemoryGB", str(mem)),
                ("GPUs", str(gpus)),
                ("LowPriorityCapable", "True"),
                ("MaxDataDiskCount", "32"),
                ("AcceleratedNetworkingEnabled", "True"),
                ("vCPUsAvailable", str(cpus)),
            ]
            sku = {
                "resourceType": "virtualMachines",
                "name": size,
                "tier": "Standard",
                "size": size.split("_", 1)[1],
                "family": family,
                "locations": [self.config.location],
                "locationInfo": [{"location": self.config.location, "zones": ["1", "2", "3"], "zoneDetails": []}],
                "capabilities": [{"name": n, "value": v} for n, v in caps if n != "GPUs" or gpus],
                "restrictions": restrictions,
            }
            value.append(self.check_response(sku, compute_models.ResourceSku))
        return {"value": value}

    def usages(self) -> dict:
        with self.lock:
            used = self._usage()
        value = []
        for name, limit in self.config.quotas.items():
            localized = {"cores": "Total Regional vCPUs", "lowPriorityCores": "Total Regional Low-priority vCPUs"}.get(
                name, FAMILY_NAMES.get(name, name)
            )
            usage = {"unit": "Count", "currentValue": used.get(name, 0), "limit": limit, "name": {"value": name, "localizedValue": localized}}
            value.append(self.check_response(usage, compute_models.Usage))
        return {"value": value}

    # --- references --------------------------------------------------------------------

    def _subnet(self, subnet_id: str) -> tuple[str, str, bool] | None:
        m = re.fullmatch(
            r"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Network/virtualNetworks/([^/]+)/subnets/([^/]+)",
            subnet_id,
            re.IGNORECASE,
        )
        if not m or m.group(1).lower() != self.sub().lower() or m.group(2).lower() not in [r.lower() for r in self.config.resource_groups]:
            return None
        for vnet, subnet, outbound in self.config.subnets:
            if vnet.lower() == m.group(3).lower() and subnet.lower() == m.group(4).lower():
                return vnet, subnet, outbound
        return None

    def _check_network(self, configs: list[dict], target: str, owner_id: str) -> None:
        for config in configs:
            for ipc in config.get("properties", {}).get("ipConfigurations", []):
                subnet_id = ipc.get("properties", {}).get("subnet", {}).get("id")
                if not subnet_id or self._subnet(subnet_id) is None:
                    raise ArmError(
                        400,
                        "InvalidResourceReference",
                        f"Resource {subnet_id} referenced by resource {owner_id} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.",
                        target,
                    )

    def _identity_for(self, resource_id: str) -> dict | None:
        m = re.fullmatch(
            r"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/([^/]+)",
            resource_id,
            re.IGNORECASE,
        )
        if not m or m.group(1).lower() != self.sub().lower():
            return None
        return self.identities.get((m.group(2).lower(), m.group(3).lower()))

    def _check_identity(self, identity: dict | None) -> dict | None:
        """The response form of a request's identity block; 400 for an unknown identity."""
        if not identity:
            return None
        out = copy.deepcopy(identity)
        for rid in list((identity.get("userAssignedIdentities") or {}).keys()):
            found = self._identity_for(rid)
            if found is None:
                raise ArmError(
                    400,
                    "FailedIdentityOperation",
                    f"Identity (principal) operation failed. Identity '{rid}' was not found.",
                    "identity.userAssignedIdentities",
                )
            out["userAssignedIdentities"][rid] = {
                "principalId": found["properties"]["principalId"],
                "clientId": found["properties"]["clientId"],
            }
        return out

    def node_identities(self, owner: Instance | Vm) -> list[dict]:
        body = owner.vmss.body if isinstance(owner, Instance) else owner.body
        ids = (body.get("identity") or {}).get("userAssignedIdentities") or {}
        return [found for rid in ids if (found := self._identity_for(rid)) is not None]

    # --- VM scale sets -------------------------------------------------------------------

    def vmss_id(self, vmss: Vmss) -> str:
        return _arm_id(self.sub(), vmss.rg, "Microsoft.Compute", "virtualMachineScaleSets", vmss.name)

    def _get_vmss(self, rg: str, name: str) -> Vmss:
        vmss = self.vmss.get((rg.lower(), name.lower()))
        if vmss is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Compute/virtualMachineScaleSets/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            )
        return vmss

    def vmss_view(self, vmss: Vmss) -> dict:
        body = copy.deepcopy(vmss.body)
        body["id"] = self.vmss_id(vmss)
        body["name"] = vmss.name
        body["type"] = "Microsoft.Compute/virtualMachineScaleSets"
        body["etag"] = f'"{vmss.etag}"'
        body["sku"]["capacity"] = vmss.capacity
        body.setdefault("sku", {}).setdefault("tier", "Standard")
        props = body.setdefault("properties", {})
        state = "Deleting" if vmss.deleting_at is not None else vmss.state
        props["provisioningState"] = state
        props["uniqueId"] = vmss.unique_id
        props["timeCreated"] = now_iso(vmss.created)
        profile = props.get("virtualMachineProfile", {})
        profile.get("osProfile", {}).pop("customData", None)
        profile.get("osProfile", {}).pop("adminPassword", None)
        profile["timeCreated"] = now_iso(vmss.created)
        if body.get("identity"):
            body["identity"]["principalId"] = None
            body["identity"].pop("principalId")
            body["identity"]["tenantId"] = self.config.tenant_id
        return self.check_response(body, compute_models.VirtualMachineScaleSet)

    def put_vmss(self, rg: str, name: str, body: dict, host: str, path: str) -> tuple[int, dict, dict]:
        self.check_body(body, compute_models.VirtualMachineScaleSet, "create")
        new_nodes: list[Instance] = []
        with self.lock:
            rg = self.check_rg(self.sub(), rg)
            if body["location"].replace(" ", "").lower() != self.config.location:
                raise ArmError(400, "LocationNotAvailableForResourceType", f"The provided location '{body['location']}' is not available for resource type 'Microsoft.Compute/virtualMachineScaleSets'. List of available regions for the resource type is '{self.config.location}'.")
            props = body.get("properties") or {}
            profile = props.get("virtualMachineProfile") or {}
            sku = body.get("sku") or {}
            if not sku.get("name"):
                raise ArmError(400, "InvalidParameter", "Required parameter 'sku.name' is missing (null).", "sku.name")
            self._check_size(sku["name"], "sku.name")
            if props.get("orchestrationMode", "Uniform") != "Uniform":
                raise ArmError(400, "BadRequest", "The simulator serves Uniform orchestration only.", "properties.orchestrationMode")
            custom = (profile.get("osProfile") or {}).get("customData")
            if custom is not None:
                self._check_custom_data(custom, "properties.virtualMachineProfile.osProfile.customData")
            existing = self.vmss.get((rg.lower(), name.lower()))
            if existing is not None and existing.deleting_at is not None:
                raise ArmError(409, "OperationNotAllowed", f"The operation is not allowed because the VM scale set {name} is being deleted.")
            if existing is not None and existing.current_op and self.operations[existing.current_op].status == "InProgress":
                raise ArmError(409, "OperationNotAllowed", f"Operation 'PUT' is not allowed on VM scale set '{name}' since another operation is in progress.")
            vmss_path_id = _arm_id(self.sub(), rg, "Microsoft.Compute", "virtualMachineScaleSets", name)
            self._check_network((profile.get("networkProfile") or {}).get("networkInterfaceConfigurations") or [], "properties.virtualMachineProfile.networkProfile", vmss_path_id)
            self._check_identity(body.get("identity"))
            capacity = sku.get("capacity", existing.capacity if existing else 2)
            spot = profile.get("priority") in ("Spot", "Low")
            live = len([i for i in existing.instances.values() if i.state != "Deleting"]) if existing else 0
            self._check_quota(sku["name"], capacity - live, spot)
            stored = copy.deepcopy(body)
            stored["identity"] = self._check_identity(body.get("identity"))
            if stored["identity"] is None:
                del stored["identity"]
            if existing is None:
                vmss = Vmss(rg=rg, name=name, body=stored, capacity=capacity)
                self.vmss[(rg.lower(), name.lower())] = vmss
                status = 201
            else:
                vmss = existing
                # Keep the custom data the model had if the update leaves it out (ARM does).
                old_custom = self._custom_data(vmss.body)
                vmss.body = stored
                if self._custom_data(stored) is None and old_custom is not None:
                    stored["properties"]["virtualMachineProfile"]["osProfile"]["customData"] = old_custom
                vmss.model_version += 1
                vmss.etag += 1
                vmss.state = "Updating"
                vmss.capacity = capacity
                status = 200
            op, new_nodes = self._rescale(vmss, capacity, "PUT", path)
            view = self.vmss_view(vmss)
            headers = self.op_headers(host, op, location=False)
        self._boot_instances(new_nodes)
        return status, headers, view

    def _custom_data(self, body: dict) -> str | None:
        return (((body.get("properties") or {}).get("virtualMachineProfile") or {}).get("osProfile") or {}).get("customData")

    def _check_custom_data(self, custom: str, target: str) -> None:
        if len(custom) > nodes.MAX_CUSTOM_DATA_CHARS:
            raise ArmError(400, "InvalidParameter", f"Custom data in OSProfile must be in Base64 encoding and with a maximum length of {nodes.MAX_CUSTOM_DATA_CHARS} characters.", target)
        try:
            nodes.decode_custom_data(custom)
        except ValueError:
            raise ArmError(400, "InvalidParameter", f"Custom data in OSProfile must be in Base64 encoding and with a maximum length of {nodes.MAX_CUSTOM_DATA_CHARS} characters.", target) from None

    def _rescale(self, vmss: Vmss, capacity: int, method: str, path: str) -> tuple[Operation, list[Instance]]:
        """Grows (new instances) or shrinks (highest IDs first) to `capacity`; the operation."""
        t = time.time()
        fail = self.take_fault("fail", method, path)
        slow = self.take_fault("slow", method, path)
        delay = slow.delay if slow else self.config.provision_delay
        live = sorted(i.iid for i in vmss.instances.values() if i.state != "Deleting")
        created: list[Instance] = []
        removed: list[int] = []
        for _ in range(capacity - len(live)):
            inst = Instance(vmss=vmss, iid=vmss.next_id, model_version=vmss.model_version, custom_data=self._custom_data(vmss.body))
            vmss.next_id += 1
            inst.ready_at = t + delay
            if fail and len(created) >= fail.succeed_instances:
                inst.fail = (fail.code or "AllocationFailed", fail.message or "Allocation failed. We do not have sufficient capacity for the requested VM size in this region.")
            vmss.instances[inst.iid] = inst
            created.append(inst)
        if capacity < len(live):
            removed = live[capacity:]
            self._delete_instances(vmss, removed)
        created_ids = [i.iid for i in created]
        if fail and not created:
            # A failing update that creates nothing fails on its own.
            ends_at = t + delay
            error = {"code": fail.code or "InternalExecutionError", "message": fail.message or "An internal execution error occurred."}

            def watch_failed() -> tuple[str, dict | None] | None:
                if time.time() < ends_at:
                    return None
                vmss.state = "Failed"
                return "Failed", error

            op = self.new_operation("Microsoft.Compute", COMPUTE, watch_failed)
            vmss.current_op = op.id
            return op, created

        def watch() -> tuple[str, dict | None] | None:
            pending = [i for i in created_ids if i in vmss.instances and vmss.instances[i].state == "Creating"]
            leaving = [i for i in removed if i in vmss.instances]
            if pending or leaving:
                return None
            failed = [vmss.instances[i] for i in created_ids if i in vmss.instances and vmss.instances[i].state == "Failed"]
            if failed:
                code, message = failed[0].fail or ("InternalExecutionError", "")
                vmss.state = "Failed"
                return "Failed", {"code": code, "message": message, "details": [{"code": code, "target": f.name, "message": (f.fail or ("", ""))[1]} for f in failed]}
            vmss.state = "Succeeded"
            return "Succeeded", None

        op = self.new_operation("Microsoft.Compute", COMPUTE, watch)
        vmss.current_op = op.id
        return op, created

    def _boot_instances(self, created: list[Instance]) -> None:
        for inst in created:
            if inst.fail is None:
                self._start_node(inst, inst.name, inst.custom_data, [])

    def _delete_instances(self, vmss: Vmss, ids: list[int]) -> None:
        t = time.time()
        for iid in ids:
            inst = vmss.instances[iid]
            inst.state = "Deleting"
            inst.gone_at = t + self.config.delete_delay
            for event in [e for e in self.events.values() if e.target == inst.name]:
                del self.events[event.id]
                self.incarnation += 1
            if inst.node is not None:
                threading.Thread(target=inst.node.kill, daemon=True).start()

    def get_vmss(self, rg: str, name: str) -> dict:
        with self.lock:
            return self.vmss_view(self._get_vmss(rg, name))

    def patch_vmss(self, rg: str, name: str, body: dict, host: str, path: str) -> tuple[int, dict, dict]:
        self.check_body(body, compute_models.VirtualMachineScaleSetUpdate, "update")
        unsupported = sorted(set(body) - {"sku", "tags"})
        if unsupported or set((body.get("sku") or {})) - {"capacity", "name", "tier"}:
            raise ArmError(400, "BadRequest", f"The simulator supports PATCH of sku.capacity and tags only, not {unsupported}.")
        with self.lock:
            vmss = self._get_vmss(rg, name)
            if vmss.deleting_at is not None:
                raise ArmError(409, "OperationNotAllowed", f"The operation is not allowed because the VM scale set {name} is being deleted.")
            if "tags" in body:
                vmss.body["tags"] = body["tags"]
            sku = body.get("sku") or {}
            if sku.get("name") and sku["name"] != vmss.body["sku"]["name"]:
                raise ArmError(400, "BadRequest", "The simulator does not change a scale set's VM size.", "sku.name")
            capacity = sku.get("capacity", vmss.capacity)
            spot = (vmss.body["properties"].get("virtualMachineProfile") or {}).get("priority") in ("Spot", "Low")
            live = len([i for i in vmss.instances.values() if i.state != "Deleting"])
            self._check_quota(vmss.body["sku"]["name"], capacity - live, spot)
            vmss.capacity = capacity
            vmss.etag += 1
            vmss.state = "Updating"
            op, created = self._rescale(vmss, capacity, "PATCH", path)
            view = self.vmss_view(vmss)
            headers = self.op_headers(host, op, location=False)
        self._boot_instances(created)
        return 200, headers, view

    def delete_vmss(self, rg: str, name: str, host: str) -> tuple[int, dict, Any]:
        with self.lock:
            self.check_rg(self.sub(), rg)
            vmss = self.vmss.get((rg.lower(), name.lower()))
            if vmss is None:
                return 204, {}, None
            if vmss.deleting_at is None:
                vmss.deleting_at = time.time() + self.config.delete_delay
                self._delete_instances(vmss, [i.iid for i in vmss.instances.values() if i.state != "Deleting"])
            key = (rg.lower(), name.lower())
            op = self.new_operation("Microsoft.Compute", COMPUTE, lambda: None if key in self.vmss else ("Succeeded", None))
            return 202, self.op_headers(host, op, location=True), None

    def delete_instances(self, rg: str, name: str, body: dict, host: str, path: str) -> tuple[int, dict, Any]:
        self.check_body(body, compute_models.VirtualMachineScaleSetVMInstanceRequiredIDs, "create")
        with self.lock:
            vmss = self._get_vmss(rg, name)
            ids = []
            for raw in body["instanceIds"]:
                if not raw.isdigit() or int(raw) not in vmss.instances:
                    raise ArmError(400, "InvalidParameter", f"The provided instanceId {raw} is not an active Virtual Machine Scale Set VM instanceId.", "instanceIds")
                ids.append(int(raw))
            fresh = [i for i in ids if vmss.instances[i].state != "Deleting"]
            self._delete_instances(vmss, fresh)
            vmss.capacity = max(0, vmss.capacity - len(fresh))
            vmss.etag += 1
            fail = self.take_fault("fail", "POST", path)
            if fail:
                error = {"code": fail.code or "InternalExecutionError", "message": fail.message or "An internal execution error occurred."}
                op = self.new_operation("Microsoft.Compute", COMPUTE, lambda: ("Failed", error))
            else:
                op = self.new_operation(
                    "Microsoft.Compute", COMPUTE, lambda: None if any(i in vmss.instances for i in ids) else ("Succeeded", None)
                )
            return 202, self.op_headers(host, op, location=True), None

    def instance_view(self, inst: Instance, expand: bool) -> dict:
        vmss = inst.vmss
        props = vmss.body.get("properties", {})
        profile = copy.deepcopy(props.get("virtualMachineProfile") or {})
        os_profile = profile.get("osProfile") or {}
        prefix = os_profile.get("computerNamePrefix", vmss.name)
        vm_id = f"{self.vmss_id(vmss)}/virtualMachines/{inst.iid}"
        nic_configs = (profile.get("networkProfile") or {}).get("networkInterfaceConfigurations") or []
        body: dict[str, Any] = {
            "id": vm_id,
            "name": inst.name,
            "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
            "location": vmss.body["location"],
            "instanceId": str(inst.iid),
            "sku": {"name": vmss.body["sku"]["name"], "tier": "Standard"},
            "properties": {
                "latestModelApplied": inst.model_version == vmss.model_version,
                "vmId": inst.vm_id,
                "provisioningState": inst.state,
                "timeCreated": now_iso(inst.created),
                "hardwareProfile": {},
                "osProfile": {
                    "computerName": prefix + base36(inst.iid),
                    "adminUsername": os_profile.get("adminUsername", "azureuser"),
                    "linuxConfiguration": os_profile.get("linuxConfiguration") or {},
                    "allowExtensionOperations": True,
                    "requireGuestProvisionSignal": True,
                },
                "storageProfile": {
                    "imageReference": (profile.get("storageProfile") or {}).get("imageReference") or {},
                    "osDisk": {
                        "osType": "Linux",
                        "name": f"{inst.name}_OsDisk_1_{inst.vm_id.replace('-', '')}",
                        "createOption": "FromImage",
                        "caching": "ReadWrite",
                        "diskSizeGB": 64,
                    },
                    "dataDisks": [],
                },
                "networkProfile": {
                    "networkInterfaces": [
                        {"id": f"{vm_id}/networkInterfaces/{c.get('name', 'nic')}", "properties": {"primary": bool((c.get("properties") or {}).get("primary", True))}}
                        for c in nic_configs
                    ]
                },
                "networkProfileConfiguration": {"networkInterfaceConfigurations": nic_configs},
            },
        }
        if vmss.body.get("zones"):
            body["zones"] = vmss.body["zones"][:1]
        if expand:
            code = {"Creating": "creating", "Succeeded": "succeeded", "Failed": "failed", "Deleting": "deleting"}[inst.state]
            statuses = []
            if inst.state == "Failed" and inst.fail:
                statuses.append({"code": f"ProvisioningState/failed/{inst.fail[0]}", "level": "Error", "displayStatus": "Provisioning failed", "message": inst.fail[1], "time": now_iso(inst.ready_at)})
            else:
                statuses.append({"code": f"ProvisioningState/{code}", "level": "Info", "displayStatus": f"Provisioning {code}", "time": now_iso(inst.ready_at if inst.state == 'Succeeded' else inst.created)})
            power = {"Creating": ("starting", "VM starting"), "Succeeded": ("running", "VM running"), "Failed": ("stopped", "VM stopped"), "Deleting": ("stopped", "VM stopped")}[inst.state]
            statuses.append({"code": f"PowerState/{power[0]}", "level": "Info", "displayStatus": power[1]})
            body["properties"]["instanceView"] = {
                "platformUpdateDomain": 0,
                "platformFaultDomain": 0,
                "computerName": body["properties"]["osProfile"]["computerName"],
                "osName": "ubuntu",
                "osVersion": "22.04",
                "statuses": statuses,
            }
        return self.check_response(body, compute_models.VirtualMachineScaleSetVM)

    def list_instances(self, rg: str, name: str, expand: bool, skiptoken: str | None, next_base: str) -> dict:
        with self.lock:
            vmss = self._get_vmss(rg, name)
            after = int(skiptoken) if skiptoken and skiptoken.isdigit() else -1
            ids = sorted(i for i in vmss.instances if i > after)
            page = ids[: self.config.page_size]
            out: dict[str, Any] = {"value": [self.instance_view(vmss.instances[i], expand) for i in page]}
            if len(ids) > len(page):
                out["nextLink"] = f"{next_base}&$skiptoken={page[-1]}"
            return out

    def get_instance(self, rg: str, name: str, iid: str, expand: bool) -> dict:
        with self.lock:
            vmss = self._get_vmss(rg, name)
            inst = vmss.instances.get(int(iid)) if iid.isdigit() else None
            if inst is None:
                raise ArmError(404, "NotFound", f"The entity was not found in this Azure location.")
            return self.instance_view(inst, expand)

    def simulate_eviction(self, rg: str, name: str, iid: str, check_spot: bool = True, notice: float | None = None) -> None:
        with self.lock:
            vmss = self._get_vmss(rg, name)
            inst = vmss.instances.get(int(iid)) if iid.isdigit() else None
            if inst is None or inst.state == "Deleting":
                raise ArmError(404, "NotFound", "The entity was not found in this Azure location.")
            priority = (vmss.body["properties"].get("virtualMachineProfile") or {}).get("priority")
            if check_spot and priority not in ("Spot", "Low"):
                raise ArmError(409, "OperationNotAllowed", "Simulate Eviction is only supported for Spot Virtual Machines.")
            if any(e.target == inst.name for e in self.events.values()):
                return
            event = Event(id=str(uuid.uuid4()).upper(), target=inst.name, not_before=time.time() + (self.config.eviction_timeout if notice is None else notice))
            self.events[event.id] = event
            self.incarnation += 1

    def _evict(self, event: Event) -> list[nodes.Node]:
        """Evicts the event's VM (Spot, eviction policy Delete): the instance goes away, the scale
        set's capacity stays (the platform may try to restore it; the simulator does not)."""
        del self.events[event.id]
        self.incarnation += 1
        for vmss in self.vmss.values():
            for inst in list(vmss.instances.values()):
                if inst.name == event.target:
                    del vmss.instances[inst.iid]
                    return [inst.node] if inst.node else []
        return []

    def delete_behind_back(self, rg: str, name: str, iid: str, keep_capacity: bool) -> None:
        with self.lock:
            vmss = self._get_vmss(rg, name)
            inst = vmss.instances.pop(int(iid), None) if iid.isdigit() else None
            if inst is None:
                raise ArmError(404, "NotFound", "no such instance")
            if not keep_capacity:
                vmss.capacity = max(0, vmss.capacity - 1)
        if inst.node:
            inst.node.kill()

    # --- VMs ----------------------------------------------------------------------------

    def _get_vm(self, rg: str, name: str) -> Vm:
        vm = self.vms.get((rg.lower(), name.lower()))
        if vm is None:
            raise ArmError(404, "ResourceNotFound", f"The Resource 'Microsoft.Compute/virtualMachines/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix")
        return vm

    def vm_view(self, vm: Vm, expand: bool) -> dict:
        body = copy.deepcopy(vm.body)
        vm_id = _arm_id(self.sub(), vm.rg, "Microsoft.Compute", "virtualMachines", vm.name)
        body.update({"id": vm_id, "name": vm.name, "type": "Microsoft.Compute/virtualMachines"})
        props = body.setdefault("properties", {})
        props["provisioningState"] = vm.state
        props["vmId"] = vm.vm_id
        props["timeCreated"] = now_iso(vm.created)
        os_profile = props.get("osProfile") or {}
        os_profile.pop("customData", None)
        os_profile.pop("adminPassword", None)
        storage = props.setdefault("storageProfile", {})
        storage["dataDisks"] = copy.deepcopy(vm.disks)
        os_disk = storage.setdefault("osDisk", {"createOption": "FromImage"})
        os_disk.setdefault("name", f"{vm.name}_OsDisk_1_{vm.vm_id.replace('-', '')}")
        os_disk["osType"] = "Linux"
        network = props.setdefault("networkProfile", {})
        nic_config = (network.get("networkInterfaceConfigurations") or [{}])[0]
        network["networkInterfaces"] = [
            {"id": vm.nic_id, "properties": {"primary": True, "deleteOption": (nic_config.get("properties") or {}).get("deleteOption", "Detach")}}
        ]
        if body.get("identity"):
            body["identity"]["tenantId"] = self.config.tenant_id
        if expand:
            code = vm.state.lower()
            statuses = []
            if vm.state == "Failed" and vm.fail:
                statuses.append({"code": f"ProvisioningState/failed/{vm.fail[0]}", "level": "Error", "displayStatus": "Provisioning failed", "message": vm.fail[1]})
            else:
                statuses.append({"code": f"ProvisioningState/{code}", "level": "Info", "displayStatus": f"Provisioning {code}"})
            statuses.append({"code": "PowerState/running" if vm.state == "Succeeded" else "PowerState/starting", "level": "Info", "displayStatus": "VM running" if vm.state == "Succeeded" else "VM starting"})
            props["instanceView"] = {
                "computerName": os_profile.get("computerName", vm.name),
                "osName": "ubuntu",
                "osVersion": "22.04",
                "disks": [{"name": d["name"], "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info"}]} for d in vm.disks],
                "statuses": statuses,
            }
        return self.check_response(body, compute_models.VirtualMachine)

    def put_vm(self, rg: str, name: str, body: dict, host: str, path: str) -> tuple[int, dict, dict]:
        self.check_body(body, compute_models.VirtualMachine, "create")
        with self.lock:
            rg = self.check_rg(self.sub(), rg)
            existing = self.vms.get((rg.lower(), name.lower()))
            if existing is not None:
                if existing.state == "Deleting":
                    raise ArmError(409, "OperationNotAllowed", f"The operation is not allowed because the VM {name} is being deleted.")
                existing.body["tags"] = body.get("tags", {})
                op = self.new_operation("Microsoft.Compute", COMPUTE, lambda: ("Succeeded", None) if existing.state != "Creating" else None)
                return 200, self.op_headers(host, op, location=False), self.vm_view(existing, False)
            props = body.get("properties") or {}
            size = (props.get("hardwareProfile") or {}).get("vmSize")
            if not size:
                raise ArmError(400, "InvalidParameter", "Required parameter 'hardwareProfile.vmSize' is missing (null).", "properties.hardwareProfile.vmSize")
            self._check_size(size, "properties.hardwareProfile.vmSize")
            network = props.get("networkProfile") or {}
            configs = network.get("networkInterfaceConfigurations") or []
            vm_id = _arm_id(self.sub(), rg, "Microsoft.Compute", "virtualMachines", name)
            if not configs or network.get("networkApiVersion") is None:
                raise ArmError(400, "BadRequest", "The simulator creates VMs whose NICs come from networkProfile.networkInterfaceConfigurations with networkApiVersion set.", "properties.networkProfile")
            self._check_network(configs, "properties.networkProfile", vm_id)
            self._check_identity(body.get("identity"))
            custom = (props.get("osProfile") or {}).get("customData")
            if custom is not None:
                self._check_custom_data(custom, "properties.osProfile.customData")
            self._check_quota(size, 1, props.get("priority") in ("Spot", "Low"))
            stored = copy.deepcopy(body)
            identity = self._check_identity(body.get("identity"))
            if identity:
                stored["identity"] = identity
            nic_name = f"{name}-{configs[0].get('name', 'nic')}"
            nic_id = _arm_id(self.sub(), rg, "Microsoft.Network", "networkInterfaces", nic_name)
            vm = Vm(rg=rg, name=name, body=stored, nic_id=nic_id, nic_name=nic_name)
            for disk in (props.get("storageProfile") or {}).get("dataDisks") or []:
                if disk.get("createOption") not in ("Empty", "empty"):
                    raise ArmError(400, "BadRequest", "The simulator creates empty data disks only.", "properties.storageProfile.dataDisks")
                disk_name = disk.get("name") or f"{name}_disk{disk['lun'] + 2}_{uuid.uuid4().hex}"
                managed = dict(disk.get("managedDisk") or {})
                managed["id"] = _arm_id(self.sub(), rg, "Microsoft.Compute", "disks", disk_name)
                managed.setdefault("storageAccountType", "Premium_LRS")
                out = dict(disk)
                out.update({"name": disk_name, "managedDisk": managed, "caching": disk.get("caching", "None"), "deleteOption": disk.get("deleteOption", "Detach"), "toBeDetached": False})
                vm.vm_disks = None  # type: ignore[attr-defined]
                vm.disks.append(out)
            fail = self.take_fault("fail", "PUT", path)
            slow = self.take_fault("slow", "PUT", path)
            vm.ready_at = time.time() + (slow.delay if slow else self.config.provision_delay)
            if fail:
                vm.fail = (fail.code or "AllocationFailed", fail.message or "Allocation failed. We do not have sufficient capacity for the requested VM size in this region.")
            self.vms[(rg.lower(), name.lower())] = vm
            if fail is None:
                self._start_node(vm, name, custom, vm.disks)
            self.nics[(rg.lower(), nic_name.lower())] = {"config": configs[0], "vm": vm, "deleteOption": (configs[0].get("properties") or {}).get("deleteOption", "Detach")}

            def watch() -> tuple[str, dict | None] | None:
                if vm.state == "Creating":
                    return None
                if vm.state == "Failed":
                    code, message = vm.fail or ("InternalExecutionError", "")
                    return "Failed", {"code": code, "message": message}
                return "Succeeded", None

            op = self.new_operation("Microsoft.Compute", COMPUTE, watch)
            return 201, self.op_headers(host, op, location=False), self.vm_view(vm, False)

    def get_vm(self, rg: str, name: str, expand: bool) -> dict:
        with self.lock:
            return self.vm_view(self._get_vm(rg, name), expand)

    def delete_vm(self, rg: str, name: str, host: str) -> tuple[int, dict, Any]:
        with self.lock:
            self.check_rg(self.sub(), rg)
            key = (rg.lower(), name.lower())
            vm = self.vms.get(key)
            if vm is None:
                return 204, {}, None
            if vm.state != "Deleting":
                vm.state = "Deleting"
                vm.gone_at = time.time() + self.config.delete_delay
                if vm.node is not None:
                    threading.Thread(target=vm.node.kill, daemon=True).start()
            op = self.new_operation("Microsoft.Compute", COMPUTE, lambda: None if key in self.vms else ("Succeeded", None))
            return 202, self.op_headers(host, op, location=True), None

    def _delete_vm_children(self, vm: Vm) -> None:
        nic = self.nics.get((vm.rg.lower(), vm.nic_name.lower()))
        if nic is not None and nic["deleteOption"] == "Delete":
            del self.nics[(vm.rg.lower(), vm.nic_name.lower())]
        elif nic is not None:
            nic["vm"] = None

    def delete_vm_behind_back(self, rg: str, name: str) -> None:
        with self.lock:
            vm = self.vms.pop((rg.lower(), name.lower()), None)
            if vm is None:
                raise ArmError(404, "NotFound", "no such VM")
            self._delete_vm_children(vm)
        if vm.node:
            vm.node.kill()

    # --- network ----------------------------------------------------------------------

    def subnet_prefix(self) -> str:
        return f"{self.network.prefix}.0/24" if self.network else "10.0.0.0/24"

    def get_subnet(self, rg: str, vnet: str, subnet: str) -> dict:
        rg = self.check_rg(self.sub(), rg)
        sid = _arm_id(self.sub(), rg, "Microsoft.Network", "virtualNetworks", vnet, "subnets", subnet)
        found = self._subnet(sid)
        if found is None:
            raise ArmError(404, "NotFound", f"Resource {sid} not found.")
        vnet, subnet, outbound = found
        sid = _arm_id(self.sub(), rg, "Microsoft.Network", "virtualNetworks", vnet, "subnets", subnet)
        index = [s for v, s, _ in self.config.subnets if v == vnet].index(subnet)
        prefix = self.subnet_prefix() if index == 0 else f"10.1.{index}.0/24"
        body = {
            "id": sid,
            "name": subnet,
            "type": "Microsoft.Network/virtualNetworks/subnets",
            "etag": 'W/"00000000-0000-0000-0000-000000000001"',
            "properties": {
                "provisioningState": "Succeeded",
                "addressPrefix": prefix,
                "defaultOutboundAccess": outbound,
                "privateEndpointNetworkPolicies": "Disabled",
                "privateLinkServiceNetworkPolicies": "Enabled",
                "delegations": [],
            },
        }
        return self.check_response(body, network_models.Subnet)

    def get_vnet(self, rg: str, vnet: str) -> dict:
        rg = self.check_rg(self.sub(), rg)
        subnets = [s for v, s, _ in self.config.subnets if v.lower() == vnet.lower()]
        if not subnets:
            raise ArmError(404, "ResourceNotFound", f"The Resource 'Microsoft.Network/virtualNetworks/{vnet}' under resource group '{rg}' was not found.")
        name = next(v for v, _, _ in self.config.subnets if v.lower() == vnet.lower())
        body = {
            "id": _arm_id(self.sub(), rg, "Microsoft.Network", "virtualNetworks", name),
            "name": name,
            "type": "Microsoft.Network/virtualNetworks",
            "location": self.config.location,
            "properties": {
                "provisioningState": "Succeeded",
                "addressSpace": {"addressPrefixes": ["10.0.0.0/8"]},
                "subnets": [self.get_subnet(rg, name, s) for s in subnets],
            },
        }
        return self.check_response(body, network_models.VirtualNetwork)

    def get_nic(self, rg: str, name: str) -> dict:
        with self.lock:
            rg = self.check_rg(self.sub(), rg)
            nic = self.nics.get((rg.lower(), name.lower()))
            if nic is None:
                raise ArmError(404, "ResourceNotFound", f"The Resource 'Microsoft.Network/networkInterfaces/{name}' under resource group '{rg}' was not found.")
            config = nic["config"]
            vm: Vm | None = nic["vm"]
            nic_id = _arm_id(self.sub(), rg, "Microsoft.Network", "networkInterfaces", name)
            ip_configs = []
            for index, ipc in enumerate((config.get("properties") or {}).get("ipConfigurations") or []):
                ip_configs.append(
                    {
                        "id": f"{nic_id}/ipConfigurations/{ipc.get('name', 'ipconfig1')}",
                        "name": ipc.get("name", "ipconfig1"),
                        "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
                        "properties": {
                            "provisioningState": "Succeeded",
                            "privateIPAddress": vm.address if vm is not None else "10.0.0.4",
                            "privateIPAllocationMethod": "Dynamic",
                            "privateIPAddressVersion": "IPv4",
                            "subnet": {"id": ipc["properties"]["subnet"]["id"]},
                            "primary": index == 0,
                        },
                    }
                )
            body: dict[str, Any] = {
                "id": nic_id,
                "name": name,
                "type": "Microsoft.Network/networkInterfaces",
                "location": self.config.location,
                "properties": {
                    "provisioningState": "Succeeded",
                    "resourceGuid": str(uuid.uuid5(uuid.NAMESPACE_URL, nic_id)),
                    "ipConfigurations": ip_configs,
                    "primary": True,
                    "nicType": "Standard",
                    "enableAcceleratedNetworking": bool((config.get("properties") or {}).get("enableAcceleratedNetworking", False)),
                },
            }
            if vm is not None:
                body["properties"]["virtualMachine"] = {"id": _arm_id(self.sub(), vm.rg, "Microsoft.Compute", "virtualMachines", vm.name)}
            return self.check_response(body, network_models.NetworkInterface)

    # --- storage -------------------------------------------------------------------------

    def publish_storage(self) -> None:
        """Writes ``<state>/storage.json`` (mode 0600), what the storage stand-ins of
        ``nodetools.py`` check a mount against: every account Azurite serves with its keys, blob
        endpoint, file host and ARM ID (None until created), the role assignments (scope, role,
        principal) and the test CA. Rewritten whenever one of these changes."""
        with self.lock:
            record = {
                "caPath": str(self.pki.ca_path) if self.pki is not None else None,
                "fileSuffix": FILE_SUFFIX,
                "accounts": {
                    name: {
                        "keys": list(keys),
                        "blobEndpoint": self.azurite.endpoint(name) if self.azurite else f"https://127.0.0.1:10000/{name}/",
                        "fileHost": f"{name}.{FILE_SUFFIX}",
                        "id": self.storage[name]["id"] if name in self.storage else None,
                    }
                    for name, keys in self.storage_keys.items()
                },
                "roleAssignments": [
                    {k: a["properties"][k] for k in ("scope", "roleDefinitionId", "principalId")}
                    for a in self.role_assignments.values()
                ],
            }
            path = self.state_dir / "storage.json"
            tmp = self.state_dir / f".storage.json.{os.getpid()}.{threading.get_ident()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps(record, indent=1))
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)

    def fileshares(self) -> list[dict]:
        """The Azure Files shares the simulator serves: the directories
        ``<state>/fileshares/<account>/<share>``."""
        root = self.state_dir / "fileshares"
        out = []
        for account in sorted(root.iterdir()) if root.is_dir() else []:
            for share in sorted(account.iterdir()) if account.is_dir() else []:
                if share.is_dir():
                    out.append({"account": account.name, "share": share.name, "path": str(share), "url": f"https://{account.name}.{FILE_SUFFIX}/{share.name}"})
        return out

    def share_view(self, account: dict, name: str) -> dict:
        path = self.state_dir / "fileshares" / account["name"] / name
        stamp = path.stat().st_mtime
        body = {
            "id": f"{account['id']}/fileServices/default/shares/{name}",
            "name": name,
            "type": "Microsoft.Storage/storageAccounts/fileServices/shares",
            "etag": f'"0x{int(stamp * 1000):X}"',
            "properties": {"lastModifiedTime": now_iso(stamp), "shareQuota": 102400, "enabledProtocols": "SMB", "accessTier": "TransactionOptimized"},
        }
        return self.check_response(body, storage_models.FileShare)

    def put_share(self, rg: str, account_name: str, name: str, body: dict) -> tuple[int, dict, dict]:
        """ARM's file share PUT: the same share as ``POST /_sim/fileshares`` makes."""
        self.check_body(body, storage_models.FileShare, "create")
        with self.lock:
            account = self._get_storage(rg, account_name)
        if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", name):
            raise ArmError(400, "InvalidResourceName", f"The specified resource name '{name}' contains invalid characters or is not between 3 and 63 characters.")
        status, _ = self.create_fileshare(account["name"], name)
        return status, {}, self.share_view(account, name)

    def get_share(self, rg: str, account_name: str, name: str) -> dict:
        with self.lock:
            account = self._get_storage(rg, account_name)
        if not (self.state_dir / "fileshares" / account["name"] / name).is_dir():
            raise ArmError(404, "ShareNotFound", "The specified share does not exist.")
        return self.share_view(account, name)

    def create_fileshare(self, account: str, share: str) -> tuple[int, dict]:
        """Creates ``<state>/fileshares/<account>/<share>``; 404 for an account Azurite does not
        serve, 400 for a name Azure Files refuses."""
        if not isinstance(account, str) or account not in self.storage_keys:
            raise ArmError(404, "StorageAccountNotFound", f"The simulator serves the storage accounts {', '.join(sorted(self.storage_keys))}; {account!r} is not one of them.")
        if not isinstance(share, str) or not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", share):
            raise ArmError(400, "InvalidResourceName", f"The share name {share!r} is invalid: 3 to 63 lower-case letters, numbers and single hyphens, starting and ending with a letter or number.")
        path = self.state_dir / "fileshares" / account / share
        existed = path.is_dir()
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
        return (200 if existed else 201), {"account": account, "share": share, "path": str(path), "url": f"https://{account}.{FILE_SUFFIX}/{share}"}

    def _new_storage_account(self, rg: str, name: str, body: dict, state: str) -> dict:
        blob = self.azurite.endpoint(name) if self.azurite else f"https://127.0.0.1:10000/{name}/"
        account = {
            "id": _arm_id(self.sub(), rg, "Microsoft.Storage", "storageAccounts", name),
            "name": name,
            "type": "Microsoft.Storage/storageAccounts",
            "location": body.get("location", self.config.location),
            "tags": body.get("tags", {}),
            "kind": body.get("kind", "StorageV2"),
            "sku": {"name": (body.get("sku") or {}).get("name", "Standard_LRS"), "tier": "Standard"},
            "properties": {
                "provisioningState": state,
                "primaryEndpoints": {"blob": blob, "file": f"https://{name}.{FILE_SUFFIX}/"},
                "primaryLocation": self.config.location,
                "statusOfPrimary": "available",
                "creationTime": now_iso(),
                "supportsHttpsTrafficOnly": True,
                "minimumTlsVersion": "TLS1_2",
                "allowBlobPublicAccess": False,
                "accessTier": "Hot",
            },
            "_rg": rg,
            "_ready_at": time.time() + self.config.provision_delay,
        }
        return account

    def storage_view(self, account: dict) -> dict:
        body = {k: v for k, v in account.items() if not k.startswith("_")}
        return self.check_response(copy.deepcopy(body), storage_models.StorageAccount)

    def _get_storage(self, rg: str, name: str) -> dict:
        account = self.storage.get(name.lower())
        if account is None or account["_rg"].lower() != rg.lower():
            raise ArmError(404, "ResourceNotFound", f"The Resource 'Microsoft.Storage/storageAccounts/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix")
        return account

    def put_storage(self, rg: str, name: str, body: dict, host: str) -> tuple[int, dict, Any]:
        self.check_body(body, storage_models.StorageAccountCreateParameters, "create")
        if not re.fullmatch(r"[a-z0-9]{3,24}", name):
            raise ArmError(400, "AccountNameInvalid", f"{name} is not a valid storage account name. Storage account name must be between 3 and 24 characters in length and use numbers and lower-case letters only.")
        with self.lock:
            rg = self.check_rg(self.sub(), rg)
            existing = self.storage.get(name)
            if existing is not None:
                if existing["_rg"].lower() != rg.lower():
                    raise ArmError(409, "StorageAccountAlreadyTaken", f"The storage account named {name} is already taken.")
                existing["tags"] = body.get("tags", existing["tags"])
                return 200, {}, self.storage_view(existing)
            if name not in self.storage_keys:
                raise ArmError(
                    400,
                    "StorageAccountNotDeclared",
                    f"The simulator serves only the storage accounts its Azurite was started with ({', '.join(sorted(self.storage_keys))}); {name} is not one of them.",
                )
            account = self._new_storage_account(rg, name, body, "Creating")
            self.storage[name] = account
            self.publish_storage()
            op = self.new_operation(
                "Microsoft.Storage",
                STORAGE,
                lambda: ("Succeeded", None) if account["properties"]["provisioningState"] == "Succeeded" else None,
                result=lambda: self.storage_view(account),
            )
            return 202, self.op_headers(host, op, location=True, async_op=False), None

    def get_storage(self, rg: str, name: str) -> dict:
        with self.lock:
            return self.storage_view(self._get_storage(rg, name))

    def list_keys(self, rg: str, name: str) -> dict:
        with self.lock:
            account = self._get_storage(rg, name)
            keys = self.storage_keys[account["name"]]
            body = {
                "keys": [
                    {"keyName": f"key{i + 1}", "value": key, "permissions": "FULL", "creationTime": account["properties"]["creationTime"]}
                    for i, key in enumerate(keys)
                ]
            }
            return self.check_response(body, storage_models.StorageAccountListKeysResult)

    def storage_token(self) -> str:
        t = int(time.time())
        return self.pki.sign(
            {"aud": "https://storage.azure.com", "iss": f"https://sts.windows.net/{self.config.tenant_id}/", "iat": t, "nbf": t - 60, "exp": t + 3600, "oid": self.config.client_id, "tid": self.config.tenant_id}
        )

    def container_view(self, account: dict, name: str, record: dict) -> dict:
        body = {
            "id": f"{account['id']}/blobServices/default/containers/{name}",
            "name": name,
            "type": "Microsoft.Storage/storageAccounts/blobServices/containers",
            "etag": f'"0x{record["etag"]:X}"',
            "properties": {
                "publicAccess": record.get("publicAccess", "None"),
                "lastModifiedTime": record["modified"],
                "leaseStatus": "Unlocked",
                "leaseState": "Available",
                "hasImmutabilityPolicy": False,
                "hasLegalHold": False,
                "metadata": record.get("metadata", {}),
            },
        }
        return self.check_response(body, storage_models.BlobContainer)

    def put_container(self, rg: str, account_name: str, name: str, body: dict) -> tuple[int, dict, dict]:
        self.check_body(body, storage_models.BlobContainer, "create")
        if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", name):
            raise ArmError(400, "ContainerOperationFailure", "The specified resource name contains invalid characters.")
        with self.lock:
            account = self._get_storage(rg, account_name)
        # Azurite outside the lock: it may take a moment.
        created = self.azurite.create_container(account["name"], name, self.storage_token(), self.pki.ca_path) if self.azurite else True
        with self.lock:
            key = (account["name"], name)
            props = body.get("properties") or {}
            record = self.containers.get(key)
            status = 201 if record is None else 200
            if record is None:
                record = {"etag": int(time.time() * 1000), "modified": now_iso()}
                self.containers[key] = record
            record["publicAccess"] = props.get("publicAccess", "None")
            record["metadata"] = props.get("metadata", {})
            del created
            return status, {}, self.container_view(account, name, record)

    def get_container(self, rg: str, account_name: str, name: str) -> dict:
        with self.lock:
            account = self._get_storage(rg, account_name)
            record = self.containers.get((account["name"], name))
            if record is None:
                raise ArmError(404, "ContainerNotFound", "The specified container does not exist.")
            return self.container_view(account, name, record)

    # --- identities and role assignments -------------------------------------------------

    def put_identity(self, rg: str, name: str, body: dict) -> tuple[int, dict, dict]:
        self.check_body(body, msi_models.Identity, "create")
        with self.lock:
            rg = self.check_rg(self.sub(), rg)
            key = (rg.lower(), name.lower())
            existing = self.identities.get(key)
            if existing is not None:
                existing["tags"] = body.get("tags", {})
                return 200, {}, self.check_response(copy.deepcopy(existing), msi_models.Identity)
            identity = {
                "id": _arm_id(self.sub(), rg, "Microsoft.ManagedIdentity", "userAssignedIdentities", name),
                "name": name,
                "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
                "location": body["location"],
                "tags": body.get("tags", {}),
                "properties": {"tenantId": self.config.tenant_id, "principalId": str(uuid.uuid4()), "clientId": str(uuid.uuid4())},
            }
            self.identities[key] = identity
            return 201, {}, self.check_response(copy.deepcopy(identity), msi_models.Identity)

    def get_identity(self, rg: str, name: str) -> dict:
        with self.lock:
            self.check_rg(self.sub(), rg)
            identity = self.identities.get((rg.lower(), name.lower()))
            if identity is None:
                raise ArmError(404, "ResourceNotFound", f"The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/{name}' under resource group '{rg}' was not found.")
            return self.check_response(copy.deepcopy(identity), msi_models.Identity)

    def delete_identity(self, rg: str, name: str) -> int:
        with self.lock:
            self.check_rg(self.sub(), rg)
            return 200 if self.identities.pop((rg.lower(), name.lower()), None) else 204

    def put_role_assignment(self, scope: str, name: str, body: dict) -> tuple[int, dict, dict]:
        self.check_body(body, authz_models.RoleAssignmentCreateParameters, "create")
        try:
            uuid.UUID(name)
        except ValueError:
            raise ArmError(400, "InvalidRoleAssignmentId", f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.") from None
        props = body["properties"]
        with self.lock:
            principals = {i["properties"]["principalId"] for i in self.identities.values()}
            if props["principalId"] not in principals:
                raise ArmError(400, "PrincipalNotFound", f"Principal {props['principalId'].replace('-', '')} does not exist in the directory {self.config.tenant_id}. Check that you have the correct principal ID.")
            if not re.fullmatch(r"/subscriptions/[^/]+/providers/Microsoft\.Authorization/roleDefinitions/[0-9a-fA-F-]{36}", props["roleDefinitionId"]):
                raise ArmError(400, "InvalidRoleDefinitionId", f"The role definition ID '{props['roleDefinitionId']}' is not valid.")
            key = f"{scope.lower()}|{name.lower()}"
            for other_key, other in self.role_assignments.items():
                same = (
                    other["properties"]["scope"].lower() == scope.lower()
                    and other["properties"]["roleDefinitionId"].lower() == props["roleDefinitionId"].lower()
                    and other["properties"]["principalId"] == props["principalId"]
                )
                if same and other_key != key:
                    raise ArmError(409, "RoleAssignmentExists", "The role assignment already exists.")
            existing = self.role_assignments.get(key)
            stamp = now_iso()
            assignment = {
                "id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}",
                "name": name,
                "type": "Microsoft.Authorization/roleAssignments",
                "properties": {
                    "scope": scope,
                    "roleDefinitionId": props["roleDefinitionId"],
                    "principalId": props["principalId"],
                    "principalType": props.get("principalType", "ServicePrincipal"),
                    "createdOn": existing["properties"]["createdOn"] if existing else stamp,
                    "updatedOn": stamp,
                    "createdBy": None if existing is None else existing["properties"]["createdBy"],
                    "updatedBy": self.config.client_id,
                },
            }
            assignment["properties"]["createdBy"] = assignment["properties"]["createdBy"] or self.config.client_id
            self.role_assignments[key] = assignment
            self.publish_storage()
            return (200 if existing else 201), {}, self.check_response(copy.deepcopy(assignment), authz_models.RoleAssignment)

    def get_role_assignment(self, scope: str, name: str) -> dict:
        with self.lock:
            found = self.role_assignments.get(f"{scope.lower()}|{name.lower()}")
            if found is None:
                raise ArmError(404, "RoleAssignmentNotFound", "The role assignment '{name}' is not found.")
            return self.check_response(copy.deepcopy(found), authz_models.RoleAssignment)

    def delete_role_assignment(self, scope: str, name: str) -> tuple[int, Any]:
        with self.lock:
            found = self.role_assignments.pop(f"{scope.lower()}|{name.lower()}", None)
            self.publish_storage()
            return (200, found) if found else (204, None)

    # --- IMDS ---------------------------------------------------------------------------

    def imds_owner_name(self, owner: Instance | Vm) -> str:
        return owner.name

    def scheduled_events(self, owner: Instance | Vm) -> dict:
        with self.lock:
            events = [
                {
                    "EventId": e.id,
                    "EventType": "Preempt",
                    "ResourceType": "VirtualMachine",
                    "Resources": [e.target],
                    "EventStatus": "Started" if e.acknowledged else "Scheduled",
                    "NotBefore": "" if e.acknowledged else rfc1123(e.not_before),
                    "Description": "Virtual machine is being preempted.",
                    "EventSource": "Platform",
                    "DurationInSeconds": -1,
                }
                for e in self.events.values()
                if e.target == owner.name
            ]
            return {"DocumentIncarnation": self.incarnation, "Events": events}

    def ack_events(self, owner: Instance | Vm, body: Any) -> tuple[int, dict | None]:
        if not isinstance(body, dict) or not isinstance(body.get("StartRequests"), list):
            return 400, {"error": "Bad request", "error_description": "the body must be {\"StartRequests\": [{\"EventId\": ...}]}"}
        with self.lock:
            for request in body["StartRequests"]:
                event = self.events.get(str((request or {}).get("EventId", "")))
                if event is None or event.target != owner.name:
                    return 400, {"error": "Bad request", "error_description": f"unknown event {request!r}"}
                event.acknowledged = True
                self.incarnation += 1
        return 200, None

    def instance_metadata(self, owner: Instance | Vm) -> dict:
        with self.lock:
            if isinstance(owner, Instance):
                vmss = owner.vmss
                profile = vmss.body["properties"].get("virtualMachineProfile") or {}
                compute = {
                    "name": owner.name,
                    "vmScaleSetName": vmss.name,
                    "resourceId": f"{self.vmss_id(vmss)}/virtualMachines/{owner.iid}",
                    "vmId": owner.vm_id,
                    "vmSize": vmss.body["sku"]["name"],
                    "priority": "Spot" if profile.get("priority") in ("Spot", "Low") else "Regular",
                    "evictionPolicy": profile.get("evictionPolicy", ""),
                    "resourceGroupName": vmss.rg,
                    "osProfile": {"computerName": (profile.get("osProfile") or {}).get("computerNamePrefix", vmss.name) + base36(owner.iid), "adminUsername": (profile.get("osProfile") or {}).get("adminUsername", "")},
                }
            else:
                props = owner.body.get("properties") or {}
                compute = {
                    "name": owner.name,
                    "vmScaleSetName": "",
                    "resourceId": _arm_id(self.sub(), owner.rg, "Microsoft.Compute", "virtualMachines", owner.name),
                    "vmId": owner.vm_id,
                    "vmSize": (props.get("hardwareProfile") or {}).get("vmSize", ""),
                    "priority": "Spot" if props.get("priority") == "Spot" else "Regular",
                    "evictionPolicy": props.get("evictionPolicy", ""),
                    "resourceGroupName": owner.rg,
                    "osProfile": {"computerName": (props.get("osProfile") or {}).get("computerName", owner.name), "adminUsername": (props.get("osProfile") or {}).get("adminUsername", "")},
                }
            compute.update({"location": self.config.location, "subscriptionId": self.sub(), "osType": "Linux", "azEnvironment": "AzurePublicCloud", "zone": "", "tagsList": []})
            prefix = self.subnet_prefix().split("/")[0]
            return {
                "compute": compute,
                "network": {
                    "interface": [
                        {
                            "ipv4": {"ipAddress": [{"privateIpAddress": owner.address, "publicIpAddress": ""}], "subnet": [{"address": prefix, "prefix": "24"}]},
                            "ipv6": {"ipAddress": []},
                            "macAddress": "000D3A000000",
                        }
                    ]
                },
            }

    def identity_token(self, owner: Instance | Vm, query: dict[str, str]) -> tuple[int, dict]:
        resource = query.get("resource")
        if not resource:
            return 400, {"error": "invalid_request", "error_description": "Required audience parameter not specified"}
        with self.lock:
            candidates = self.node_identities(owner)
        client_id = query.get("client_id")
        principal = query.get("object_id") or query.get("principal_id")
        mi_res = query.get("msi_res_id") or query.get("mi_res_id")
        if client_id:
            candidates = [c for c in candidates if c["properties"]["clientId"] == client_id]
        if principal:
            candidates = [c for c in candidates if c["properties"]["principalId"] == principal]
        if mi_res:
            candidates = [c for c in candidates if c["id"].lower() == mi_res.lower()]
        if len(candidates) != 1:
            return 400, {"error": "invalid_request", "error_description": "Identity not found" if not candidates else "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"}
        identity = candidates[0]
        t = int(time.time())
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{self.config.tenant_id}/",
            "iat": t,
            "nbf": t - 5,
            "exp": t + 3600,
            "oid": identity["properties"]["principalId"],
            "sub": identity["properties"]["principalId"],
            "appid": identity["properties"]["clientId"],
            "tid": self.config.tenant_id,
            "idtyp": "app",
            "xms_mirid": identity["id"],
        }
        return 200, {
            "access_token": self.pki.sign(claims),
            "client_id": identity["properties"]["clientId"],
            "expires_in": "3599",
            "expires_on": str(t + 3599),
            "ext_expires_in": "3599",
            "not_before": str(t - 5),
            "resource": resource,
            "token_type": "Bearer",
        }
