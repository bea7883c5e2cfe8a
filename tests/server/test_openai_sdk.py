"""A real `lamina serve` process, driven by the official openai SDK."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.server.conftest import free_port


@contextmanager
def lamina_serve(*models: str, env: dict[str, str] | None = None) -> Iterator[str]:
    port = free_port()
    args = [sys.executable, "-m", "lamina", "serve", "--port", str(port)]
    for model in models:
        args += ["--model", model]
    proc = subprocess.Popen(
        args, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"lamina serve exited: {proc.stderr.read().decode()[-3000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("lamina serve did not start within 60 s")
            time.sleep(0.1)
        yield base
        proc.send_signal(signal.SIGTERM)
        # uvicorn drains, then re-raises the signal so the exit status says why it stopped
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
        logs = proc.stderr.read().decode()  # type: ignore[union-attr]
        records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        assert any("Finished server process" in r["message"] for r in records), logs[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def client(base: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=60)


def test_sdk_against_lamina_serve_scripted() -> None:
    with lamina_serve("scripted", "scripted:fixed answer") as base:
        sdk = client(base)
        ids = [m.id for m in sdk.models.list()]
        assert ids[:2] == ["lamina", "scripted:fixed answer"]
        reply = sdk.chat.completions.create(
            model="lamina", messages=[{"role": "user", "content": "echo me"}]
        )
        assert reply.choices[0].message.content == "echo me"
        assert reply.usage is not None and reply.usage.completion_tokens == 2
        stream = sdk.chat.completions.create(
            model="scripted:fixed answer",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "fixed answer"
        assert chunks[-1].usage is not None
        done = sdk.completions.create(model="lamina", prompt="plain prompt")
        assert done.choices[0].text == "plain prompt"
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(
                model="nosuch:x", messages=[{"role": "user", "content": "x"}]
            )
        metrics = httpx.get(f"{base}/metrics").text
        assert "lamina_request_seconds_bucket" in metrics


def test_sdk_auth_against_lamina_serve() -> None:
    made = subprocess.run(
        [sys.executable, "-m", "lamina", "keys", "create", "sdk"],
        capture_output=True,
        text=True,
        check=True,
    )
    key = made.stdout.strip()
    with lamina_serve("scripted") as base:
        with pytest.raises(openai.AuthenticationError):
            client(base, "lam-wrong-key-000000000").models.list()
        assert [m.id for m in client(base, key).models.list()] == ["lamina", "minilm"]
        assert httpx.get(f"{base}/health").status_code == 200
    assert (
        key
        not in subprocess.run(
            [sys.executable, "-m", "lamina", "keys", "list"], capture_output=True, text=True
        ).stdout
    )


@pytest.mark.integration
def test_sdk_against_the_real_local_model() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "country": {"type": "string", "maxLength": 30},
        },
        "required": ["city", "country"],
    }
    with lamina_serve("local") as base:
        sdk = client(base)
        reply = sdk.chat.completions.create(
            model="lamina",
            messages=[{"role": "user", "content": "What is the capital of France? One word."}],
            temperature=0,
            max_tokens=16,
        )
        assert "Paris" in (reply.choices[0].message.content or "")
        stream = sdk.chat.completions.create(
            model="lamina",
            messages=[{"role": "user", "content": "Name three colours."}],
            temperature=0,
            max_tokens=24,
            stream=True,
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text.strip()
        structured = sdk.chat.completions.create(
            model="lamina",
            messages=[{"role": "user", "content": "Name a city and its country."}],
            temperature=0,
            max_tokens=120,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "place", "schema": schema},
            },
        )
        jsonschema.validate(json.loads(structured.choices[0].message.content or ""), schema)
        top = sdk.chat.completions.create(
            model="lamina",
            messages=[{"role": "user", "content": "Say hi."}],
            temperature=0,
            max_tokens=4,
            logprobs=True,
            top_logprobs=2,
        )
        content = top.choices[0].logprobs.content  # type: ignore[union-attr]
        assert content and len(content[0].top_logprobs) == 2


def test_sdk_embeddings_against_lamina_serve() -> None:
    # No skip: the bundled MiniLM is part of every install, so a broken one must fail here.
    with lamina_serve("scripted") as base:
        sdk = client(base)
        made = sdk.embeddings.create(model="minilm", input=["a cat", "a dog"])  # base64 on the wire
        assert [len(d.embedding) for d in made.data] == [384, 384]
        floats = sdk.embeddings.create(model="minilm", input="a cat", encoding_format="float")
        assert floats.data[0].embedding == pytest.approx(made.data[0].embedding, abs=1e-5)
        with pytest.raises(openai.NotFoundError):
            sdk.embeddings.create(model="nosuch:x", input="a")
        assert "minilm" in [m.id for m in sdk.models.list()]
