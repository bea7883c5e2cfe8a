"""A research report across sources: plan questions, answer each from the sources, write up.

    >>> from lamina.testing import HashEmbedder, ScriptedModel    # doctest: +SKIP
    >>> with Index("idx", embedder=HashEmbedder()) as index:       # doctest: +SKIP
    ...     index.ingest(["docs/"])
    ...     report = research("How does LoRA save memory?", index)
    >>> print(report.markdown())                                    # doctest: +SKIP

A chain of three traced steps (:mod:`lamina.prompts.chain`):

1. **plan**: the model proposes a few sub-questions (JSON, so a local model always gives a
   list); the question itself always comes first, and repeats are dropped.
2. **gather**: each question is answered by the grounded pipeline (:mod:`lamina.rag`): an
   answer is a quote of a source whose citation is verified, or "not found". With ``web``, the
   top results of a search provider for each question are added to the sources first (pages
   the ``http_get`` allow-list admits are read whole, the rest by their snippet).
3. **report**: one section per answered question, citations numbered across the report, the
   questions the sources could not answer listed as open, and every source with its span.

The report says only what a source says: a 135M model cannot be trusted to synthesise, so the
sections are the verified quotes; a stronger model can be asked for ``strategy="generate"``,
whose sentences are kept only when their citation supports them.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from lamina.errors import InvalidRequestError
from lamina.models.base import ChatModel
from lamina.prompts import builtin_prompt
from lamina.prompts.chain import ChainResult, Step, accumulate, add_usage
from lamina.prompts.templates import as_options
from lamina.rag import Answer, RagConfig, RagPipeline, Strategy
from lamina.rag.lexical import terms
from lamina.retrieval.index import Index
from lamina.retrieval.loaders import source_name
from lamina.types import Usage

__all__ = ["Finding", "Report", "ReportSource", "research"]

MAX_QUESTIONS = 6
WEB_COLLECTION = "web"


class ReportSource(BaseModel):
    """``[n]`` in the report: a verified span of a source (a file, or a URL with --web)."""

    n: int
    source: str
    page: int | None = None
    start: int
    end: int
    quote: str
    verified: bool


class Finding(BaseModel):
    question: str
    text: str
    sources: list[int]


class Report(BaseModel):
    question: str
    findings: list[Finding]
    #: Questions the sources did not answer.
    open_questions: list[str] = Field(default_factory=list)
    sources: list[ReportSource] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    trace_id: str | None = None

    def markdown(self) -> str:
        lines = [f"# {self.question}", ""]
        if not self.findings:
            lines += ["The sources do not answer this question.", ""]
        for finding in self.findings:
            lines += [f"## {finding.question}", "", finding.text, ""]
        if self.open_questions:
            lines += ["## Open questions", ""]
            lines += [f"- {q}" for q in self.open_questions] + [""]
        if self.sources:
            lines += ["## Sources", ""]
            for s in self.sources:
                page = f", page {s.page}" if s.page is not None else ""
                mark = "verified" if s.verified else "NOT verified"
                quote = " ".join(s.quote.split())
                lines.append(
                    f'[{s.n}] {s.source}{page}, chars {s.start}-{s.end} ({mark}): "{quote}"'
                )
        return "\n".join(lines).rstrip() + "\n"


@dataclass
class _Work:
    question: str
    questions: list[str] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    #: Saved web pages' source names -> their URLs.
    urls: dict[str, str] = field(default_factory=dict)


def plan(question: str, model: ChatModel, most: int = 3) -> list[str]:
    """The question and up to ``most`` sub-questions the model proposes, without repeats
    (a proposal sharing no content word with the question is dropped as a drift)."""
    template = builtin_prompt("apps/research_plan")
    schema = {
        "type": "object",
        "properties": {
            "questions": {
                "type": "array",
                "items": {"type": "string", "minLength": 8, "maxLength": 200},
                "maxItems": most,
            }
        },
        "required": ["questions"],
    }
    reply = model.chat(
        template.render(question=question, most=most),
        json_schema=schema,
        **as_options(template.settings, max_tokens=most * 60 + 24),
    )
    add_usage(reply.usage)
    try:
        proposed = [q for q in json.loads(reply.text).get("questions", []) if isinstance(q, str)]
    except (ValueError, AttributeError):
        proposed = []  # an API model ignoring the schema: research the question alone
    own = set(terms(question))
    chosen = [question]
    seen = {" ".join(terms(question))}
    for q in proposed:
        q = " ".join(q.split())
        key = " ".join(terms(q))
        if not key or key in seen or not own & set(terms(q)):
            continue
        seen.add(key)
        chosen.append(q)
    return chosen[: most + 1]


def research(
    question: str,
    index: Index,
    *,
    model: ChatModel | None = None,
    web: Any = None,
    questions: int = 3,
    strategy: Strategy = "extract",
    collection: str | None = None,
    trace: bool = True,
) -> Report:
    """A report on ``question`` from ``index`` (and, with ``web``, a search provider).

    ``web`` is a :class:`lamina.tools.web.SearchProvider`; its results are ingested into
    ``index`` (collection ``web``) before the questions are answered.
    """
    question = " ".join(question.split())
    if not question:
        raise InvalidRequestError("Ask a question to research.")
    if not 0 <= questions <= MAX_QUESTIONS:
        raise InvalidRequestError(f"questions must be 0 to {MAX_QUESTIONS}, got {questions}.")
    if model is None:
        from lamina.models import get_model

        model = get_model()
    chosen_model = model
    pipeline = RagPipeline(index, model, config=RagConfig(strategy=strategy, collection=collection))

    def planning(work: _Work) -> _Work:
        work.questions = plan(work.question, chosen_model, questions) if questions else [question]
        return work

    def gathering(work: _Work) -> _Work:
        if web is not None:
            work.urls = _add_web(index, web, work.questions)
        for q in work.questions:
            answer = pipeline.ask(q)
            accumulate(work.usage, answer.usage)
            add_usage(answer.usage)
            work.answers.append(answer)
        return work

    steps = Step("plan", planning).then(Step("gather", gathering)).then(Step("report", _report))
    result: ChainResult[Report] = steps.run(_Work(question), trace=trace)
    report = result.output
    report.usage = result.usage
    report.trace_id = result.trace_id
    return report


def _report(work: _Work) -> Report:
    sources: list[ReportSource] = []
    numbers: dict[tuple[str, int, int], int] = {}
    findings: list[Finding] = []
    open_questions: list[str] = []
    for q, answer in zip(work.questions, work.answers, strict=True):
        if not answer.found:
            open_questions.append(q)
            continue
        renumber: dict[int, int] = {}
        for c in answer.citations:
            key = (c.source, c.start, c.end)
            if key not in numbers:
                numbers[key] = len(sources) + 1
                sources.append(
                    ReportSource(
                        n=numbers[key],
                        source=work.urls.get(c.source, c.source),
                        page=c.page,
                        start=c.start,
                        end=c.end,
                        quote=c.quote,
                        verified=c.verified,
                    )
                )
            renumber[c.n] = numbers[key]
        text = answer.answer
        for old, new in sorted(renumber.items(), reverse=True):
            text = text.replace(f"[{old}]", f"[@{new}]")
        text = text.replace("[@", "[")
        if any(text == f.text for f in findings):
            continue  # two questions answered by the same quote: say it once
        findings.append(Finding(question=q, text=text, sources=sorted(set(renumber.values()))))
    return Report(
        question=work.question,
        findings=findings,
        open_questions=open_questions,
        sources=sources,
    )


def _add_web(index: Index, provider: Any, questions: Sequence[str]) -> dict[str, str]:
    """Search each question and ingest the results into the ``web`` collection; returns the
    saved pages' source names with their URLs, so citations name the URL (their offsets point
    into the saved text: the page's title, its text, and the URL).
    """
    from lamina.settings import get_settings
    from lamina.tools import ToolContext
    from lamina.tools.errors import ToolError
    from lamina.tools.web import make_http_get

    settings = get_settings()
    fetch = make_http_get(ToolContext(settings=settings)) if settings.tools.http_allow else None
    pages: dict[str, str] = {}
    for q in questions:
        for result in provider.search(q, 3):
            if not result.url or result.url in pages:
                continue
            text = result.snippet
            if fetch is not None:
                # Not on the allow-list, or the fetch failed: the snippet stands.
                with contextlib.suppress(ToolError):
                    text = str(fetch.call({"url": result.url}))
            if text.strip():
                pages[result.url] = f"# {result.title}\n\n{text}\n\nSource: {result.url}\n"
    if not pages:
        return {}
    folder = Path(tempfile.mkdtemp(prefix="lamina-web-"))
    paths, urls = [], {}
    for n, (url, text) in enumerate(pages.items(), 1):
        path = folder / f"web-{n}.md"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
        urls[source_name(path)] = url
    index.ingest(paths, collection=WEB_COLLECTION)
    return urls
