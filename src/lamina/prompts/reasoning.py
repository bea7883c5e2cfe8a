"""Chain-of-thought with the reasoning kept apart from the answer, and self-consistency.

The model is asked for one JSON object, ``{"reasoning": "...", "answer": ...}``, with the
answer's own schema inside. On a local model the JSON schema is a grammar, so the reply
always parses and the answer always has the asked shape (an ``enum`` of labels, say); API
models get it as structured output. The reasoning goes to the trace (a ``reasoning.sample``
span each) and to :attr:`Reasoned.samples`; callers return :attr:`Reasoned.answer` only.

Self-consistency (Wang et al., 2022): ``samples=n`` asks ``n`` times at a temperature above
zero, each with its own seed (so a run is repeatable and cacheable), and the answer given most
often wins; :attr:`Reasoned.agreement` is its share of the votes. Ties go to the answer seen
first.

>>> from lamina.testing import ScriptedModel
>>> model = ScriptedModel(['{"reasoning": "2 and 2", "answer": 4}',
...                        '{"reasoning": "2 times 2", "answer": 4}',
...                        '{"reasoning": "guess", "answer": 5}'])
>>> result = think(model, "What is 2+2?", {"type": "integer"}, samples=3, trace=False)
>>> result.answer, result.votes, round(result.agreement, 2)
(4, {'4': 2, '5': 1}, 0.67)
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lamina.errors import IncompleteOutputError
from lamina.models.base import ChatModel, Prompt
from lamina.prompts.chain import accumulate, add_usage
from lamina.prompts.errors import OutputParseError
from lamina.prompts.templates import builtin_prompt
from lamina.prompts.tracing import Tracer, attributes
from lamina.types import Message, Usage, as_messages

__all__ = ["Reasoned", "Sample", "reasoning_schema", "think"]

#: Temperature of self-consistency samples when the caller gives none (the paper uses 0.5-0.7).
SAMPLE_TEMPERATURE = 0.7


@dataclass(frozen=True)
class Sample:
    """One reply: its reasoning and answer, or why it could not be read."""

    reasoning: str
    answer: Any
    error: str | None = None


@dataclass
class Reasoned:
    """The voted answer, every sample behind it, and the tokens they cost."""

    answer: Any
    samples: list[Sample]
    votes: dict[str, int]
    usage: Usage = field(default_factory=Usage)
    trace_id: str | None = None

    @property
    def agreement(self) -> float:
        """The winning answer's share of the readable samples (1.0 for a single sample)."""
        total = sum(self.votes.values())
        return max(self.votes.values()) / total if total else 0.0


def reasoning_schema(answer: dict[str, Any], max_reasoning_chars: int = 600) -> dict[str, Any]:
    """The reply's schema: reasoning first (so it is written before the answer), then the
    answer, both required; the reasoning is bounded so the reply always ends.

    >>> reasoning_schema({"enum": ["yes", "no"]}, 100)["properties"]["reasoning"]
    {'type': 'string', 'maxLength': 100}
    """
    return {
        "type": "object",
        "properties": {
            "reasoning": {"type": "string", "maxLength": max_reasoning_chars},
            "answer": answer,
        },
        "required": ["reasoning", "answer"],
    }


def _with_instruction(prompt: Prompt) -> list[Message]:
    """The prompt with the step-by-step instruction after its last user turn."""
    messages = as_messages(prompt)
    instruction = builtin_prompt("reasoning/step_by_step").render()
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            content = f"{messages[i].content}\n\n{instruction}"
            return [*messages[:i], Message.user(content), *messages[i + 1 :]]
    return [*messages, Message.user(instruction)]


def think(
    model: ChatModel,
    prompt: Prompt,
    answer_schema: dict[str, Any],
    *,
    samples: int = 1,
    temperature: float | None = None,
    seed: int = 0,
    max_reasoning_chars: int = 600,
    max_tokens: int | None = None,
    trace: bool = True,
    tracer: Tracer | None = None,
) -> Reasoned:
    """Ask for reasoning then an answer; with ``samples > 1``, vote (self-consistency).

    One sample is greedy (temperature 0) unless ``temperature`` says otherwise. A reply that
    does not parse (an API model ignoring the schema) is a failed sample, kept with its error;
    when no sample parses the call raises :class:`OutputParseError`.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    messages = _with_instruction(prompt)
    schema = reasoning_schema(answer_schema, max_reasoning_chars)
    heat = temperature if temperature is not None else (0.0 if samples == 1 else SAMPLE_TEMPERATURE)
    # Room for the reasoning (about 4 characters a token) and a modest answer.
    budget = max_tokens or max_reasoning_chars // 3 + 160
    tracer = tracer or Tracer(enabled=trace)
    usage = Usage()
    read: list[Sample] = []
    with tracer.span("reasoning.think", samples=samples, temperature=heat) as root:
        trace_id = tracer.trace_id(root)
        for i in range(samples):
            with tracer.span("reasoning.sample", sample=i + 1) as span:
                try:
                    reply = model.chat(
                        messages,
                        json_schema=schema,
                        temperature=heat,
                        seed=seed + i,
                        max_tokens=budget,
                    )
                except IncompleteOutputError as exc:
                    sample = Sample("", None, str(exc))
                else:
                    accumulate(usage, reply.usage)
                    add_usage(reply.usage)
                    sample = _parse(reply.text)
                read.append(sample)
                span.set_attributes(
                    attributes(
                        {
                            "reasoning": sample.reasoning,
                            "answer": sample.answer,
                            "error": sample.error,
                        }
                    )
                )
    readable = [s for s in read if s.error is None]
    if not readable:
        errors = "; ".join(s.error or "" for s in read)
        raise OutputParseError(model.name, f"no sample gave the JSON asked for ({errors})")
    votes = Counter(_key(s.answer) for s in readable)
    best = max(votes.values())
    winner = next(s.answer for s in readable if votes[_key(s.answer)] == best)
    return Reasoned(winner, read, dict(votes), usage, trace_id)


def _key(answer: Any) -> str:
    return json.dumps(answer, sort_keys=True, ensure_ascii=False)


def _parse(text: str) -> Sample:
    try:
        reply = json.loads(text)
    except json.JSONDecodeError as exc:
        return Sample("", None, f"not JSON ({exc.msg}): {text[:80]!r}")
    if not isinstance(reply, dict) or "answer" not in reply:
        return Sample("", None, f'no "answer" in the reply: {text[:80]!r}')
    reasoning = reply.get("reasoning")
    return Sample(reasoning if isinstance(reasoning, str) else "", reply["answer"])
