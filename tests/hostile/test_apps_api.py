"""Hostile requests to /v1/apps/*, over real HTTP: models that are not served, inputs over
the limits, schemas that are not JSON Schema, too many labels, and a slow model past the
deadline. Every refusal is a 4xx naming the problem (never a 500), and a refused or timed-out
request leaves the model's queue as it found it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from lamina.models.scripted import ScriptedModel
from lamina.server import create_app
from lamina.settings import ServerSettings, Settings
from lamina.types import Message
from tests.server.conftest import LiveServer

APPS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/apps/summarize", {"text": "Bo likes Fridays."}),
    ("/v1/apps/classify", {"text": "Lunch?", "labels": ["spam", "ham"]}),
    ("/v1/apps/extract", {"text": "Bo is 7.", "schema": {"type": "object"}}),
    ("/v1/apps/email/reply", {"email": "Lunch on Friday?"}),
    ("/v1/apps/email/draft", {"brief": "Ask Bo to lunch."}),
    ("/v1/apps/research", {"question": "Who is Bo?"}),
]


def slow(messages: list[Message]) -> str:
    time.sleep(1.5)
    return '{"label": "ham"}'


@pytest.fixture
def server(tmp_path: Path) -> Iterator[httpx.Client]:
    settings = Settings(
        home=tmp_path / "home",
        model="scripted",
        cache=False,
        max_retries=0,
        server=ServerSettings(
            max_body_bytes=200_000, request_timeout_s=0.5, concurrency=1, queue_size=0
        ),
    )
    models = {
        "lamina": ScriptedModel(['{"label": "ham"}'] * 50),
        "slow": ScriptedModel([slow] * 5),
    }
    app = create_app(settings, models=models, warm_up=False)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        yield client


def refused(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    message = r.json()["error"]["message"]
    for word in words:
        assert word in message, (word, message)


def test_only_served_models_are_used(server: httpx.Client, tmp_path: Path) -> None:
    weights = tmp_path / "weights.gguf"
    weights.write_bytes(b"GGUF")
    for model in (str(weights), f"local:{weights}", "openai:gpt-4o@http://evil:1/v1", "scripted:x"):
        for route, body in APPS:
            r = server.post(route, json={**body, "model": model})
            assert r.status_code in (404, 400), (route, model, r.text)
            if route != "/v1/apps/research":  # research first says there is nothing to search
                assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
                assert str(weights) not in r.text or model == str(weights)


def test_inputs_over_the_limits_are_refused(server: httpx.Client) -> None:
    big = "word " * 50_000  # 250 kB: over the body limit of this server
    for route, body in APPS:
        field = next(iter(body))
        refused(server.post(route, json={**body, field: big}), 413, "max_body_bytes")
    refused(
        server.post("/v1/apps/classify", json={**APPS[1][1], "text": "x" * 20_001}), 400, "text"
    )
    refused(server.post("/v1/apps/extract", json={**APPS[2][1], "text": "x" * 20_001}), 400, "text")
    refused(server.post("/v1/apps/research", json={"question": "q" * 4001}), 400, "question")
    examples = [{"text": "x", "label": "ham"}] * 201
    r = server.post("/v1/apps/classify", json={**APPS[1][1], "examples": examples})
    refused(r, 400, "examples")
    r = server.post("/v1/apps/summarize", json={"text": "x", "length": "huge"})
    refused(r, 400, "length")
    r = server.post("/v1/apps/research", json={"question": "q", "questions": 100})
    refused(r, 400, "questions")
    r = server.post("/v1/apps/classify", json={**APPS[1][1], "samples": 1000})
    refused(r, 400, "samples")
    r = server.post("/v1/apps/email/reply", json={**APPS[3][1], "tone": "rude"})
    refused(r, 400, "tone")
    r = server.post("/v1/apps/email/reply", json={**APPS[3][1], "unknown": 1})
    refused(r, 400, "unknown")
    surrogate = b'{"text": "bad \\ud800", "labels": ["a", "b"]}'
    r = server.post(
        "/v1/apps/classify", content=surrogate, headers={"Content-Type": "application/json"}
    )
    refused(r, 400, "surrogate")


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ("a string", "Invalid request"),
        ([{"type": "object"}], "Invalid request"),
        ({"type": "nope"}, "not a valid JSON Schema"),
        ({"type": "object", "properties": {"x": {"type": 5}}}, "['properties']['x']['type']"),
        ({"type": "object", "required": "name"}, "not a valid JSON Schema"),
        ({"$ref": "http://169.254.169.254/latest/meta-data"}, "only local references"),
        # jsonschema would open these itself (urlopen reads file:// too): nothing is fetched.
        ({"$ref": "HTTP://127.0.0.1:9/meta"}, "only local references"),
        ({"properties": {"a": {"$ref": "file:///etc/passwd"}}}, "only local references"),
        ({"properties": {"a": {"$dynamicRef": "https://example.com/s"}}}, "only local"),
        (
            {
                "properties": {
                    "x": {
                        "properties": {
                            "x": {
                                "properties": {
                                    "x": {
                                        "properties": {
                                            "x": {
                                                "properties": {
                                                    "x": {
                                                        "properties": {
                                                            "x": {
                                                                "properties": {
                                                                    "x": {
                                                                        "properties": {
                                                                            "x": {
                                                                                "properties": {
                                                                                    "x": {}
                                                                                }
                                                                            }
                                                                        }
                                                                    }
                                                                }
                                                            }
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            },
            "levels deep",
        ),
        ({"type": "object", "description": "d" * 40_000}, "bytes"),
    ],
)
def test_a_schema_that_is_not_json_schema_is_refused(
    server: httpx.Client, schema: Any, problem: str
) -> None:
    r = server.post("/v1/apps/extract", json={"text": "Bo is 7.", "schema": schema})
    refused(r, 400, problem)


def test_a_deeply_nested_schema_is_a_400_not_a_500(server: httpx.Client) -> None:
    # 600 levels: a recursive depth check (or json.dumps) would hit Python's recursion limit.
    deep = '{"type":"object","properties":{"x":' * 300 + "{}" + "}}" * 300
    body = '{"text": "Bo is 7.", "schema": ' + deep + "}"
    r = server.post("/v1/apps/extract", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert "deep" in r.text or "depth" in r.text or "recursion" in r.text.lower(), r.text


def test_labels_are_checked(server: httpx.Client) -> None:
    text = {"text": "Lunch?"}
    r = server.post("/v1/apps/classify", json={**text, "labels": [f"l{i}" for i in range(51)]})
    refused(r, 400, "labels", "50")
    r = server.post("/v1/apps/classify", json={**text, "labels": ["only"]})
    refused(r, 400, "at least two")
    r = server.post("/v1/apps/classify", json={**text, "labels": ["a", "a"]})
    refused(r, 400, "distinct")
    r = server.post("/v1/apps/classify", json={**text, "labels": ["a", "b\n}"]})
    refused(r, 400, "printable")
    r = server.post("/v1/apps/classify", json={**text, "labels": ["a", "x" * 101]})
    refused(r, 400, "labels")
    r = server.post("/v1/apps/classify", json={**text, "labels": ["a", "b"], "method": "knn"})
    refused(r, 400, "examples")
    examples = [{"text": "hi", "label": "c"}]
    r = server.post("/v1/apps/classify", json={**text, "labels": ["a", "b"], "examples": examples})
    refused(r, 400, "'c'")
    r = server.post("/v1/apps/classify", json=text)
    refused(r, 400, "at least two")


def test_a_slow_model_times_out_and_its_slot_is_freed_when_the_work_ends(
    server: httpx.Client,
) -> None:
    body = {**APPS[1][1], "model": "slow"}
    r = server.post("/v1/apps/classify", json=body)
    refused(r, 504, "request_timeout_s")
    busy = server.post("/v1/apps/classify", json=body)  # the first call still runs
    assert busy.status_code == 429, busy.text
    time.sleep(2.0)  # the first call has ended: its slot is back
    again = server.post("/v1/apps/classify", json={**body, "text": "Lunch today?"})  # uncached
    assert again.status_code == 504, again.text  # admitted and ran, not refused
    assert server.post("/v1/apps/classify", json=APPS[1][1]).status_code == 200  # others unaffected


def test_the_wait_for_a_slot_counts_against_the_request_deadline(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home",
        model="scripted",
        cache=False,
        max_retries=0,
        server=ServerSettings(request_timeout_s=0.5, concurrency=1, queue_size=1),
    )
    app = create_app(settings, models={"lamina": ScriptedModel([slow] * 5)}, warm_up=False)
    body = {**APPS[1][1]}
    with (
        LiveServer(app) as live,
        httpx.Client(base_url=live.url, timeout=30) as client,
        ThreadPoolExecutor(1) as pool,
    ):
        first = pool.submit(client.post, "/v1/apps/classify", json=body)  # holds the slot
        time.sleep(0.2)
        began = time.monotonic()
        queued = client.post("/v1/apps/classify", json={**body, "text": "Tea?"})
        waited = time.monotonic() - began
        first.result()
    refused(queued, 504, "waiting in the queue")
    assert waited < 1.2  # not the 1.5 s the slot stays busy


def test_replies_that_never_validate_are_a_422_naming_the_problem(server: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"who": {"type": "string"}}, "required": ["who"]}
    r = server.post("/v1/apps/extract", json={"text": "Bo is 7.", "schema": schema})
    refused(r, 422, "does not validate", "'who' is a required property")
    # chain-of-thought samples in a shape the model never gives: the same 422, not a 500
    r = server.post("/v1/apps/classify", json={**APPS[1][1], "samples": 3})
    refused(r, 422, "could not be read")
