"""The `lamina` command, run as a real process (the model is the real bundled one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest


def lamina(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lamina", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.mark.integration
def test_generate_answers_paris() -> None:
    run = lamina(
        "generate", "What is the capital of France? Answer in one word.", "--temperature", "0"
    )
    assert run.returncode == 0, run.stderr
    assert "Paris" in run.stdout
    assert run.stdout.strip() == run.stdout.strip().splitlines()[0]  # only the completion


@pytest.mark.integration
def test_generate_with_json_schema_prints_valid_json(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 40},
            "country": {"type": "string", "maxLength": 40},
        },
        "required": ["city", "country"],
    }
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    for stream in ("--stream", "--no-stream"):
        run = lamina(
            "generate", "Name a city.", "--json-schema", str(path), "--temperature", "0", stream
        )
        assert run.returncode == 0, run.stderr
        jsonschema.validate(json.loads(run.stdout), schema)


@pytest.mark.integration
def test_tokens_prints_ids_pieces_count_and_cost() -> None:
    run = lamina("tokens", "Hello world", "--price-as", "gpt-4o")
    assert run.returncode == 0, run.stderr
    assert "2 tokens" in run.stdout
    assert "19556" in run.stdout and "' world'" in run.stdout
    assert "gpt-4o: $0.00000500" in run.stdout
    data = json.loads(lamina("tokens", "Hello world", "--json").stdout)
    assert data["count"] == 2 and data["exact"] and data["tokens"][1]["piece"] == " world"


def test_generate_reads_stdin_and_usage_goes_to_stderr() -> None:
    run = lamina("generate", "--model", "scripted", "--usage", stdin="echo me")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "echo me\n"
    assert "prompt 3 + completion 2 tokens" in run.stderr


def test_models_lists_every_backend() -> None:
    run = lamina("models")
    assert run.returncode == 0, run.stderr
    for backend in ("local", "openai", "anthropic", "scripted"):
        assert backend in run.stdout


def test_chat_keeps_history_and_handles_commands() -> None:
    run = lamina(
        "chat",
        "--model",
        "scripted",
        stdin="first line\n/system Be brief.\nsecond line\n/reset\nthird\n/exit\nnever\n",
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["first line", "second line", "third"]
    assert "history cleared" in run.stderr and "system prompt set" in run.stderr


def test_errors_are_one_line_with_the_fix_and_exit_1() -> None:
    run = lamina("generate", "hi", "--model", "openai:gpt-4o-mini")
    assert run.returncode == 1
    assert "OPENAI_API_KEY" in run.stderr and "Traceback" not in run.stderr
    run = lamina("generate", "hi", "--model", "nosuch")
    assert run.returncode == 1 and "Unknown model backend 'nosuch'" in run.stderr
    run = lamina("generate", "hi", "--model", "scripted", "--json-schema", "missing.json")
    assert run.returncode == 1 and "does not exist" in run.stderr


def test_cache_stats_counts_hits() -> None:
    for _ in range(2):
        lamina("generate", "cache me", "--model", "scripted", "--temperature", "0")
    stats = json.loads(lamina("cache", "stats").stdout)
    assert (stats["hits"], stats["misses"]) == (1, 1)


def test_error_messages_are_printed_as_written_not_as_markup() -> None:
    """Messages name settings like [server.models]; rich must not eat the brackets."""
    import typer

    from lamina.cli.app import edge
    from lamina.errors import ConfigError

    probe = typer.Typer()

    @probe.command()
    @edge
    def fail() -> None:
        raise ConfigError("List them in the [server.models] table; see [1].")

    from typer.testing import CliRunner

    result = CliRunner().invoke(probe, [])
    assert result.exit_code == 1
    assert "error: List them in the [server.models] table; see [1]." in result.output


@pytest.mark.parametrize("command", [("generate", "hi"), ("doctor",)])
def test_an_invalid_setting_is_one_line_naming_it_not_a_traceback(command: tuple[str, ...]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lamina", *command],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "LAMINA_LOCAL__N_CTX": "abc"},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Invalid setting local.n_ctx (LAMINA_LOCAL__N_CTX)" in result.stderr
    assert "got 'abc'" in result.stderr
