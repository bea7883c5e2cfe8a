"""A deterministic chat model for tests and examples: replies are scripted, calls recorded.

>>> model = ScriptedModel(["Paris."])
>>> model.chat("Capital of France?", temperature=0).text
'Paris.'
>>> model.chat("Again?").text        # the script is used up: the default, else an echo
'Again?'
>>> [m.content for m in model.history[0]]
['Capital of France?']

A reply may be an exception instance, raised in place of answering: that is how retry logic
is tested. Tokens are whitespace-separated words, plus one per message for its role marker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Self

from lamina.models.base import BaseChatModel, Prompt
from lamina.settings import Settings
from lamina.types import (
    ChatOptions,
    Completion,
    Delta,
    FinishReason,
    Message,
    Usage,
    as_messages,
)

__all__ = ["ScriptedModel"]

Reply = str | BaseException | Callable[[list[Message]], str]


class ScriptedModel(BaseChatModel):
    backend = "scripted"
    exact_tokens = True

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        context_window: int = 4096,
        settings: Settings | None = None,
        model: str = "echo",
        default: str | None = None,
    ) -> None:
        super().__init__(model, settings=settings)
        self.replies: deque[Reply] = deque(replies)
        self.default = default
        self.history: list[list[Message]] = []
        self.options: list[ChatOptions] = []
        self._window = context_window

    @classmethod
    def from_spec(cls, name: str | None, settings: Settings) -> Self:
        """``scripted`` echoes; ``scripted:TEXT`` always answers TEXT."""
        if name:
            return cls(settings=settings, model="fixed", default=name)
        return cls(settings=settings)

    @classmethod
    def known_models(cls, settings: Settings) -> list[str]:
        return ["scripted (echo)", "scripted:TEXT (always TEXT)"]

    def enqueue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    @property
    def context_window(self) -> int:
        return self._window

    def count_tokens(self, prompt: Prompt) -> int:
        if isinstance(prompt, str):
            return len(prompt.split())
        messages = as_messages(prompt)
        return sum(len(m.content.split()) + 1 for m in messages)

    def _reply(self, messages: list[Message], options: ChatOptions) -> str:
        self.history.append(messages)
        self.options.append(options)
        if not self.replies:
            if self.default is not None:
                return self.default
            users = [m.content for m in messages if m.role == "user"]
            return users[-1] if users else ""
        reply = self.replies.popleft()
        if isinstance(reply, BaseException):
            raise reply
        return reply(messages) if callable(reply) else reply

    def _finish_text(self, text: str, options: ChatOptions) -> tuple[str, FinishReason]:
        for stop in options.stop:
            if stop in text:
                return text[: text.index(stop)], "stop"
        words = text.split(" ")
        if len(words) > options.max_tokens:
            return " ".join(words[: options.max_tokens]), "length"
        return text, "stop"

    def _chat(self, messages: list[Message], options: ChatOptions) -> Completion:
        text, finish = self._finish_text(self._reply(messages, options), options)
        usage = Usage(
            prompt_tokens=self.count_tokens(messages), completion_tokens=len(text.split())
        )
        return Completion(text=text, finish_reason=finish, usage=usage, model=self.name)

    def _stream(self, messages: list[Message], options: ChatOptions) -> Iterator[Delta]:
        completion = self._chat(messages, options)
        words = completion.text.split(" ")
        for i, word in enumerate(words):
            yield Delta(text=word if i == 0 else " " + word)
        yield Delta(finish_reason=completion.finish_reason, usage=completion.usage)
