"""A file server's custom data runs on the tool stand-ins (RAID 0, ext4, /etc/exports, exportfs,
the NFS service), cluster nodes mount its export, and a wrong script fails."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from batchai_sim import nodetools

from .conftest import Sim, custom_data, unique, vmss_body, wait_for


def file_server_script(subnet: str, count: int = 2, disks: list[str] | None = None) -> str:
    """The script the provider's batchai_file_server emits (every path under $R)."""
    disks = disks or [f"$R/dev/disk/azure/scsi1/lun{i}" for i in range(count)]
    return f"""#!/bin/sh
set -eu
R="${{BATCHAI_ROOTFS:-}}"
COUNT={count}
SUBNET={subnet}
i=0
while [ $i -lt {count} ]; do
  n=0
  until [ -e "$R/dev/disk/azure/scsi1/lun$i" ]; do
    n=$((n + 1)); [ $n -lt 120 ] || {{ echo "no data disk lun$i" >&2; exit 1; }}; sleep 1
  done
  i=$((i + 1))
done
DISKS="{' '.join(disks)}"
if [ ! -e "$R/etc/batchai/fileserver.done" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q mdadm nfs-kernel-server
  if [ "$COUNT" -gt 1 ]; then
    mdadm --create "$R/dev/md0" --level=0 --raid-devices="$COUNT" --run $DISKS
    DEV="$R/dev/md0"
  else
    DEV="$DISKS"
  fi
  mkfs.ext4 -F -q -L batchai-data "$DEV"
  mkdir -p "$R/data" "$R/etc"
  echo "LABEL=batchai-data /data ext4 defaults,nofail 0 2" >> "$R/etc/fstab"
  mount "$DEV" "$R/data"
  chmod 0777 "$R/data"
  echo "/data $SUBNET(rw,sync,no_root_squash,no_subtree_check)" > "$R/etc/exports"
  mkdir -p "$R/etc/batchai" && touch "$R/etc/batchai/fileserver.done"
fi
exportfs -ra
systemctl enable --now nfs-kernel-server
"""


def file_server_data(script: str) -> str:
    return custom_data(
        [{"path": "/usr/local/lib/batchai/fileserver.sh", "content": script, "permissions": "0755"}],
        [["sh", "-c", 'exec sh "${BATCHAI_ROOTFS:-}/usr/local/lib/batchai/fileserver.sh"']],
    )


def vm_body(sim: Sim, name: str, data: str, disks: int = 2) -> dict:
    """A file server VM as the provider will send it: empty data disks, a NIC in the subnet."""
    return {
        "location": "westeurope",
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_D4s_v5"},
            "osProfile": {"computerName": name, "adminUsername": "batchai", "customData": data,
                          "linuxConfiguration": {"disablePasswordAuthentication": True, "ssh": {"publicKeys": [{"path": "/home/batchai/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAA"}]}}},
            "storageProfile": {
                "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
                "osDisk": {"createOption": "FromImage", "deleteOption": "Delete", "managedDisk": {"storageAccountType": "Premium_LRS"}},
                "dataDisks": [
                    {"lun": i, "createOption": "Empty", "diskSizeGB": 128, "deleteOption": "Delete", "managedDisk": {"storageAccountType": "Premium_LRS"}}
                    for i in range(disks)
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


def subnet_prefix(sim: Sim) -> str:
    """The subnet's address prefix as ARM says it (what the provider puts in /etc/exports)."""
    _, rg, vnet, subnet = [sim.subnet_id().split("/")[i] for i in (2, 4, 8, 10)]
    return sim.network().subnets.get(rg, vnet, subnet).address_prefix


def finished(sim: Sim, name: str) -> dict:
    """The node's view once its runcmd has ended."""
    return wait_for(f"{name}'s custom data to finish", lambda: (n := sim.nodes().get(name)) and n["boot"].get("state") in ("finished", "failed") and n, timeout=90)


def boot_log(node: dict) -> str:
    return (Path(node["dir"]) / "boot.log").read_text()


def needs_namespaces(sim: Sim) -> None:
    if sim.ready["network"]["mode"] != "namespaces":
        pytest.skip("NFS mounts need the simulator's network namespaces")


@pytest.fixture(scope="module")
def server(sim: Sim):
    """A file server VM (two data disks) whose custom data is the provider's script."""
    compute = sim.compute()
    name = unique("fs")
    compute.virtual_machines.begin_create_or_update(sim.rg, name, vm_body(sim, name, file_server_data(file_server_script(subnet_prefix(sim))))).result()
    node = finished(sim, name)
    yield node
    compute.virtual_machines.begin_delete(sim.rg, name).result()


def test_the_file_server_script_exports_data(sim: Sim, server: dict):
    assert server["boot"] == {"state": "finished", "exit_code": 0}, boot_log(server)
    assert server["packages"] == ["mdadm", "nfs-kernel-server"]
    assert server["arrays"][0]["device"] == "/dev/md0"
    assert server["arrays"][0]["devices"] == ["/dev/disk/azure/scsi1/lun0", "/dev/disk/azure/scsi1/lun1"]
    assert [(f["device"], f["label"]) for f in server["fileSystems"]] == [("/dev/md0", "batchai-data")]
    assert [(m["device"], m["target"]) for m in server["localMounts"]] == [("/dev/md0", "/data")]
    assert server["exports"] == [{
        "path": "/data",
        "clients": [{"spec": subnet_prefix(sim), "options": ["rw", "sync", "no_root_squash", "no_subtree_check"]}],
        "fileSystem": "/dev/md0",
    }]
    assert server["nfsService"]["active"] and server["nfsService"]["enabled"] and server["nfsService"]["unit"] == "nfs-kernel-server"
    data = Path(server["dir"]) / "rootfs/data"
    assert data.is_dir() and data.stat().st_mode & 0o777 == 0o777
    # what every stand-in did, one JSON line each
    tools = [json.loads(line)["tool"] for line in (Path(server["dir"]) / "tools.log").read_text().splitlines()]
    assert tools == ["apt-get", "apt-get", "mdadm", "mkfs.ext4", "mount", "exportfs", "systemctl"]


CLIENT = r"""
R="$BATCHAI_ROOTFS"
me="${{BATCHAI_SIM_VM##*/}}"
mkdir -p "$R/mnt/shared"
mount -t nfs -o rw,hard {address}:/data "$R/mnt/shared" 2>"$R/mount.err"; echo $? > "$R/mount.rc"
echo "written by $me" > "$R/mnt/shared/$me"
until [ "$(ls "$R/mnt/shared" | wc -l)" -ge 2 ]; do sleep 0.2; done
ls "$R/mnt/shared" > "$R/seen"
until [ -e "$R/go" ]; do sleep 0.2; done
umount "$R/mnt/shared"; echo $? > "$R/umount.rc"
ls -A "$R/mnt/shared" > "$R/after"
exec sleep 1000
"""


def test_instances_mount_the_export_share_files_and_unmount(sim: Sim, server: dict):
    needs_namespaces(sim)
    compute = sim.compute()
    name = unique("nfs")
    script = CLIENT.format(address=server["address"])
    compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, name, vmss_body(sim, capacity=2, data=custom_data(runcmd=[["sh", "-c", script]]))).result()
    try:
        nodes = sim.nodes()
        roots = [Path(nodes[f"{name}_{i}"]["dir"]) / "rootfs" for i in range(2)]
        for root in roots:
            wait_for("the node's listing of the share", lambda: (root / "seen").exists() and (root / "seen").read_text().split() == sorted([f"{name}_0", f"{name}_1"]), timeout=60)
            assert (root / "mount.rc").read_text().strip() == "0", (root / "mount.err").read_text()
        # each instance wrote into the server's /data, and saw the other's file
        data = Path(server["dir"]) / "rootfs/data"
        assert (data / f"{name}_0").read_text() == f"written by {name}_0\n"
        assert (data / f"{name}_1").read_text() == f"written by {name}_1\n"
        # not in the host's mount namespace: the node's mount point is an empty directory here
        assert list((roots[0] / "mnt/shared").iterdir()) == []
        nodes = sim.nodes()
        mounts = nodes[f"{name}_0"]["nfsMounts"]
        assert [(m["source"], m["target"], m["server"], m["options"], m["mounted"]) for m in mounts] == [
            (f"{server['address']}:/data", "/mnt/shared", server["name"], ["rw", "hard"], True)
        ]
        # the real umount ends the bind mount; the files stay on the server
        for root in roots:
            (root / "go").touch()
        for root in roots:
            wait_for("the unmount", lambda: (root / "after").exists(), timeout=30)
            assert (root / "umount.rc").read_text().strip() == "0"
            assert (root / "after").read_text() == ""
        assert sim.nodes()[f"{name}_1"]["nfsMounts"][0]["mounted"] is False
        assert sorted(p.name for p in data.iterdir()) == [f"{name}_0", f"{name}_1"]
    finally:
        compute.virtual_machine_scale_sets.begin_delete(sim.rg, name).result()
    # deleting the clients deletes their disks, not the server's files
    assert sorted(p.name for p in data.iterdir()) == [f"{name}_0", f"{name}_1"]


def test_mdadm_with_a_device_that_is_not_a_data_disk_fails_the_script(sim: Sim):
    compute = sim.compute()
    name = unique("fsbad")
    script = file_server_script(subnet_prefix(sim), disks=["$R/dev/disk/azure/scsi1/lun0", "$R/dev/sdz"])
    script = script.replace("if [ ! -e", 'touch "$R/dev/sdz"\nif [ ! -e', 1)
    compute.virtual_machines.begin_create_or_update(sim.rg, name, vm_body(sim, name, file_server_data(script))).result()
    try:
        node = finished(sim, name)
        assert node["boot"] == {"state": "finished", "exit_code": 1}
        log = boot_log(node)
        assert "batchai-sim mdadm: /dev/sdz is not a data disk of this VM" in log, log
        assert node["arrays"] == [] and node["exports"] is None and node["nfsService"] is None
    finally:
        compute.virtual_machines.begin_delete(sim.rg, name).result()


def test_a_client_outside_the_exports_network_is_denied(sim: Sim):
    needs_namespaces(sim)
    compute = sim.compute()
    name = unique("fsone")
    # exported to one address that is no node's
    compute.virtual_machines.begin_create_or_update(sim.rg, name, vm_body(sim, name, file_server_data(file_server_script("192.0.2.7/32")))).result()
    cluster = unique("deny")
    try:
        server = finished(sim, name)
        assert server["boot"]["exit_code"] == 0, boot_log(server)
        script = f'mkdir -p "$BATCHAI_ROOTFS/mnt/x" && mount -t nfs4 -o rw,hard,vers=4.1 {server["address"]}:/data "$BATCHAI_ROOTFS/mnt/x"'
        compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, cluster, vmss_body(sim, capacity=1, data=custom_data(runcmd=[["sh", "-c", script]]))).result()
        node = finished(sim, f"{cluster}_0")
        assert node["boot"] == {"state": "finished", "exit_code": 32}
        log = boot_log(node)
        assert f"mount.nfs: access denied by server while mounting {server['address']}:/data" in log, log
        assert "does not cover this node's address" in log and node["nfsMounts"] == []
    finally:
        compute.virtual_machine_scale_sets.begin_delete(sim.rg, cluster).result()
        compute.virtual_machines.begin_delete(sim.rg, name).result()


def test_a_server_without_its_nfs_service_refuses_connections(sim: Sim):
    needs_namespaces(sim)
    compute = sim.compute()
    name = unique("fsoff")
    script = file_server_script(subnet_prefix(sim)).replace("systemctl enable --now nfs-kernel-server\n", "")
    compute.virtual_machines.begin_create_or_update(sim.rg, name, vm_body(sim, name, file_server_data(script))).result()
    cluster = unique("refused")
    try:
        server = finished(sim, name)
        assert server["exports"] and server["nfsService"] is None
        # retry=0: no second try (a foreground mount would try again for 2 minutes)
        script = f'mkdir -p "$BATCHAI_ROOTFS/mnt/x" && mount -t nfs -o retry=0 {server["address"]}:/data "$BATCHAI_ROOTFS/mnt/x"'
        compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, cluster, vmss_body(sim, capacity=1, data=custom_data(runcmd=[["sh", "-c", script]]))).result()
        node = finished(sim, f"{cluster}_0")
        assert node["boot"]["exit_code"] == 32 and "mount.nfs: Connection refused" in boot_log(node)
    finally:
        compute.virtual_machine_scale_sets.begin_delete(sim.rg, cluster).result()
        compute.virtual_machines.begin_delete(sim.rg, name).result()


def test_a_mount_waits_for_a_server_that_is_still_starting(sim: Sim):
    """mount.nfs tries a server that refuses connections again, for `retry` minutes."""
    needs_namespaces(sim)
    compute = sim.compute()
    name = unique("fslate")
    script = file_server_script(subnet_prefix(sim)).replace(
        "systemctl enable --now nfs-kernel-server\n", "sleep 8\nsystemctl enable --now nfs-kernel-server\n"
    )
    compute.virtual_machines.begin_create_or_update(sim.rg, name, vm_body(sim, name, file_server_data(script))).result()
    cluster = unique("waits")
    try:
        address = sim.nodes()[name]["address"]
        script = f'mkdir -p "$BATCHAI_ROOTFS/mnt/x" && mount -t nfs -o rw,hard,retry=1 {address}:/data "$BATCHAI_ROOTFS/mnt/x"'
        compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, cluster, vmss_body(sim, capacity=1, data=custom_data(runcmd=[["sh", "-c", script]]))).result()
        node = finished(sim, f"{cluster}_0")
        assert node["boot"]["exit_code"] == 0, boot_log(node)
        mounts = node["nfsMounts"]
        assert len(mounts) == 1 and mounts[0]["tries"] > 1, mounts
    finally:
        compute.virtual_machine_scale_sets.begin_delete(sim.rg, cluster).result()
        compute.virtual_machines.begin_delete(sim.rg, name).result()


# --- the stand-ins on their own: a fake VM directory, no simulator ---------------------------


@pytest.fixture()
def fake_node(tmp_path: Path):
    """Runs a stand-in as a node with two data disks would (in the host's mount namespace)."""
    nodetools.install(tmp_path / "nodebin")
    vm = tmp_path / "vms" / "fake"
    disks = vm / "rootfs/dev/disk/azure/scsi1"
    disks.mkdir(parents=True)
    for lun in (0, 1):
        (disks / f"lun{lun}").touch()
    (vm / "rootfs/data").mkdir()
    (vm / "node.json").write_text(json.dumps({
        "name": "fake", "address": "10.0.0.9", "dataDisks": ["/dev/disk/azure/scsi1/lun0", "/dev/disk/azure/scsi1/lun1"],
        "hostMountNamespace": os.readlink("/proc/self/ns/mnt"),
    }))

    def run(command: str, rootfs: bool = True) -> subprocess.CompletedProcess:
        env = {"PATH": f"{tmp_path / 'nodebin'}:/usr/bin:/bin", "LANG": "C.UTF-8"}
        if rootfs:
            env["BATCHAI_ROOTFS"] = str(vm / "rootfs")
        return subprocess.run(["sh", "-c", 'R="${BATCHAI_ROOTFS:-}"; ' + command], cwd=vm, env=env, capture_output=True, text=True)

    run.vm = vm  # type: ignore[attr-defined]
    return run


@pytest.mark.parametrize(
    "command, code, message",
    [
        ("apt-get install nfs-kernel-server", 1, "without -y asks for confirmation"),
        ("apt-get upgrade -y", 1, "apt-get upgrade: not simulated"),
        ("apt-get install -y --force-yes mdadm", 1, "option --force-yes not recognized"),
        ("mdadm --create $R/dev/md0 --level=1 --raid-devices=2 $R/dev/disk/azure/scsi1/lun0 $R/dev/disk/azure/scsi1/lun1", 1, "RAID level 1: not simulated"),
        ("mdadm --create $R/dev/md0 --level=0 --raid-devices=3 $R/dev/disk/azure/scsi1/lun0 $R/dev/disk/azure/scsi1/lun1", 1, "--raid-devices=3 but 2 devices given"),
        ("mdadm --create /dev/md0 --level=0 --raid-devices=2 $R/dev/disk/azure/scsi1/lun0 $R/dev/disk/azure/scsi1/lun1", 1, "is not under this node's root"),
        ("mdadm --create $R/dev/md0 --level=0 --raid-devices=1 $R/dev/disk/azure/scsi1/lun0", 1, "a RAID 0 of one device"),
        ("mdadm --create $R/dev/md0 --chunk=512 --level=0 --raid-devices=2 $R/dev/disk/azure/scsi1/lun0 $R/dev/disk/azure/scsi1/lun1", 1, "option --chunk not recognized"),
        ("mkfs.ext4 -F $R/dev/md0", 1, "neither a data disk of this VM nor an array mdadm made"),
        ("mkfs.ext4 -F -T largefile $R/dev/disk/azure/scsi1/lun0", 1, "option -T not recognized"),
        ("mount $R/dev/disk/azure/scsi1/lun0 $R/data", 32, "has no file system"),
        ("exportfs -ra", 127, "apt-get has not installed"),
        ("systemctl enable --now nfs-kernel-server", 1, "Unit file nfs-kernel-server.service does not exist"),
        ("systemctl daemon-reload", 1, "the simulator runs no systemd"),
        ("systemctl enable --now batchai-agent.service", 1, "the simulator runs no systemd"),
        ("mount -t nfs -o rw 10.0.0.4:/data $R/data", 1, "the simulator's own mount namespace"),
        ("mount -t nfs -o rw,colour=blue 10.0.0.4:/data $R/data", 32, "an incorrect mount option was specified"),
    ],
)
def test_a_stand_in_refuses_what_it_does_not_simulate(fake_node, command: str, code: int, message: str):
    proc = fake_node(command)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "batchai-sim " in proc.stderr
    last = json.loads((fake_node.vm / "tools.log").read_text().splitlines()[-1])
    assert last["ok"] is False and last["exitCode"] == code


def test_a_stand_in_needs_a_node(fake_node):
    proc = fake_node("mdadm --create /dev/md0 --level=0 --raid-devices=2 /dev/sdc /dev/sdd", rootfs=False)
    assert proc.returncode == 1 and "BATCHAI_ROOTFS is not set" in proc.stderr


@pytest.mark.parametrize(
    "exports, message",
    [
        ("/data 10.0.0.0/24 (rw)", "has no client before its options"),
        ("/data 10.0.0.0/24(rw,frobnicate)", 'unknown keyword "frobnicate"'),
        ("/data", "names no client"),
        ("/data nodes.example.com(rw)", "matches clients by address only"),
        ("data 10.0.0.0/24(rw)", "is not absolute"),
        ("/missing 10.0.0.0/24(rw)", "Failed to stat /missing"),
    ],
)
def test_exportfs_rejects_a_bad_exports_file(fake_node, exports: str, message: str):
    assert fake_node("apt-get install -y nfs-kernel-server").returncode == 0
    (fake_node.vm / "rootfs/etc").mkdir()
    (fake_node.vm / "rootfs/etc/exports").write_text(f"# the file server\n{exports}\n")
    proc = fake_node("exportfs -ra")
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


def test_option_forms_a_real_tool_takes(fake_node):
    """--opt value and -o value forms, combined short flags, and a second mkfs."""
    script = (
        "set -e; apt-get -qy install mdadm nfs-kernel-server; "
        "mdadm -C $R/dev/md/data -l 0 -n 2 -R $R/dev/disk/azure/scsi1/lun0 $R/dev/disk/azure/scsi1/lun1; "
        "mkfs.ext4 -Fq -Lbatchai-data $R/dev/md/data; mkfs.ext4 -F -q -L again $R/dev/md/data; "
        "mount -t ext4 -o defaults,noatime $R/dev/md/data $R/data; "
        "echo '/data *(ro,sync) 10.0.0.0/255.255.255.0(rw,fsid=0)' > $R/etc/exports; exportfs -rav; "
        "systemctl enable nfs-server.service; systemctl start nfs-server"
    )
    (fake_node.vm / "rootfs/etc").mkdir()
    proc = fake_node(script)
    assert proc.returncode == 0, proc.stderr
    state = json.loads((fake_node.vm / "tools.json").read_text())
    assert state["fileSystems"] == [{**state["fileSystems"][0], "device": "/dev/md/data", "label": "again"}]
    assert [c["spec"] for c in state["exports"][0]["clients"]] == ["*", "10.0.0.0/255.255.255.0"]
    assert state["nfsService"]["unit"] == "nfs-server" and state["nfsService"]["active"]
    # the member disks are the array's now
    proc = fake_node("mkfs.ext4 -F $R/dev/disk/azure/scsi1/lun0")
    assert proc.returncode == 1 and "apparently in use by the system" in proc.stderr


def test_other_mounts_are_the_real_mount(fake_node):
    proc = fake_node("mount --version")
    assert proc.returncode == 0 and "util-linux" in proc.stdout
