"""``python -m batchai_sim serve|down``: see acceptance/sim/README.md."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from . import nodes
from .arm import Config, Sim
from .azurite import Azurite
from .pki import Pki
from .server import App, make_servers


def serve(args: argparse.Namespace) -> int:
    state = Path(args.state).resolve()
    state.mkdir(parents=True, exist_ok=True)
    (state / "vms").mkdir(exist_ok=True)
    network, why = (None, "disabled with --no-netns") if args.no_netns else nodes.Network.create(state / "network.json")
    hosts = ["localhost", "127.0.0.1"] + ([network.gateway] if network else [])
    pki = Pki(state, hosts)
    config = Config(
        provision_delay=args.provision_delay,
        eviction_timeout=args.eviction_timeout,
        page_size=args.page_size,
        location=args.location,
        resource_groups=args.resource_group or ["training"],
    )
    if args.storage_account:
        config.storage_accounts = args.storage_account
    if args.client_certificate:
        config.client_certificate = Path(args.client_certificate)
    for spec in args.subnet or []:
        vnet, subnet, outbound = spec.split("/")
        config.subnets.append((vnet, subnet, outbound == "outbound"))
    azurite = None
    stop = threading.Event()
    sim: Sim | None = None
    try:
        sim = Sim(config, state, pki, network, None)
        if not args.no_azurite:
            keys = {name: pair[0] for name, pair in sim.storage_keys.items()}
            azurite = Azurite(network.gateway if network else "127.0.0.1", keys, pki.cert_path, pki.key_path, state / "azurite.log")
            sim.attach_azurite(azurite)
        app = App(sim)
        # Nodes in namespaces reach the host through the bridge only: ARM (which a node's
        # scheduler calls to grow its scale set) is served there, where the host reaches it too.
        if network and args.host in ("127.0.0.1", "localhost"):
            args.host = network.gateway
        server = make_servers(app, args.host, args.port)
        sim.start()
        port = server.server_address[1]
        threading.Thread(target=server.serve_forever, name="arm", daemon=True).start()
        ready = {
            "pid": os.getpid(),
            "simId": sim.sim_id,
            "host": args.host,
            "port": port,
            "endpoint": f"https://{args.host}:{port}/",
            "metadataHost": f"{args.host}:{port}",
            "caPath": str(pki.ca_path),
            "stateDir": str(state),
            "subscriptionId": config.subscription_id,
            "tenantId": config.tenant_id,
            "clientId": config.client_id,
            "clientSecret": config.client_secret,
            "location": config.location,
            "resourceGroup": config.resource_groups[0],
            "storageAccounts": config.storage_accounts,
            "spareStorageAccounts": config.spare_storage_accounts,
            "subnets": [
                {"id": f"/subscriptions/{config.subscription_id}/resourceGroups/{config.resource_groups[0]}/providers/Microsoft.Network/virtualNetworks/{v}/subnets/{s}", "defaultOutboundAccess": o}
                for v, s, o in config.subnets
            ],
            "azurite": {"host": azurite.host, "port": azurite.port, "pid": azurite.process.pid} if azurite else None,
            # For test code that reads what nodes wrote: each account's blob endpoint and key.
            "blobEndpoints": {name: azurite.endpoint(name) for name in config.storage_accounts} if azurite else {},
            "storageKeys": {name: pair[0] for name, pair in sim.storage_keys.items()},
            "network": {"mode": "namespaces", "bridge": network.bridge, "gateway": network.gateway}
            if network
            else {"mode": "processes", "reason": why},
        }
        (state / "sim.pid").write_text(str(os.getpid()))
        if args.ready_file:
            target = Path(args.ready_file)
            partial = target.with_name(target.name + ".partial")
            partial.write_text(json.dumps(ready, indent=1))
            os.replace(partial, target)
        (state / "ready.json").write_text(json.dumps(ready, indent=1))
        print(f"batchai-sim: serving on https://{args.host}:{port}/ (state {state}, network {ready['network']['mode']})", flush=True)

        def on_signal(signum: int, frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop.wait(1):
            if args.parent_pid and not _alive(args.parent_pid):
                break
        server.shutdown()
        return 0
    finally:
        if sim is not None:
            sim.shutdown()
        if azurite is not None:
            azurite.stop()
        if network is not None:
            network.destroy()
            (state / "network.json").unlink(missing_ok=True)
        (state / "sim.pid").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def down(args: argparse.Namespace) -> int:
    """Stops the simulator of a state directory and removes whatever it left behind."""
    state = Path(args.state).resolve()
    pid_file = state / "sim.pid"
    ready = {}
    try:
        ready = json.loads((state / "ready.json").read_text())
    except (OSError, ValueError):
        pass
    if pid_file.exists():
        pid = int(pid_file.read_text().strip() or 0)
        if pid and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.time() + 20
            while time.time() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
    # Whatever a killed simulator could not clean up.
    if ready.get("simId"):
        for victim in _marked(ready["simId"]):
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
    azurite_pid = (ready.get("azurite") or {}).get("pid")
    if azurite_pid and _alive(azurite_pid):
        try:
            os.killpg(azurite_pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    nodes.cleanup_network(state / "network.json")
    print(f"batchai-sim: stopped the simulator of {state}")
    return 0


def _marked(sim_id: str) -> list[int]:
    """Processes whose BATCHAI_SIM_VM names one of this simulator's VMs."""
    needle = f"BATCHAI_SIM_VM={sim_id}/".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    if needle in handle.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchai_sim", description="the batchai ARM simulator")
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("serve", help="run the simulator in the foreground")
    s.add_argument("--state", required=True, help="state directory (CA, nodes, logs)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0, help="0 picks a free port")
    s.add_argument("--ready-file", help="JSON written once serving: port, endpoint, CA path, credentials")
    s.add_argument("--no-netns", action="store_true", help="no network namespaces even as root")
    s.add_argument("--no-azurite", action="store_true", help="no Azurite (storage containers are not created)")
    s.add_argument("--provision-delay", type=float, default=1.0)
    s.add_argument("--eviction-timeout", type=float, default=30.0)
    s.add_argument("--page-size", type=int, default=2)
    s.add_argument("--location", default="westeurope")
    s.add_argument("--resource-group", action="append")
    s.add_argument("--storage-account", action="append", help="an existing storage account (repeatable; default mlctrl, mldata)")
    s.add_argument("--subnet", action="append", help="VNET/SUBNET/outbound|private: one more subnet")
    s.add_argument("--client-certificate", help="PEM certificate whose key signs client assertions")
    s.add_argument("--parent-pid", type=int, help="stop when this process is gone")
    d = commands.add_parser("down", help="stop the simulator of a state directory")
    d.add_argument("--state", required=True)
    args = parser.parse_args(argv)
    return serve(args) if args.command == "serve" else down(args)


if __name__ == "__main__":
    sys.exit(main())
