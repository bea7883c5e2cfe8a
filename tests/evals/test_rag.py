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


@pytest.mark.integration
def test_cli_eval_rag_records_judge_failures_and_escapes_the_report(tmp_path: Path) -> None:
    from tests.evals.conftest import lamina

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "gguf.md").write_text("# GGUF\n\nGGUF replaced the older GGML format in August 2023.\n")
    (docs / "evil.txt").write_text(
        "The <script>alert('pwned')</script> element runs JavaScript code inside the browser.\n"
    )
    dataset = tmp_path / "qa.jsonl"
    rows = [
        {"question": "Which older format did GGUF replace?", "answers": ["GGML"],
         "source": "gguf.md"},
        {"question": "Which element runs JavaScript code inside the browser?",
         "answers": ["script"], "source": "evil.txt"},
    ]  # fmt: skip
    dataset.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = tmp_path / "rag.html"
    run = lamina(
        "eval", "rag", "--dataset", str(dataset), "--docs", str(docs),
        "--judge", 'scripted:{"unexpected": true}', "--json", "--report", str(report),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["containment"] == 1.0  # the documented keys are still at the top level
    judged = data["judged"]
    assert judged["judge"] == "scripted:fixed" and judged["errors"] >= 4
    assert judged["faithfulness"] is None and judged["faithfulness_n"] == 0
    for item in data["items"]:
        assert "no list of statements" in item["judge_errors"]["faithfulness"]
        assert item["contexts"]  # the passages the answer was given
    assert "judge replies could not be used" in run.stderr
    page = report.read_text()
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in page
    assert "<script" not in page.lower() and "data:image/svg+xml;base64," in page
