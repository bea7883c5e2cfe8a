"""Property-based fuzzing (hypothesis) of the loaders and the API request schemas.

Properties: a loader either returns a document whose text any consumer can take (encodable
as UTF-8, no NUL, every block an exact span of the text) or raises LoadError; a request body,
however odd, is answered below 500 with an OpenAI-shaped error when refused. Bounded: a fixed
number of examples per property (seconds each), derandomized so ``make test`` is repeatable;
run ``HYPOTHESIS_PROFILE=fuzz pytest tests/hostile`` for a long randomized run.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.retrieval import LoadedDocument, LoadError, iter_jsonl, load
from lamina.server import create_app
from lamina.settings import Settings
from tests.hostile.bombs import docx_bomb, raw_pdf, text_page

settings.register_profile(
    "ci", max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "fuzz", max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

FOLDER = Path(tempfile.mkdtemp(prefix="lamina-fuzz-"))
#: Every code point, lone surrogates and NUL included.
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=300)


def check(loaded: LoadedDocument) -> None:
    loaded.text.encode("utf-8")
    assert "\x00" not in loaded.text
    for block in loaded.blocks:
        assert loaded.text[block.start : block.end] == block.text
    if loaded.document.title is not None:
        loaded.document.title.encode("utf-8")


def load_or_skip(path: Path) -> None:
    try:
        check(load(path))
    except LoadError as error:
        assert error.reason


@given(
    data=st.binary(max_size=3000), suffix=st.sampled_from([".txt", ".md", ".html", ".pdf", ".docx"])
)
def test_any_bytes_load_or_are_skipped(data: bytes, suffix: str) -> None:
    path = FOLDER / f"bytes{suffix}"
    path.write_bytes(data)
    load_or_skip(path)


@given(text=st.text(max_size=2000), suffix=st.sampled_from([".txt", ".md", ".html", ".htm"]))
def test_any_utf8_text_loads_with_exact_spans(text: str, suffix: str) -> None:
    path = FOLDER / f"text{suffix}"
    path.write_bytes(text.encode("utf-8"))
    load_or_skip(path)


PDF = raw_pdf([text_page("First page"), text_page("Second page")])
DOCX = docx_bomb(FOLDER / "base.docx", 0, text="A paragraph of text").read_bytes()


@given(
    base=st.sampled_from([(PDF, ".pdf"), (DOCX, ".docx")]),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    cut=st.integers(0, 10**6),
)
def test_damaged_pdf_and_docx_load_or_are_skipped(
    base: tuple[bytes, str], edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(base[0])
    for at, value in edits:
        data[at % len(data)] = value
    path = FOLDER / f"damaged{base[1]}"
    path.write_bytes(bytes(data[: max(1, cut % (len(data) + 1))]))
    load_or_skip(path)


JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)


@given(
    records=st.lists(
        st.fixed_dictionaries(
            {},
            optional={"_id": JSON_VALUE, "id": JSON_VALUE, "title": JSON_VALUE, "text": JSON_VALUE},
        )
        | JSON_VALUE,
        max_size=6,
    )
)
def test_jsonl_records_of_any_shape(records: list[Any]) -> None:
    path = FOLDER / "records.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="ascii")
    errors: list[LoadError] = []
    for loaded in iter_jsonl(path, on_error=errors.append):
        check(loaded)
    assert all(e.reason for e in errors)


APP = create_app(
    Settings(home=FOLDER / "home", model="scripted", cache=False, max_retries=0), warm_up=False
)


def post(url: str, body: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=APP)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                url, content=json.dumps(body), headers={"content-type": "application/json"}
            )

    return asyncio.run(go())


def answered(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["message"] and error["type"]


MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "developer", "tool"]) | ANY_TEXT},
    optional={"content": ANY_TEXT | JSON_VALUE, "name": JSON_VALUE},
)
SAMPLING = {
    "model": st.sampled_from(["lamina", "", "local:/etc/passwd"]) | ANY_TEXT,
    "temperature": JSON_VALUE | st.floats(),
    "top_p": JSON_VALUE,
    "top_k": JSON_VALUE,
    "max_tokens": JSON_VALUE | st.integers(),
    "seed": JSON_VALUE | st.integers(),
    "stop": JSON_VALUE,
    "n": JSON_VALUE,
    "stream": JSON_VALUE,
    "stream_options": JSON_VALUE,
}


@given(
    st.fixed_dictionaries(
        {"messages": st.lists(MESSAGE, max_size=5)},
        optional={**SAMPLING, "response_format": JSON_VALUE, "logprobs": JSON_VALUE},
    )
)
def test_chat_requests_of_any_shape(body: dict[str, Any]) -> None:
    answered(post("/v1/chat/completions", body))


@given(
    st.fixed_dictionaries(
        {"prompt": ANY_TEXT | JSON_VALUE},
        optional={**SAMPLING, "echo": JSON_VALUE, "suffix": JSON_VALUE, "logprobs": JSON_VALUE},
    )
)
def test_completion_requests_of_any_shape(body: dict[str, Any]) -> None:
    answered(post("/v1/completions", body))


@given(
    st.fixed_dictionaries(
        {"input": JSON_VALUE},
        optional={
            "model": st.sampled_from(["nosuch", "local:/etc/passwd"]) | ANY_TEXT,
            "encoding_format": JSON_VALUE,
            "dimensions": JSON_VALUE,
        },
    )
)
def test_embedding_requests_of_any_shape(body: dict[str, Any]) -> None:
    # the configured embedder is never reached with "model" set to something else, and with it
    # unset the default MiniLM may answer: either way, no 5xx
    body.setdefault("model", "nosuch")
    answered(post("/v1/embeddings", body))
