"""Examples → token ids and labels, laid out by the model's own chat template.

Only assistant tokens are learnt: every other position gets the label ``-100``. The assistant
spans are found in characters, by rendering the conversation up to each assistant turn with
the generation prompt (``<|im_start|>assistant\\n``) and up to the end of that turn; the fast
tokenizer's offsets then say which tokens fall inside. The template must therefore render a
conversation as a prefix of any longer one, which chat templates do; one that does not is an
error rather than silently wrong labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lamina.tuning.data import ChatExample, PreferencePair, Turn
from lamina.tuning.errors import DatasetError, TuningError

__all__ = ["IGNORE", "Encoded", "encode_examples", "encode_pairs", "render"]

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    where: str

    @property
    def learnt(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def render(tokenizer: Any, turns: Sequence[Turn], *, generation_prompt: bool) -> str:
    return str(
        tokenizer.apply_chat_template(
            [t.as_dict() for t in turns],
            tokenize=False,
            add_generation_prompt=generation_prompt,
        )
    )


def _spans(tokenizer: Any, turns: Sequence[Turn]) -> tuple[str, list[tuple[int, int]]]:
    text = render(tokenizer, turns, generation_prompt=False)
    spans = []
    for i, turn in enumerate(turns):
        if turn.role != "assistant":
            continue
        before = render(tokenizer, turns[:i], generation_prompt=True)
        through = render(tokenizer, turns[: i + 1], generation_prompt=False)
        if not (through.startswith(before) and text.startswith(through)):
            raise TuningError(
                "The model's chat template does not render a conversation as a prefix of a "
                "longer one, so the assistant tokens cannot be located for the loss."
            )
        spans.append((len(before), len(through)))
    return text, spans


def _encode(tokenizer: Any, turns: Sequence[Turn], where: str) -> Encoded:
    text, spans = _spans(tokenizer, turns)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = [
        token if any(s <= start < e for s, e in spans) else IGNORE
        for token, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
    ]
    return Encoded(list(enc["input_ids"]), labels, where)


def _check_lengths(items: Sequence[Encoded], max_length: int, source: str) -> None:
    long = [e for e in items if len(e.input_ids) > max_length]
    if long:
        raise DatasetError(
            source,
            [
                f"{e.where}: {len(e.input_ids)} tokens, over --max-length {max_length}; "
                "raise --max-length or shorten the example"
                for e in long[:10]
            ],
            len(long),
        )


def encode_examples(
    tokenizer: Any, examples: Sequence[ChatExample], max_length: int, source: str
) -> list[Encoded]:
    """Token ids and assistant-only labels of each example; too-long ones are an error."""
    encoded = [_encode(tokenizer, ex.messages, ex.where) for ex in examples]
    _check_lengths(encoded, max_length, source)
    return encoded


def encode_pairs(
    tokenizer: Any, pairs: Sequence[PreferencePair], max_length: int, source: str
) -> list[tuple[Encoded, Encoded]]:
    """(chosen, rejected) sequences of each pair, labels on the reply only."""
    encoded = [
        (
            _encode(tokenizer, (*p.prompt, Turn("assistant", p.chosen)), p.where),
            _encode(tokenizer, (*p.prompt, Turn("assistant", p.rejected)), p.where),
        )
        for p in pairs
    ]
    _check_lengths([e for pair in encoded for e in pair], max_length, source)
    return encoded
