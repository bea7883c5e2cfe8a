"""The app commands as a user runs them: a real ``lamina`` process, offline, on the bundled
model (integration), and piped stdin standing in for a left-out argument."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

CORPUS = Path(__file__).resolve().parents[2] / "samples" / "corpus"


def lamina(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lamina", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"},
    )


def json_out(run: subprocess.CompletedProcess[str]) -> Any:
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


# -- piped stdin when the argument is left out (scripted model: fast, no weights) -------------


def test_a_left_out_argument_reads_the_piped_stdin() -> None:
    run = lamina(
        "classify",
        "--labels",
        "spam,ham",
        "--json",
        "--model",
        'scripted:{"label": "ham"}',
        stdin="Lunch at noon?",
    )
    assert json_out(run)["label"] == "ham"

    echo = lamina("extract", "--schema", "s.json", "--model", "scripted", stdin="x")
    assert echo.returncode == 1 and "s.json" in echo.stderr  # the schema is checked first

    Path("s.json").write_text('{"type": "object", "properties": {"who": {"type": "string"}}}')
    run = lamina(
        "extract",
        "--schema",
        "s.json",
        "--json",
        "--model",
        'scripted:{"who": "Bo"}',
        stdin="Bo wrote this.",
    )
    assert json_out(run)["data"] == {"who": "Bo"}

    reply = '{"subject": "Plan", "body": "Friday works."}'
    run = lamina(
        "email",
        "reply",
        "--json",
        "--model",
        f"scripted:{reply}",
        stdin="Subject: Plan\n\nFriday?",
    )
    assert json_out(run)["subject"] == "Re: Plan"

    run = lamina(
        "summarize",
        "--json",
        "--model",
        'scripted:{"points": ["Bo likes Fridays."]}',
        stdin="Bo likes Fridays more than any other day.",
    )
    summary = json_out(run)
    assert summary["points"][0]["sections"][0]["source"] == "<stdin>"


def test_an_empty_pipe_is_refused_naming_the_problem() -> None:
    run = lamina("classify", "--labels", "a,b", "--model", "scripted", stdin="")
    assert run.returncode == 1
    assert "empty" in run.stderr


# -- each command once on the bundled model ----------------------------------------------------


@pytest.mark.integration
def test_classify_a_piped_review_as_positive_with_a_confidence() -> None:
    """The issue's own example: ``echo ... | lamina classify --labels positive,negative --json``."""
    result = json_out(
        lamina(
            "classify",
            "--labels",
            "positive,negative",
            "--json",
            stdin="I loved this film, it was wonderful.\n",
        )
    )
    assert result["label"] == "positive"
    assert result["method"] == "zero-shot"
    assert set(result["scores"]) == {"positive", "negative"}
    assert 0.5 < result["confidence"] <= 1.0
    assert result["confidence"] == pytest.approx(result["scores"]["positive"])


@pytest.mark.integration
def test_classify_with_examples_by_nearest_neighbours_needs_no_model(tmp_path: Path) -> None:
    examples = tmp_path / "examples.jsonl"
    rows = [
        ("The soup was delicious and the staff were lovely.", "positive"),
        ("Great service, I will come back.", "positive"),
        ("The room was dirty and the staff were rude.", "negative"),
        ("Awful food, I will never come back.", "negative"),
    ]
    examples.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    result = json_out(
        lamina(
            "classify",
            "--examples",
            str(examples),
            "--method",
            "knn",
            "--k",
            "2",
            "--json",
            "Rude staff and a dirty room.",
        )
    )
    assert result["label"] == "negative"
    assert result["usage"]["total_tokens"] == 0  # no model was called


@pytest.mark.integration
def test_summarize_a_file_links_each_point_to_a_section_of_it(tmp_path: Path) -> None:
    # The first two sections (two map calls): the whole file is six, slow on a busy CPU.
    text = (CORPUS / "rag.md").read_text(encoding="utf-8").split("\n## Chunking")[0]
    source = tmp_path / "rag.md"
    source.write_text(text, encoding="utf-8")
    summary = json_out(lamina("summarize", str(source), "--length", "short", "--json"))
    assert 1 <= len(summary["points"]) <= 3
    for point in summary["points"]:
        assert point["text"] and not point["text"][0].isdigit()  # no copied list numbers
        for section in point["sections"]:
            assert section["source"] == str(source)
            assert 0 <= section["start"] < section["end"] <= len(text)
    assert summary["read"] >= 1 and summary["usage"]["prompt_tokens"] > 0


@pytest.mark.integration
def test_extract_returns_json_that_validates_against_the_schema(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "city": {"type": "string"},
            "age": {"type": "integer"},
        },
        "required": ["name", "city", "age"],
    }
    path = tmp_path / "person.json"
    path.write_text(json.dumps(schema))
    result = json_out(
        lamina(
            "extract",
            "--schema",
            str(path),
            "--json",
            "Maria Lopez, 34, moved to Lisbon last spring.",
        )
    )
    jsonschema.validate(result["data"], schema)
    assert "Maria" in result["data"]["name"]
    assert result["data"]["city"] == "Lisbon"


@pytest.mark.integration
def test_email_reply_keeps_the_subject_and_signs(tmp_path: Path) -> None:
    mail = tmp_path / "mail.txt"
    mail.write_text("From: Tom <tom@example.com>\nSubject: Meeting\n\nCan we meet on Friday?\n")
    result = json_out(
        lamina("email", "reply", str(mail), "--say", "yes, Friday works", "--sign", "Ana", "--json")
    )
    assert result["subject"] == "Re: Meeting"
    assert result["body"].strip().endswith("Ana") and len(result["body"]) > len("Ana") + 5


@pytest.mark.integration
def test_email_draft_from_a_brief_with_cited_facts_from_documents() -> None:
    result = json_out(
        lamina(
            "email",
            "draft",
            "--to",
            "the team",
            "--docs",
            str(CORPUS / "lora.pdf"),
            "--json",
            "tell the team who introduced LoRA",
        )
    )
    assert result["subject"].strip() and result["body"].strip()
    assert result["facts"], "the index should have offered a fact"
    for fact in result["facts"]:
        assert fact["citation"]["verified"] is True
        assert fact["citation"]["source"].endswith("lora.pdf")


@pytest.mark.integration
def test_research_reports_verified_citations_from_the_documents() -> None:
    report = json_out(
        lamina(
            "research",
            "What is LoRA?",
            "--docs",
            str(CORPUS),
            "--questions",
            "1",
            "--json",
        )
    )
    assert report["question"] == "What is LoRA?"
    assert report["findings"]
    assert report["sources"]
    assert all(s["verified"] for s in report["sources"])
    assert any(s["source"].endswith("lora.pdf") for s in report["sources"])
