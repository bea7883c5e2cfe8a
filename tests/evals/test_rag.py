from __future__ import annotations

import json
from pathlib import Path

import pytest

from lamina.errors import InvalidRequestError
from lamina.evals.rag import evaluate, load_dataset, same_source
from lamina.retrieval.index import Index
from tests.evals.conftest import make_pipeline


def test_evaluate_scores_answerable_and_unanswerable(index: Index, tmp_path: Path) -> None:
    rows = [
        {
            "question": "Which older format did GGUF replace?",
            "answers": ["GGML"],
            "source": "gguf.md",
        },
        {
            "question": "What is matrix B initialised to?",
            "answers": ["zero"],
            "source": "docs/lora.md",
        },
        {"question": "Who won the football world cup in 1998?", "answers": [], "source": None},
    ]
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    seen: list[int] = []
    result = evaluate(make_pipeline(index), load_dataset(path), lambda i, _: seen.append(i))
    assert seen == [1, 2, 3]
    assert (result.answerable, result.unanswerable) == (2, 1)
    assert result.containment == 1.0 and result.citation_accuracy == 1.0
    assert result.not_found == 1.0 and result.faithfulness == 1.0
    assert 0 < result.token_f1 < 1 and result.latency_p95_ms >= result.latency_p50_ms


def test_bad_dataset_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "ok", "answers": [], "source": null}\nnot json\n')
    with pytest.raises(InvalidRequestError, match=r"qa.jsonl:2"):
        load_dataset(path)


def test_same_source_compares_path_suffixes() -> None:
    assert same_source("/home/me/corpus/lora.pdf", "corpus/lora.pdf")
    assert not same_source("/home/me/corpus/lora.pdf", "other/lora.pdf")
