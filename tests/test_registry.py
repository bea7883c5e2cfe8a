"""lamina.registry: entry points and run-time registrations, loaded lazily, clear errors."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from lamina.errors import ConfigError
from lamina.registry import Registry


def test_entry_points_are_listed_without_importing_them() -> None:
    # A fresh interpreter: listing every registry must import none of the backends' modules.
    code = (
        "import sys\n"
        "from lamina.models import backends\n"
        "from lamina.models.embeddings import embedder_backends\n"
        "from lamina.retrieval.store import store_schemes\n"
        "print(sorted(backends()), embedder_backends(), store_schemes())\n"
        "heavy = ['lamina.models.anthropic', 'lamina.models.openai', 'lamina.models.local',\n"
        "         'lamina.models.embeddings.st', 'lamina.retrieval.store.postgres']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert "'scripted'" in out[0] and "'hash'" in out[0] and "'postgresql'" in out[0]
    assert out[1] == "[]"


def test_an_entry_point_loads_once_on_first_use() -> None:
    models = Registry[object]("lamina.models", kind="model backend", plural="backends")
    assert {"local", "scripted", "openai"} <= set(models.names())
    from lamina.models.scripted import ScriptedModel

    assert models.get("scripted") is ScriptedModel
    assert models.get("scripted") is models.get("scripted")


def test_run_time_registration_wins_over_an_entry_point() -> None:
    models = Registry[object]("lamina.models", kind="model backend", plural="backends")
    models.register("scripted", "mine")
    assert models.get("scripted") == "mine" and "scripted" in models


def test_unknown_name_lists_the_known_ones_and_the_hint() -> None:
    tools = Registry[str]("lamina.no-such-group", kind="tool", plural="tools", hint="Run X.")
    with pytest.raises(ConfigError, match=r"^Unknown tool 'nope'\. Known tools: none\. Run X\.$"):
        tools.get("nope")
    tools.register("b", "B")
    tools.register("a", "A")
    with pytest.raises(ConfigError, match=r"Unknown tool 'c' in 'c:1'\. Known tools: a, b\."):
        tools.get("c", where=" in 'c:1'")


def test_concurrent_first_use_gives_one_entry() -> None:
    models = Registry[object]("lamina.models", kind="model backend", plural="backends")
    seen: list[object] = []

    def load() -> None:
        seen.append(models.get("openai"))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and all(entry is seen[0] for entry in seen)
