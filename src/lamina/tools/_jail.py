"""The sandbox's first process: builds the jail, then becomes the untrusted program.

Run by :mod:`lamina.tools.sandbox` as ``python -I -S _jail.py CONFIG`` with the code on stdin.
It imports only the standard library (it runs before any isolation, with no site-packages) and
never imports Lamina. Steps, in order:

1. read the code;
2. ``unshare`` mount, network, PID, IPC and UTS namespaces, and (unless running as root) a
   user namespace mapping the outer uid to uid 1000 inside, which grants what building the
   jail takes without root. The new network namespace has only a loopback interface, and it
   is down: no connection leaves the jail;
3. fork: the child is PID 1 of the new PID namespace, so no process outside it can be seen
   or signalled, and when it dies the kernel kills everything it started;
4. the child builds a root on a 1 MiB tmpfs: the system directories bound read-only, four
   device nodes, a fresh ``/proc``, and ``/work``, a size-limited tmpfs that is the only
   writable place; ``pivot_root`` into it and detach the old root;
5. as root, become ``nobody`` (every capability goes); resource limits (CPU, address space,
   processes, file size, open files, no core dumps), ``no_new_privs``, then ``execve`` the
   interpreter (a user namespace's capabilities go too: uid 1000 is not root inside it).

A failure before ``execve`` prints one line ``LAMINA-SANDBOX-<KIND>: reason`` on stderr and
exits 125; the parent turns it into a clear error. ``unsafe`` mode skips steps 2-5 (limits,
clean environment and a temporary directory only) and is used only when the operator allows.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import signal
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2
# statvfs f_flag bits -> the mount flags a remount must keep (locked in a user namespace)
_KEEP = {
    1: MS_RDONLY,
    2: MS_NOSUID,
    4: MS_NODEV,
    8: MS_NOEXEC,
    1024: MS_NOATIME,
    2048: MS_NODIRATIME,
    4096: MS_RELATIME,
}
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
INSIDE_UID = 1000
NOBODY = 65534
SETUP_FAILED = 125
RUNNER = (
    "import sys\n"
    "def _audit(event, args):\n"
    "    if event.startswith('ctypes.'):\n"
    "        raise PermissionError('ctypes is disabled in the Lamina sandbox')\n"
    "sys.addaudithook(_audit)\n"
    "del _audit\n"
    "with open('main.py', encoding='utf-8') as f:\n"
    "    _source = f.read()\n"
    "exec(compile(_source, 'main.py', 'exec'), {'__name__': '__main__'})\n"
)

libc = ctypes.CDLL(None, use_errno=True)
Config = dict[str, Any]


def fail(kind: str, reason: str) -> None:
    sys.stderr.write(f"LAMINA-SANDBOX-{kind}: {reason}\n")
    sys.stderr.flush()
    os._exit(SETUP_FAILED)


def check(result: int, what: str, kind: str = "SETUP") -> None:
    if result != 0:
        errno = ctypes.get_errno()
        fail(kind, f"{what} failed: {os.strerror(errno)} (errno {errno})")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    check(
        libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source or fstype or ''} on {target}",
    )


def set_limits(config: Config) -> None:
    limits = {
        resource.RLIMIT_CPU: config["cpu_s"],
        resource.RLIMIT_AS: config["memory_bytes"],
        resource.RLIMIT_NPROC: config["processes"],
        resource.RLIMIT_FSIZE: config["disk_bytes"],
        resource.RLIMIT_NOFILE: 64,
        resource.RLIMIT_CORE: 0,
    }
    for kind, value in limits.items():
        resource.setrlimit(kind, (value, value))


def write(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


def build_root(config: Config, code: bytes, owner: int | None) -> None:
    """In the new mount namespace: the jail's root, entered with pivot_root."""
    root = config["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for link, target in config["links"]:
        os.symlink(target, root + link)
    for path, kind in config["binds"]:
        inside = root + path
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        if kind == "dir":
            os.makedirs(inside, exist_ok=True)
        else:
            open(inside, "w").close()
        mount(path, inside, None, MS_BIND | MS_REC)
        kept = sum(flag for bit, flag in _KEEP.items() if os.statvfs(inside).f_flag & bit)
        extra = 0 if path.startswith("/dev/") else MS_NOSUID | MS_NODEV
        mount(None, inside, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept | extra)
    os.makedirs(root + "/proc")
    # A fresh /proc shows only the jail's processes. Some container runtimes forbid it (masked
    # paths in the outer /proc); the program then runs without /proc rather than not at all.
    libc.mount(b"proc", (root + "/proc").encode(), b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    os.makedirs(root + "/work")
    ids = f",uid={owner},gid={owner}" if owner is not None else ""
    size = config["disk_bytes"]
    mount("tmpfs", root + "/work", "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=0700{ids}")
    with open(root + "/work/main.py", "wb") as file:
        file.write(code)
    os.chmod(root + "/work/main.py", 0o644)
    os.chdir(root)
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is not None:
        check(libc.syscall(number, b".", b"."), "pivot_root")
        check(libc.umount2(b".", MNT_DETACH), "detaching the old root")
    else:  # an architecture we have no syscall number for: chroot (closed by dropping caps)
        os.chroot(".")
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir("/work")


def isolated(config: Config, code: bytes) -> None:
    # As root the namespaces need no user namespace, and the jail drops to nobody at the end;
    # as anyone else a user namespace grants what building the jail takes, and its uid 1000
    # is not root inside, so execve drops those capabilities.
    as_root = os.geteuid() == 0
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if not as_root:
        flags |= CLONE_NEWUSER
    check(libc.unshare(flags), "unshare(mount, network, pid namespaces)", "UNAVAILABLE")
    if not as_root:
        try:
            write("/proc/self/setgroups", "deny")
            write("/proc/self/uid_map", f"{INSIDE_UID} {uid} 1")
            write("/proc/self/gid_map", f"{INSIDE_UID} {gid} 1")
        except OSError as exc:
            fail("UNAVAILABLE", f"cannot map the user namespace's ids: {exc.strerror}")
    pid = os.fork()
    if pid:
        # Outside the new PID namespace: wait for the jail and report how it ended.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: os.kill(pid, signal.SIGKILL))
        _, status = os.waitpid(pid, 0)
        ended = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        os._exit(ended)
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    build_root(config, code, NOBODY if as_root else None)
    libc.sethostname(b"sandbox", 7)
    if as_root:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)  # from root to nobody: every capability goes
    run(config, ["-I", "-c", RUNNER], "/work")


def unsafe(config: Config, code: bytes) -> None:
    work = config["root"]
    with open(os.path.join(work, "main.py"), "wb") as file:
        file.write(code)
    os.chdir(work)
    run(config, ["-I", "-c", RUNNER], work)


def run(config: Config, args: list[str], home: str) -> None:
    set_limits(config)
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    python = config["python"]
    os.execve(python, [python, *args], env)


def main() -> None:
    config = json.loads(sys.argv[1])
    code = sys.stdin.buffer.read(config["max_code_bytes"] + 1)
    if len(code) > config["max_code_bytes"]:
        fail("SETUP", f"the code is longer than {config['max_code_bytes']} bytes")
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)  # the program reads nothing from the parent
    if config["unsafe"]:
        unsafe(config, code)
    else:
        isolated(config, code)


if __name__ == "__main__":
    main()
