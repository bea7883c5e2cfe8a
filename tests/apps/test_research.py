"""Research reports: the plan, grounded findings with citations numbered across the report,
open questions, web results as sources, and the chain's trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lamina.apps.research import plan, research
from lamina.errors import InvalidRequestError
from lamina.retrieval.index import Index
from lamina.testing import HashEmbedder, ScriptedModel
from lamina.tools.web import SearchResult


@pytest.fixture
def index(tmp_path: Path) -> Index:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "lora.md").write_text(
        "# LoRA\n\nLoRA freezes the pretrained weights and trains two small matrices.\n\n"
        "# Memory\n\nLoRA reduces the memory needed for fine-tuning by a factor of three.\n"
    )
    return Index(tmp_path / "index", embedder=HashEmbedder())


def planned(*questions: str) -> str:
    return json.dumps({"questions": list(questions)})


def test_the_plan_keeps_the_question_first_and_drops_repeats_and_drift() -> None:
    model = ScriptedModel(
        [planned("What does LoRA freeze?", "what does LoRA freeze", "Who won the cup?")]
    )
    assert plan("How does LoRA work?", model, 3) == [
        "How does LoRA work?",
        "What does LoRA freeze?",
    ]
    schema = model.options[0].json_schema
    assert schema is not None and schema["properties"]["questions"]["maxItems"] == 3


def test_findings_cite_verified_spans_numbered_across_the_report(index: Index) -> None:
    model = ScriptedModel(
        [planned("How much memory does LoRA save?", "Which LoRA rank did the Mars rover use?")]
    )
    with index:
        index.ingest([Path(index.directory).parent / "docs"])
        report = research("What does LoRA freeze?", index, model=model, trace=False)
    assert [f.question for f in report.findings] == [
        "What does LoRA freeze?",
        "How much memory does LoRA save?",
    ]
    assert report.findings[0].text.endswith("[1]") and report.findings[1].text.endswith("[2]")
    assert report.open_questions == ["Which LoRA rank did the Mars rover use?"]
    for source in report.sources:
        text = Path(source.source).read_text()
        assert text[source.start : source.end] == source.quote and source.verified
    page = report.markdown()
    assert "## Open questions" in page and "[2] " in page and "(verified)" in page


class Provider:
    def __init__(self) -> None:
        self.queries: list[str] = []

    def search(self, query: str, k: int) -> list[SearchResult]:
        self.queries.append(query)
        return [
            SearchResult(
                title="QLoRA",
                url="https://example.org/qlora",
                snippet="QLoRA quantizes the frozen model to 4 bits before adding LoRA.",
            )
        ]


def test_web_results_become_sources_named_by_their_url(index: Index) -> None:
    provider = Provider()
    with index:
        report = research(
            "How does QLoRA quantize the frozen model?",
            index,
            model=ScriptedModel(),
            web=provider,
            questions=0,
            trace=False,
        )
    assert provider.queries == ["How does QLoRA quantize the frozen model?"]
    assert [s.source for s in report.sources] == ["https://example.org/qlora"]
    assert "4 bits" in report.findings[0].text


def test_bad_input_is_refused(index: Index) -> None:
    with index, pytest.raises(InvalidRequestError, match="Ask a question"):
        research("  ", index, model=ScriptedModel())
    with index, pytest.raises(InvalidRequestError, match="questions must be 0 to 6"):
        research("Why?", index, model=ScriptedModel(), questions=9)
