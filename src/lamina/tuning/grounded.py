"""Grounded-answer training examples, built from an index and questions, with no labelling.

For each question the RAG pipeline runs with the ``generate`` strategy against a stand-in
model that records the prompt it is given (the question with the retrieved, numbered
passages, exactly as ``lamina ask --strategy generate`` would send it) and writes nothing.
With nothing written the pipeline falls back to quoting the best-supported sentence with its
``[n]`` — a verified extractive answer. Prompt + that answer is one SFT example: it teaches
the model to answer from the passages, in a sentence the verifier accepts, citing the right
passage. Questions the pipeline finds no answer to are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from lamina.models.base import BaseChatModel, Prompt
from lamina.settings import Settings
from lamina.tuning.data import ChatExample, Turn
from lamina.types import ChatOptions, Completion, Delta, Message, Usage

__all__ = ["GroundedSet", "grounded_examples"]


class _PromptRecorder(BaseChatModel):
    """Counts tokens like ``inner`` (so passages are packed as for it), answers nothing,
    and keeps every prompt it was sent."""

    backend = "recorder"

    def __init__(self, inner: Any) -> None:
        super().__init__(inner.name, settings=inner.settings.model_copy(update={"cache": False}))
        self.inner = inner
        self.prompts: list[list[Message]] = []

    @classmethod
    def from_spec(cls, name: str | None, settings: Settings) -> Self:
        raise NotImplementedError("built in code only")

    @property
    def context_window(self) -> int:
        return int(self.inner.context_window)

    def count_tokens(self, prompt: Prompt) -> int:
        return int(self.inner.count_tokens(prompt))

    def _chat(self, messages: list[Message], options: ChatOptions) -> Completion:
        self.prompts.append(messages)
        return Completion(text="", finish_reason="stop", usage=Usage(), model=self.name)

    def _stream(self, messages: list[Message], options: ChatOptions) -> Iterator[Delta]:
        self.prompts.append(messages)
        yield Delta(finish_reason="stop", usage=Usage())


@dataclass
class GroundedSet:
    examples: list[ChatExample] = field(default_factory=list)
    #: Questions the pipeline answered "not found": nothing to learn from them.
    skipped: list[str] = field(default_factory=list)


def grounded_examples(index: Any, questions: Sequence[str], model: Any) -> GroundedSet:
    """One example per answerable question: the generate prompt → the verified quote.

    ``index`` is an open :class:`~lamina.retrieval.index.Index`, ``model`` the chat model
    whose tokenizer packs the passages (the model to be tuned).
    """
    from lamina.rag import RagConfig, RagPipeline

    recorder = _PromptRecorder(model)
    pipeline = RagPipeline(index, recorder, config=RagConfig(strategy="generate"))
    out = GroundedSet()
    for question in questions:
        recorder.prompts.clear()
        answer = pipeline.ask(question)
        if not answer.found or not recorder.prompts:
            out.skipped.append(question)
            continue
        turns = tuple(Turn(m.role, m.content) for m in recorder.prompts[0])
        out.examples.append(
            ChatExample((*turns, Turn("assistant", answer.answer)), (), f"grounded: {question}")
        )
    return out
