"""Strict stand-ins for the system tools a file server's custom data uses, first on every node's PATH.

A simulated node is a process tree on the simulator's machine, so it has no block devices, no
kernel NFS server and no systemd. The simulator puts a directory of small wrappers first on
every node's ``PATH`` (``<state>/nodebin/``, made by :func:`install`); each runs this file (standard
library only, and PyYAML for blobfuse2's configuration) with the simulator's own interpreter and
the tool's name:

- ``apt-get update|install -y [-q] PACKAGES...``: installs nothing, records the packages;
- ``mdadm --create DEV --level=0 --raid-devices=N [--run] DEVICES...``: a RAID 0 of this VM's
  data disks, recorded in ``DEV`` (a file);
- ``mkfs.ext4 [-F] [-q] [-L LABEL] DEV``: a file system recorded in a data disk or an array;
- ``mount [-t ext4] [-o OPTS] DEV DIR`` (DEV a simulated device): recorded; the data lives in DIR,
  a plain directory of the VM's root;
- ``mount -t nfs|nfs4 [-o OPTS] HOST:PATH DIR``: checks what an NFS server would (the server VM
  has that private address, its NFS service runs, its exports, as its last ``exportfs`` saw
  them, cover PATH for this client's address) and then **bind-mounts** the server VM's
  directory on DIR with the real ``mount --bind`` in the node's own mount namespace: the data
  path is a bind mount on a shared file system, not the NFS protocol;
- any other ``mount``: the real ``/usr/bin/mount``, unchanged;
- ``exportfs -ra`` (``-a``, ``-r``, ``-v``): parses ``/etc/exports`` and snapshots the table;
- ``systemctl enable [--now]|start|restart nfs-kernel-server|nfs-server``: the NFS service;
- ``mount -t cifs //ACCOUNT.file.SUFFIX/SHARE[/DIR] DIR -o credentials=FILE,...``: checks the
  account, the key (a 0600 credentials file, or inline) and the share against ``<state>/storage.json``
  and ``<state>/fileshares/``, then bind-mounts ``<state>/fileshares/ACCOUNT/SHARE[/DIR]`` on DIR;
- ``blobfuse2 mount DIR --config-file=FILE [-o OPTS]``: checks the configuration, the account
  key or the managed identity (a token from the node's IMDS, and a Storage Blob Data role on the
  container or above it) and that Azurite has the container, then bind-mounts
  ``<state>/blobfuse/ACCOUNT/CONTAINER`` on DIR: data written there does not reach Azurite.
  Neither writes a key to its log, its state or stderr.

Anything else these tools could be asked fails with exit code 1 and a line on stderr starting
``batchai-sim <tool>:`` that says what the simulator supports, so a wrong script fails its test.
Failures a real tool would have (an NFS server that denies access, a device in use) print the
real tool's message first and the simulator's reason after it, with the real exit code.

Every path a node gives is under ``$BATCHAI_ROOTFS`` (the VM's root); a shim refuses to run
without it. State, all in the VM's directory (``$BATCHAI_ROOTFS/..``), beside the simulator's
``node.json`` (the VM's name, address, data disks, and the simulator's mount namespace):
``tools.json`` (packages, arrays, mounts, exports, the NFS service; what ``/_sim/nodes``
shows) and ``tools.log`` (one JSON line per invocation). Paths in both are as the node sees
them (``/data``, not ``$BATCHAI_ROOTFS/data``).
"""

from __future__ import annotations

import contextlib
import fcntl
import getopt
import ipaddress
import json
import os
import re
import shlex
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, NoReturn

TOOLS = ("apt-get", "mdadm", "mkfs.ext4", "mount", "exportfs", "systemctl", "blobfuse2")
REAL_MOUNT = "/usr/bin/mount"
NFS_PACKAGE = "nfs-kernel-server"
NFS_UNITS = ("nfs-kernel-server", "nfs-server")
# exports(5): the options exportfs knows (those with "=" take a value).
EXPORT_FLAGS = {
    "rw", "ro", "sync", "async", "secure", "insecure", "wdelay", "no_wdelay", "hide", "nohide",
    "crossmnt", "subtree_check", "no_subtree_check", "secure_locks", "insecure_locks", "auth_nlm",
    "no_auth_nlm", "mp", "mountpoint", "root_squash", "no_root_squash", "all_squash",
    "no_all_squash", "acl", "no_acl", "pnfs", "no_pnfs", "security_label",
}
EXPORT_VALUES = {"fsid", "anonuid", "anongid", "sec", "refer", "replicas", "mp", "mountpoint"}
# nfs(5) and mount(8): the options mount.nfs takes.
NFS_FLAGS = {
    "rw", "ro", "hard", "soft", "softerr", "intr", "nointr", "bg", "fg", "ac", "noac", "lock",
    "nolock", "cto", "nocto", "atime", "noatime", "relatime", "norelatime", "diratime",
    "nodiratime", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "sync", "async", "_netdev",
    "nofail", "defaults", "auto", "noauto", "user", "nouser", "resvport", "noresvport",
    "sharecache", "nosharecache", "fsc", "nofsc", "rdirplus", "nordirplus", "acl", "noacl",
    "posix", "noposix", "tcp", "udp",
}
NFS_VALUES = {
    "vers", "nfsvers", "minorversion", "proto", "port", "mountport", "mountproto", "mounthost",
    "mountvers", "timeo", "retrans", "retry", "rsize", "wsize", "nconnect", "max_connect", "sec",
    "actimeo", "acregmin", "acregmax", "acdirmin", "acdirmax", "lookupcache", "local_lock",
    "clientaddr", "namlen", "xprtsec", "x-systemd.automount", "x-systemd.mount-timeout",
}
NFS_VERSIONS = {"3", "4", "4.0", "4.1", "4.2"}
# ext4(5) and mount(8) options the simulated local mount takes.
EXT4_FLAGS = {
    "defaults", "rw", "ro", "nofail", "noatime", "relatime", "atime", "nodiratime", "discard",
    "nodiscard", "auto", "noauto", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "sync",
    "async", "_netdev", "user_xattr", "acl", "noacl", "barrier", "nobarrier",
}
EXT4_VALUES = {"commit", "data", "errors", "x-systemd.device-timeout", "stripe"}


class Fail(Exception):
    """A shim's failure: `real` is what the real tool would print, `message` the simulator's
    explanation, `code` the exit code."""

    def __init__(self, message: str, code: int = 1, real: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.real = real


def unsupported(what: str, supported: str) -> Fail:
    return Fail(f"{what}: not simulated (the simulator supports {supported} only)")


class Node:
    """The VM the shim runs on: its root, its directory, what the simulator said about it."""

    def __init__(self, tool: str):
        root = os.environ.get("BATCHAI_ROOTFS")
        if not root:
            raise Fail("BATCHAI_ROOTFS is not set: this stand-in only runs on a simulated node")
        self.tool = tool
        self.rootfs = Path(root).resolve()
        self.dir = self.rootfs.parent
        self.vms = self.dir.parent
        try:
            self.info: dict = json.loads((self.dir / "node.json").read_text())
        except (OSError, ValueError) as error:
            raise Fail(f"{self.dir / 'node.json'} (the simulator's record of this VM) is unreadable: {error}") from None
        self.name: str = self.info.get("name", self.dir.name)
        self.address: str = self.info.get("address", "")

    # --- paths ---------------------------------------------------------------------------

    def host_path(self, given: str, what: str) -> Path:
        """`given` (as the script wrote it, `$R/...`) as a path on this machine, under the root."""
        path = Path(os.path.abspath(given))
        if path != self.rootfs and self.rootfs not in path.parents:
            raise Fail(f"{what} {given!r} is not under this node's root {self.rootfs} (BATCHAI_ROOTFS): prefix every path with \"$R\"")
        return path

    def node_path(self, path: Path) -> str:
        """A host path under the root as the node sees it (`/data`)."""
        return "/" + str(path.relative_to(self.rootfs)) if path != self.rootfs else "/"

    def data_disks(self) -> dict[str, str]:
        """The real path of each data disk file -> its name as the node sees it."""
        disks = {}
        for disk in self.info.get("dataDisks", []):
            disks[os.path.realpath(self.rootfs / disk.lstrip("/"))] = disk
        return disks

    # --- state ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def state(self) -> Iterator[dict]:
        """tools.json under the VM's lock; written back (atomically) when the block ends well."""
        with open(self.dir / "tools.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = read_state(self.dir)
            yield state
            tmp = self.dir / f"tools.json.{os.getpid()}"
            tmp.write_text(json.dumps(state, indent=1))
            os.replace(tmp, self.dir / "tools.json")

    def log(self, record: dict) -> None:
        record = {"time": time.time(), "tool": self.tool, **record}
        with open(self.dir / "tools.log", "a") as handle:
            handle.write(json.dumps(record) + "\n")


def read_state(vm_dir: Path) -> dict:
    """A VM's tools.json (empty before any tool ran)."""
    try:
        state = json.loads((vm_dir / "tools.json").read_text())
    except (OSError, ValueError):
        state = {}
    state.setdefault("packages", [])
    state.setdefault("arrays", [])
    state.setdefault("fileSystems", [])
    state.setdefault("localMounts", [])
    state.setdefault("nfsMounts", [])
    state.setdefault("exports", None)
    state.setdefault("nfsService", None)
    state.setdefault("storageMounts", [])
    return state


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def options(value: str, flags: set[str], values: set[str], tool: str) -> list[str]:
    """A comma-separated option list, each known to `tool`; Fail names the first that is not."""
    out = []
    for option in [o for o in value.split(",") if o]:
        key, eq, _ = option.partition("=")
        if (eq and key not in values) or (not eq and key not in flags):
            raise Fail(f"option {option!r} is not one {tool} takes", code=1)
        out.append(option)
    return out


def parse(args: list[str], short: str, long: list[str], tool: str) -> tuple[list[tuple[str, str]], list[str]]:
    try:
        return getopt.gnu_getopt(args, short, long)
    except getopt.GetoptError as error:
        raise Fail(f"{error}: not simulated ({tool}: see `batchai_sim/nodetools.py` for the forms it takes)") from None


# --- apt-get ---------------------------------------------------------------------------------


def apt_get(node: Node, args: list[str]) -> str:
    opts, rest = parse(args, "yq", ["yes", "assume-yes", "quiet", "no-install-recommends"], "apt-get")
    yes = any(o in ("-y", "--yes", "--assume-yes") for o, _ in opts)
    if not rest or rest[0] not in ("update", "install"):
        raise unsupported(f"apt-get {' '.join(rest[:1]) or '(no command)'}", "`apt-get update` and `apt-get install -y PACKAGES`")
    if rest[0] == "update":
        if rest[1:]:
            raise Fail("apt-get update takes no arguments", real="E: The update command takes no arguments")
        with node.state() as state:
            state["aptUpdated"] = True
        return "updated the package lists (nothing downloaded)"
    packages = rest[1:]
    if not packages:
        raise Fail("apt-get install names no package")
    for package in packages:
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?", package):
            raise Fail(f"{package!r} is not a package name", code=100, real=f"E: Unable to locate package {package}")
    if not yes:
        raise Fail("apt-get install without -y asks for confirmation, and a node's stdin is not a terminal", real="Do you want to continue? [Y/n] Abort.")
    with node.state() as state:
        for package in packages:
            name = package.split("=", 1)[0]
            if name not in state["packages"]:
                state["packages"].append(name)
    return f"installed {' '.join(packages)} (recorded; nothing installed)"


# --- mdadm -----------------------------------------------------------------------------------


def mdadm(node: Node, args: list[str]) -> str:
    opts, devices = parse(args, "C:l:n:R", ["create=", "level=", "raid-devices=", "run"], "mdadm")
    form = "`mdadm --create DEV --level=0 --raid-devices=N [--run] DEVICES...`"
    array = level = count = None
    for opt, value in opts:
        if opt in ("-C", "--create"):
            array = value
        elif opt in ("-l", "--level"):
            level = value
        elif opt in ("-n", "--raid-devices"):
            count = value
    if array is None:
        raise unsupported("mdadm without --create", form)
    if level is None:
        raise Fail("no RAID level", real="mdadm: a RAID level is needed to create an array.")
    if level not in ("0", "raid0", "stripe"):
        raise unsupported(f"RAID level {level}", "level 0 (stripe)")
    if count is None:
        raise Fail("no --raid-devices", real="mdadm: no raid-devices specified.")
    if not count.isdigit():
        raise Fail(f"--raid-devices {count!r} is not a number", real=f"mdadm: invalid number of raid devices: {count}")
    if int(count) != len(devices):
        raise Fail(f"--raid-devices={count} but {len(devices)} devices given", real=f"mdadm: {count} devices listed but {len(devices)} given" if devices else "mdadm: You have listed no devices")
    if int(count) < 2:
        raise Fail("a RAID 0 of one device", real="mdadm: '1' is an unusual number of drives for an array, so it is probably\n     a mistake.  If you really mean it you will need to specify --force before\n     setting the number of drives.")
    target = node.host_path(array, "the array")
    name = node.node_path(target)
    if not re.fullmatch(r"/dev/md[0-9]+|/dev/md/[A-Za-z0-9_.-]+", name):
        raise Fail(f"{name} is not an md device name (/dev/mdN or /dev/md/NAME)", real=f"mdadm: {name} is an invalid name for an md device.")
    disks = node.data_disks()
    members = []
    for device in devices:
        path = node.host_path(device, "the device")
        real = os.path.realpath(path)
        if real not in disks:
            known = ", ".join(sorted(disks.values())) or "none"
            raise Fail(f"{node.node_path(path)} is not a data disk of this VM (its data disks: {known})", real=f"mdadm: cannot open {node.node_path(path)}: No such file or directory" if not path.exists() else f"mdadm: {node.node_path(path)} is not a block device.")
        if disks[real] in members:
            raise Fail(f"{disks[real]} is given twice", real=f"mdadm: {disks[real]} is listed twice")
        members.append(disks[real])
    with node.state() as state:
        if any(a["device"] == name for a in state["arrays"]) or target.exists():
            raise Fail(f"{name} exists already", real=f"mdadm: cannot open {name}: Device or resource busy")
        for a in state["arrays"]:
            for member in members:
                if member in a["devices"]:
                    raise Fail(f"{member} is a member of {a['device']} already", real=f"mdadm: cannot open {member}: Device or resource busy")
        if any(f["device"] in members for f in state["fileSystems"]):
            used = next(f["device"] for f in state["fileSystems"] if f["device"] in members)
            if any(m["device"] == used for m in state["localMounts"]):
                raise Fail(f"{used} is mounted", real=f"mdadm: cannot open {used}: Device or resource busy")
            state["fileSystems"] = [f for f in state["fileSystems"] if f["device"] not in members]
        record = {"device": name, "level": 0, "devices": members, "uuid": str(uuid.uuid4())}
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"simulated": "md array", **record}) + "\n")
        state["arrays"].append(record)
    print("mdadm: Defaulting to version 1.2 metadata", file=sys.stderr)
    print(f"mdadm: array {name} started.", file=sys.stderr)
    return f"created the RAID 0 {name} of {' '.join(members)}"


# --- mkfs.ext4 -------------------------------------------------------------------------------


def mkfs_ext4(node: Node, args: list[str]) -> str:
    opts, rest = parse(args, "FqL:", [], "mkfs.ext4")
    if len(rest) != 1:
        raise unsupported(f"mkfs.ext4 with {len(rest)} arguments", "`mkfs.ext4 [-F] [-q] [-L LABEL] DEV`")
    force = sum(1 for o, _ in opts if o == "-F")
    quiet = any(o == "-q" for o, _ in opts)
    label = next((v for o, v in reversed(opts) if o == "-L"), "")
    if len(label.encode()) > 16:
        print(f'Warning: label too long; will be truncated to \'{label.encode()[:16].decode(errors="ignore")}\'', file=sys.stderr)
        label = label.encode()[:16].decode(errors="ignore")
    path = node.host_path(rest[0], "the device")
    real = os.path.realpath(path)
    disks = node.data_disks()
    with node.state() as state:
        arrays = {a["device"]: a for a in state["arrays"]}
        if real in disks:
            device = disks[real]
            owner = next((a["device"] for a in state["arrays"] if device in a["devices"]), None)
            if owner is not None:
                raise Fail(f"{device} is a member of the array {owner}", real=f"{device} is apparently in use by the system; will not make a filesystem here!")
        else:
            device = node.node_path(Path(real)) if Path(real).is_relative_to(node.rootfs) else rest[0]
            if device not in arrays:
                known = ", ".join(sorted(disks.values()) + sorted(arrays)) or "none"
                missing = not path.exists()
                raise Fail(f"{node.node_path(path)} is neither a data disk of this VM nor an array mdadm made (devices: {known})", real=f"The file {node.node_path(path)} does not exist and no size was specified." if missing else f"mke2fs: {node.node_path(path)} is not a block special device.")
        if any(m["device"] == device for m in state["localMounts"]):
            raise Fail(f"{device} is mounted", real=f"{device} contains a ext4 file system\n\tcurrently mounted; will not make a filesystem here!")
        existing = next((f for f in state["fileSystems"] if f["device"] == device), None)
        if existing is not None and not force:
            raise Fail(f"{device} has a file system already and -F was not given (mkfs.ext4 would ask, and a node's stdin is not a terminal)", real=f"{device} contains a ext4 file system\nProceed anyway? (y,N)")
        record = {"device": device, "type": "ext4", "label": label, "uuid": str(uuid.uuid4())}
        state["fileSystems"] = [f for f in state["fileSystems"] if f["device"] != device] + [record]
        if device in arrays:
            with open(path, "w") as handle:
                handle.write(json.dumps({"simulated": "md array", **arrays[device], "fileSystem": record}) + "\n")
        else:
            with open(path, "w") as handle:
                handle.write(json.dumps({"simulated": "ext4", **record}) + "\n")
    if not quiet:
        print(f"mke2fs 1.46.5 (30-Dec-2021)\nCreating filesystem with simulated blocks\nFilesystem UUID: {record['uuid']}\nWriting superblocks and filesystem accounting information: done")
    return f"made an ext4 file system on {device}" + (f" labelled {label}" if label else "")


# --- mount -----------------------------------------------------------------------------------


def mount_args(args: list[str]) -> tuple[str | None, list[str], list[str], list[str]]:
    """(type, options, positionals, other flags) of a mount command line."""
    kind: str | None = None
    opts: list[str] = []
    positional: list[str] = []
    other: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        value: str | None = None
        if arg in ("-t", "--types", "-o", "--options"):
            if i + 1 >= len(args):
                other.append(arg)
                break
            value = args[i + 1]
            i += 1
            flag = arg
        elif arg.startswith("--types=") or arg.startswith("--options="):
            flag, value = arg.split("=", 1)
        elif len(arg) > 2 and arg[:2] in ("-t", "-o"):
            flag, value = arg[:2], arg[2:]
        elif arg.startswith("-") and arg != "-":
            other.append(arg)
            i += 1
            continue
        else:
            positional.append(arg)
            i += 1
            continue
        if flag in ("-t", "--types"):
            kind = value
        else:
            opts.extend(o for o in value.split(",") if o)
        i += 1
    return kind, opts, positional, other


def mount(node: Node | None, args: list[str]) -> str:
    kind, opts, positional, other = mount_args(args)
    if kind in ("cifs", "smb3") or (kind is None and positional and positional[0].startswith("//")):
        if node is None:
            node = Node("mount")
        return mount_cifs(node, kind or "cifs", opts, positional, other)
    nfs_source = len(positional) == 2 and re.fullmatch(r"[^/:]+:/.*", positional[0]) is not None
    if kind in ("nfs", "nfs4") or (kind is None and nfs_source):
        if node is None:
            node = Node("mount")
        if other:
            raise unsupported(f"mount option {other[0]} with NFS", "`mount -t nfs|nfs4 [-o OPTS] HOST:/PATH DIR`")
        return mount_nfs(node, kind or "nfs", opts, positional)
    root = os.environ.get("BATCHAI_ROOTFS")
    simulated = False
    if root and positional:
        source = Path(os.path.abspath(positional[0]))
        devices = Path(root).resolve() / "dev"
        simulated = devices in source.parents
    if not simulated:
        if node is not None:
            node.log({"argv": redact(args), "ok": True, "result": f"ran {REAL_MOUNT}"})
        os.execv(REAL_MOUNT, [REAL_MOUNT, *args])
    if node is None:
        node = Node("mount")
    form = "`mount [-t ext4] [-o OPTS] DEV DIR` for a simulated device"
    if other or len(positional) != 2:
        raise unsupported(f"mount {' '.join(args)}", form)
    if kind not in (None, "ext4", "auto"):
        raise Fail(f"type {kind} for a simulated device (its file systems are ext4)", code=32, real=f"mount: {positional[1]}: wrong fs type, bad option, bad superblock on {positional[0]}, missing codepage or helper program, or other error.")
    try:
        options(",".join(opts), EXT4_FLAGS, EXT4_VALUES, "an ext4 mount")
    except Fail as error:
        raise Fail(error.message, code=32, real=f"mount: {positional[1]}: wrong fs type, bad option, bad superblock on {positional[0]}, missing codepage or helper program, or other error.") from None
    return mount_local(node, opts, positional[0], positional[1])


def mount_local(node: Node, opts: list[str], source: str, target: str) -> str:
    path = node.host_path(source, "the device")
    directory = node.host_path(target, "the mount point")
    device = node.node_path(Path(os.path.realpath(path))) if Path(os.path.realpath(path)).is_relative_to(node.rootfs) else node.node_path(path)
    where = node.node_path(directory)
    if not directory.is_dir():
        raise Fail(f"{where} does not exist", code=32, real=f"mount: {where}: mount point does not exist.")
    with node.state() as state:
        fs = next((f for f in state["fileSystems"] if f["device"] == device), None)
        if fs is None:
            raise Fail(f"{device} has no file system (mkfs.ext4 made none on it)", code=32, real=f"mount: {where}: wrong fs type, bad option, bad superblock on {device}, missing codepage or helper program, or other error.")
        if any(m["target"] == where for m in state["localMounts"]):
            raise Fail(f"{where} is mounted already", code=32, real=f"mount: {where}: {device} already mounted on {where}.")
        state["localMounts"].append({"device": device, "target": where, "type": "ext4", "options": opts, "label": fs["label"], "time": time.time()})
    return f"mounted {device} on {where} (recorded: the data lives in {where}, a directory of the VM's root)"


def nfs_failure(reason: str, real: str) -> Fail:
    """What mount.nfs says (exit 32), and the simulator's reason."""
    return Fail(reason, code=32, real=f"mount.nfs: {real}")


def client_covers(spec: str, address: str) -> bool:
    if spec == "*":
        return True
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(spec, strict=False)
    except ValueError:
        return False


def nfs_server(node: Node, host: str) -> tuple[Path, dict]:
    """The running VM at `host` whose NFS service answers, and its state."""
    for candidate in sorted(node.vms.iterdir()):
        info = read_json(candidate / "node.json")
        boot = read_json(candidate / "boot.json") or {}
        if info and info.get("address") == host and boot.get("state") not in ("killed", "failed") and (candidate / "rootfs").is_dir():
            server = read_state(candidate)
            if not (server.get("nfsService") or {}).get("active"):
                raise nfs_failure(f"the NFS service of {candidate.name} is not running (`systemctl enable --now nfs-kernel-server` starts it)", "Connection refused")
            return candidate, server
    raise nfs_failure(f"no running VM has the address {host}", "No route to host")


def mount_nfs(node: Node, kind: str, opts: list[str], positional: list[str]) -> str:
    form = "`mount -t nfs|nfs4 [-o OPTS] HOST:/PATH DIR`"
    if len(positional) != 2:
        raise unsupported(f"mount -t {kind} with {len(positional)} arguments", form)
    source, target = positional
    tool = f"mount.{kind}"
    try:
        options(",".join(opts), NFS_FLAGS, NFS_VALUES, tool)
    except Fail as error:
        raise Fail(error.message, code=32, real=f"{tool}: an incorrect mount option was specified") from None
    for option in opts:
        key, _, value = option.partition("=")
        if key in ("vers", "nfsvers") and value not in NFS_VERSIONS:
            raise Fail(f"NFS version {value} (the simulator serves {', '.join(sorted(NFS_VERSIONS))})", code=32, real=f"{tool}: Protocol not supported")
    match = re.fullmatch(r"([^/:]+):(/.*)", source)
    if match is None:
        raise unsupported(f"the NFS source {source!r}", "HOST:/PATH")
    host, export = match.group(1), os.path.normpath(match.group(2))
    directory = node.host_path(target, "the mount point")
    where = node.node_path(directory)
    if not directory.is_dir():
        raise Fail(f"{where} does not exist", code=32, real=f"mount.nfs: mount point {target} does not exist")
    here = os.readlink("/proc/self/ns/mnt")
    host_ns = node.info.get("hostMountNamespace")
    if not host_ns or here == host_ns:
        raise Fail(f"this node runs in the simulator's own mount namespace ({here}), where a bind mount would change the host: NFS mounts need the simulator's network namespaces (root and `ip netns`)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise Fail(f"the simulator resolves no host names: name the server by its private address, not {host!r}", code=32, real=f"mount.nfs: Failed to resolve server {host}: Name or service not known") from None
    # A foreground mount.nfs tries a server that does not answer again for `retry` minutes
    # (nfs(5): 2 by default), so a node that boots while its file server still builds its
    # array waits for it; a server that answers and refuses does not get another try.
    minutes = 2.0
    for option in opts:
        if option.startswith("retry="):
            try:
                minutes = max(0.0, float(option.split("=", 1)[1]))
            except ValueError:
                raise Fail(f"retry={option.split('=', 1)[1]} is not a number of minutes", code=32, real="mount.nfs: an incorrect mount option was specified") from None
    deadline = time.time() + minutes * 60
    tries = 0
    while True:
        tries += 1
        try:
            server_dir, server = nfs_server(node, host)
            break
        except Fail:
            if time.time() >= deadline:
                raise
            time.sleep(1)
    exports = server.get("exports") or []
    best = None
    for entry in exports:
        path = entry["path"]
        if export == path or export.startswith(path.rstrip("/") + "/"):
            if best is None or len(path) > len(best["path"]):
                best = entry
    denied = f"access denied by server while mounting {source}"
    if best is None:
        shown = ", ".join(e["path"] for e in exports) or "nothing"
        raise nfs_failure(f"{server_dir.name} exports no directory covering {export} (its last exportfs exported {shown})", denied)
    client = next((c for c in best["clients"] if client_covers(c["spec"], node.address)), None)
    if client is None:
        specs = " ".join(c["spec"] for c in best["clients"])
        raise nfs_failure(f"{server_dir.name} exports {best['path']} to {specs}, which does not cover this node's address {node.address}", denied)
    served = (server_dir / "rootfs" / export.lstrip("/")).resolve()
    if not served.is_dir():
        raise nfs_failure(f"{export} is not a directory on {server_dir.name}", f"mounting {source} failed, reason given by server: No such file or directory")
    read_only = "ro" in opts or "ro" in client["options"]
    proc = run_mount(["--bind", str(served), str(directory)])
    if proc != 0:
        raise Fail(f"{REAL_MOUNT} --bind {served} {directory} failed ({proc})", code=32)
    if read_only:
        proc = run_mount(["-o", "remount,bind,ro", str(directory)])
        if proc != 0:
            raise Fail(f"{REAL_MOUNT} -o remount,bind,ro {directory} failed ({proc})", code=32)
    with node.state() as state:
        state["nfsMounts"].append({
            "source": source, "target": where, "hostTarget": str(directory), "type": kind, "options": opts,
            "server": server_dir.name, "serverPath": str(served), "readOnly": read_only, "time": time.time(),
            "tries": tries,
        })
    return f"bind-mounted {server_dir.name}:{export} ({served}) on {where}" + (" read-only" if read_only else "")


def run_mount(args: list[str]) -> int:
    import subprocess

    return subprocess.run([REAL_MOUNT, *args]).returncode


# --- Azure Storage: mount -t cifs and blobfuse2 ------------------------------------------------

# mount.cifs(8) options the simulated Azure Files mount takes.
CIFS_FLAGS = {
    "rw", "ro", "serverino", "noserverino", "nosharesock", "sharesock", "mfsymlinks", "nomfsymlinks",
    "nobrl", "brl", "noperm", "perm", "_netdev", "nofail", "defaults", "seal", "hard", "soft", "nounix",
    "noacl", "forceuid", "noforceuid", "forcegid", "noforcegid", "auto", "noauto", "exec", "noexec",
    "suid", "nosuid", "dev", "nodev", "atime", "noatime", "relatime", "nostrictsync", "cifsacl",
}
CIFS_VALUES = {
    "vers", "credentials", "cred", "username", "user", "password", "pass", "domain", "dom", "dir_mode",
    "file_mode", "uid", "gid", "sec", "cache", "actimeo", "acregmax", "acdirmax", "echo_interval",
    "port", "rsize", "wsize", "iocharset", "closetimeo", "x-systemd.automount", "x-systemd.mount-timeout",
}
CIFS_VERSIONS = {"2.1", "3", "3.0", "3.02", "3.1.1", "default"}
CIFS_SEC = {"ntlmssp", "ntlmsspi", "ntlmv2", "ntlmv2i"}
CIFS_CACHE = {"strict", "none", "loose"}
CIFS_SEE = "Refer to the mount.cifs(8) manual page (e.g. man mount.cifs) and kernel log messages (dmesg)"
# blobfuse2: its pipeline's components, the keys of its configuration it is given here, the flags
# of `blobfuse2 mount` and the FUSE options of `-o`.
BLOBFUSE_COMPONENTS = {"libfuse", "file_cache", "block_cache", "attr_cache", "stream", "azstorage"}
BLOBFUSE_TOP = {
    "allow-other", "read-only", "nonempty", "foreground", "disable-version-check", "logging", "components",
    "libfuse", "file_cache", "block_cache", "attr_cache", "stream", "azstorage", "health_monitor",
}
AZSTORAGE_KEYS = {
    "type", "account-name", "container", "endpoint", "mode", "account-key", "appid", "resid", "objid",
    "use-http", "max-retries", "max-retry-timeout-sec", "retry-backoff-sec", "max-concurrency",
    "block-size-mb", "subdirectory", "virtual-directory", "update-md5", "validate-md5",
}
BLOBFUSE_BOOL_FLAGS = {"read-only", "allow-other", "foreground", "disable-version-check", "nonempty", "virtual-directory"}
BLOBFUSE_VALUE_FLAGS = {"config-file", "container-name", "log-level", "tmp-path", "file-cache-timeout", "attr-timeout", "entry-timeout", "negative-timeout"}
FUSE_FLAGS = {"allow_other", "allow_root", "ro", "rw", "default_permissions", "nonempty", "direct_io", "kernel_cache", "auto_cache", "noatime"}
FUSE_VALUES = {"attr_timeout", "entry_timeout", "negative_timeout", "umask", "uid", "gid", "max_read", "max_write", "fsname", "subtype"}
BLOBFUSE_PIPELINE = "Error: failed to initialize new pipeline [failed to authenticate credentials for azstorage]"
# The built-in roles that give data access to blobs (role definition GUIDs) -> (name, read-only).
BLOB_DATA_ROLES = {
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": ("Storage Blob Data Contributor", False),
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": ("Storage Blob Data Owner", False),
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": ("Storage Blob Data Reader", True),
}
STORAGE_API_VERSION = "2025-11-05"


def storage_record(node: Node) -> dict:
    """``<state>/storage.json``: the accounts (keys, blob endpoint, ARM ID), role assignments and
    CA the simulator publishes for these stand-ins."""
    path = node.vms.parent / "storage.json"
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("accounts"), dict):
        raise Fail(f"{path} (the simulator's record of its storage accounts) is missing or unreadable")
    return record


def own_mount_namespace(node: Node) -> None:
    """Fail unless this runs in a node's own mount namespace, where a bind mount stays private."""
    here = os.readlink("/proc/self/ns/mnt")
    host_ns = node.info.get("hostMountNamespace")
    if not host_ns or here == host_ns:
        raise Fail(f"this node runs in the simulator's own mount namespace ({here}), where a bind mount would change the host: storage mounts need the simulator's network namespaces (root and `ip netns`)")


def bind(source: Path, directory: Path, read_only: bool) -> None:
    """The real `mount --bind` (and a read-only remount)."""
    if run_mount(["--bind", str(source), str(directory)]) != 0:
        raise Fail(f"{REAL_MOUNT} --bind {source} {directory} failed", code=32)
    if read_only and run_mount(["-o", "remount,bind,ro", str(directory)]) != 0:
        raise Fail(f"{REAL_MOUNT} -o remount,bind,ro {directory} failed", code=32)


def mounted_here(directory: Path) -> bool:
    """Whether `directory` is a mount point in this process's mount namespace."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    points = {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in lines if len(line.split()) > 4}
    return str(directory) in points


def shown(node: Node, given: str) -> str:
    """A file the command named, as the node sees it (as given when it is not under the root)."""
    path = Path(os.path.abspath(given))
    return node.node_path(path) if path == node.rootfs or node.rootfs in path.parents else given


def private_file(node: Node, given: str, what: str, real_missing: str, code: int) -> str:
    """The text of a file holding a secret, which the provider promises to make 0600."""
    path = Path(os.path.abspath(given))
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text()
    except FileNotFoundError:
        raise Fail(f"{what} {shown(node, given)} does not exist", code=code, real=real_missing) from None
    except (OSError, UnicodeDecodeError) as error:
        raise Fail(f"{what} {shown(node, given)} is unreadable: {type(error).__name__}", code=code, real=real_missing) from None
    if mode != 0o600:
        raise Fail(f"{what} {shown(node, given)} has mode {mode:04o}: the provider writes it 0600 (readable by root only), and the simulator holds it to that")
    return text


def cifs_failure(reason: str, errno: int, text: str) -> Fail:
    """What mount.cifs says for a failed mount (exit 32), and the simulator's reason."""
    return Fail(reason, code=32, real=f"mount error({errno}): {text}\n{CIFS_SEE}")


def mount_cifs(node: Node, kind: str, opts: list[str], positional: list[str], other: list[str]) -> str:
    form = "`mount -t cifs //ACCOUNT.file.core.windows.net/SHARE[/DIR] DIR -o vers=3.1.1,credentials=FILE[,OPTIONS]`"
    if other:
        raise unsupported(f"mount option {other[0]} with cifs", form)
    if len(positional) != 2:
        raise unsupported(f"mount -t {kind} with {len(positional)} arguments", form)
    source, target = positional
    values: dict[str, str] = {}
    for option in opts:
        key, eq, value = option.partition("=")
        if (eq and key not in CIFS_VALUES) or (not eq and key not in CIFS_FLAGS):
            raise Fail(f"option {key + ('=...' if eq else '')!r} is not one the simulated mount.cifs takes (it takes {', '.join(sorted(CIFS_FLAGS | {v + '=' for v in CIFS_VALUES}))})")
        values[{"cred": "credentials", "user": "username", "pass": "password", "dom": "domain"}.get(key, key)] = value
    if "vers" in values and values["vers"] not in CIFS_VERSIONS:
        raise cifs_failure(f"SMB version {values['vers']} (Azure Files speaks {', '.join(sorted(CIFS_VERSIONS - {'default'}))})", 95, "Operation not supported")
    if "sec" in values and values["sec"] not in CIFS_SEC:
        raise unsupported(f"sec={values['sec']}", f"sec={'|'.join(sorted(CIFS_SEC))} (the account key over NTLMSSP)")
    if "cache" in values and values["cache"] not in CIFS_CACHE:
        raise Fail(f"cache={values['cache']} is not one mount.cifs takes ({', '.join(sorted(CIFS_CACHE))})", code=32, real=f"mount error(22): Invalid argument\n{CIFS_SEE}")
    for key in ("dir_mode", "file_mode"):
        if key in values and not re.fullmatch(r"0?[0-7]{3,4}", values[key]):
            raise Fail(f"{key}={values[key]} is not an octal mode", code=32, real=f"mount error(22): Invalid argument\n{CIFS_SEE}")
    for key in ("uid", "gid"):
        if key in values and not values[key].isdigit():
            raise unsupported(f"{key}={values[key]}", f"a numeric {key}")
    match = re.fullmatch(r"//([^/]+)/([^/]+)((?:/[^/]+)*)/?", source)
    if match is None:
        raise Fail(f"the source {source!r} is not //HOST/SHARE[/DIR]", code=32, real="mount.cifs: bad UNC (" + source + ")")
    host, share, subdir = match.group(1), match.group(2), match.group(3)
    directory = node.host_path(target, "the mount point")
    where = node.node_path(directory)
    if not directory.is_dir():
        raise Fail(f"{where} does not exist", code=32, real=f"mount error: mount point {target} does not exist")
    # The credentials: a file (as the provider writes it) and, or, options on the command line.
    file_values: dict[str, str] = {}
    if "credentials" in values:
        text = private_file(node, values["credentials"], "the credentials file", f"error 2 (No such file or directory) opening credential file {values['credentials']}", 32)
        for line in text.splitlines():
            key, eq, value = line.strip().partition("=")
            if eq:
                file_values[{"user": "username", "pass": "password", "dom": "domain"}.get(key.strip(), key.strip())] = value.rstrip("\n")
    username = values.get("username", file_values.get("username"))
    password = values.get("password", file_values.get("password"))
    mode = "inline" if "password" in values else "key"
    record = storage_record(node)
    accounts = record["accounts"]
    host_match = re.fullmatch(r"([a-z0-9]{3,24})\.file\.[A-Za-z0-9.-]+", host)
    account = host_match.group(1) if host_match else None
    if account not in accounts:
        raise Fail(f"{host} is not <account>.file.<suffix> for a storage account the simulator serves ({', '.join(sorted(accounts))})", code=32, real=f"mount error: could not resolve address for {host}: Unknown error")
    if username is None or password is None:
        missing = "username" if username is None else "password"
        raise cifs_failure(f"no {missing} (neither credentials={values.get('credentials', '...')} nor the options give one; mount.cifs would ask, and a node's stdin is no terminal)", 13, "Permission denied")
    if username != account:
        raise cifs_failure(f"the user name {username!r} is not the storage account's name {account!r} (Azure Files takes the account name and key)", 13, "Permission denied")
    if password not in accounts[account].get("keys", []):
        raise cifs_failure(f"the password is not a key of the storage account {account} ({'given with password=' if mode == 'inline' else 'from the credentials file'})", 13, "Permission denied")
    share_dir = node.vms.parent / "fileshares" / account / share
    if not share_dir.is_dir():
        raise cifs_failure(f"the storage account {account} has no file share {share!r} (POST /_sim/fileshares makes one)", 2, "No such file or directory")
    served = share_dir / subdir.lstrip("/") if subdir else share_dir
    if not served.is_dir():
        raise cifs_failure(f"the file share {account}/{share} has no directory {subdir}", 2, "No such file or directory")
    if mounted_here(directory):
        raise cifs_failure(f"{where} is a mount point already", 16, "Device or resource busy")
    own_mount_namespace(node)
    read_only = "ro" in opts
    bind(served, directory, read_only)
    shown_opts = [re.sub(r"^(password|pass)=.*", r"\1=***", o) for o in opts]
    with node.state() as state:
        state["storageMounts"].append({
            "type": "cifs", "source": source, "account": account, "share": share, "directory": subdir or None,
            "target": where, "hostTarget": str(directory), "backing": str(served), "mode": mode,
            "readOnly": read_only, "options": shown_opts, "version": values.get("vers", "default"),
            "credentialsFile": shown(node, values["credentials"]) if "credentials" in values else None,
            "time": time.time(),
        })
    return f"bind-mounted the file share {account}/{share}{subdir} ({served}) on {where}" + (" read-only" if read_only else "") + f" (account key {'given inline' if mode == 'inline' else 'from the credentials file'})"


def imds_token(node: Node, client_id: str | None) -> tuple[dict | None, str]:
    """The claims of the token IMDS gives this node for Azure Storage (as blobfuse2's msi mode
    asks it), or None and why not."""
    import base64
    import urllib.error
    import urllib.parse
    import urllib.request

    base = os.environ.get("BATCHAI_IMDS_ENDPOINT")
    if not base:
        if not node.info.get("namespace"):
            return None, "this node has no IMDS (no namespace and no BATCHAI_IMDS_ENDPOINT)"
        base = "http://169.254.169.254"
    query = {"api-version": "2018-02-01", "resource": "https://storage.azure.com/"}
    if client_id:
        query["client_id"] = client_id
    request = urllib.request.Request(f"{base.rstrip('/')}/metadata/identity/oauth2/token?{urllib.parse.urlencode(query)}", headers={"Metadata": "true"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=15) as response:
            token = json.loads(response.read())["access_token"]
    except urllib.error.HTTPError as error:
        return None, f"IMDS refused a token for client_id {client_id}: {error.code} {error.read()[:200].decode(errors='replace')}"
    except (OSError, ValueError, KeyError) as error:
        return None, f"IMDS gave no token: {error}"
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))), ""
    except (IndexError, ValueError) as error:
        return None, f"IMDS gave a token that is no JWT: {error}"


def container_status(record: dict, account: str, container: str) -> tuple[int, str]:
    """Lists the container in Azurite (Shared Key, as the simulator): (HTTP status, error code)."""
    import base64
    import email.utils
    import hashlib
    import hmac
    import ssl
    import urllib.error
    import urllib.parse
    import urllib.request

    info = record["accounts"][account]
    url = f"{info['blobEndpoint'].rstrip('/')}/{urllib.parse.quote(container)}?restype=container&comp=list&maxresults=1"
    date = email.utils.formatdate(usegmt=True)
    path = urllib.parse.urlsplit(url).path
    to_sign = "GET\n" + "\n" * 11 + f"x-ms-date:{date}\nx-ms-version:{STORAGE_API_VERSION}\n" + f"/{account}{path}\ncomp:list\nmaxresults:1\nrestype:container"
    signature = base64.b64encode(hmac.new(base64.b64decode(info["keys"][0]), to_sign.encode(), hashlib.sha256).digest()).decode()
    request = urllib.request.Request(url, headers={"x-ms-date": date, "x-ms-version": STORAGE_API_VERSION, "Authorization": f"SharedKey {account}:{signature}"})
    context = ssl.create_default_context(cafile=record.get("caPath")) if record.get("caPath") else ssl.create_default_context()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("x-ms-error-code") or ""
    except OSError as error:
        return 0, f"{type(error).__name__}: {error}"


def blobfuse_args(args: list[str]) -> tuple[str, str, list[str], dict[str, str]]:
    """(target, config file, -o options, --flags) of `blobfuse2 mount TARGET --config-file=F ...`."""
    form = "`blobfuse2 mount DIR --config-file=FILE [-o OPTS] [--read-only] [--FLAG=VALUE]`"
    if not args or args[0] != "mount":
        what = f"blobfuse2 {args[0]}" if args else "blobfuse2 without a command"
        raise unsupported(what, form + " (unmount with `umount DIR`)")
    rest = args[1:]
    positional: list[str] = []
    fuse: list[str] = []
    flags: dict[str, str] = {}
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "-o" or (arg.startswith("-o") and len(arg) > 2):
            value = arg[2:] if len(arg) > 2 else (rest[i + 1] if i + 1 < len(rest) else None)
            if value is None:
                raise Fail("-o needs a value", real="Error: flag needs an argument: 'o' in -o")
            i += 1 if len(arg) > 2 else 2
            fuse.extend(options(value, FUSE_FLAGS, FUSE_VALUES, "blobfuse2 -o"))
            continue
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            if name in BLOBFUSE_BOOL_FLAGS:
                if eq and value not in ("true", "false"):
                    raise Fail(f"--{name}={value} is not a boolean", real=f'Error: invalid argument "{value}" for "--{name}" flag')
                flags[name] = value if eq else "true"
                i += 1
                continue
            if name in BLOBFUSE_VALUE_FLAGS:
                if not eq:
                    if i + 1 >= len(rest):
                        raise Fail(f"--{name} needs a value", real=f"Error: flag needs an argument: --{name}")
                    value = rest[i + 1]
                    i += 1
                flags[name] = value
                i += 1
                continue
            raise Fail(f"flag --{name}: not simulated (the simulator supports --{', --'.join(sorted(BLOBFUSE_BOOL_FLAGS | BLOBFUSE_VALUE_FLAGS))} and -o OPTS)", real=f"Error: unknown flag: --{name}")
        if arg.startswith("-"):
            raise Fail(f"flag {arg}: not simulated (the simulator supports {form})", real=f"Error: unknown shorthand flag: '{arg[1:2]}' in {arg}")
        positional.append(arg)
        i += 1
    if len(positional) != 1:
        raise unsupported(f"blobfuse2 mount with {len(positional)} paths", form)
    if "config-file" not in flags:
        raise unsupported("blobfuse2 mount without --config-file", form)
    return positional[0], flags.pop("config-file"), fuse, flags


def yaml_config(text: str, shown_path: str) -> dict:
    """blobfuse2's configuration, parsed with PyYAML (the simulator's environment has it); a
    parse error names the line only, never the text (it holds the key)."""
    import yaml

    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise Fail(f"{shown_path} is not YAML{where}", real=f"Error: invalid config file [{shown_path}: yaml: line {mark.line + 1 if mark else 0}: syntax error]") from None
    if not isinstance(config, dict):
        raise Fail(f"{shown_path} is not a YAML mapping", real=f"Error: invalid config file [{shown_path}]")
    return config


def pipeline_error(reason: str, code: int = 1) -> Fail:
    return Fail(reason, code=code, real=BLOBFUSE_PIPELINE)


def blobfuse2(node: Node, args: list[str]) -> str:
    target, config_file, fuse, flags = blobfuse_args(args)
    directory = node.host_path(target, "the mount directory")
    where = node.node_path(directory)
    if not directory.is_dir():
        raise Fail(f"{where} does not exist", real="Error: invalid mount path [mount directory does not exist]")
    if mounted_here(directory):
        raise Fail(f"{where} is a mount point already", real="Error: directory is already mounted")
    config_shown = shown(node, config_file)
    text = private_file(node, config_file, "the configuration file", f"Error: invalid config file [open {config_file}: no such file or directory]", 1)
    config = yaml_config(text, config_shown)
    unknown = sorted(set(config) - BLOBFUSE_TOP)
    if unknown:
        raise unsupported(f"configuration keys {unknown}", f"the keys {', '.join(sorted(BLOBFUSE_TOP))}")
    components = config.get("components")
    if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
        raise Fail("components is not a list of names", real="Error: failed to initialize new pipeline [no components in config]")
    for component in components:
        if component not in BLOBFUSE_COMPONENTS:
            raise Fail(f"component {component!r} (blobfuse2's are {', '.join(sorted(BLOBFUSE_COMPONENTS))})", real=f"Error: failed to initialize new pipeline [component {component} is not registered]")
    if not components or components[0] != "libfuse" or components[-1] != "azstorage":
        raise Fail(f"components {components}: a pipeline runs from libfuse (first) to azstorage (last)", real="Error: failed to initialize new pipeline [pipeline must start with libfuse and end with azstorage]")
    if "file_cache" in components and not isinstance((config.get("file_cache") or {}).get("path"), str):
        raise Fail("file_cache has no path", real="Error: failed to initialize new pipeline [config error in file_cache [tmp-path not set]]")
    az = config.get("azstorage")
    if not isinstance(az, dict):
        raise Fail("no azstorage section", real="Error: failed to initialize new pipeline [config error in azstorage [account name not provided]]")
    unknown = sorted(set(az) - AZSTORAGE_KEYS)
    if unknown:
        raise unsupported(f"azstorage keys {unknown}", f"the keys {', '.join(sorted(AZSTORAGE_KEYS))}")
    if az.get("type", "block") != "block":
        raise unsupported(f"azstorage type {az.get('type')!r}", "type: block (a blob container, not ADLS)")
    account = az.get("account-name")
    container = flags.get("container-name") or az.get("container")
    endpoint = az.get("endpoint")
    mode = az.get("mode", "key")
    if not isinstance(account, str) or not account:
        raise Fail("azstorage has no account-name", real="Error: failed to initialize new pipeline [config error in azstorage [account name not provided]]")
    if not isinstance(container, str) or not container:
        raise Fail("azstorage has no container", real="Error: failed to initialize new pipeline [config error in azstorage [container name not provided]]")
    if mode not in ("key", "msi"):
        raise unsupported(f"azstorage mode {mode!r}", "mode: key (with account-key) and mode: msi (with appid)")
    record = storage_record(node)
    accounts = record["accounts"]
    if account not in accounts:
        raise pipeline_error(f"the storage account {account!r} is not one the simulator serves ({', '.join(sorted(accounts))})")
    info = accounts[account]
    expected = info["blobEndpoint"]
    if not isinstance(endpoint, str) or endpoint.rstrip("/") != expected.rstrip("/"):
        raise pipeline_error(f"endpoint {endpoint!r} is not the blob endpoint of {account} ({expected}, its primaryEndpoints.blob)")
    read_only = flags.get("read-only") == "true" or config.get("read-only") is True or "ro" in fuse
    identity = role = None
    if mode == "key":
        if az.get("account-key") not in info.get("keys", []):
            raise pipeline_error(f"account-key is {'missing' if not az.get('account-key') else 'not a key of the storage account ' + account}")
    else:
        appid = az.get("appid")
        if appid is not None and not isinstance(appid, str):
            raise pipeline_error("appid is not a string")
        claims, why = imds_token(node, appid)
        if claims is None:
            raise pipeline_error(f"no managed identity token: {why}")
        identity = claims.get("appid") or appid
        principal = claims.get("oid")
        if not info.get("id"):
            raise pipeline_error(f"the storage account {account} was not created through ARM, so no role can be assigned on it")
        scope = f"{info['id']}/blobServices/default/containers/{container}".lower()
        grants = []
        for assignment in record.get("roleAssignments", []):
            if assignment.get("principalId") != principal:
                continue
            found = BLOB_DATA_ROLES.get(assignment.get("roleDefinitionId", "").rsplit("/", 1)[-1].lower())
            covered = assignment.get("scope", "").rstrip("/").lower()
            if found and (scope == covered or scope.startswith(covered + "/")):
                grants.append(found)
        if not grants:
            raise pipeline_error(f"the managed identity {identity} (principal {principal}) has no Storage Blob Data Contributor, Owner or Reader role assignment on the container {container} or a scope above it")
        writable = [name for name, ro in grants if not ro]
        role = writable[0] if writable else grants[0][0]
        read_only = read_only or not writable
    status, why = container_status(record, account, container)
    if status != 200:
        detail = "does not exist" if status == 404 else f"could not be listed ({status or why} {why if status else ''})".rstrip()
        raise pipeline_error(f"the container {account}/{container} {detail} in Azurite")
    own_mount_namespace(node)
    backing = node.vms.parent / "blobfuse" / account / container
    backing.mkdir(parents=True, exist_ok=True)
    backing.chmod(0o777)
    bind(backing, directory, read_only)
    with node.state() as state:
        state["storageMounts"].append({
            "type": "blobfuse2", "account": account, "container": container, "target": where,
            "hostTarget": str(directory), "backing": str(backing), "mode": mode, "identity": identity,
            "role": role, "readOnly": read_only, "options": fuse, "flags": flags, "configFile": config_shown,
            "cache": (config.get("file_cache") or {}).get("path"), "time": time.time(),
        })
    return f"bind-mounted {backing} for the container {account}/{container} on {where}" + (" read-only" if read_only else "") + f" ({'the account key' if mode == 'key' else f'the managed identity {identity}, {role}'}; data does not reach Azurite)"


# --- exportfs --------------------------------------------------------------------------------


def exports_lines(text: str) -> Iterator[tuple[int, str]]:
    """Logical lines of /etc/exports (comments gone, backslash continuations joined)."""
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0]
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip():
            yield start, line
    if pending.strip():
        yield start, pending


def parse_exports(node: Node, text: str) -> list[dict]:
    """exports(5), the part the simulator serves: `PATH CLIENT(OPTIONS) ...` with clients named
    by address, network or `*`. Fail on anything else, naming the line."""
    table: dict[str, dict] = {}
    for number, line in exports_lines(text):
        where = f"/etc/exports:{number}"
        try:
            tokens = shlex.split(line)
        except ValueError as error:
            raise Fail(f"{where}: {error}", real=f"exportfs: {where}: syntax error") from None
        path, clients = tokens[0], tokens[1:]
        if not path.startswith("/"):
            raise Fail(f"{where}: the path {path!r} is not absolute", real=f"exportfs: {where}: bad path")
        if not clients:
            raise Fail(f"{where}: {path} names no client (exportfs would export it to the world, with a warning): write CLIENT(OPTIONS)")
        entry = table.setdefault(os.path.normpath(path), {"path": os.path.normpath(path), "clients": []})
        for token in clients:
            match = re.fullmatch(r"([^()\s]*)(?:\(([^()]*)\))?", token)
            if match is None:
                raise Fail(f"{where}: cannot parse {token!r}", real=f"exportfs: {where}: syntax error")
            spec, opts = match.group(1), match.group(2)
            if not spec:
                raise Fail(f"{where}: {token!r} has no client before its options (a space before '(' exports to every host)")
            if spec.startswith("-"):
                raise unsupported(f"{where}: default options {spec!r}", "CLIENT(OPTIONS) entries")
            if spec != "*":
                try:
                    ipaddress.ip_network(spec, strict=False)
                except ValueError:
                    raise Fail(f"{where}: client {spec!r}: the simulator matches clients by address only (*, an address, or ADDRESS/PREFIX)") from None
            try:
                parsed = options(opts or "", EXPORT_FLAGS, EXPORT_VALUES, "exportfs")
            except Fail as error:
                bad = error.message.split("'")[1] if "'" in error.message else opts
                raise Fail(f"{where}: {error.message}", real=f'exportfs: {where}: unknown keyword "{bad}"') from None
            entry["clients"].append({"spec": spec, "options": parsed})
    for entry in table.values():
        directory = node.rootfs / entry["path"].lstrip("/")
        if not directory.is_dir():
            raise Fail(f"{entry['path']} is not a directory on this node", real=f"exportfs: Failed to stat {entry['path']}: No such file or directory")
    return list(table.values())


def exportfs(node: Node, args: list[str]) -> str:
    opts, rest = parse(args, "arv", [], "exportfs")
    flags = {o for o, _ in opts}
    if rest or not flags & {"-a", "-r"}:
        raise unsupported(f"exportfs {' '.join(args)}", "`exportfs -ra` (or -a, -r, with -v)")
    with node.state() as state:
        if NFS_PACKAGE not in state["packages"]:
            raise Fail(f"exportfs comes with the package {NFS_PACKAGE}, which apt-get has not installed on this node", code=127, real="sh: exportfs: not found")
        path = node.rootfs / "etc/exports"
        text = path.read_text() if path.exists() else ""
        table = parse_exports(node, text)
        for entry in table:
            entry["fileSystem"] = next((m["device"] for m in state["localMounts"] if m["target"] == entry["path"]), None)
        state["exports"] = table
        state["exportedAt"] = time.time()
    if "-v" in flags:
        for entry in table:
            for client in entry["clients"]:
                print(f"exporting {client['spec']}:{entry['path']}")
    return "exported " + (", ".join(f"{e['path']} to {' '.join(c['spec'] for c in e['clients'])}" for e in table) or "nothing")


# --- systemctl -------------------------------------------------------------------------------


def systemctl(node: Node, args: list[str]) -> str:
    supported = "`systemctl enable [--now] | start | restart nfs-kernel-server|nfs-server`"
    try:
        opts, rest = getopt.gnu_getopt(args, "q", ["now", "quiet", "no-block"])
    except getopt.GetoptError as error:
        raise Fail(f"{error}: the simulator runs no systemd; it stands in for {supported} only") from None
    now = any(o == "--now" for o, _ in opts)
    if not rest or rest[0] not in ("enable", "start", "restart") or (now and rest[0] != "enable"):
        raise Fail(f"`systemctl {' '.join(args)}`: the simulator runs no systemd; it stands in for {supported} only")
    verb, units = rest[0], rest[1:]
    if not units:
        raise Fail(f"systemctl {verb} names no unit", real="Too few arguments.")
    for unit in units:
        if unit.removesuffix(".service") not in NFS_UNITS:
            raise Fail(f"unit {unit}: the simulator runs no systemd; it stands in for {supported} only")
    with node.state() as state:
        if NFS_PACKAGE not in state["packages"]:
            unit = units[0] if units[0].endswith(".service") else units[0] + ".service"
            raise Fail(f"{unit} comes with the package {NFS_PACKAGE}, which apt-get has not installed on this node", real=f"Failed to {verb} unit: Unit file {unit} does not exist." if verb == "enable" else f"Failed to {verb} {unit}: Unit {unit} not found.")
        service = dict(state["nfsService"] or {"enabled": False, "active": False})
        service["unit"] = units[-1].removesuffix(".service")
        if verb == "enable":
            service["enabled"] = True
            service["active"] = service["active"] or now
        else:
            service["active"] = True
        if service["active"] and (verb == "restart" or not service.get("since")):
            service["since"] = time.time()
        state["nfsService"] = service
    return f"{verb} {' '.join(units)}: " + ("running" if service["active"] else "enabled, not running")


# --- entry -----------------------------------------------------------------------------------


HANDLERS = {"apt-get": apt_get, "mdadm": mdadm, "mkfs.ext4": mkfs_ext4, "exportfs": exportfs, "systemctl": systemctl, "blobfuse2": blobfuse2}


def redact(args: list[str]) -> list[str]:
    """A command line as it may be logged: the value of every password option as ***."""
    return [re.sub(r"(?<![^,=\s])(password|pass)=[^,]*", r"\1=***", arg) for arg in args]


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in TOOLS:
        print(f"batchai-sim: usage: nodetools.py {{{'|'.join(TOOLS)}}} ARGS...", file=sys.stderr)
        return 2
    tool, args = argv[1], argv[2:]
    node: Node | None = None
    try:
        if tool == "mount":
            # Other mounts go to the real mount unchanged, on a node or off it.
            node = Node(tool) if os.environ.get("BATCHAI_ROOTFS") else None
            result = mount(node, args)
        else:
            node = Node(tool)
            result = HANDLERS[tool](node, args)
    except Fail as error:
        if error.real:
            print(error.real, file=sys.stderr)
        print(f"batchai-sim {tool}: {error.message}", file=sys.stderr)
        if node is not None:
            node.log({"argv": redact(args), "ok": False, "exitCode": error.code, "error": error.message, "real": error.real})
        return error.code
    node.log({"argv": redact(args), "ok": True, "result": result})
    return 0


def install(directory: Path, python: str | None = None) -> Path:
    """Writes the wrappers (one per tool, running this file with `python`, the simulator's own
    interpreter by default) into `directory`; returns it, for the front of a node's PATH."""
    directory.mkdir(parents=True, exist_ok=True)
    python = python or sys.executable
    for tool in TOOLS:
        path = directory / tool
        tmp = directory / f".{tool}.tmp"
        tmp.write_text(
            "#!/bin/sh\n"
            f"# The batchai simulator's stand-in for {tool} (batchai_sim/nodetools.py).\n"
            f"exec {shlex.quote(python)} -I {shlex.quote(str(Path(__file__).resolve()))} {tool} \"$@\"\n"
        )
        tmp.chmod(0o755)
        os.replace(tmp, path)
    return directory


if __name__ == "__main__":
    sys.exit(main(sys.argv))
