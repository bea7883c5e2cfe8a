#!/usr/bin/env python3
"""Build (once) and locate the llama-cpp-python wheel for this machine and these build flags.

pip caches a wheel built from an sdist under the sdist's hash, so after the build flags change
it silently reinstalls the old binary (this is how a `-march=native` wheel with AMX kernels kept
crashing Xeon machines after the flags were fixed). This script never uses pip's cache: it
builds into a wheelhouse folder whose name is a hash of everything that changes the binary:

- the llama-cpp-python version and the CMake arguments (`LLAMA_CMAKE_ARGS` in the Makefile),
- the machine architecture, the C/C++ compiler versions and the Python ABI,
- for a native build (`GGML_NATIVE` on, the default), the CPU's instruction-set flags, so a
  wheelhouse copied or shared between different CPUs is never reused on the wrong one.

Usage: llama_wheel.py VERSION CMAKE_ARGS WHEELHOUSE_ROOT   (prints the wheel's path)
Standard library only: it runs before the virtual environment has anything in it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def cpu_flags() -> list[str]:
    """The instruction-set flags of this CPU (Linux /proc/cpuinfo, macOS sysctl)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return sorted(set(value.split()))
    if sys.platform == "darwin":
        out = subprocess.run(["sysctl", "-a"], capture_output=True, text=True).stdout
        return sorted(x for x in out.splitlines() if x.startswith("hw.optional."))
    return []


def compiler_version(name: str) -> str:
    exe = os.environ.get(name) or {"CC": "cc", "CXX": "c++"}[name]
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "none"
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def is_native(cmake_args: str) -> bool:
    # GGML_NATIVE defaults to ON in llama.cpp; only an explicit OFF makes a portable build.
    return not any(
        arg.upper() in ("-DGGML_NATIVE=OFF", "-DGGML_NATIVE=0", "-DGGML_NATIVE=FALSE")
        for arg in cmake_args.split()
    )


def build_key(version: str, cmake_args: str) -> dict[str, object]:
    return {
        "llama_cpp_python": version,
        "cmake_args": cmake_args,
        "machine": platform.machine(),
        "system": sys.platform,
        "python": f"{sys.implementation.name}{sys.version_info[0]}{sys.version_info[1]}",
        "cc": compiler_version("CC"),
        "cxx": compiler_version("CXX"),
        "cpu_flags": cpu_flags() if is_native(cmake_args) else "portable build",
    }


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    version, cmake_args, root = sys.argv[1], sys.argv[2], Path(sys.argv[3]).expanduser()
    key = build_key(version, cmake_args)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    house = root / f"llama_cpp_python-{version}-{digest}"
    wheels = sorted(house.glob("llama_cpp_python-*.whl"))
    if wheels:
        print(wheels[0])
        return 0
    print(
        f"building llama-cpp-python {version} with CMAKE_ARGS={cmake_args!r} "
        f"(once for this machine and these flags; a few minutes) into {house}",
        file=sys.stderr,
    )
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
        env = dict(os.environ, CMAKE_ARGS=cmake_args, FORCE_CMAKE="1")
        cmd = [
            sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--no-cache-dir", "--no-binary", "llama-cpp-python",
            f"llama-cpp-python=={version}", "--wheel-dir", tmp,
        ]  # fmt: skip
        if subprocess.run(cmd, env=env).returncode != 0:
            print(
                "error: the llama-cpp-python build failed. A C/C++ compiler and CMake are "
                "needed; to change the build flags set LLAMA_CMAKE_ARGS (see the README).",
                file=sys.stderr,
            )
            return 1
        built = sorted(Path(tmp).glob("llama_cpp_python-*.whl"))
        if not built:
            print("error: pip wheel produced no llama-cpp-python wheel", file=sys.stderr)
            return 1
        staging = Path(tmp) / "house"
        staging.mkdir()
        shutil.move(str(built[0]), staging / built[0].name)
        (staging / "build-key.json").write_text(json.dumps(key, indent=2, sort_keys=True) + "\n")
        try:
            staging.rename(house)  # atomic: a half-built wheelhouse is never seen
        except OSError:
            if not any(house.glob("llama_cpp_python-*.whl")):  # not a concurrent build's
                raise
    print(sorted(house.glob("llama_cpp_python-*.whl"))[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
