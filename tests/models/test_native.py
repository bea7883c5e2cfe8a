"""The llama.cpp runtime: no AMX code shipped, a native crash becomes an error, the build key."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lamina.errors import NativeCrashError
from lamina.models import native
from lamina.settings import Settings
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_process_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "_checked", set())


def _crash_with(monkeypatch: pytest.MonkeyPatch, signal_name: str) -> None:
    """Make the probe child die the way an unsupported instruction kills it."""
    script = f"import os, signal; os.kill(os.getpid(), signal.{signal_name})"
    monkeypatch.setattr(native, "_PROBE_SCRIPT", script)


# -- what is shipped ---------------------------------------------------------------------------


def test_the_llama_cpp_libraries_contain_no_amx_instructions() -> None:
    """AMX kernels fault in worker threads on common Xeon hosts: they must never be built in.

    Disassembling the installed libraries catches this on any machine, AMX or not.
    """
    libraries = native.library_files()
    assert any("ggml-cpu" in p.name or "libggml." in p.name for p in libraries), libraries
    for library in libraries:
        assert native.amx_instructions(library) == [], f"AMX code in {library}"


def test_the_amx_scan_finds_amx_code(tmp_path: Path) -> None:
    """The scan above is only worth something if it sees AMX when it is there."""
    source = tmp_path / "amx.c"
    source.write_text('void zero(void) { __asm__ volatile("tilezero %tmm0\\n\\ttilerelease"); }\n')
    library = tmp_path / "libamx.so"
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler is needed (it built llama-cpp-python)"
    if native.cpu_features() and "avx2" not in native.cpu_features():
        pytest.skip("not an x86-64 machine: there is no AMX to find")
    subprocess.run([compiler, "-shared", "-fPIC", "-o", library, source], check=True)
    found = native.amx_instructions(library)
    assert [line for line in found if "tilezero" in line]
    assert [line for line in found if "tilerelease" in line]


def test_llama_cpp_reports_no_amx_kernels() -> None:
    assert "AMX_INT8 = 1" not in native.system_info()


# -- the crash guard ---------------------------------------------------------------------------


def test_a_native_crash_becomes_an_error_naming_signal_cpu_and_fix(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, gguf_path: Path
) -> None:
    _crash_with(monkeypatch, "SIGILL")
    with pytest.raises(NativeCrashError) as caught:
        native.ensure_runtime(gguf_path, settings)
    message = str(caught.value)
    assert caught.value.signal == "SIGILL"
    assert "SIGILL (Illegal instruction)" in message
    assert "CPU features:" in message
    assert "LLAMA_CMAKE_ARGS" in message and "lamina doctor" in message
    assert not list((settings.home / "runtime").glob("*.ok")), "a crash must not be cached"


def test_loading_a_local_model_on_a_crashing_runtime_raises_instead_of_dying(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    from lamina.models.local import LocalModel

    _crash_with(monkeypatch, "SIGSEGV")
    with pytest.raises(NativeCrashError, match="SIGSEGV"):
        LocalModel(settings=settings).chat("hi", max_tokens=1)


@pytest.mark.integration
def test_a_passing_check_is_remembered_per_build_and_cpu(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, gguf_path: Path
) -> None:
    native.ensure_runtime(gguf_path, settings)  # the real decode, in a child process
    (marker,) = (settings.home / "runtime").glob("llama-*.ok")
    assert marker.name == f"llama-{native.runtime_key()}.ok"
    assert json.loads(marker.read_text())["ok"] is True

    calls: list[Path] = []
    monkeypatch.setattr(native, "probe", lambda path, **_: calls.append(path))
    monkeypatch.setattr(native, "_checked", set())  # a new process, same build and CPU
    native.ensure_runtime(gguf_path, settings)
    assert calls == [], "a remembered check must not spawn a probe"


def test_a_probe_that_fails_without_a_signal_is_neither_raised_nor_cached(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, gguf_path: Path
) -> None:
    monkeypatch.setattr(native, "_PROBE_SCRIPT", "raise SystemExit('no such model')")
    native.ensure_runtime(gguf_path, settings)  # the real load reports its own error
    assert not (settings.home / "runtime").exists()


# -- the wheel's build key ---------------------------------------------------------------------


def _wheel_script() -> object:
    spec = importlib.util.spec_from_file_location("llama_wheel", ROOT / "scripts/llama_wheel.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["llama_wheel"] = module
    spec.loader.exec_module(module)
    return module


def test_the_wheelhouse_key_changes_with_every_input_of_the_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pip keys a wheel by the sdist alone; our wheelhouse must not reuse another build."""
    script = _wheel_script()
    native_args = "-DGGML_NATIVE=ON -DCMAKE_C_FLAGS='-mno-amx-tile'"
    base = script.build_key("0.3.36", native_args)  # type: ignore[attr-defined]
    assert base != script.build_key("0.3.36", "-DGGML_NATIVE=ON")  # type: ignore[attr-defined]
    assert base != script.build_key("0.3.37", native_args)  # type: ignore[attr-defined]
    # A native build is tied to the CPU it was built on; a portable one is not.
    monkeypatch.setattr(script, "cpu_flags", lambda: ["avx2", "amx_tile"])
    assert base != script.build_key("0.3.36", native_args)  # type: ignore[attr-defined]
    portable = "-DGGML_NATIVE=OFF -DGGML_AVX2=ON"
    first = script.build_key("0.3.36", portable)  # type: ignore[attr-defined]
    monkeypatch.setattr(script, "cpu_flags", lambda: ["sse4_2"])
    assert first == script.build_key("0.3.36", portable)  # type: ignore[attr-defined]


def test_the_installed_llama_cpp_came_from_the_wheelhouse() -> None:
    """`make install` installs the wheel built for these flags, recorded next to it."""
    info = native.build_info()
    if info["cmake_args"] is None:
        unavailable(
            "llama-cpp-python from the wheelhouse",
            f"it was not installed by `make install` ({info['source']})",
        )
    assert "GGML_NATIVE" in info["cmake_args"] or "GGML_" in info["cmake_args"]
    if native.cpu_features() and "avx2" in native.cpu_features():
        assert "-mno-amx-tile" in info["cmake_args"] or "GGML_NATIVE=OFF" in info["cmake_args"]
