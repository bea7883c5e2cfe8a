"""Doctests in the package run with a throwaway LAMINA_HOME (not shipped: src/ is no package)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.settings import get_settings


@pytest.fixture(autouse=True)
def _doctest_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
