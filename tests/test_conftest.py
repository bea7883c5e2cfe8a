"""tests/conftest.py's require(): a missing component skips a test, except in CI, where it fails."""

from __future__ import annotations

import json

import pytest

from tests.conftest import require, unavailable


def test_require_returns_the_module() -> None:
    assert require("json", "the standard library") is json


def test_a_missing_component_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"no_such_module.*pip install it"):
        require("no_such_module", "pip install it")


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_in_ci_a_missing_component_fails(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"no_such_module.*CI=true"):
        require("no_such_module", "pip install it")
    with pytest.raises(pytest.fail.Exception, match="the bundled model is not available"):
        unavailable("the bundled model", "reinstall it")


def test_ci_false_still_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        unavailable("pgserver", "pip install pgserver")
