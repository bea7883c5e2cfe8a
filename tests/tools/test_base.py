"""Tools from typed functions, one call's guards, the registry and ``lamina tools``."""

from __future__ import annotations

import json
import time
from typing import Annotated, Literal

import pytest
from pydantic import Field
from typer.testing import CliRunner

from lamina.cli import app
from lamina.errors import ConfigError
from lamina.tools import (
    FunctionTool,
    ToolContext,
    ToolError,
    available,
    get_tool,
    register,
    run_tool,
    tool,
)
from lamina.tools.base import truncate


def forecast(
    city: Annotated[str, Field(max_length=40)],
    days: int = 1,
    unit: Literal["celsius", "fahrenheit"] = "celsius",
) -> str:
    """The weather forecast for a city.

    Args:
        city: the city, e.g. Paris
        days: how many days ahead (1 to 7)
        unit: temperature unit
    """
    return f"{city}: sunny for {days} day(s), 21 {unit}"


def test_schema_and_description_come_from_the_function() -> None:
    t = FunctionTool(forecast)
    assert t.name == "forecast"
    assert t.description == "The weather forecast for a city."
    days = {"type": "integer", "default": 1, "description": "how many days ahead (1 to 7)"}
    unit = {
        "enum": ["celsius", "fahrenheit"],
        "type": "string",
        "default": "celsius",
        "description": "temperature unit",
    }
    assert t.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 40, "description": "the city, e.g. Paris"},
            "days": days,
            "unit": unit,
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    assert t.call({"city": "Oslo", "days": "3"}) == "Oslo: sunny for 3 day(s), 21 celsius"


def test_bad_arguments_become_an_observation_naming_each_problem() -> None:
    result = run_tool(FunctionTool(forecast), {"city": "x" * 50, "unit": "kelvin", "extra": 1})
    assert not result.ok
    assert result.error is not None
    assert "invalid arguments for forecast" in result.error
    assert "city" in result.error and "unit" in result.error and "extra" in result.error
    assert result.observation.startswith("Error: ")
    assert not run_tool(FunctionTool(forecast), "{not json").ok
    assert "must be a JSON object" in str(run_tool(FunctionTool(forecast), "[1, 2]").error)


def test_exceptions_timeouts_and_huge_output_are_observations() -> None:
    @tool
    def broken(x: int) -> str:
        """Always fails."""
        raise RuntimeError(f"boom {x}")

    @tool
    def slow() -> str:
        """Takes too long."""
        time.sleep(5)
        return "late"

    @tool(name="loud")
    def noisy() -> str:
        """Prints a lot."""
        return "z" * 10_000

    failed = run_tool(broken, {"x": 1})
    assert (failed.ok, failed.error) == (False, "broken raised RuntimeError: boom 1")
    started = time.monotonic()
    late = run_tool(slow, {}, timeout_s=0.3)
    assert not late.ok and "did not finish within 0.3 s" in str(late.error)
    assert time.monotonic() - started < 2
    cut = run_tool(noisy, {}, max_chars=100)
    assert cut.ok and cut.truncated
    assert cut.output.endswith("[... output truncated: 9900 more characters not shown]")
    assert truncate("short", 100) == ("short", False)


def test_a_function_without_a_docstring_is_refused() -> None:
    def nameless(x: int) -> str:
        return str(x)

    with pytest.raises(ToolError, match="no description"):
        FunctionTool(nameless)
    assert FunctionTool(nameless, description="Echo x.").description == "Echo x."


def test_registry_lists_builtins_and_takes_third_party_tools() -> None:
    builtins = {"calculator", "python", "sql", "search_documents", "http_get", "web_search"}
    assert {*builtins, "remember", "recall"} <= set(available())
    register("forecast", FunctionTool(forecast))
    assert get_tool("forecast").name == "forecast"
    register("forecast_factory", lambda context: FunctionTool(forecast, name="forecast_factory"))
    assert get_tool("forecast_factory", ToolContext()).description.startswith("The weather")
    with pytest.raises(ConfigError, match="Unknown tool 'nope'"):
        get_tool("nope")


def test_cli_tools_list_and_run() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["tools", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    names = [row["name"] for row in json.loads(listed.output)]
    assert "calculator" in names
    ok = runner.invoke(
        app, ["tools", "run", "calculator", "--args", '{"expression": "2+3*4"}', "--json"]
    )
    assert json.loads(ok.output) == {"ok": True, "output": "14", "error": None}
    bad = runner.invoke(
        app, ["tools", "run", "calculator", "--args", '{"expression": "__import__(1)"}', "--json"]
    )
    payload = json.loads(bad.output)
    assert payload["ok"] is False and payload["output"] == "" and "not allowed" in payload["error"]
    plain = runner.invoke(app, ["tools", "run", "calculator", "--args", '{"expression": "1/0"}'])
    assert plain.exit_code == 1 and "division by zero" in plain.output
    unknown = runner.invoke(app, ["tools", "run", "nope"])
    assert unknown.exit_code == 1 and "Unknown tool" in unknown.output
