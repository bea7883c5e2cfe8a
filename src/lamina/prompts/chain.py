"""Chaining: typed steps composed with ``then``, each step traced. Nothing more.

A :class:`Step` is a named function from one type to another; ``a.then(b)`` is a
:class:`Chain` whose output type is ``b``'s, so mypy checks that each step takes what the one
before it gives. :func:`generate` makes the usual step (variables → prompt template → model →
parse). :meth:`Chain.run` returns the output with a record of every step (input, output,
milliseconds, tokens) and writes a ``chain.run`` span with a ``chain.step`` span per step.

>>> from lamina.testing import ScriptedModel
>>> model = ScriptedModel(["LoRA adapts large models cheaply.", "Vrai."])
>>> summarise = generate("summarise", model, "Summarise: {{ text }}", variables=["text"])
>>> check = Step("ask", lambda summary: {"claim": summary})
>>> verdict = generate("verdict", model, "True? {{ claim }}", variables=["claim"])
>>> result = summarise.then(check).then(verdict).run({"text": "LoRA ..."}, trace=False)
>>> result.output, [s.name for s in result.steps], result.usage.prompt_tokens
('Vrai.', ['summarise', 'ask', 'verdict'], 11)
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from lamina.models.base import ChatModel
from lamina.prompts.templates import PromptTemplate, as_options
from lamina.prompts.tracing import Tracer
from lamina.types import Usage

__all__ = [
    "Chain",
    "ChainResult",
    "Step",
    "StepRecord",
    "accumulate",
    "add_usage",
    "generate",
]

In = TypeVar("In")
Out = TypeVar("Out")
Next = TypeVar("Next")
T = TypeVar("T")


@dataclass
class StepRecord:
    """What one step did: its input and output, how long it took, the tokens it used."""

    name: str
    input: Any
    output: Any = None
    ms: float = 0.0
    usage: Usage = field(default_factory=Usage)
    error: str | None = None


_current: contextvars.ContextVar[StepRecord | None] = contextvars.ContextVar(
    "lamina_chain_step", default=None
)


def add_usage(usage: Usage) -> None:
    """Count a model call's tokens towards the step running now (no-op outside a chain)."""
    record = _current.get()
    if record is not None:
        accumulate(record.usage, usage)


def accumulate(total: Usage, more: Usage) -> None:
    """Add ``more`` to ``total`` in place (a cost becomes unknown once one part is)."""
    total.prompt_tokens += more.prompt_tokens
    total.completion_tokens += more.completion_tokens
    if total.cost_usd is not None:
        total.cost_usd = None if more.cost_usd is None else total.cost_usd + more.cost_usd


@dataclass
class ChainResult(Generic[Out]):
    output: Out
    steps: list[StepRecord]
    usage: Usage
    trace_id: str | None = None


class Step(Generic[In, Out]):
    """A named function ``In -> Out``; ``then`` composes it with the next step."""

    def __init__(self, name: str, fn: Callable[[In], Out]) -> None:
        self.name = name
        self.fn = fn

    def __call__(self, value: In) -> Out:
        return self.fn(value)

    def then(self, nxt: Step[Out, Next]) -> Chain[In, Next]:
        return Chain([self, nxt])

    def run(
        self, value: In, *, trace: bool = True, tracer: Tracer | None = None
    ) -> ChainResult[Out]:
        return Chain[In, Out]([self]).run(value, trace=trace, tracer=tracer)


class Chain(Generic[In, Out]):
    """Steps run in order, each on the previous one's output."""

    def __init__(self, steps: Sequence[Step[Any, Any]], name: str = "chain") -> None:
        if not steps:
            raise ValueError("a chain needs at least one step")
        self.steps = list(steps)
        self.name = name

    def then(self, nxt: Step[Out, Next]) -> Chain[In, Next]:
        return Chain([*self.steps, nxt], self.name)

    def __call__(self, value: In) -> Out:
        return self.run(value, trace=False).output

    def run(
        self, value: In, *, trace: bool = True, tracer: Tracer | None = None
    ) -> ChainResult[Out]:
        """Run every step; ``trace=False`` skips the spans (the records are kept either way).

        An exception in a step is recorded in its :class:`StepRecord` and its span, then
        raised: a chain has no error handling of its own, a step that can fail gracefully
        handles it inside.
        """
        tracer = tracer or Tracer(enabled=trace)
        records: list[StepRecord] = []
        usage = Usage()
        trace_id: str | None = None
        current: Any = value
        with tracer.span("chain.run", chain=self.name, steps=len(self.steps)) as root:
            trace_id = tracer.trace_id(root)
            for step in self.steps:
                record = StepRecord(step.name, current)
                records.append(record)
                token = _current.set(record)
                started = time.perf_counter()
                with tracer.span("chain.step", step=step.name, input=current) as span:
                    try:
                        current = step.fn(current)
                    except Exception as exc:
                        record.error = f"{type(exc).__name__}: {exc}"
                        span.set_attribute("lamina.error", record.error)
                        raise
                    finally:
                        record.ms = (time.perf_counter() - started) * 1000
                        _current.reset(token)
                    record.output = current
                    span.set_attributes(
                        {
                            "lamina.output": _short(current),
                            "lamina.prompt_tokens": record.usage.prompt_tokens,
                            "lamina.completion_tokens": record.usage.completion_tokens,
                        }
                    )
                accumulate(usage, record.usage)
        outer = _current.get()
        if outer is not None:  # a chain run inside a step counts towards that step
            accumulate(outer.usage, usage)
        return ChainResult(output=current, steps=records, usage=usage, trace_id=trace_id)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 2000 else text[:2000] + "…"


@overload
def generate(
    name: str,
    model: ChatModel,
    template: PromptTemplate | str,
    *,
    variables: Sequence[str] = (),
    parse: None = None,
    **settings: Any,
) -> Step[Mapping[str, Any], str]: ...


@overload
def generate(
    name: str,
    model: ChatModel,
    template: PromptTemplate | str,
    *,
    variables: Sequence[str] = (),
    parse: Callable[[str], T],
    **settings: Any,
) -> Step[Mapping[str, Any], T]: ...


def generate(
    name: str,
    model: ChatModel,
    template: PromptTemplate | str,
    *,
    variables: Sequence[str] = (),
    parse: Callable[[str], Any] | None = None,
    **settings: Any,
) -> Step[Mapping[str, Any], Any]:
    """A step: render ``template`` with the input mapping, ask ``model``, ``parse`` the text.

    ``template`` is a :class:`PromptTemplate` (its recommended settings apply, ``settings``
    override them) or, for quick chains, a Jinja string whose ``variables`` are listed.
    """
    if isinstance(template, str):
        header = "---\nvariables: {" + ", ".join(f"{v}: ''" for v in variables) + "}\n---\n"
        template = PromptTemplate.parse(header + template, name)
    prompt_template = template
    options = as_options(prompt_template.settings, **settings)

    def run(values: Mapping[str, Any]) -> Any:
        reply = model.chat(prompt_template.render(**values), **options)
        add_usage(reply.usage)
        return parse(reply.text) if parse is not None else reply.text

    return Step(name, run)
