from __future__ import annotations

from pathlib import Path

import pytest

from lamina.errors import ContextOverflowError
from lamina.models.scripted import ScriptedModel
from lamina.rag import NOT_FOUND, RagPipeline, Retry, Token
from lamina.rag.context import pack
from lamina.retrieval.index import Index
from lamina.testing import HashEmbedder
from tests.rag.conftest import make_pipeline


def test_extract_quotes_the_source_with_an_exact_span(index: Index) -> None:
    answer = make_pipeline(index).ask("Which older format did GGUF replace?")
    assert answer.found
    assert "GGML" in answer.answer and answer.answer.endswith("[1]")
    cite = answer.citations[0]
    assert cite.source.endswith("gguf.md") and cite.verified
    doc_id = index.search("GGML", k=1)[0].chunk.chunk.document_id
    text = index.store.document_text("default", doc_id)
    assert text is not None and text[cite.start : cite.end] == cite.quote
    assert set(answer.timings_ms) >= {"rewrite", "retrieve", "pack", "generate", "total"}


def test_unrelated_question_is_not_found_with_closest_sources(index: Index) -> None:
    answer = make_pipeline(index).ask("Who won the football world cup in 1998?")
    assert not answer.found
    assert answer.answer == NOT_FOUND
    assert answer.citations == [] and 1 <= len(answer.sources) <= 3


def test_generate_keeps_supported_cited_sentences(index: Index) -> None:
    model = ScriptedModel(["GGUF replaced the older GGML format [1]. Cats can fly [1]."])
    pipeline = make_pipeline(index, model, strategy="generate")
    events = list(pipeline.stream("Which older format did GGUF replace?"))
    assert any(isinstance(e, Token) for e in events)
    final = events[-1]
    assert final.answer == "GGUF replaced the older GGML format. [1]"  # type: ignore[union-attr]
    assert final.dropped == ["Cats can fly."]  # type: ignore[union-attr]
    assert final.citations[0].verified and final.strategy == "generate"  # type: ignore[union-attr]


def test_generate_retries_once_with_a_stricter_prompt(index: Index) -> None:
    model = ScriptedModel(
        ["Paris is nice [1].", "It replaced the older GGML format in August 2023. [1]"]
    )
    pipeline = make_pipeline(index, model, strategy="generate")
    events = list(pipeline.stream("Which older format did GGUF replace?"))
    assert sum(isinstance(e, Retry) for e in events) == 1
    final = events[-1]
    assert final.retried and final.found  # type: ignore[union-attr]
    assert "Copy the one sentence" in model.history[1][0].content


def test_generate_falls_back_to_a_quote_when_nothing_is_supported(index: Index) -> None:
    model = ScriptedModel(["Paris [1].", "Rome [2]."])
    answer = make_pipeline(index, model, strategy="generate").ask("Which format did GGUF replace?")
    assert answer.strategy == "extract-fallback"
    assert "GGML" in answer.answer and answer.citations[0].verified


def test_select_lets_the_model_choose_among_candidates(index: Index) -> None:
    model = ScriptedModel(['{"sentence": 1}'])
    answer = make_pipeline(index, model, strategy="select").ask("Which format did GGUF replace?")
    assert answer.strategy == "select" and answer.found
    assert model.options[0].json_schema is not None


def test_small_budget_records_what_was_left_out(index: Index) -> None:
    hits = index.search("GGUF LoRA format weights", k=4)
    packed = pack(hits, lambda ps: 10 + sum(len(p.text.split()) for p in ps), budget=60)
    assert packed.passages and packed.left_out
    assert {x.reason for x in packed.left_out} <= {"budget", "duplicate"}
    assert len(packed.passages) + len(packed.left_out) == len(hits)
    assert packed.tokens <= 60


def test_pipeline_packs_within_a_small_window(index: Index) -> None:
    model = ScriptedModel(context_window=140)
    answer = make_pipeline(index, model, answer_tokens=16).ask("Which format did GGUF replace?")
    assert answer.left_out, "the passages that did not fit are listed"
    assert len(answer.sources) >= 1


def test_question_bigger_than_the_window_raises(index: Index) -> None:
    model = ScriptedModel(context_window=64)
    pipeline = make_pipeline(index, model, answer_tokens=16)
    with pytest.raises(ContextOverflowError, match="context window"):
        pipeline.ask("GGUF " * 200)


def test_generate_drops_a_sentence_that_only_restates_the_question(index: Index) -> None:
    model = ScriptedModel(["The older format GGUF replaced is: [1]", "Paris [1]."])
    answer = make_pipeline(index, model, strategy="generate").ask(
        "Which older format did GGUF replace?"
    )
    assert "The older format GGUF replaced is:" in answer.dropped
    assert answer.strategy == "extract-fallback" and "GGML" in answer.answer


def test_time_the_consumer_spends_between_events_is_not_billed(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """timings_ms measure the pipeline, not a slow reader of its stream."""
    import lamina.rag.pipeline as pipeline_module

    now = [0.0]

    class Clock:
        @staticmethod
        def perf_counter() -> float:
            now[0] += 0.001  # every reading of the clock: 1 ms of pipeline work
            return now[0]

    monkeypatch.setattr(pipeline_module, "time", Clock)
    model = ScriptedModel(["GGUF replaced the older GGML format [1]."])
    answer = None
    for event in make_pipeline(index, model, strategy="generate").stream("What did GGUF replace?"):
        now[0] += 100.0  # the consumer takes 100 s over each event
        answer = event
    timings = answer.timings_ms  # type: ignore[union-attr]
    assert timings["total"] < 1000, timings
    assert timings["generate"] < 1000, timings


def test_the_pipeline_uses_the_configured_default_model(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lamina.settings import get_settings

    monkeypatch.setenv("LAMINA_MODEL", "scripted:configured")
    get_settings.cache_clear()
    pipeline = RagPipeline(index, embedder=HashEmbedder())
    assert pipeline.model.chat("hi").text == "configured"


@pytest.mark.integration
def test_cli_generate_prints_only_the_final_answer_on_stdout(docs: Path, tmp_path: Path) -> None:
    """A retracted draft goes to stderr; a pipe reading stdout gets one answer."""
    from typer.testing import CliRunner

    from lamina.cli import app

    directory = tmp_path / "minilm-index"
    with Index(directory) as real:  # the bundled embedder, as `lamina ingest` builds it
        real.ingest([docs])
    result = CliRunner().invoke(
        app,
        [
            "ask",
            "Which older format did GGUF replace?",
            "--index",
            str(directory),
            "--strategy",
            "generate",
            "--model",
            "scripted:Paris is lovely in spring [1].",
        ],
    )
    assert result.exit_code == 0, result.output
    answer_line = result.stdout.splitlines()[0]
    assert "GGML" in answer_line and answer_line.endswith("[1]")
    assert "Paris" not in result.stdout
    assert "Paris is lovely" in result.stderr and "retrying" in result.stderr
