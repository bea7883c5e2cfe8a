"""A multi-turn grounded chat: each question is answered from the index, follow-ups included.

The memory that matters for retrieval is the list of standalone queries: a follow-up such as
"and what is its rank?" is rewritten with the key terms of the previous query before searching.

>>> chat = GroundedChat(pipeline)                     # doctest: +SKIP
>>> chat.ask("Who introduced LoRA?").answer           # doctest: +SKIP
>>> chat.ask("What is its matrix B set to?").query    # doctest: +SKIP
'What is its matrix B set to? (LoRA)'
"""

from __future__ import annotations

from collections.abc import Iterator

from lamina.rag.answer import Answer
from lamina.rag.pipeline import Event, RagPipeline

__all__ = ["GroundedChat"]


class GroundedChat:
    def __init__(self, pipeline: RagPipeline, *, memory: int = 8) -> None:
        self.pipeline = pipeline
        self.memory = memory
        self.queries: list[str] = []
        self.answers: list[Answer] = []

    def reset(self) -> None:
        self.queries.clear()
        self.answers.clear()

    def stream(self, question: str) -> Iterator[Event]:
        for event in self.pipeline.stream(question, self.queries[-self.memory :]):
            if isinstance(event, Answer):
                self.queries.append(event.query)
                self.answers.append(event)
            yield event

    def ask(self, question: str) -> Answer:
        answer: Answer | None = None
        for event in self.stream(question):
            if isinstance(event, Answer):
                answer = event
        assert answer is not None
        return answer
