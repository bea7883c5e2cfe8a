"""The web UI in a real browser: ``lamina serve`` in its own process, Debian's chromium driven
by Playwright (from PyPI; never ``playwright install``, which downloads a browser).

Chromium comes from the system package (``apt-get install chromium``, which ``make test`` runs
when it is missing and it can). Without it the browser tests fail under CI (``CI=true``) and
are skipped elsewhere, with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lamina.server.keys import KeyStore
from tests.conftest import free_port

CHROMIUM = os.environ.get("LAMINA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "build" / "web"


def _missing(why: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{why} (CI=true: the browser tests must run)")
    pytest.skip(why)


# Module scope, not session: the sync API keeps an event loop running in the main thread until
# it stops, and later tests (doctests with asyncio.run) need the thread without one.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -e '.[dev]'")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _missing(f"no chromium at {CHROMIUM}: apt-get install -y chromium (make test does it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Served:
    """``lamina serve`` in a subprocess with its own LAMINA_HOME and one API key."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.key = KeyStore(home / "keys.sqlite").create("browser")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / "server.log"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LAMINA_")},
            "LAMINA_HOME": str(home),
            "HF_HUB_OFFLINE": "1",
            "LAMINA_LOCAL__SLOTS": "2",
            "LAMINA_LOCAL__N_CTX": "4096",
            "LAMINA_CACHE": "false",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lamina", "serve", "--port", str(self.port)],
            env=env,
            cwd=home,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"lamina serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.process.kill()
        raise RuntimeError("lamina serve did not start within 90 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("web-home"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shots() -> Path:
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS
