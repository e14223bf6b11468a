#!/usr/bin/env python3
"""Install the simulator's private Python environment and print its interpreter's path.

The environment is a virtualenv at ``<cache>/sim-<hash>``, where ``<cache>`` is
``$BATCHAI_CACHE``, else ``$XDG_CACHE_HOME/batchai``, else ``~/.cache/batchai`` (the cache
``cargo xtask`` installs Azurite into) and ``<hash>`` is the SHA-256 of ``requirements.txt`` and
the Python version, so a changed pin makes a new environment and a warm run costs nothing.
Built beside its final place and renamed when complete, so an interrupted install is never
taken for a finished one. Standard library only; pip through the machine's own configuration.

Usage: ``python3 acceptance/sim/install.py`` -> prints ``<env>/bin/python`` on stdout.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
# pip settings that would send the install somewhere else than the environment.
_PIP_ENV_DROP = ("PIP_USER", "PIP_TARGET", "PIP_PREFIX", "PIP_ROOT", "PIP_REQUIRE_VIRTUALENV", "PIP_NO_INDEX")


def cache_dir() -> Path:
    for name, suffix in (("BATCHAI_CACHE", None), ("XDG_CACHE_HOME", "batchai"), ("HOME", ".cache/batchai")):
        value = os.environ.get(name)
        if value:
            return Path(value) / suffix if suffix else Path(value)
    sys.exit("install.py: no cache directory: set BATCHAI_CACHE (or HOME)")


def env_dir() -> Path:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:16]
    return cache_dir() / f"sim-{digest}"


def log(message: str) -> None:
    print(f"install.py: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked(cache: Path):
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".sim-install.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def main() -> int:
    final = env_dir()
    python = final / "bin" / "python"
    if (final / ".complete").exists():
        print(python)
        return 0
    with locked(final.parent):
        if (final / ".complete").exists():
            print(python)
            return 0
        partial = final.with_name(f"{final.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        log(f"creating the simulator's environment in {final} (about 60 MB, once)")
        venv.EnvBuilder(with_pip=True, symlinks=True).create(partial)
        env = {k: v for k, v in os.environ.items() if k not in _PIP_ENV_DROP}
        env.update({"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PYTHONDONTWRITEBYTECODE": "1"})
        proc = subprocess.run(
            [str(partial / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--only-binary", ":all:", "-r", str(REQUIREMENTS)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if proc.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            log(f"pip install failed ({proc.returncode}):\n{proc.stdout}")
            return 1
        # --no-deps installs exactly the pins; this says so if one is missing.
        check = subprocess.run([str(partial / "bin" / "python"), "-m", "pip", "check"], env=env, capture_output=True, text=True)
        if check.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            log(f"the pinned requirements are incomplete:\n{check.stdout}{check.stderr}")
            return 1
        # The venv's scripts name its directory: rename, then fix nothing (python is a symlink,
        # and the simulator runs `python -m`, never the console scripts).
        os.replace(partial, final)
        (final / ".complete").write_text("ok\n")
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
