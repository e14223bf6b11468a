"""Booting a simulated VM as a real node: its cloud-init subset, its network, its processes.

A node's directory is ``<state>/vms/<name>``: ``rootfs/`` (where ``write_files`` lands and
``runcmd`` runs, exported as ``BATCHAI_ROOTFS``; it is the VM's OS disk, so it goes when the
node is killed, as a deleted or evicted VM's disk does), ``runcmd.sh`` (the commands as cloud-init
writes them: one line per string, lists shell-quoted), ``boot.log`` (their stdout and stderr),
``boot.json`` (the boot's outcome), ``node.json`` (what the tool stand-ins of
``nodetools.py`` need: the VM's name, address, data disks, and the simulator's mount namespace)
and, once a stand-in ran, ``tools.json`` and ``tools.log``.

``runcmd`` finds the stand-ins first on its PATH (``Node.path``: the simulator's ``nodebin``
directory, then the machine's own directories).

Where the machine allows (root, ``ip netns``), each node gets a network namespace on the
simulator's bridge with an address of its own, and IMDS answers inside that namespace on
169.254.169.254:80 (an address on the namespace's loopback, with a listening socket the
simulator opens inside the namespace). Otherwise IMDS gets a port of its own on 127.0.0.1 and
``BATCHAI_IMDS_ENDPOINT`` says where.

Every process a node starts carries ``BATCHAI_SIM_VM`` in its environment; killing a node kills
its process group, every process in its namespace, and every process with its marker (so a
daemon that left the session dies too).
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import yaml

from . import nodetools

IMDS_ADDRESS = "169.254.169.254"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Azure: "Custom data ... with a maximum length of 87380 characters" (65,535 decoded bytes).
MAX_CUSTOM_DATA_CHARS = 87380
CLONE_NEWNET = 0x40000000


class CloudInitError(Exception):
    """The custom data is not the cloud-init subset the simulator runs."""


@dataclass
class CloudConfig:
    write_files: list[dict] = field(default_factory=list)
    runcmd: list[str | list[str]] = field(default_factory=list)


def decode_custom_data(custom_data: str) -> bytes:
    """The bytes of base64 custom data; ValueError when it is not base64."""
    try:
        return base64.b64decode(custom_data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"custom data is not base64: {error}") from None


def parse_cloud_config(raw: bytes) -> CloudConfig:
    text = raw.decode("utf-8", errors="strict")
    first = text.split("\n", 1)[0].strip()
    if first != "#cloud-config":
        raise CloudInitError(f"custom data does not start with #cloud-config (first line {first[:40]!r})")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CloudInitError(f"custom data is not YAML: {error}") from None
    doc = doc or {}
    if not isinstance(doc, dict):
        raise CloudInitError("the cloud-config document is not a mapping")
    unknown = sorted(set(doc) - {"write_files", "runcmd"})
    if unknown:
        raise CloudInitError(f"unsupported cloud-config keys {unknown}: only write_files and runcmd are simulated")
    config = CloudConfig()
    for i, item in enumerate(doc.get("write_files") or []):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise CloudInitError(f"write_files[{i}] has no path")
        extra = sorted(set(item) - {"path", "content", "permissions", "encoding", "owner"})
        if extra:
            raise CloudInitError(f"write_files[{i}] has unsupported keys {extra}")
        if not item["path"].startswith("/"):
            raise CloudInitError(f"write_files[{i}].path {item['path']!r} is not absolute")
        if item.get("encoding") not in (None, "b64", "base64", "text/plain"):
            raise CloudInitError(f"write_files[{i}].encoding {item['encoding']!r} is not supported")
        if not isinstance(item.get("content", ""), str):
            raise CloudInitError(f"write_files[{i}].content is not a string")
        permissions = item.get("permissions")
        if permissions is not None:
            try:
                int(str(permissions), 8)
            except ValueError:
                raise CloudInitError(f"write_files[{i}].permissions {permissions!r} is not octal") from None
        config.write_files.append(item)
    for i, cmd in enumerate(doc.get("runcmd") or []):
        if isinstance(cmd, str) or (isinstance(cmd, list) and all(isinstance(a, str) for a in cmd)):
            config.runcmd.append(cmd)
        else:
            raise CloudInitError(f"runcmd[{i}] is neither a string nor a list of strings")
    return config


def runcmd_script(runcmd: list[str | list[str]]) -> str:
    """The script cloud-init's runcmd module writes: a string as it is, a list shell-quoted."""
    lines = ["#!/bin/sh"]
    for cmd in runcmd:
        lines.append(cmd if isinstance(cmd, str) else shlex.join(cmd))
    return "\n".join(lines) + "\n"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


class Network:
    """A bridge with a /24 and one namespace per node; `create` says why when it cannot."""

    def __init__(self, tag: str, bridge: str, prefix: str):
        self.tag = tag
        self.bridge = bridge
        self.prefix = prefix
        self.gateway = f"{prefix}.1"
        self.lock = threading.Lock()
        self.next_host = 10
        self.namespaces: dict[str, str] = {}

    @staticmethod
    def create(record: Path) -> tuple["Network | None", str]:
        if os.geteuid() != 0:
            return None, "not running as root"
        try:
            ip("-V")
        except (OSError, FileNotFoundError) as error:
            return None, f"no ip command: {error}"
        used = ip("-4", "-o", "addr", check=False).stdout + ip("-4", "route", check=False).stdout
        rng = random.Random(os.getpid() ^ int(time.time()))
        for _ in range(50):
            prefix = f"10.{rng.randrange(160, 250)}.{rng.randrange(1, 255)}"
            if f" {prefix}." not in used and f"{prefix}.0/" not in used:
                break
        else:
            return None, "no free 10.x.y.0/24 for the bridge"
        tag = f"{rng.randrange(16**4):04x}"
        bridge = f"bsim{tag}"
        try:
            ip("link", "add", bridge, "type", "bridge")
        except OSError as error:
            return None, f"cannot create a bridge: {error}"
        net = Network(tag, bridge, prefix)
        net.save(record)
        try:
            ip("addr", "add", f"{net.gateway}/24", "dev", bridge)
            ip("link", "set", bridge, "up")
        except OSError as error:
            net.destroy()
            return None, str(error)
        return net, ""

    def save(self, record: Path) -> None:
        self.record = record
        record.write_text(
            json.dumps({"bridge": self.bridge, "namespaces": sorted(self.namespaces)})
        )

    def reserve(self, label: str) -> tuple[str, str]:
        """A namespace name and address for a node (made later by `setup`)."""
        with self.lock:
            if self.next_host > 254:
                raise OSError("the simulator's /24 is full")
            host = self.next_host
            self.next_host += 1
            ns = f"bsim{self.tag}-{host}"
            self.namespaces[ns] = label
            self.save(self.record)
        return ns, f"{self.prefix}.{host}"

    def setup(self, ns: str, address: str) -> None:
        host = address.rsplit(".", 1)[1]
        outside = f"bs{self.tag}v{host}"
        ip("netns", "add", ns)
        ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("link", "set", outside, "master", self.bridge)
        ip("link", "set", outside, "up")
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "addr", "add", f"{IMDS_ADDRESS}/32", "dev", "lo")
        # Requests to IMDS come from the node's own address, as on Azure, not from 169.254.169.254.
        ip("-n", ns, "route", "replace", "local", IMDS_ADDRESS, "dev", "lo", "table", "local", "src", address)
        ip("-n", ns, "route", "add", "default", "via", self.gateway)

    def remove(self, ns: str) -> None:
        ip("netns", "del", ns, check=False)
        with self.lock:
            self.namespaces.pop(ns, None)
            self.save(self.record)

    def destroy(self) -> None:
        for ns in list(self.namespaces):
            self.remove(ns)
        ip("link", "del", self.bridge, check=False)


def cleanup_network(record: Path) -> None:
    """Removes what a (possibly killed) simulator's network record names."""
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return
    for ns in data.get("namespaces", []):
        for pid in ip("netns", "pids", ns, check=False).stdout.split():
            _kill(int(pid))
        ip("netns", "del", ns, check=False)
    ip("link", "del", data["bridge"], check=False)
    record.unlink(missing_ok=True)


def socket_in_namespace(ns: str, address: str, port: int):
    """A listening TCP socket opened inside network namespace `ns` (from a thread that enters it
    and ends, so no other thread changes namespace)."""
    import socket

    result: dict[str, Any] = {}

    def enter() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/var/run/netns/{ns}") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {ns}")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(64)
            result["sock"] = sock
        except OSError as error:
            result["error"] = error

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def pids_with_marker(marker: str) -> list[int]:
    needle = f"BATCHAI_SIM_VM={marker}".encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle in handle.read() + b"\0":
                    found.append(int(entry))
        except OSError:
            continue
    return found


class Node:
    """One booted VM: its directory, namespace or IMDS port, and processes."""

    def __init__(
        self,
        name: str,
        directory: Path,
        marker: str,
        network: Network | None,
        imds_handler: type,
        on_failure: Callable[[str], None],
    ):
        self.name = name
        self.dir = directory
        self.rootfs = directory / "rootfs"
        self.marker = marker
        self.network = network
        self.imds_handler = imds_handler
        self.on_failure = on_failure
        self.namespace: str | None = None
        self.address = "127.0.0.1"
        self.imds_endpoint = ""
        self.imds_server: ThreadingHTTPServer | None = None
        self.process: subprocess.Popen | None = None
        self.killed = False
        self.lock = threading.Lock()
        self.status: dict[str, Any] = {"state": "booting"}
        # The node's PATH (the simulator puts its tool stand-ins first) and data disk files.
        self.path = PATH
        self.data_disks: list[str] = []

    def prepare_network(self) -> None:
        """Makes the node's namespace (reserved by the caller) and starts its IMDS."""
        with self.lock:
            if self.killed:
                return
            self._prepare_network()

    def _prepare_network(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.network is not None and self.namespace is not None:
            self.network.setup(self.namespace, self.address)
            sock = socket_in_namespace(self.namespace, IMDS_ADDRESS, 80)
            server = ThreadingHTTPServer((IMDS_ADDRESS, 80), self.imds_handler, bind_and_activate=False)
            server.socket.close()
            server.socket = sock
            server.server_address = sock.getsockname()
            self.imds_endpoint = f"http://{IMDS_ADDRESS}"
        else:
            server = ThreadingHTTPServer(("127.0.0.1", 0), self.imds_handler)
            self.imds_endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        server.daemon_threads = True
        server.node = self  # type: ignore[attr-defined]
        self.imds_server = server
        threading.Thread(target=server.serve_forever, name=f"imds-{self.name}", daemon=True).start()

    def write_status(self) -> None:
        (self.dir / "boot.json").write_text(json.dumps(self.status, indent=1))

    def write_info(self) -> None:
        """node.json, what the tool stand-ins read; a previous VM of the name leaves no tool state."""
        info = {
            "name": self.name,
            "address": self.address,
            "namespace": self.namespace,
            "rootfs": str(self.rootfs),
            "dataDisks": self.data_disks,
            # A stand-in that finds itself in this mount namespace is not in a node's own.
            "hostMountNamespace": os.readlink("/proc/self/ns/mnt"),
        }
        for stale in ("tools.json", "tools.log"):
            (self.dir / stale).unlink(missing_ok=True)
        tmp = self.dir / "node.json.tmp"
        tmp.write_text(json.dumps(info, indent=1))
        os.replace(tmp, self.dir / "node.json")

    def boot(self, custom_data: str | None, extra_files: list[tuple[str, bytes, int]] = ()) -> None:
        """Runs the cloud-init subset; a failure goes to `on_failure` and boot.json."""
        self.rootfs.mkdir(parents=True, exist_ok=True)
        for path, content, mode in extra_files:
            target = self.rootfs / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(mode)
        try:
            config = parse_cloud_config(decode_custom_data(custom_data)) if custom_data else CloudConfig()
            for item in config.write_files:
                self._write_file(item)
        except (CloudInitError, ValueError, UnicodeDecodeError, OSError) as error:
            self.status = {"state": "failed", "error": str(error)}
            self.write_status()
            self.on_failure(str(error))
            return
        script = self.dir / "runcmd.sh"
        script.write_text(runcmd_script(config.runcmd))
        self.write_info()
        env = {
            "PATH": self.path,
            "HOME": str(self.rootfs / "root"),
            "LANG": "C.UTF-8",
            "BATCHAI_ROOTFS": str(self.rootfs),
            "BATCHAI_SIM_VM": self.marker,
        }
        (self.rootfs / "root").mkdir(exist_ok=True)
        if self.namespace is None:
            env["BATCHAI_IMDS_ENDPOINT"] = self.imds_endpoint
        argv = ["sh", str(script)]
        if self.namespace is not None:
            argv = ["ip", "netns", "exec", self.namespace, *argv]
        with self.lock:
            if self.killed:
                return
            log = open(self.dir / "boot.log", "ab")
            self.process = subprocess.Popen(
                argv,
                cwd=self.rootfs,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            self.status = {"state": "running", "pid": self.process.pid}
            self.write_status()
        code = self.process.wait()
        with self.lock:
            if not self.killed:
                self.status = {"state": "finished", "exit_code": code}
                self.write_status()

    @staticmethod
    def empty_tools_view() -> dict[str, Any]:
        return {"packages": [], "arrays": [], "fileSystems": [], "localMounts": [], "exports": None, "nfsService": None, "nfsMounts": [], "storageMounts": []}

    def tools_view(self) -> dict[str, Any]:
        """What the tool stand-ins did on this node (``/_sim/nodes``): installed packages, RAID
        arrays, local mounts, the export table of its last ``exportfs`` (None before), its NFS
        service (None before systemctl), the NFS mounts and the Azure Storage mounts (`mount -t
        cifs`, blobfuse2) it made, each with ``mounted``: whether the bind mount is still there
        (read from a process of the node's namespace; False once none is left, None without
        namespaces). No secret is in any of it: the stand-ins record none."""
        state = nodetools.read_state(self.dir)
        mounts = state["nfsMounts"] + state["storageMounts"]
        if mounts:
            live = self._mount_points()
            for mount in mounts:
                mount["mounted"] = None if live is None else mount["hostTarget"] in live
        return {key: state[key] for key in self.empty_tools_view()}

    def _mount_points(self) -> set[str] | None:
        """The mount points a process of the node's namespace sees (its mount namespace is the
        one `ip netns exec` made for runcmd), or None when the node has no namespace."""
        if self.namespace is None:
            return None
        for pid in ip("netns", "pids", self.namespace, check=False).stdout.split():
            try:
                with open(f"/proc/{pid}/mountinfo") as handle:
                    lines = handle.read().splitlines()
            except OSError:
                continue
            # Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
            return {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in lines if len(line.split()) > 4}
        return set()

    def _write_file(self, item: dict) -> None:
        target = (self.rootfs / item["path"].lstrip("/")).resolve()
        if not str(target).startswith(str(self.rootfs.resolve()) + os.sep):
            raise CloudInitError(f"write_files path {item['path']!r} leaves the rootfs")
        content = item.get("content", "")
        if item.get("encoding") in ("b64", "base64"):
            data = base64.b64decode(content)
        else:
            data = content.encode()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(int(str(item.get("permissions", "0644")), 8))

    def kill(self) -> None:
        with self.lock:
            self.killed = True
            self.status = {"state": "killed"}
            self.write_status()
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for _ in range(3):
            victims = pids_with_marker(self.marker)
            if self.namespace is not None:
                victims += [int(p) for p in ip("netns", "pids", self.namespace, check=False).stdout.split()]
            if not victims:
                break
            for pid in victims:
                _kill(pid)
            time.sleep(0.05)
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.imds_server is not None:
            self.imds_server.shutdown()
            self.imds_server.server_close()
        if self.namespace is not None and self.network is not None:
            self.network.remove(self.namespace)
        # A VM's OS disk goes with it (deleteOption Delete, and a Spot eviction that deletes):
        # whatever a node kept only on its own disk is lost here exactly as on Azure, and a run
        # of many nodes does not fill the machine with copies of the agent.
        shutil.rmtree(self.rootfs, ignore_errors=True)
