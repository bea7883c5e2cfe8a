"""A multi-turn conversation whose history is kept within the model's context budget.

The budget is the context window minus the tokens reserved for the reply. When the history
outgrows it, the oldest user/assistant exchanges are dropped (the system prompt and the newest
turn are always kept), and ``dropped`` counts them, so trimming is never silent.

>>> from lamina.models.scripted import ScriptedModel
>>> talk = Conversation(ScriptedModel(["Hi!", "Fine."]), system="Be brief.")
>>> talk.say("Hello").text, talk.say("How are you?").text
('Hi!', 'Fine.')
>>> [m.role for m in talk.messages]
['system', 'user', 'assistant', 'user', 'assistant']
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lamina.models.base import ChatModel, drop_oldest_turns
from lamina.types import Completion, Delta, Message

__all__ = ["Conversation"]


class Conversation:
    def __init__(
        self,
        model: ChatModel,
        *,
        system: str | None = None,
        reply_tokens: int = 512,
        **options: Any,
    ) -> None:
        self.model = model
        self.system = system
        self.reply_tokens = reply_tokens
        self.options = options
        self.turns: list[Message] = []
        self.dropped = 0

    @property
    def messages(self) -> list[Message]:
        head = [Message.system(self.system)] if self.system else []
        return head + self.turns

    def reset(self) -> None:
        self.turns.clear()
        self.dropped = 0

    def _fit(self) -> None:
        budget = self.model.context_window - self.reply_tokens
        head = len(self.messages) - len(self.turns)
        kept, dropped = drop_oldest_turns(
            self.messages, lambda messages: self.model.count_tokens(messages) <= budget
        )
        self.turns = kept[head:]
        self.dropped += dropped

    def stream(self, text: str) -> Iterator[Delta]:
        """Send a user turn and stream the reply; the reply joins the history when complete."""
        self.turns.append(Message.user(text))
        self._fit()
        parts: list[str] = []
        try:
            for delta in self.model.stream(
                self.messages, max_tokens=self.reply_tokens, **self.options
            ):
                parts.append(delta.text)
                yield delta
        except BaseException:
            self.turns.pop()  # a failed turn leaves no half-exchange behind
            raise
        self.turns.append(Message.assistant("".join(parts)))

    def say(self, text: str) -> Completion:
        """Send a user turn and return the whole reply."""
        self.turns.append(Message.user(text))
        self._fit()
        try:
            completion = self.model.chat(
                self.messages, max_tokens=self.reply_tokens, **self.options
            )
        except BaseException:
            self.turns.pop()
            raise
        self.turns.append(Message.assistant(completion.text))
        return completion
