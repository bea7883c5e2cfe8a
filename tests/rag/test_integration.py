"""The real stack on the sample corpus: SmolLM2-135M (bundled), MiniLM, hybrid search."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lamina.cli import app
from lamina.models import ChatModel, get_model
from lamina.rag import GroundedChat, RagConfig, RagPipeline
from lamina.retrieval.index import Index

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[2] / "samples" / "corpus"


@pytest.fixture(scope="module")
def corpus_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("rag") / "index"
    with Index(directory) as index:
        index.ingest([CORPUS])
    yield directory


@pytest.fixture(scope="module")
def smollm() -> ChatModel:
    return get_model("local")


def test_answers_with_the_right_citation(corpus_index: Path, smollm: ChatModel) -> None:
    with Index(corpus_index) as index:
        pipeline = RagPipeline(index, smollm)
        answer = pipeline.ask("Which data type does QLoRA use for its 4-bit base model?")
        assert answer.found and "NF4" in answer.answer
        cite = answer.citations[0]
        assert cite.source.endswith("lora.pdf") and cite.page == 2 and cite.verified
        missing = pipeline.ask("Who won the 2018 FIFA World Cup?")
        assert not missing.found and missing.sources


def test_follow_up_in_a_grounded_chat(corpus_index: Path, smollm: ChatModel) -> None:
    with Index(corpus_index) as index:
        chat = GroundedChat(RagPipeline(index, smollm))
        chat.ask("Who introduced LoRA?")
        follow_up = chat.ask("And what is its matrix B initialised to?")
        assert "LoRA" in follow_up.query
        assert follow_up.citations[0].source.endswith("lora.pdf")


def test_select_strategy_uses_the_model(corpus_index: Path, smollm: ChatModel) -> None:
    with Index(corpus_index) as index:
        config = RagConfig(strategy="select")
        answer = RagPipeline(index, smollm, config=config).ask(
            "Which older format did GGUF replace?"
        )
        assert answer.found and answer.usage.completion_tokens > 0
        assert answer.citations[0].source.endswith("quantization.html")


def test_cli_ask_json(corpus_index: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "ask",
            "What prefix marks WordPiece continuation pieces?",
            "--index",
            str(corpus_index),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {
        *("answer", "found", "citations", "usage", "timings_ms", "run_id"),
        *("query", "strategy", "sources"),  # the same object as POST /v1/ask
    }
    assert payload["found"] and "##" in payload["answer"]
    assert set(payload["citations"][0]) == {
        "n",
        "source",
        "page",
        "start",
        "end",
        "quote",
        "verified",
        "document_id",
    }
