"""Shared fixtures: an isolated LAMINA_HOME, no network beyond loopback, real servers, and
:func:`require` for tests that need an optional component."""

from __future__ import annotations

import importlib
import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import httpx
import pytest

from lamina.settings import Settings, get_settings


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "lamina-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in list(os.environ):
        if name.startswith("LAMINA_") and name != "LAMINA_HOME":
            monkeypatch.delenv(name)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def in_ci() -> bool:
    """Whether the tests run in CI (``CI=true``, as GitHub Actions, GitLab and most CIs set)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(component: str, reason: str) -> NoReturn:
    """Skip the test because ``component`` is missing, saying why; in CI, fail it instead: a
    component CI installs is missing only when the install is broken, and a broken install
    must not pass as a row of skips."""
    message = f"{component} is not available: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing component fails the run)", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require(module: str, reason: str) -> ModuleType:
    """Import ``module`` for a test that needs it; when it cannot be imported, skip the test
    (fail it in CI) with ``reason``, which should say how to install it.

    ``require("faiss", "the IVF index needs it: pip install 'lamina[ann]'")``
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        unavailable(module, f"{reason} ({error})")


_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> None:
    host = address[0] if isinstance(address, tuple) else None
    if isinstance(host, str):
        try:
            allowed = ipaddress.ip_address(host).is_loopback
        except ValueError:
            allowed = host == "localhost"
        if not allowed:
            raise OSError(f"tests may not reach {host}: only loopback is allowed")
    _real_connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    from lamina.models.local import bundled_model_path

    return bundled_model_path()


@pytest.fixture(scope="session")
def llama_server(gguf_path: Path) -> Iterator[str]:
    """A real OpenAI-compatible peer: llama-cpp-python's server on the bundled GGUF."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--verbose",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("llama_cpp.server did not start within 60 s")
    yield base
    proc.terminate()
    proc.wait(timeout=10)
