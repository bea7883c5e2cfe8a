"""A deterministic chat model for tests and examples: replies are scripted, calls recorded.

>>> model = ScriptedModel(["Paris."])
>>> model.chat("Capital of France?", temperature=0).text
'Paris.'
>>> model.chat("Again?").text        # the script is used up: the default, else an echo
'Again?'
>>> [m.content for m in model.history[0]]
['Capital of France?']

A reply may be an exception instance, raised in place of answering: that is how retry logic
is tested. It may be a tool call (:func:`tool_call`), a list of them (parallel calls) or an
assistant :class:`Message`; a callable gets the messages and returns any of these, so a reply
can depend on the turn (as smolagents' tests pick replies):

>>> model = ScriptedModel([tool_call("calculator", expression="2+2"), "It is 4."])
>>> model.chat("2+2?", tools=[{"name": "calculator"}]).tool_calls
[ToolCall(id='call_1', name='calculator', arguments='{"expression": "2+2"}')]

Tokens are whitespace-separated words, plus one per message for its role marker.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Self

from lamina.models.base import BaseChatModel, Prompt
from lamina.settings import Settings
from lamina.types import (
    ChatOptions,
    Completion,
    Delta,
    FinishReason,
    Message,
    ToolCall,
    ToolCallDelta,
    Usage,
    as_messages,
)

__all__ = ["ScriptedModel", "tool_call"]

Answer = str | Message | ToolCall | list[ToolCall]
Reply = Answer | BaseException | Callable[[list[Message]], Answer]


def tool_call(name: str, *, id: str = "", **arguments: Any) -> ToolCall:
    """A call for a script; without an ``id`` the model numbers its calls ``call_1``, ...

    >>> tool_call("search", query="LoRA").arguments
    '{"query": "LoRA"}'
    """
    return ToolCall(id=id, name=name, arguments=json.dumps(arguments))


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
        self._calls = 0
        self._instance = uuid.uuid4().hex
        self._scripted = bool(self.replies)

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
        self._scripted = self._scripted or bool(replies)

    @property
    def cache_identity(self) -> str:
        # Echo and fixed answers are a function of the request; a script is not: two scripts
        # answer the same request differently, so a scripted instance only hits its own calls.
        return f"{self.name}#{self._instance}" if self._scripted else self.name

    @property
    def context_window(self) -> int:
        return self._window

    def count_tokens(self, prompt: Prompt) -> int:
        if isinstance(prompt, str):
            return len(prompt.split())
        messages = as_messages(prompt)
        return sum(
            len(m.content.split()) + 1 + sum(len(c.arguments.split()) for c in m.tool_calls)
            for m in messages
        )

    def _reply(self, messages: list[Message], options: ChatOptions) -> Message:
        self.history.append(messages)
        self.options.append(options)
        if not self.replies:
            if self.default is not None:
                return Message.assistant(self.default)
            users = [m.content for m in messages if m.role == "user"]
            return Message.assistant(users[-1] if users else "")
        reply = self.replies.popleft()
        if isinstance(reply, BaseException):
            raise reply
        answer = reply(messages) if callable(reply) else reply
        if isinstance(answer, str):
            return Message.assistant(answer)
        if isinstance(answer, ToolCall):
            answer = [answer]
        if isinstance(answer, list):
            answer = Message.assistant(tool_calls=answer)
        return answer.model_copy(
            update={"tool_calls": [self._numbered(c) for c in answer.tool_calls]}
        )

    def _numbered(self, call: ToolCall) -> ToolCall:
        self._calls += 1
        return call if call.id else call.model_copy(update={"id": f"call_{self._calls}"})

    def _finish_text(self, text: str, options: ChatOptions) -> tuple[str, FinishReason]:
        for stop in options.stop:
            if stop in text:
                return text[: text.index(stop)], "stop"
        words = text.split(" ")
        if len(words) > options.max_tokens:
            return " ".join(words[: options.max_tokens]), "length"
        return text, "stop"

    def _chat(self, messages: list[Message], options: ChatOptions) -> Completion:
        reply = self._reply(messages, options)
        text, finish = self._finish_text(reply.content, options)
        completion_tokens = len(text.split()) + sum(
            len(c.arguments.split()) for c in reply.tool_calls
        )
        usage = Usage(
            prompt_tokens=self.count_tokens(messages), completion_tokens=completion_tokens
        )
        return Completion(
            text=text,
            finish_reason="tool_calls" if reply.tool_calls else finish,
            usage=usage,
            model=self.name,
            tool_calls=reply.tool_calls,
        )

    def _stream(self, messages: list[Message], options: ChatOptions) -> Iterator[Delta]:
        completion = self._chat(messages, options)
        if completion.text or not completion.tool_calls:
            words = completion.text.split(" ")
            for i, word in enumerate(words):
                yield Delta(text=word if i == 0 else " " + word)
        for i, call in enumerate(completion.tool_calls):
            yield Delta(tool_calls=[ToolCallDelta(index=i, id=call.id, name=call.name)])
            yield Delta(tool_calls=[ToolCallDelta(index=i, arguments=call.arguments)])
        yield Delta(finish_reason=completion.finish_reason, usage=completion.usage)
