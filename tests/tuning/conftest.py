"""A LAMINA_HOME shared by the tuning tests: the bundled model is dequantised for training
once per session (about 25 s), not once per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.settings import get_settings


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tuning-home")


@pytest.fixture
def tuning_home(shared_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point LAMINA_HOME (this process and its children) at the shared home."""
    from lamina.models.local import bundled_model_path
    from lamina.tuning.base import hf_checkpoint

    monkeypatch.setenv("LAMINA_HOME", str(shared_home))
    # llama.cpp's threads spin while they wait for each other: on a busy 2-core machine two
    # of them are many times slower than one.
    monkeypatch.setenv("LAMINA_LOCAL__N_THREADS", "1")
    # The response cache keys a local model by its file name, the same (model.gguf) for every
    # run: a cached answer of another run's model must not pass for this one's.
    monkeypatch.setenv("LAMINA_CACHE", "false")
    get_settings.cache_clear()
    hf_checkpoint(bundled_model_path(), shared_home)
    yield shared_home
    get_settings.cache_clear()
