"""The agent on the bundled SmolLM2-135M: the issue's done-when, through the real CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lamina.cli import app

pytestmark = pytest.mark.integration


def test_lamina_agent_multiplies_with_the_calculator() -> None:
    result = CliRunner().invoke(
        app, ["agent", "What is 1234 * 5678? Use the calculator.", "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert "7006652" in payload["answer"]
    assert payload["stop_reason"] == "final_answer"
    calls = [s for s in payload["steps"] if s["tool"] == "calculator"]
    assert calls and calls[0]["arguments"] == {"expression": "1234 * 5678"}
    assert calls[0]["observation"] == "7006652"
    assert payload["usage"]["total_tokens"] > 0 and payload["trace_id"]
