from __future__ import annotations

import json
from pathlib import Path

import pytest

from lamina.errors import InvalidRequestError, ModelNotFoundError
from lamina.evals.retrieval import evaluate_retrieval
from lamina.models.base import Prompt
from lamina.models.scripted import ScriptedModel
from lamina.retrieval.index import Index
from lamina.settings import Settings
from lamina.testing import HashEmbedder
from tests.evals.conftest import lamina

CORPUS = Path(__file__).resolve().parents[2] / "samples" / "corpus"


def test_sentence_questions_find_their_passages(index: Index) -> None:
    run = evaluate_retrieval(index, questions=10, generator="sentences")
    _, chunks = index.count()
    assert run.summary["questions"] == len(run.items) <= chunks
    assert run.summary["generator"] == "sentences"
    assert any("known-item" in n for n in run.meta.notes)
    for mode in ("bm25", "dense", "hybrid"):
        scores = run.summary[mode]
        assert set(scores) == {"ndcg@10", "recall@10", "mrr@10", "latency_p50_ms"}
        assert 0.0 <= scores["ndcg@10"] <= 1.0
    for item in run.items:
        assert item["question"] in " ".join(item["passage"].split())
        assert item["rank_bm25"] == 1  # a verbatim sentence: BM25 finds it first here
    assert run.summary["bm25"]["mrr@10"] == 1.0 and run.primary == "rr_hybrid"


def test_model_questions_and_a_per_item_fallback(index: Index) -> None:
    replies = [json.dumps({"question": "What did GGUF replace in 2023?"}), "{broken"]
    model = ScriptedModel(replies, settings=Settings(cache=False), default='{"question": "x"}')
    run = evaluate_retrieval(index, questions=2, generator="model", model=model)
    assert [i["generator"] for i in run.items] == ["model", "sentence (model reply unusable)"]
    assert run.items[0]["question"] == "What did GGUF replace in 2023?"
    prompt = model.history[0][-1].content
    assert "Write one short question" in prompt and run.items[0]["passage"][:20] in prompt
    assert model.options[0].json_schema is not None


class _Broken(ScriptedModel):
    def count_tokens(self, prompt: Prompt) -> int:
        raise ModelNotFoundError("The bundled model is not installed.")


def test_auto_falls_back_to_sentences_and_says_so(index: Index) -> None:
    run = evaluate_retrieval(index, questions=2, generator="auto", model=_Broken())
    assert run.summary["generator"] == "sentences"
    assert any("the model failed: The bundled model is not installed." in n for n in run.meta.notes)


def test_an_empty_index_is_refused(tmp_path: Path) -> None:
    with (
        Index(tmp_path / "empty", embedder=HashEmbedder()) as empty,
        pytest.raises(InvalidRequestError, match="no passage of 12 words or more"),
    ):
        evaluate_retrieval(empty, generator="sentences")


@pytest.mark.integration
def test_cli_on_the_sample_corpus(tmp_path: Path) -> None:
    index = tmp_path / "index"
    ingest = lamina("ingest", str(CORPUS), "--index", str(index))
    assert ingest.returncode == 0, ingest.stderr
    report = tmp_path / "retrieval.html"
    run = lamina(
        "eval", "retrieval", "--index", str(index), "--questions", "6",
        "--generator", "sentences", "-k", "5", "--json", "--report", str(report),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["questions"] == 6 and data["generator"] == "sentences"
    assert set(data["hybrid"]) == {"ndcg@10", "recall@5", "mrr@10", "latency_p50_ms"}
    assert data["bm25"]["recall@5"] >= 0.5  # verbatim sentences of a 38-chunk corpus
    assert "data:image/svg+xml;base64," in report.read_text()
    missing = lamina("eval", "retrieval", "--index", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "lamina ingest PATH --index" in missing.stderr
