"""The llama.cpp runtime under the local backends: what it was built with, and whether it runs.

llama-cpp-python is compiled on the user's machine, and a binary that uses an instruction the
CPU (or its kernel) refuses dies with SIGILL, taking the Python process with it, no traceback.
It happened: ggml's AMX kernels, compiled in by ``-march=native`` on Xeon hosts, fault in
worker threads. So before the first local model loads in a process, one token is decoded in a
short-lived child process; if the child dies on a signal, a :class:`NativeCrashError` names the
signal, the CPU and the fix. A passing check is remembered per build and CPU (a file under
``$LAMINA_HOME/runtime``), so normal calls pay nothing after the first.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from lamina.errors import NativeCrashError
from lamina.settings import Settings, get_settings

__all__ = [
    "AMX_MNEMONICS",
    "ProbeResult",
    "amx_instructions",
    "build_info",
    "cpu_features",
    "ensure_runtime",
    "library_files",
    "probe",
    "runtime_key",
    "system_info",
]

# Every AMX instruction (tile configuration, loads/stores and the dot products). Any of them in
# a shipped library means the AMX kernels were compiled in.
AMX_MNEMONICS = (
    "ldtilecfg",
    "sttilecfg",
    "tilerelease",
    "tilezero",
    "tileloadd",
    "tileloaddt1",
    "tilestored",
    "tdpbssd",
    "tdpbsud",
    "tdpbusd",
    "tdpbuud",
    "tdpbf16ps",
    "tdpfp16ps",
)
_AMX_RE = re.compile(r"\b(" + "|".join(AMX_MNEMONICS) + r")\b")

# The features that decide which kernels can run; shown in errors and by `lamina doctor`.
_NOTABLE_FEATURES = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16",
    "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve", "i8mm",
)  # fmt: skip

# The child decodes a 32-token prompt, so batched matrix kernels run, on every configured
# thread (at least two, so worker threads run: that is where the AMX fault happened).
_PROBE_SCRIPT = """
import sys
from llama_cpp import Llama
path, threads = sys.argv[1], int(sys.argv[2])
llm = Llama(model_path=path, n_ctx=128, n_batch=64, n_threads=threads, n_threads_batch=threads,
            verbose=False)
tokens = llm.tokenize(b"The quick brown fox jumps over the lazy dog. " * 3)[:32]
llm.eval(tokens)
llm.sample(temp=0.0)
print("ok")
"""
PROBE_TIMEOUT_S = 120.0

_checked: set[str] = set()
_lock = threading.Lock()


@dataclass(frozen=True)
class ProbeResult:
    """How a one-token decode in a child process went."""

    ok: bool
    signal: str | None = None
    error: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_features() -> list[str]:
    """This CPU's instruction-set flags as the kernel reports them (Linux), else []."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return sorted(set(value.split()))
    return []


def cpu_model() -> str:
    """The CPU's marketing name, e.g. 'AMD EPYC 9R14', or the machine architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def notable_features(features: list[str] | None = None) -> list[str]:
    """The subset of ``features`` that decides which llama.cpp kernels can run."""
    have = set(cpu_features() if features is None else features)
    return [f for f in _NOTABLE_FEATURES if f in have]


def _llama_package_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def library_files() -> list[Path]:
    """The native libraries llama-cpp-python loads (libllama, libggml*), sorted by name."""
    package = _llama_package_dir()
    if package is None:
        return []
    return sorted(p for p in (package / "lib").glob("*") if ".so" in p.name or p.suffix == ".dylib")


def system_info() -> str:
    """llama.cpp's own report of the features it was compiled for and detects at run time."""
    import llama_cpp

    return bytes(llama_cpp.llama_print_system_info()).decode("utf-8", "replace").strip()


def build_info() -> dict[str, Any]:
    """What llama-cpp-python was built with, from the wheelhouse the Makefile installed it from.

    ``scripts/llama_wheel.py`` writes ``build-key.json`` (version, CMake arguments, compiler,
    CPU flags for native builds) next to each wheel it builds; pip records the wheel's path in
    the installed package's ``direct_url.json``. Other installs report ``cmake_args: None``.
    """
    try:
        dist = metadata.distribution("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return {"version": None, "cmake_args": None, "source": "not installed"}
    info: dict[str, Any] = {"version": dist.version, "cmake_args": None, "source": "unknown"}
    raw = dist.read_text("direct_url.json")
    if raw:
        url = json.loads(raw).get("url", "")
        info["source"] = url
        if url.startswith("file://"):
            key = Path(unquote(urlparse(url).path)).parent / "build-key.json"
            if key.is_file():
                recorded = json.loads(key.read_text())
                info["cmake_args"] = recorded.get("cmake_args")
                info["compiler"] = recorded.get("cxx")
    return info


def amx_instructions(library: Path, limit: int = 5) -> list[str]:
    """AMX instructions found by disassembling ``library`` (objdump), at most ``limit``.

    Raises FileNotFoundError when objdump (GNU binutils) is not installed.
    """
    objdump = shutil.which("objdump")
    if objdump is None:
        raise FileNotFoundError("objdump (GNU binutils) is needed to inspect a native library")
    found: list[str] = []
    with subprocess.Popen(
        [objdump, "-d", "--no-show-raw-insn", str(library)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if _AMX_RE.search(line):
                found.append(" ".join(line.split()))
                if len(found) >= limit:
                    proc.kill()
                    break
    return found


def runtime_key() -> str:
    """A hash of the native libraries' bytes and this CPU's features: one check per pair."""
    digest = hashlib.sha256()
    for path in library_files():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(" ".join(cpu_features()).encode())
    digest.update(platform.machine().encode())
    return digest.hexdigest()[:24]


def probe(model_path: Path, *, threads: int | None = None) -> ProbeResult:
    """Load ``model_path`` and decode one token in a child process; report how it ended."""
    import time

    threads = max(2, threads or os.cpu_count() or 2)
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE_SCRIPT, str(model_path), str(threads)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            env={**os.environ, "PYTHONFAULTHANDLER": "0"},
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(
            ok=False,
            error=f"a one-token decode did not finish in {PROBE_TIMEOUT_S:.0f} s",
            seconds=time.monotonic() - start,
        )
    seconds = round(time.monotonic() - start, 2)
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return ProbeResult(ok=False, signal=name, seconds=seconds)
    if proc.returncode != 0 or "ok" not in proc.stdout:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return ProbeResult(ok=False, error=tail, seconds=seconds)
    return ProbeResult(ok=True, seconds=seconds)


def crash_message(result: ProbeResult, model_path: Path) -> str:
    """What a user reads when the runtime dies on a signal: the signal, the CPU, the fix."""
    description = {
        "SIGILL": "Illegal instruction",
        "SIGSEGV": "Segmentation fault",
        "SIGBUS": "Bus error",
        "SIGABRT": "Aborted",
        "SIGFPE": "Floating-point exception",
    }.get(result.signal or "", "killed by a signal")
    features = " ".join(notable_features()) or "unknown"
    return (
        f"llama.cpp crashed with {result.signal} ({description}) decoding one token of "
        f"{model_path.name} in a test process, so the local model cannot run on this machine "
        f"({cpu_model()}; CPU features: {features}). The installed llama-cpp-python binary "
        f"uses instructions this CPU or its kernel refuses. Rebuild it for this machine: "
        f"`make install` in a Lamina checkout builds it without AMX for this CPU; to choose "
        f"other flags, `make install LLAMA_CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=ON'`. "
        f"Then run `lamina doctor`."
    )


def ensure_runtime(model_path: Path, settings: Settings | None = None) -> None:
    """Raise :class:`NativeCrashError` if llama.cpp dies on a signal on this machine.

    Checked once per process, and once per build and CPU across processes (a marker file
    under ``$LAMINA_HOME/runtime``). A probe that fails without a signal (a missing file, a
    bad model) is not cached and not raised: the real load reports that error itself.
    """
    settings = settings or get_settings()
    with _lock:
        try:
            key = runtime_key()
        except OSError:
            return  # the libraries moved under us; the real load will report it
        if key in _checked:
            return
        marker = settings.home / "runtime" / f"llama-{key}.ok"
        if marker.is_file():
            _checked.add(key)
            return
        probe_model = _probe_model(model_path)
        result = probe(probe_model, threads=settings.local.n_threads)
        if result.signal is not None:
            raise NativeCrashError(crash_message(result, probe_model), signal=result.signal)
        if result.ok:
            marker.parent.mkdir(parents=True, exist_ok=True)
            tmp = marker.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"cpu": cpu_model(), **result.as_dict()}) + "\n")
            tmp.replace(marker)
            _checked.add(key)


def _probe_model(model_path: Path) -> Path:
    """The bundled model is small and exercises the same kernels; a user's file otherwise."""
    from lamina.errors import ModelNotFoundError
    from lamina.models.local import bundled_model_path

    try:
        return bundled_model_path()
    except ModelNotFoundError:
        return model_path
