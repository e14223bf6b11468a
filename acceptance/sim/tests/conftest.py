"""One simulator (with its Azurite) for the whole test session, driven with Microsoft's SDKs.

Tests keep apart by resource name; a test that changes the simulator's settings or faults puts
them back (the `settings` fixture)."""

from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

SIM_ROOT = Path(__file__).resolve().parent.parent


class SimCredential:
    """A TokenCredential that asks the simulator's Entra endpoint (client credentials)."""

    def __init__(self, ready: dict, secret: str | None = None):
        self.ready = ready
        self.secret = secret or ready["clientSecret"]
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.calls += 1
        response = requests.post(
            f"{self.ready['endpoint']}{self.ready['tenantId']}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": self.ready["clientId"], "client_secret": self.secret, "scope": scopes[0]},
            verify=self.ready["caPath"],
            timeout=30,
        )
        response.raise_for_status()
        body = response.json()
        return AccessToken(body["access_token"], int(time.time()) + int(body["expires_in"]))


class Sim:
    def __init__(self, ready: dict, client_key, client_cert_path: Path):
        self.ready = ready
        self.endpoint = ready["endpoint"]
        self.ca = ready["caPath"]
        self.sub = ready["subscriptionId"]
        self.rg = ready["resourceGroup"]
        self.credential = SimCredential(ready)
        self.client_key = client_key
        self.client_cert_path = client_cert_path
        self.state = Path(ready["stateDir"])

    def ctl(self, method: str, path: str, body: dict | None = None) -> requests.Response:
        return requests.request(method, f"{self.endpoint}_sim/{path}", json=body, verify=self.ca, timeout=60)

    def token(self) -> str:
        return self.credential.get_token("https://management.azure.com/.default").token

    def arm(self, method: str, path: str, body=None, api: str | None = None, token: str | None = "auto", headers: dict | None = None) -> requests.Response:
        h = dict(headers or {})
        if token == "auto":
            token = self.token()
        if token:
            h["Authorization"] = f"Bearer {token}"
        url = f"{self.endpoint.rstrip('/')}{path}"
        if api:
            url += ("&" if "?" in url else "?") + f"api-version={api}"
        return requests.request(method, url, json=body, headers=h, verify=self.ca, timeout=60)

    def kwargs(self) -> dict:
        return {"base_url": self.endpoint, "connection_verify": self.ca, "credential_scopes": ["https://management.azure.com/.default"], "polling_interval": 1}

    def compute(self):
        from azure.mgmt.compute import ComputeManagementClient

        return ComputeManagementClient(self.credential, self.sub, **self.kwargs())

    def network(self):
        from azure.mgmt.network import NetworkManagementClient

        return NetworkManagementClient(self.credential, self.sub, **self.kwargs())

    def storage(self):
        from azure.mgmt.storage import StorageManagementClient

        return StorageManagementClient(self.credential, self.sub, **self.kwargs())

    def msi(self):
        from azure.mgmt.msi import ManagedServiceIdentityClient

        return ManagedServiceIdentityClient(self.credential, self.sub, api_version="2024-11-30", **self.kwargs())

    def authorization(self):
        from azure.mgmt.authorization import AuthorizationManagementClient

        return AuthorizationManagementClient(self.credential, self.sub, api_version="2022-04-01", **self.kwargs())

    def subnet_id(self, outbound: bool = True) -> str:
        return next(s["id"] for s in self.ready["subnets"] if s["defaultOutboundAccess"] == outbound)

    def identity(self, name: str) -> dict:
        created = self.msi().user_assigned_identities.create_or_update(self.rg, name, {"location": "westeurope"})
        return {"id": created.id, "clientId": created.client_id, "principalId": created.principal_id}

    def nodes(self) -> dict[str, dict]:
        return {n["name"]: n for n in self.ctl("GET", "nodes").json()["nodes"]}

    def requests_since(self, seq: int, kind: str = "arm") -> list[dict]:
        return self.ctl("GET", f"requests?since={seq}&kind={kind}").json()["requests"]

    def last_seq(self) -> int:
        return self.ctl("GET", "requests?kind=none").json()["last"]


def custom_data(write_files: list[dict] | None = None, runcmd: list | None = None, extra: str = "") -> str:
    doc: dict = {}
    if write_files:
        doc["write_files"] = write_files
    if runcmd:
        doc["runcmd"] = runcmd
    text = "#cloud-config\n" + json.dumps(doc) + "\n" + extra  # JSON is YAML
    return base64.b64encode(text.encode()).decode()


def vmss_body(sim: Sim, *, capacity: int = 2, size: str = "Standard_NC24ads_A100_v4", spot: bool = True, identity_id: str | None = None, data: str | None = None, prefix: str = "node") -> dict:
    """A realistic Uniform Spot GPU scale set, as the provider sends it."""
    profile: dict = {
        "osProfile": {
            "computerNamePrefix": prefix,
            "adminUsername": "batchai",
            "linuxConfiguration": {
                "disablePasswordAuthentication": True,
                "ssh": {"publicKeys": [{"path": "/home/batchai/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0sim batchai"}]},
            },
            "customData": data or custom_data(runcmd=["echo booted"]),
        },
        "storageProfile": {
            "imageReference": {"publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204", "version": "latest"},
            "osDisk": {"createOption": "FromImage", "caching": "ReadWrite", "managedDisk": {"storageAccountType": "Premium_LRS"}},
        },
        "networkProfile": {
            "networkInterfaceConfigurations": [
                {"name": "nic", "properties": {"primary": True, "enableAcceleratedNetworking": True, "ipConfigurations": [{"name": "ipconfig", "properties": {"subnet": {"id": sim.subnet_id()}}}]}}
            ]
        },
        "scheduledEventsProfile": {"terminateNotificationProfile": {"enable": True, "notBeforeTimeout": "PT5M"}},
    }
    if spot:
        profile.update({"priority": "Spot", "evictionPolicy": "Delete", "billingProfile": {"maxPrice": -1}})
    body: dict = {
        "location": "westeurope",
        "sku": {"name": size, "tier": "Standard", "capacity": capacity},
        "tags": {"batchai-cluster": "test"},
        "properties": {
            "orchestrationMode": "Uniform",
            "overprovision": False,
            "singlePlacementGroup": False,
            "platformFaultDomainCount": 1,
            "upgradePolicy": {"mode": "Manual"},
            "virtualMachineProfile": profile,
        },
    }
    if identity_id:
        body["identity"] = {"type": "UserAssigned", "userAssignedIdentities": {identity_id: {}}}
    return body


def wait_for(what: str, check, timeout: float = 60.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def _client_certificate(directory: Path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "batchai sim client")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    path = directory / "client.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


@pytest.fixture(scope="session")
def sim(tmp_path_factory) -> Sim:
    state = tmp_path_factory.mktemp("sim")
    key, _, cert_path = _client_certificate(state)
    ready_file = state / "ready.out.json"
    log = open(state / "sim.log", "wb")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SIM_ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchai_sim", "serve", "--state", str(state / "state"), "--ready-file", str(ready_file),
         "--parent-pid", str(os.getpid()), "--provision-delay", "0.5", "--eviction-timeout", "30",
         "--client-certificate", str(cert_path)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not start: {(state / 'sim.log').read_text()}")
            time.sleep(0.1)
        yield Sim(json.loads(ready_file.read_text()), key, cert_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture()
def settings(sim: Sim):
    """Restores the simulator's settings and faults after a test that changes them."""
    before = sim.ctl("GET", "config").json()
    yield sim
    sim.ctl("DELETE", "faults")
    sim.ctl("POST", "config", before)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"
