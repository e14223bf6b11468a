"""The simulator's Azurite: HTTPS with the test CA's server certificate, ``--oauth basic``, and
``AZURITE_ACCOUNTS`` naming the storage accounts the simulator serves, on an address both the
host and the nodes reach. Found the way ``xtask/src/azurite.rs`` finds it."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import ssl
from pathlib import Path

VERSION = "3.35.0"
ENV = "BATCHAI_AZURITE"
STORAGE_VERSION = "2025-11-05"


def cache_dir() -> Path | None:
    for name, suffix in (("BATCHAI_CACHE", ""), ("XDG_CACHE_HOME", "batchai"), ("HOME", ".cache/batchai")):
        value = os.environ.get(name)
        if value:
            return Path(value) / suffix if suffix else Path(value)
    return None


def find() -> Path:
    bin_env = os.environ.get(ENV)
    if bin_env:
        path = Path(bin_env)
        if not path.is_file():
            raise FileNotFoundError(f"{ENV}={bin_env} is not a file")
        return path
    cache = cache_dir()
    if cache is None:
        raise FileNotFoundError(f"{ENV} is not set and there is no cache directory")
    path = cache / f"azurite-{VERSION}" / "node_modules/.bin/azurite-blob"
    if not path.is_file():
        raise FileNotFoundError(
            f"{ENV} is not set and {path} does not exist: run `cargo xtask sim up` or `cargo xtask test`, which install Azurite {VERSION}"
        )
    return path


class Azurite:
    def __init__(self, host: str, accounts: dict[str, str], cert: Path, key: Path, log: Path):
        bin_path = find()
        env = dict(os.environ)
        env["AZURITE_ACCOUNTS"] = ";".join(f"{name}:{key_}" for name, key_ in accounts.items())
        self.log_path = log
        self.process = subprocess.Popen(
            [
                str(bin_path),
                "--blobHost", host,
                "--blobPort", "0",
                "--cert", str(cert),
                "--key", str(key),
                "--oauth", "basic",
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--blobKeepAliveTimeout", "600",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        lines: queue.Queue = queue.Queue()

        def pump() -> None:
            assert self.process.stdout is not None
            with open(log, "ab") as sink:
                for line in self.process.stdout:
                    sink.write(line)
                    sink.flush()
                    lines.put(line.decode(errors="replace"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 60
        output = ""
        self.port = 0
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            output += line
            match = re.search(r"successfully listens on https?://[^\s]+:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                break
        if not self.port:
            self.stop()
            raise RuntimeError(f"Azurite did not say it listens within 60 s: {output}")
        self.host = host

    def endpoint(self, account: str) -> str:
        return f"https://{self.host}:{self.port}/{account}/"

    def create_container(self, account: str, container: str, token: str, ca: Path) -> bool:
        """Creates a container; False when it was there already."""
        request = urllib.request.Request(
            f"{self.endpoint(account)}{container}?restype=container",
            method="PUT",
            headers={"Authorization": f"Bearer {token}", "x-ms-version": STORAGE_VERSION, "Content-Length": "0"},
        )
        context = ssl.create_default_context(cafile=str(ca))
        try:
            with urllib.request.urlopen(request, context=context, timeout=30):
                return True
        except urllib.error.HTTPError as error:
            if error.code == 409:
                return False
            raise RuntimeError(f"create container {account}/{container} in Azurite: {error.code} {error.read()[:300]!r}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
