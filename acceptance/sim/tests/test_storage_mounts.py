"""Azure Storage mounts on nodes: an Azure Files share with `mount -t cifs` and a credentials
file, a blob container with blobfuse2 and the account key or the node's managed identity (which
needs a role assignment on the container). The stand-ins check what Azure would and then bind-mount
`<state>/fileshares/<account>/<share>` or `<state>/blobfuse/<account>/<container>`; keys appear
in no log, state file or view."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from batchai_sim import nodetools

from .conftest import Sim, custom_data, unique, vmss_body, wait_for

CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
PRIVATE = "/etc/batchai/private"
CIFS_OPTIONS = "vers=3.1.1,credentials={file},dir_mode=0777,file_mode=0777,serverino,nosharesock,actimeo=30"


def needs_namespaces(sim: Sim) -> None:
    if sim.ready["network"]["mode"] != "namespaces":
        pytest.skip("storage mounts are bind mounts in a node's own mount namespace")


def account_keys(sim: Sim, account: str) -> list[str]:
    return [k["value"] for k in sim.storage().storage_accounts.list_keys(sim.rg, account)["keys"]]


def blob_endpoint(sim: Sim, account: str) -> str:
    return sim.storage().storage_accounts.get_properties(sim.rg, account).primary_endpoints.blob


def blobfuse_config(account: str, container: str, endpoint: str, auth: str) -> str:
    """The configuration the provider's agent writes (provider/agent/src/storage_mounts.rs)."""
    return (
        "allow-other: true\nlogging:\n  type: syslog\n  level: log_warning\ncomponents:\n  - libfuse\n  - file_cache\n"
        "  - attr_cache\n  - azstorage\nlibfuse:\n  attribute-expiration-sec: 120\n  entry-expiration-sec: 120\n"
        f"file_cache:\n  path: {PRIVATE}/cache\n  timeout-sec: 120\nattr_cache:\n  timeout-sec: 120\nazstorage:\n"
        f"  type: block\n  account-name: {account}\n  container: {container}\n  endpoint: {endpoint}\n{auth}"
    )


def secret_file(path: str, content: str) -> dict:
    return {"path": path, "content": content, "permissions": "0600"}


def node_files(node: dict) -> tuple[str, str]:
    directory = Path(node["dir"])
    return (directory / "tools.log").read_text(), (directory / "tools.json").read_text()


def assert_no_secret(sim: Sim, node: dict, secrets: list[str], *texts: str) -> None:
    """No key in the node's tools.log, tools.json, its /_sim/nodes entry or the given texts."""
    view = json.dumps(sim.nodes()[node["name"]])
    for text in (*node_files(node), view, *texts):
        for secret in secrets:
            assert secret not in text


def read(root: Path, name: str) -> str:
    return (root / name).read_text().strip()


SHARE_SCRIPT = r"""
R="$BATCHAI_ROOTFS"
me="${{BATCHAI_SIM_VM##*/}}"
chmod 700 "$R{private}"
mkdir -p "$R/mnt/share" "$R/mnt/bad" "$R/mnt/missing"
mount -t cifs //mldata.file.core.windows.net/nosuch-share "$R/mnt/missing" -o {good} 2>"$R/missing.err"; echo $? > "$R/missing.rc"
mount -t cifs //mldata.file.core.windows.net/{share} "$R/mnt/bad" -o {bad} 2>"$R/bad.err"; echo $? > "$R/bad.rc"
mount -t cifs //mldata.file.core.windows.net/{share} "$R/mnt/share" -o {good} 2>"$R/share.err"; echo $? > "$R/share.rc"
rm -f "$R{private}/share.cifs"
echo "written by $me" > "$R/mnt/share/$me"
until [ -e "$R/go" ]; do sleep 0.2; done
umount "$R/mnt/share"; echo $? > "$R/umount.rc"
ls -A "$R/mnt/share" > "$R/after"
exec sleep 1000
"""


def test_a_node_mounts_a_file_share_with_the_account_key(sim: Sim):
    needs_namespaces(sim)
    keys = account_keys(sim, "mldata")
    wrong = account_keys(sim, "mlctrl")[0]
    share = unique("share")
    created = sim.ctl("POST", "fileshares", {"account": "mldata", "share": share})
    assert created.status_code == 201, created.text
    assert created.json()["path"] == str(sim.state / "fileshares/mldata" / share)
    assert {"account": "mldata", "share": share} in [{k: s[k] for k in ("account", "share")} for s in sim.ctl("GET", "fileshares").json()["fileshares"]]
    assert sim.storage().storage_accounts.get_properties(sim.rg, "mldata").primary_endpoints.file == "https://mldata.file.core.windows.net/"
    script = SHARE_SCRIPT.format(
        private=PRIVATE, share=share,
        good=CIFS_OPTIONS.format(file=f"$R{PRIVATE}/share.cifs"), bad=CIFS_OPTIONS.format(file=f"$R{PRIVATE}/bad.cifs"),
    )
    files = [
        secret_file(f"{PRIVATE}/share.cifs", f"username=mldata\npassword={keys[1]}\n"),
        secret_file(f"{PRIVATE}/bad.cifs", f"username=mldata\npassword={wrong}\n"),
    ]
    compute = sim.compute()
    name = unique("smb")
    compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, name, vmss_body(sim, capacity=1, data=custom_data(files, [["sh", "-c", script]]))).result()
    try:
        node = sim.nodes()[f"{name}_0"]
        root = Path(node["dir"]) / "rootfs"
        wait_for("the node's file in the share", lambda: (root / "share.rc").exists() and (sim.state / "fileshares/mldata" / share / f"{name}_0").exists(), timeout=60)
        assert read(root, "share.rc") == "0", (root / "share.err").read_text()
        assert (sim.state / "fileshares/mldata" / share / f"{name}_0").read_text() == f"written by {name}_0\n"
        # a key of another account: what mount.cifs says, and no key anywhere
        assert read(root, "bad.rc") == "32"
        bad = (root / "bad.err").read_text()
        assert bad.startswith("mount error(13): Permission denied"), bad
        # a share the account does not have
        assert read(root, "missing.rc") == "32"
        assert (root / "missing.err").read_text().startswith("mount error(2): No such file or directory")
        mounts = sim.nodes()[f"{name}_0"]["storageMounts"]
        assert [(m["type"], m["account"], m["share"], m["target"], m["mode"], m["readOnly"], m["mounted"]) for m in mounts] == [
            ("cifs", "mldata", share, "/mnt/share", "key", False, True)
        ]
        assert_no_secret(sim, node, [*keys, wrong], bad, (root / "missing.err").read_text(), (Path(node["dir"]) / "boot.log").read_text())
        # the real umount ends the bind mount; the file stays in the share
        (root / "go").touch()
        wait_for("the unmount", lambda: (root / "after").exists(), timeout=30)
        assert read(root, "umount.rc") == "0" and (root / "after").read_text() == ""
        assert sim.nodes()[f"{name}_0"]["storageMounts"][0]["mounted"] is False
    finally:
        compute.virtual_machine_scale_sets.begin_delete(sim.rg, name).result()
    assert (sim.state / "fileshares/mldata" / share / f"{name}_0").exists()


BLOB_SCRIPT = r"""
R="$BATCHAI_ROOTFS"
P="$R{private}"
chmod 700 "$P"; mkdir -p "$P/cache" "$R/mnt/key" "$R/mnt/msi" "$R/mnt/none"
blobfuse2 mount "$R/mnt/none" --config-file="$P/none.yaml" 2>"$R/none.err"; echo $? > "$R/none.rc"
blobfuse2 mount "$R/mnt/key" --config-file="$P/key.yaml" -o attr_timeout=240 2>"$R/key.err"; echo $? > "$R/key.rc"
echo by-key > "$R/mnt/key/by-key"
blobfuse2 mount "$R/mnt/msi" --config-file "$P/msi.yaml" 2>"$R/msi1.err"; echo $? > "$R/msi1.rc"
until [ -e "$R/go1" ]; do sleep 0.2; done
blobfuse2 mount "$R/mnt/msi" --config-file "$P/msi.yaml" 2>"$R/msi2.err"; echo $? > "$R/msi2.rc"
echo by-msi > "$R/mnt/msi/by-msi"
until [ -e "$R/go2" ]; do sleep 0.2; done
umount "$R/mnt/key"; echo $? > "$R/umount-key.rc"
umount "$R/mnt/msi"; echo $? > "$R/umount-msi.rc"
ls -A "$R/mnt/key" "$R/mnt/msi" > "$R/after"
exec sleep 1000
"""


def test_blobfuse2_mounts_a_container_with_the_key_and_with_the_identity_once_it_has_a_role(sim: Sim):
    needs_namespaces(sim)
    storage = sim.storage()
    keys = account_keys(sim, "mldata")
    container = unique("blobs")
    storage.blob_containers.create(sim.rg, "mldata", container, {})
    endpoint = blob_endpoint(sim, "mldata")
    identity = sim.identity(unique("nodes"))
    files = [
        secret_file(f"{PRIVATE}/key.yaml", blobfuse_config("mldata", container, endpoint, f"  mode: key\n  account-key: {keys[0]}\n")),
        secret_file(f"{PRIVATE}/none.yaml", blobfuse_config("mldata", unique("nosuch"), endpoint, f"  mode: key\n  account-key: {keys[0]}\n")),
        secret_file(f"{PRIVATE}/msi.yaml", blobfuse_config("mldata", container, endpoint, f"  mode: msi\n  appid: {identity['clientId']}\n")),
    ]
    compute = sim.compute()
    name = unique("fuse")
    body = vmss_body(sim, capacity=1, identity_id=identity["id"], data=custom_data(files, [["sh", "-c", BLOB_SCRIPT.format(private=PRIVATE)]]))
    compute.virtual_machine_scale_sets.begin_create_or_update(sim.rg, name, body).result()
    backing = sim.state / "blobfuse/mldata" / container
    try:
        node = sim.nodes()[f"{name}_0"]
        root = Path(node["dir"]) / "rootfs"
        wait_for("the identity's first mount", lambda: (root / "msi1.rc").exists(), timeout=60)
        # the account key
        assert read(root, "key.rc") == "0", (root / "key.err").read_text()
        assert (backing / "by-key").read_text() == "by-key\n"
        # a container Azurite does not have
        assert read(root, "none.rc") == "1"
        none = (root / "none.err").read_text()
        assert none.startswith(nodetools.BLOBFUSE_PIPELINE) and "does not exist in Azurite" in none, none
        # the identity without a role on the container: blobfuse2's error
        assert read(root, "msi1.rc") == "1"
        msi1 = (root / "msi1.err").read_text()
        assert msi1.startswith(nodetools.BLOBFUSE_PIPELINE) and "no Storage Blob Data Contributor" in msi1, msi1
        # Storage Blob Data Contributor on the container's scope
        scope = f"{storage.storage_accounts.get_properties(sim.rg, 'mldata').id}/blobServices/default/containers/{container}"
        role = f"/subscriptions/{sim.sub}/providers/Microsoft.Authorization/roleDefinitions/{CONTRIBUTOR}"
        sim.authorization().role_assignments.create(scope, str(uuid.uuid4()), {"properties": {"roleDefinitionId": role, "principalId": identity["principalId"], "principalType": "ServicePrincipal"}})
        (root / "go1").touch()
        wait_for("the identity's second mount", lambda: (root / "msi2.rc").exists() and (backing / "by-msi").exists(), timeout=60)
        assert read(root, "msi2.rc") == "0", (root / "msi2.err").read_text()
        assert (backing / "by-msi").read_text() == "by-msi\n"
        mounts = sim.nodes()[f"{name}_0"]["storageMounts"]
        assert [(m["type"], m["account"], m["container"], m["target"], m["mode"], m["readOnly"], m["mounted"]) for m in mounts] == [
            ("blobfuse2", "mldata", container, "/mnt/key", "key", False, True),
            ("blobfuse2", "mldata", container, "/mnt/msi", "msi", False, True),
        ]
        assert mounts[0]["options"] == ["attr_timeout=240"]
        assert mounts[1]["identity"] == identity["clientId"] and mounts[1]["role"] == "Storage Blob Data Contributor"
        assert_no_secret(sim, node, keys, *((root / f).read_text() for f in ("none.err", "key.err", "msi1.err", "msi2.err")))
        # the real umount
        (root / "go2").touch()
        wait_for("the unmounts", lambda: (root / "after").exists(), timeout=30)
        assert read(root, "umount-key.rc") == "0" and read(root, "umount-msi.rc") == "0"
        assert [m["mounted"] for m in sim.nodes()[f"{name}_0"]["storageMounts"]] == [False, False]
        assert sorted(p.name for p in backing.iterdir()) == ["by-key", "by-msi"]
    finally:
        compute.virtual_machine_scale_sets.begin_delete(sim.rg, name).result()
        sim.msi().user_assigned_identities.delete(sim.rg, identity["id"].rsplit("/", 1)[1])


def test_file_shares_of_an_unknown_account_or_a_bad_name_are_refused(sim: Sim):
    assert sim.ctl("POST", "fileshares", {"account": "nosuchacct", "share": "data"}).status_code == 404
    assert sim.ctl("POST", "fileshares", {"account": "mldata", "share": "Bad_Name"}).status_code == 400
    share = unique("again")
    assert sim.ctl("POST", "fileshares", {"account": "mlctrl", "share": share}).status_code == 201
    assert sim.ctl("POST", "fileshares", {"account": "mlctrl", "share": share}).status_code == 200


def test_arm_file_shares_are_the_same_shares(sim: Sim):
    storage = sim.storage()
    name = unique("armshare")
    created = storage.file_shares.create(sim.rg, "mldata", name, {"properties": {"shareQuota": 100, "enabledProtocols": "SMB"}})
    assert created.name == name and created.id.endswith(f"/storageAccounts/mldata/fileServices/default/shares/{name}")
    assert (sim.state / "fileshares/mldata" / name).is_dir()
    assert storage.file_shares.get(sim.rg, "mldata", name).name == name
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        storage.file_shares.get(sim.rg, "mldata", unique("none"))
    with pytest.raises(HttpResponseError) as error:
        storage.file_shares.create(sim.rg, "mldata", name, {"properties": {"frobnicate": 1}})
    assert error.value.status_code == 400


def test_storage_json_is_private_and_follows_role_assignments(sim: Sim):
    path = sim.state / "storage.json"
    assert path.stat().st_mode & 0o777 == 0o600
    record = json.loads(path.read_text())
    assert set(record["accounts"]) >= {"mlctrl", "mldata", "mlspare"}
    assert record["accounts"]["mldata"]["keys"] == account_keys(sim, "mldata")
    assert record["accounts"]["mldata"]["blobEndpoint"] == blob_endpoint(sim, "mldata")
    identity = sim.identity(unique("rec"))
    scope = f"/subscriptions/{sim.sub}/resourceGroups/{sim.rg}"
    name = str(uuid.uuid4())
    role = f"/subscriptions/{sim.sub}/providers/Microsoft.Authorization/roleDefinitions/{READER}"
    authz = sim.authorization()
    authz.role_assignments.create(scope, name, {"properties": {"roleDefinitionId": role, "principalId": identity["principalId"]}})
    assert {"scope": scope, "roleDefinitionId": role, "principalId": identity["principalId"]} in json.loads(path.read_text())["roleAssignments"]
    authz.role_assignments.delete(scope, name)
    assert all(a["principalId"] != identity["principalId"] for a in json.loads(path.read_text())["roleAssignments"])


# --- the stand-ins on their own: a fake VM directory and storage record, no simulator ---------


KEY = "c2ltdWxhdGVkLWtleS1vbmUtc2ltdWxhdGVkLWtleS1vbmU="
OTHER = "c2ltdWxhdGVkLWtleS10d28tc2ltdWxhdGVkLWtleS10d28="
ENDPOINT = "https://10.9.9.1:4444/acct/"
ACCOUNT_ID = "/subscriptions/s/resourceGroups/training/providers/Microsoft.Storage/storageAccounts/acct"


@pytest.fixture()
def storage_node(tmp_path: Path):
    """A node's stand-ins (in the host's mount namespace) with a storage record of one account
    `acct` (keys KEY and OTHER) that has the file share `data`."""
    nodetools.install(tmp_path / "nodebin")
    vm = tmp_path / "vms" / "fake"
    (vm / "rootfs/mnt/x").mkdir(parents=True)
    (vm / "rootfs/etc/private").mkdir(parents=True)
    (vm / "node.json").write_text(json.dumps({"name": "fake", "address": "10.0.0.9", "dataDisks": [], "hostMountNamespace": os.readlink("/proc/self/ns/mnt")}))
    (tmp_path / "storage.json").write_text(json.dumps({
        "caPath": None,
        "accounts": {"acct": {"keys": [KEY, OTHER], "blobEndpoint": ENDPOINT, "fileHost": "acct.file.core.windows.net", "id": ACCOUNT_ID}},
        "roleAssignments": [],
    }))
    (tmp_path / "fileshares/acct/data").mkdir(parents=True)

    def private(name: str, content: str, mode: int = 0o600) -> str:
        path = vm / "rootfs/etc/private" / name
        path.write_text(content)
        path.chmod(mode)
        return "$R/etc/private/" + name

    def run(command: str) -> subprocess.CompletedProcess:
        env = {"PATH": f"{tmp_path / 'nodebin'}:/usr/bin:/bin", "LANG": "C.UTF-8", "BATCHAI_ROOTFS": str(vm / "rootfs")}
        return subprocess.run(["sh", "-c", 'R="${BATCHAI_ROOTFS:-}"; ' + command], cwd=vm, env=env, capture_output=True, text=True)

    run.vm = vm  # type: ignore[attr-defined]
    run.private = private  # type: ignore[attr-defined]
    return run


CIFS_CASES = [
    # (source, credentials, options after credentials, code, message)
    ("//acct.file.core.windows.net/data", f"username=acct\npassword={OTHER}\n", "", 1, "the simulator's own mount namespace"),
    ("//acct.file.core.chinacloudapi.cn/data/", f"username=acct\npassword={KEY}\n", ",ro,uid=1000,gid=1000,cache=strict,mfsymlinks,nobrl,sec=ntlmssp", 1, "the simulator's own mount namespace"),
    ("//acct.file.core.windows.net/data", f"username=acct\npassword={KEY}x\n", "", 32, "mount error(13): Permission denied"),
    ("//acct.file.core.windows.net/data", f"username=other\npassword={KEY}\n", "", 32, "mount error(13): Permission denied"),
    ("//acct.file.core.windows.net/data", "username=acct\n", "", 32, "mount error(13): Permission denied"),
    ("//acct.file.core.windows.net/nosuch", f"username=acct\npassword={KEY}\n", "", 32, "mount error(2): No such file or directory"),
    ("//acct.file.core.windows.net/data/sub", f"username=acct\npassword={KEY}\n", "", 32, "mount error(2): No such file or directory"),
    ("//nosuch.file.core.windows.net/data", f"username=nosuch\npassword={KEY}\n", "", 32, "mount error: could not resolve address for nosuch.file.core.windows.net: Unknown error"),
    ("//acct.blob.core.windows.net/data", f"username=acct\npassword={KEY}\n", "", 32, "could not resolve address for acct.blob.core.windows.net"),
    ("//acct.file.core.windows.net/data", f"username=acct\npassword={KEY}\n", ",vers=1.0", 32, "mount error(95): Operation not supported"),
    ("//acct.file.core.windows.net/data", f"username=acct\npassword={KEY}\n", ",sec=krb5", 1, "sec=krb5: not simulated"),
    ("//acct.file.core.windows.net/data", f"username=acct\npassword={KEY}\n", ",frobnicate", 1, "option 'frobnicate' is not one the simulated mount.cifs takes"),
]


@pytest.mark.parametrize("source, credentials, extra, code, message", CIFS_CASES)
def test_the_cifs_stand_in_checks_what_azure_files_would(storage_node, source: str, credentials: str, extra: str, code: int, message: str):
    file = storage_node.private("share.cifs", credentials)
    proc = storage_node(f'mount -t cifs {source} "$R/mnt/x" -o vers=3.1.1,credentials={file},dir_mode=0777,file_mode=0777,serverino,nosharesock,actimeo=30{extra}')
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    last = json.loads((storage_node.vm / "tools.log").read_text().splitlines()[-1])
    assert last["ok"] is False and last["exitCode"] == code and last["tool"] == "mount"
    for key in (KEY, OTHER):
        assert key not in proc.stderr + proc.stdout + (storage_node.vm / "tools.log").read_text()


def test_the_cifs_stand_in_holds_the_credentials_file_to_0600(storage_node):
    file = storage_node.private("share.cifs", f"username=acct\npassword={KEY}\n", 0o644)
    proc = storage_node(f'mount -t cifs //acct.file.core.windows.net/data "$R/mnt/x" -o vers=3.1.1,credentials={file}')
    assert proc.returncode == 1 and "has mode 0644: the provider writes it 0600" in proc.stderr, proc.stderr
    proc = storage_node('mount -t cifs //acct.file.core.windows.net/data "$R/mnt/x" -o vers=3.1.1,credentials=$R/etc/private/none')
    assert proc.returncode == 32 and "opening credential file" in proc.stderr


def test_an_inline_password_is_recorded_as_such_and_never_logged(storage_node):
    proc = storage_node(f'mount -t cifs //acct.file.core.windows.net/data "$R/mnt/x" -o vers=3.0,username=acct,password={KEY}x')
    assert proc.returncode == 32 and "mount error(13)" in proc.stderr and "given with password=" in proc.stderr
    proc = storage_node(f'mount -t cifs //acct.file.core.windows.net/data "$R/mnt/x" -overs=3.0,username=acct,password={KEY}')
    assert proc.returncode == 1 and "own mount namespace" in proc.stderr
    log = (storage_node.vm / "tools.log").read_text()
    assert KEY not in log and "password=***" in log
    assert [json.loads(line)["argv"][-1] for line in log.splitlines()] == ["vers=3.0,username=acct,password=***", "-overs=3.0,username=acct,password=***"]


def fuse_config(**changes) -> str:
    auth = changes.pop("auth", f"  mode: key\n  account-key: {KEY}\n")
    text = blobfuse_config(changes.pop("account", "acct"), changes.pop("container", "blobs"), changes.pop("endpoint", ENDPOINT), auth)
    for old, new in changes.items():
        text = text.replace(old, new)
    return text


BLOBFUSE_CASES = [
    # (config, mode, command line after the config, code, message)
    (fuse_config(endpoint="https://10.9.9.1:4444/other/"), 0o600, "", 1, "is not the blob endpoint of acct"),
    (fuse_config(auth=f"  mode: key\n  account-key: {OTHER}x\n"), 0o600, "", 1, "account-key is not a key of the storage account acct"),
    (fuse_config(auth="  mode: msi\n  appid: 00000000-0000-0000-0000-000000000001\n"), 0o600, "", 1, "no managed identity token"),
    (fuse_config(account="nosuch"), 0o600, "", 1, "'nosuch' is not one the simulator serves"),
    (fuse_config(auth=f"  mode: sas\n  sas: {KEY}\n"), 0o600, "", 1, "azstorage keys ['sas']: not simulated"),
    (fuse_config(**{"type: block": "type: adls"}), 0o600, "", 1, "azstorage type 'adls': not simulated"),
    (fuse_config(**{"  - azstorage\n": ""}), 0o600, "", 1, "a pipeline runs from libfuse (first) to azstorage (last)"),
    (fuse_config(), 0o644, "", 1, "has mode 0644"),
    (fuse_config(), 0o600, " --frobnicate", 1, "Error: unknown flag: --frobnicate"),
    (fuse_config(), 0o600, " -o frobnicate", 1, "option 'frobnicate' is not one blobfuse2 -o takes"),
    ("azstorage: [unclosed\n", 0o600, "", 1, "is not YAML at line"),
]


@pytest.mark.parametrize("config, mode, extra, code, message", BLOBFUSE_CASES)
def test_the_blobfuse2_stand_in_checks_configuration_and_credentials(storage_node, config: str, mode: int, extra: str, code: int, message: str):
    file = storage_node.private("fuse.yaml", config, mode)
    proc = storage_node(f'blobfuse2 mount "$R/mnt/x" --config-file={file} -o attr_timeout=240{extra}')
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "batchai-sim blobfuse2: " in proc.stderr
    last = json.loads((storage_node.vm / "tools.log").read_text().splitlines()[-1])
    assert last["ok"] is False and last["tool"] == "blobfuse2"
    for key in (KEY, OTHER):
        assert key not in proc.stderr + proc.stdout + (storage_node.vm / "tools.log").read_text()


@pytest.mark.parametrize(
    "command, message",
    [
        ('blobfuse2 unmount "$R/mnt/x"', "blobfuse2 unmount: not simulated"),
        ('blobfuse2 mount "$R/mnt/x"', "blobfuse2 mount without --config-file: not simulated"),
        ('blobfuse2 mount "$R/mnt/nosuch" --config-file=$R/etc/private/fuse.yaml', "mount directory does not exist"),
        ('blobfuse2 mount "$R/mnt/x" --config-file=$R/etc/private/none.yaml', "invalid config file"),
        ('blobfuse2 mount /mnt/x --config-file=$R/etc/private/fuse.yaml', "is not under this node's root"),
    ],
)
def test_blobfuse2_forms_it_refuses(storage_node, command: str, message: str):
    storage_node.private("fuse.yaml", fuse_config())
    proc = storage_node(command)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


def test_blobfuse2_with_an_identity_role_on_a_parent_scope(storage_node, monkeypatch):
    """The role check on its own: an assignment on the account covers its containers; one on
    another container does not; Reader makes the mount read-only."""
    record = json.loads((storage_node.vm.parent.parent / "storage.json").read_text())
    principal = "11111111-1111-1111-1111-111111111111"
    monkeypatch.setattr(nodetools, "imds_token", lambda node, appid: ({"oid": principal, "appid": appid}, ""))
    monkeypatch.setattr(nodetools, "container_status", lambda record, account, container: (200, ""))
    monkeypatch.setattr(nodetools, "own_mount_namespace", lambda node: (_ for _ in ()).throw(nodetools.Fail("reached the bind")))

    def attempt(assignments: list[tuple[str, str]]) -> str:
        record["roleAssignments"] = [{"scope": s, "roleDefinitionId": f"/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/{r}", "principalId": principal} for s, r in assignments]
        (storage_node.vm.parent.parent / "storage.json").write_text(json.dumps(record))
        storage_node.private("fuse.yaml", fuse_config(auth="  mode: msi\n  appid: app\n"))
        os.environ["BATCHAI_ROOTFS"] = str(storage_node.vm / "rootfs")
        try:
            nodetools.blobfuse2(nodetools.Node("blobfuse2"), ["mount", str(storage_node.vm / "rootfs/mnt/x"), f"--config-file={storage_node.vm / 'rootfs/etc/private/fuse.yaml'}"])
        except nodetools.Fail as error:
            return error.message
        finally:
            del os.environ["BATCHAI_ROOTFS"]
        return "mounted"

    assert attempt([(ACCOUNT_ID.upper(), CONTRIBUTOR)]) == "reached the bind"
    assert attempt([("/subscriptions/s", READER)]) == "reached the bind"
    assert "no Storage Blob Data Contributor" in attempt([(ACCOUNT_ID + "/blobServices/default/containers/other", CONTRIBUTOR)])
    assert "no Storage Blob Data Contributor" in attempt([(ACCOUNT_ID, "acdd72a7-3385-48ef-bd42-f606fba81ae7")])
    assert "no Storage Blob Data Contributor" in attempt([(ACCOUNT_ID + "x", CONTRIBUTOR)])
