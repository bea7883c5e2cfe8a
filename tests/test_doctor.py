"""`lamina doctor`: the installation check users run when something is wrong."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lamina.cli import app
from lamina.models import native

runner = CliRunner()


@pytest.mark.integration
def test_doctor_json_on_a_working_install() -> None:
    result = runner.invoke(app, ["doctor", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 0, report["problems"]
    assert report["ok"] is True
    llama = report["llama_cpp"]
    assert llama["version"] == "0.3.36"
    assert "CPU :" in llama["system_info"] or "CPU" in llama["system_info"]
    assert "build_flags" in llama
    assert llama["amx_instructions"] == []
    assert llama["private_api"] == []  # what batching uses is in this llama-cpp-python
    assert report["local_model"]["ok"] is True and report["local_model"]["error"] is None
    assert report["embedder"] == {"ok": True, "name": "minilm", "dimension": 384, "error": None}
    assert report["egress"] == [], "out of the box nothing leaves the machine"
    assert report["versions"]["onnxruntime"]
    assert report["home"]["writable"] is True


def test_doctor_reports_a_crashing_runtime_and_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    script = "import os, signal; os.kill(os.getpid(), signal.SIGILL)"
    monkeypatch.setattr(native, "_PROBE_SCRIPT", script)
    monkeypatch.setattr("lamina.doctor._check_embedder", lambda report, settings: None)
    result = runner.invoke(app, ["doctor", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1
    assert report["ok"] is False
    assert report["local_model"]["signal"] == "SIGILL"
    (problem,) = report["problems"]
    assert "SIGILL" in problem["problem"] and "LLAMA_CMAKE_ARGS" in problem["fix"]


def test_doctor_names_configured_egress_and_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMINA_MODEL", "openai:gpt-4o-mini@http://user:hunter2@gpu-box:8000/v1")
    monkeypatch.setenv("LAMINA_SERVER__OTLP_ENDPOINT", "http://collector:4318/v1/traces")
    monkeypatch.setenv("LAMINA_SERVER__MODELS", '{"big": "anthropic:claude-x"}')
    monkeypatch.setenv("LAMINA_SERVER__EMBEDDING_MODELS", '{"e": "openai:emb@http://emb-box/v1"}')
    monkeypatch.setattr("lamina.doctor._check_embedder", lambda report, settings: None)
    monkeypatch.setattr("lamina.doctor._check_local_model", lambda report, settings: None)
    result = runner.invoke(app, ["doctor", "--json"])
    assert "hunter2" not in result.stdout
    report = json.loads(result.stdout)
    assert report["egress"] == [
        "model openai:gpt-4o-mini@http://***@gpu-box:8000/v1: http://***@gpu-box:8000/v1",
        "model anthropic:claude-x: https://api.anthropic.com",
        "model openai:emb@http://emb-box/v1: http://emb-box/v1",
        "traces (server.otlp_endpoint): http://collector:4318/v1/traces",
    ]
    assert report["settings"]["model"].count("hunter2") == 0
