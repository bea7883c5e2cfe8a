"""Run untrusted Python in a separate, isolated, resource-limited process.

:class:`Sandbox` starts ``_jail.py`` (its docstring has the steps) with the code on stdin and
reads its output. What the code gets:

- **no network**: a new network namespace whose only interface, loopback, is down;
- **no files of ours**: a new root holding read-only binds of the system directories and the
  Python installation, a fresh ``/proc`` of its own processes, and ``/work``, a tmpfs of
  ``disk_bytes``, the only writable place; the home directory, the checkout, ``/tmp`` and
  ``/etc`` are not there at all;
- **no one to signal**: a PID namespace of its own; uid 1000 inside with no capabilities;
  ``no_new_privs``; as root, the jail first becomes ``nobody``;
- **a clean environment**: ``PATH``, ``HOME``, ``TMPDIR``, ``LANG`` and nothing inherited;
- **limits**: CPU seconds, address space, processes, file size (``setrlimit``), wall-clock
  (the parent kills the process group, and PID 1 of the namespace takes everything with it)
  and output size (the parent stops reading and kills it);
- ``ctypes`` refused by an audit hook, so a program gets a clear error instead of poking the
  interpreter's memory (a convenience, not the boundary: the boundary is the OS).

Isolation needs unprivileged user namespaces (Linux; no root). Where the kernel refuses them
the sandbox refuses to run, naming the setting to change, unless ``sandbox.allow_unsafe`` is
true; then the code runs with the limits, a clean environment and a temporary directory but
with the host's network and filesystem: never a silent downgrade. ``docs/agents.md`` lists
what is not protected against.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lamina.settings import SandboxSettings
from lamina.tools.errors import SandboxError

__all__ = ["Sandbox", "SandboxResult", "isolation_available"]

_JAIL = Path(__file__).with_name("_jail.py")
_SETUP_FAILED = 125
_MAX_CODE_BYTES = 1_000_000
_LINKABLE = ("bin", "lib", "lib32", "lib64", "libx32", "sbin")
_DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")


@dataclass
class SandboxResult:
    """How a run ended. ``limit`` names the limit that stopped it, if any."""

    exit_code: int
    stdout: str
    stderr: str
    limit: str | None = None
    seconds: float = 0.0
    isolated: bool = True

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.limit is None

    def report(self) -> str:
        """stdout, then stderr, then one line saying how it ended when not cleanly."""
        parts = [p.rstrip("\n") for p in (self.stdout, self.stderr) if p.strip()]
        if self.limit:
            parts.append(f"[stopped: {self.limit}]")
        elif self.exit_code != 0:
            parts.append(f"[exit code {self.exit_code}]")
        return "\n".join(parts) if parts else "(no output)"


class Sandbox:
    """Runs code under ``settings`` (the ``[sandbox]`` table)."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.settings = settings or SandboxSettings()

    def run(self, code: str) -> SandboxResult:
        """Run ``code`` as a Python program; its output and how it ended.

        Raises SandboxError when the OS cannot isolate it and unsafe mode is off, or when the
        jail fails to start."""
        unsafe = not isolation_available()
        if unsafe and not self.settings.allow_unsafe:
            raise SandboxError(
                "The python sandbox cannot isolate code on this machine: "
                f"{_probe()[1]}. Enable unprivileged user namespaces (Linux: sysctl "
                "kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0; in a "
                "container, allow the unshare syscall), or set sandbox.allow_unsafe = true "
                "(LAMINA_SANDBOX__ALLOW_UNSAFE=true) to run it without network and filesystem "
                "isolation."
            )
        data = code.encode("utf-8")
        if len(data) > _MAX_CODE_BYTES:
            raise SandboxError(f"The code is {len(data)} bytes; the sandbox takes at most 1 MB.")
        return self._run(data, unsafe=unsafe)

    def _run(self, code: bytes, *, unsafe: bool) -> SandboxResult:
        cfg = self.settings
        root = Path(tempfile.mkdtemp(prefix="lamina-sandbox-"))
        try:
            if not unsafe:
                root.chmod(0o755)  # the jail may be 'nobody' by the time it mounts here
            config = _config(root, cfg, unsafe=unsafe)
            started = time.monotonic()
            process = subprocess.Popen(
                [_python(), "-I", "-S", str(_JAIL), json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=root,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                start_new_session=True,
                close_fds=True,
            )
            stdout, stderr, limit = self._collect(process, code, started)
            exit_code = process.wait()
            seconds = time.monotonic() - started
        finally:
            shutil.rmtree(root, ignore_errors=True)
        err_text = stderr.decode("utf-8", errors="replace")
        if exit_code == _SETUP_FAILED and "LAMINA-SANDBOX-" in err_text:
            line = next(x for x in err_text.splitlines() if x.startswith("LAMINA-SANDBOX-"))
            raise SandboxError(f"The python sandbox could not start: {line.partition(': ')[2]}")
        if limit is None and exit_code in (128 + signal.SIGXCPU, 128 + signal.SIGKILL, -9):
            # SIGXCPU: the CPU limit; SIGKILL: the hard CPU limit (or the kernel's OOM killer)
            limit = f"CPU time limit ({cfg.cpu_s} s)"
        return SandboxResult(
            exit_code=exit_code,
            stdout=stdout.decode("utf-8", errors="replace"),
            stderr=err_text,
            limit=limit,
            seconds=seconds,
            isolated=not unsafe,
        )

    def _collect(
        self, process: subprocess.Popen[bytes], code: bytes, started: float
    ) -> tuple[bytes, bytes, str | None]:
        """Feed the code, read both pipes until they close, within the wall and output
        limits; on either limit kill the whole process group."""
        cfg = self.settings
        assert process.stdin and process.stdout and process.stderr
        try:
            process.stdin.write(code)
            process.stdin.close()
        except BrokenPipeError:  # the jail failed before reading; its stderr says why
            pass
        out, err = process.stdout.fileno(), process.stderr.fileno()
        buffers = {out: bytearray(), err: bytearray()}
        total = 0
        limit = None
        with selectors.DefaultSelector() as selector:
            for pipe in (process.stdout, process.stderr):
                selector.register(pipe, selectors.EVENT_READ)
            while selector.get_map():
                left = cfg.wall_s - (time.monotonic() - started)
                if left <= 0:
                    limit = f"wall-clock limit ({cfg.wall_s:g} s)"
                    break
                for key, _ in selector.select(timeout=min(left, 0.5)):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        continue
                    room = cfg.output_bytes - total
                    buffers[key.fd] += chunk[:room]
                    total += len(chunk)
                    if total > cfg.output_bytes:
                        limit = f"output limit ({cfg.output_bytes} bytes; the rest was not read)"
                        break
                if limit:
                    break
        if limit:
            _kill_group(process)
        for pipe in (process.stdout, process.stderr):
            pipe.close()
        return bytes(buffers[out]), bytes(buffers[err]), limit


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _python() -> str:
    """The real interpreter (a venv's ``bin/python`` is a link to it)."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def _config(root: Path, cfg: SandboxSettings, *, unsafe: bool) -> dict[str, object]:
    binds: list[tuple[str, str]] = []
    links: list[tuple[str, str]] = []
    if not unsafe:
        binds.append(("/usr", "dir"))
        for name in _LINKABLE:
            path = f"/{name}"
            if os.path.islink(path):
                links.append((path, os.readlink(path)))
            elif os.path.isdir(path):
                binds.append((path, "dir"))
        prefix = os.path.realpath(sys.base_prefix)
        if not any(prefix == p or prefix.startswith(p + "/") for p, _ in binds):
            binds.append((prefix, "dir"))
        python_dir = os.path.dirname(_python())
        if not any(python_dir.startswith(p + "/") for p, _ in binds):
            binds.append((python_dir, "dir"))
        if os.path.isfile("/etc/ld.so.cache"):
            binds.append(("/etc/ld.so.cache", "file"))
        binds += [(d, "file") for d in _DEVICES if os.path.exists(d)]
    return {
        "root": str(root),
        "binds": binds,
        "links": links,
        "python": _python(),
        "unsafe": unsafe,
        "cpu_s": cfg.cpu_s,
        "memory_bytes": cfg.memory_bytes,
        "processes": cfg.processes,
        "disk_bytes": cfg.disk_bytes,
        "max_code_bytes": _MAX_CODE_BYTES,
    }


@cache
def _probe() -> tuple[bool, str]:
    """(isolation works, why not): run an empty program in the jail once per process."""
    if not sys.platform.startswith("linux"):
        return False, f"it needs Linux namespaces and this is {sys.platform}"
    sandbox = Sandbox(SandboxSettings(wall_s=30))
    try:
        result = sandbox._run(b"print('ok')", unsafe=False)
    except SandboxError as exc:
        return False, str(exc).removeprefix("The python sandbox could not start: ")
    if result.stdout.strip() != "ok":
        return False, f"a test program did not run ({result.report()[:300]})"
    return True, ""


def isolation_available() -> bool:
    """True when this machine can run code with network and filesystem isolation."""
    return _probe()[0]
