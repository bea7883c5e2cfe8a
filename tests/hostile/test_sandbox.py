"""The python tool's sandbox against code that tries to get out (issue 11's escape battery).

Each case runs real hostile code through the real sandbox, both as ``lamina tools run python``
would (``run_tool`` on the registered tool) and, where it matters, at the Sandbox level to
check which limit fired. Every one must be blocked with an observation that says what
happened. A last group runs the jail from an unprivileged user: isolation needs no root.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.settings import SandboxSettings, Settings
from lamina.tools import SandboxError, ToolContext, get_tool, run_tool
from lamina.tools import sandbox as sandbox_module
from lamina.tools.base import ToolResult
from lamina.tools.sandbox import Sandbox, isolation_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not isolation_available(), reason="this OS cannot isolate the sandbox"),
]


def python_tool(settings: Settings | None = None) -> object:
    return get_tool("python", ToolContext(settings=settings or Settings()))


def run(code: str, settings: Settings | None = None) -> ToolResult:
    return run_tool(python_tool(settings), {"code": code}, timeout_s=60, max_chars=4000)  # type: ignore[arg-type]


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener on the host's loopback that counts the connections it accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()
    assert accepted == [], "the sandbox reached the host's loopback listener"


def test_a_plain_program_runs() -> None:
    result = run("print(sum(range(1, 11)))")
    assert result.ok and result.output == "55"


def test_tcp_connect_to_a_loopback_listener_is_blocked(listener: int) -> None:
    result = run(f"import socket\nsocket.create_connection(('127.0.0.1', {listener}), timeout=2)")
    assert not result.ok
    assert "Network is unreachable" in result.observation


def test_dns_lookup_fails() -> None:
    result = run("import socket\nprint(socket.getaddrinfo('example.com', 443))")
    assert not result.ok and "gaierror" in result.observation


def test_the_parents_environment_is_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-should-not-leak")
    code = (
        "import os, glob\n"
        "print(sorted(os.environ))\n"
        "for path in glob.glob('/proc/*/environ'):\n"
        "    print(path, open(path, 'rb').read())\n"
    )
    result = run(code)
    assert result.ok
    assert "sk-canary" not in result.output
    assert "OPENAI_API_KEY" not in result.output
    assert "['HOME', 'LANG', 'PATH', 'PYTHONDONTWRITEBYTECODE'" in result.output
    # its own /proc shows only its own processes: the parent's environ is not even there
    assert f"/proc/{os.getpid()}/" not in result.output


def test_writing_outside_the_work_dir_fails_and_leaves_nothing() -> None:
    home = Path.home()
    target = home / "lamina-sandbox-escape.txt"
    tmp_target = Path(tempfile.gettempdir()) / "lamina-sandbox-escape.txt"
    code = (
        "import os\n"
        f"for path in [{str(target)!r}, {str(tmp_target)!r}, '/usr/x', '/etc/x']:\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print('blocked', path, exc.strerror)\n"
        "open('inside.txt', 'w').write('fine')\n"
        "print(open('inside.txt').read(), os.getcwd())\n"
    )
    result = run(code)
    assert result.ok, result.observation
    assert "WROTE" not in result.output
    assert result.output.count("blocked") == 4
    assert "fine /work" in result.output
    assert not target.exists() and not tmp_target.exists()


def test_the_checkout_and_home_are_not_visible() -> None:
    here = str(Path(__file__).resolve())
    result = run(
        f"import os\nprint(os.path.exists({here!r}), os.path.exists({str(Path.home())!r}))"
    )
    # the home directory may be a bare mount point of the read-only root, never its files
    assert result.ok and result.output.startswith("False")


def test_fork_bomb_is_contained() -> None:
    started = time.monotonic()
    result = run("import os\nwhile True:\n    os.fork()")
    assert not result.ok
    assert (
        "Resource temporarily unavailable" in result.observation or "stopped" in result.observation
    )
    assert time.monotonic() - started < 30


def test_memory_bomb_gets_a_memory_error() -> None:
    result = run("x = bytearray(4 * 1024 ** 3)")
    assert not result.ok and "MemoryError" in result.observation


def test_infinite_loop_is_stopped_by_the_cpu_limit() -> None:
    settings = Settings(sandbox=SandboxSettings(cpu_s=1, wall_s=20))
    started = time.monotonic()
    result = run("while True:\n    pass", settings)
    assert not result.ok and "CPU time limit (1 s)" in result.observation
    assert time.monotonic() - started < 15


def test_sleeping_forever_is_stopped_by_the_wall_clock() -> None:
    sandbox = Sandbox(SandboxSettings(wall_s=1.5))
    started = time.monotonic()
    result = sandbox.run("import time\ntime.sleep(600)")
    assert result.limit == "wall-clock limit (1.5 s)"
    assert time.monotonic() - started < 10


def test_ctypes_is_refused() -> None:
    result = run("import ctypes\nctypes.CDLL(None).kill(1, 9)")
    assert not result.ok
    assert "ctypes is disabled in the Lamina sandbox" in result.observation


def test_killing_the_parent_is_impossible() -> None:
    parent = os.getpid()
    code = (
        "import os, signal\n"
        "print('ppid', os.getppid())\n"
        f"for pid in ({parent}, {os.getppid()}):\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "        print('KILLED', pid)\n"
        "    except OSError as exc:\n"
        "        print('blocked', pid, exc.strerror)\n"
    )
    result = run(code)
    assert result.ok, result.observation
    assert "KILLED" not in result.output
    assert "ppid 0" in result.output  # PID 1 of its own namespace: no parent in sight


def test_huge_stdout_is_cut_at_the_output_limit() -> None:
    sandbox = Sandbox(SandboxSettings(output_bytes=10_000))
    started = time.monotonic()
    result = sandbox.run("while True:\n    print('x' * 1000)")
    assert result.limit is not None and result.limit.startswith("output limit (10000 bytes")
    assert len(result.stdout) <= 10_000
    assert time.monotonic() - started < 10
    observation = run("print('y' * 50_000)")  # under the limit: the tool's own truncation note
    assert observation.truncated and "output truncated" in observation.output


def test_filling_the_work_dir_stops_at_its_size() -> None:
    settings = Settings(sandbox=SandboxSettings(disk_bytes=2 * 1024 * 1024))
    result = run("open('big', 'wb').write(b'x' * 10 * 1024 * 1024)", settings)
    assert not result.ok
    assert "No space left" in result.observation or "File too large" in result.observation


def test_processes_are_gone_after_a_run() -> None:
    marker = f"lamina-sandbox-sleeper-{os.getpid()}"
    run(f"import subprocess\nsubprocess.Popen(['sleep', '300', '{marker}'])\nprint('started')")
    time.sleep(0.5)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert marker not in ps


def test_no_isolation_means_refusal_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_module, "_probe", lambda: (False, "unshare failed: EPERM"))
    with pytest.raises(SandboxError, match="allow_unsafe"):
        Sandbox(SandboxSettings()).run("print(1)")
    refused = run("print(1)")
    assert not refused.ok and "cannot isolate code" in refused.observation
    unsafe = Sandbox(SandboxSettings(allow_unsafe=True, cpu_s=1))
    result = unsafe.run("import os\nprint(sorted(os.environ))\nwhile True: pass")
    assert not result.isolated
    assert "OPENAI_API_KEY" not in result.stdout
    assert result.limit == "CPU time limit (1 s)"


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not Path("/usr/bin/python3").exists(),
    reason="needs root to start an unprivileged user, setpriv and a system python3",
)
def test_an_unprivileged_user_gets_the_same_isolation(listener: int) -> None:
    """No root at run time: the jail builds itself in a user namespace as 'nobody'."""
    home = Path(tempfile.mkdtemp(prefix="lamina-nobody-"))
    home.chmod(0o755)
    jail = home / "_jail.py"
    jail.write_text(Path(sandbox_module.__file__).with_name("_jail.py").read_text())
    jail.chmod(0o644)
    root = home / "root"
    root.mkdir()
    os.chown(root, 65534, 65534)
    config = sandbox_module._config(root, SandboxSettings(), unsafe=False)
    config["python"] = "/usr/bin/python3"  # nobody cannot read an interpreter under /root
    config["binds"] = [b for b in config["binds"] if not str(b[0]).startswith("/root")]
    code = (
        "import os, socket\n"
        "print(os.getuid(), os.getpid())\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {listener}), timeout=2)\n"
        "except OSError as exc:\n"
        "    print('net', exc.strerror)\n"
        "try:\n"
        "    open('/usr/x', 'w')\n"
        "except OSError as exc:\n"
        "    print('fs', exc.strerror)\n"
    )
    try:
        done = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/bin/python3",
                "-I",
                "-S",
                str(jail),
                json.dumps(config),
            ],
            input=code.encode(),
            capture_output=True,
            cwd=root,
            timeout=60,
            env={"PATH": "/usr/bin:/bin"},
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert lines == ["1000 1", "net Network is unreachable", "fs Read-only file system"]
    assert sys.platform.startswith("linux")
