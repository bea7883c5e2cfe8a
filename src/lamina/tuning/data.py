"""Training data: read, validate up front, split off an eval set.

Three shapes are read, from JSON lines or from a Hugging Face ``datasets`` folder saved with
``save_to_disk``:

- chat: ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``
  ending with an assistant turn;
- prompt/completion: ``{"prompt": str | messages, "completion": str, "system": str?}``;
- preference pairs (DPO): ``{"prompt": str | messages, "chosen": str, "rejected": str}``, or
  ``"messages"`` for the prompt conversation.

Any record may carry ``"answers": [str, ...]``: short references (``"Pixel"``) that the eval's
exact-match and containment metrics look for in a generated answer; without it the reference
is the whole final assistant turn.

Every record is checked before any training starts; the error lists each faulty record as
``path:line: what is wrong``, so one pass fixes the file.

>>> example = parse_example({"prompt": "Capital of France?", "completion": "Paris."}, "x:1")
>>> [t.role for t in example.messages], example.reference
(['user', 'assistant'], 'Paris.')
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lamina.errors import MissingDependencyError
from lamina.feedback import Rating, Run
from lamina.tuning.errors import DatasetError

__all__ = [
    "ChatExample",
    "FromFeedback",
    "PreferencePair",
    "Turn",
    "from_feedback",
    "load_examples",
    "load_pairs",
    "parse_example",
    "parse_pair",
    "split_eval",
    "write_jsonl",
]

ROLES = ("system", "user", "assistant")
MAX_SHOWN = 10  # faulty records listed in one error; the count says how many more


@dataclass(frozen=True)
class Turn:
    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class ChatExample:
    """A conversation that ends with the assistant turn to learn (earlier ones are learnt too)."""

    messages: tuple[Turn, ...]
    answers: tuple[str, ...] = ()
    where: str = ""

    @property
    def prompt(self) -> tuple[Turn, ...]:
        """The conversation up to the last assistant turn: what the model is asked at eval."""
        return self.messages[:-1]

    @property
    def reference(self) -> str:
        return self.messages[-1].content

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"messages": [t.as_dict() for t in self.messages]}
        if self.answers:
            out["answers"] = list(self.answers)
        return out


@dataclass(frozen=True)
class PreferencePair:
    """A prompt conversation (ending with a user turn) and a better and a worse reply."""

    prompt: tuple[Turn, ...]
    chosen: str
    rejected: str
    where: str = ""

    def record(self) -> dict[str, Any]:
        return {
            "prompt": [t.as_dict() for t in self.prompt],
            "chosen": self.chosen,
            "rejected": self.rejected,
        }


@dataclass
class _Problems:
    source: str
    found: list[str] = field(default_factory=list)
    total: int = 0

    def add(self, where: str, problem: str) -> None:
        self.total += 1
        if len(self.found) < MAX_SHOWN:
            self.found.append(f"{where}: {problem}")

    def raise_any(self) -> None:
        if self.total:
            raise DatasetError(self.source, self.found, self.total)


class _Invalid(ValueError):
    """One record's problem; collected, then raised together as a DatasetError."""


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"{name!r} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise _Invalid(f"{name!r} is empty")
    return value


def _turns(value: Any, name: str) -> list[Turn]:
    if not isinstance(value, list) or not value:
        raise _Invalid(f"{name!r} must be a non-empty list of {{'role', 'content'}} objects")
    turns = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise _Invalid(f"{name}[{i}] must be an object with 'role' and 'content'")
        role = item.get("role")
        if role not in ROLES:
            raise _Invalid(
                f"{name}[{i}] has role {role!r}; use one of {', '.join(ROLES)} "
                "(tool turns are not supported for training)"
            )
        if role == "system" and i > 0:
            raise _Invalid(f"{name}[{i}] is a system turn; only the first turn may be one")
        turns.append(Turn(role, _text(item.get("content"), f"{name}[{i}].content")))
    return turns


def _prompt(record: Mapping[str, Any], key: str) -> list[Turn]:
    value = record[key]
    turns = [Turn("user", _text(value, key))] if isinstance(value, str) else _turns(value, key)
    if isinstance(record.get("system"), str):
        if turns[0].role == "system":
            raise _Invalid("'system' is given twice: as a field and as the first turn")
        turns.insert(0, Turn("system", _text(record["system"], "system")))
    if turns[-1].role != "user":
        raise _Invalid(f"{key!r} must end with a user turn, not {turns[-1].role!r}")
    return turns


def _reply(value: Any, name: str) -> str:
    """A completion: a string, or a list holding one assistant turn."""
    if isinstance(value, list):
        turns = _turns(value, name)
        if len(turns) != 1 or turns[0].role != "assistant":
            raise _Invalid(f"{name!r} as a list must hold exactly one assistant turn")
        return turns[0].content
    return _text(value, name)


def _answers(record: Mapping[str, Any]) -> tuple[str, ...]:
    value = record.get("answers")
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(a, str) and a.strip() for a in value):
        raise _Invalid("'answers' must be a list of non-empty strings")
    return tuple(value)


def parse_example(record: Any, where: str) -> ChatExample:
    """One SFT record (chat or prompt/completion) → :class:`ChatExample`; ``_Invalid`` if wrong."""
    if not isinstance(record, Mapping):
        raise _Invalid(f"a record must be a JSON object, not {type(record).__name__}")
    # a datasets row has every column of the table, None where this record has no value
    record = {k: v for k, v in record.items() if v is not None}
    if "messages" in record:
        turns = _turns(record["messages"], "messages")
        if turns[-1].role != "assistant":
            raise _Invalid(
                f"the last turn is {turns[-1].role!r}; it must be the assistant reply to learn"
            )
        if not any(t.role == "user" for t in turns):
            raise _Invalid("there is no user turn")
    elif "prompt" in record and "completion" in record:
        turns = [
            *_prompt(record, "prompt"),
            Turn("assistant", _reply(record["completion"], "completion")),
        ]
    else:
        keys = ", ".join(sorted(record)) or "none"
        raise _Invalid(
            f"unknown record shape (keys: {keys}); expected 'messages', or 'prompt' and "
            "'completion'"
        )
    return ChatExample(tuple(turns), _answers(record), where)


def parse_pair(record: Any, where: str) -> PreferencePair:
    """One DPO record → :class:`PreferencePair`; ``_Invalid`` if wrong."""
    if not isinstance(record, Mapping):
        raise _Invalid(f"a record must be a JSON object, not {type(record).__name__}")
    record = {k: v for k, v in record.items() if v is not None}
    key = "prompt" if "prompt" in record else "messages" if "messages" in record else None
    missing = [k for k in ("chosen", "rejected") if k not in record]
    if key is None or missing:
        need = ([] if key else ["prompt (or messages)"]) + missing
        raise _Invalid(f"a preference pair needs {', '.join(need)}")
    prompt = _prompt(record, key)
    chosen, rejected = _reply(record["chosen"], "chosen"), _reply(record["rejected"], "rejected")
    if chosen.strip() == rejected.strip():
        raise _Invalid("'chosen' and 'rejected' are the same text; the pair teaches nothing")
    return PreferencePair(tuple(prompt), chosen, rejected, where)


def _records(path: Path) -> Iterator[tuple[str, Any]]:
    """``(where, record)`` of a JSON-lines file or a saved ``datasets`` folder."""
    if path.is_dir():
        yield from _dataset_rows(path)
        return
    if not path.is_file():
        raise DatasetError(str(path), [f"{path}: no such file or folder"], 1)
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield where, _Invalid(f"not UTF-8 text (byte {exc.start + 1} of the line)")
                continue
            if not line.strip():
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as exc:
                yield where, _Invalid(f"not valid JSON ({exc.msg} at column {exc.colno})")
            except RecursionError:
                yield where, _Invalid("JSON nested too deeply")


def _dataset_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise MissingDependencyError("datasets", "tune") from None
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(
            str(path),
            [f"{path}: not a dataset saved with save_to_disk, nor a JSONL file ({exc})"],
            1,
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise DatasetError(
                str(path), [f"{path}: the DatasetDict has no 'train' split ({list(loaded)})"], 1
            )
        loaded = loaded["train"]
    for i, row in enumerate(loaded):
        yield f"{path}[row {i}]", row


T = TypeVar("T")


def _load(path: Path, parse: Any, kind: str) -> list[Any]:
    problems = _Problems(str(path))
    items = []
    for where, record in _records(path):
        try:
            if isinstance(record, _Invalid):
                raise record
            items.append(parse(record, where))
        except _Invalid as exc:
            problems.add(where, str(exc))
    problems.raise_any()
    if not items:
        raise DatasetError(str(path), [f"{path}: holds no {kind}"], 1)
    return items


def load_examples(path: Path) -> list[ChatExample]:
    """Every SFT example of ``path``, or one :class:`DatasetError` listing every bad record."""
    return _load(path, parse_example, "examples")


def load_pairs(path: Path) -> list[PreferencePair]:
    """Every preference pair of ``path``, or one :class:`DatasetError` listing every bad one."""
    return _load(path, parse_pair, "preference pairs")


def split_eval(
    items: Sequence[T], fraction: float, seed: int, *, at_most: int = 64
) -> tuple[list[T], list[T]]:
    """Hold out ``fraction`` of ``items`` (at least one, at most ``at_most``) for evaluation.

    The choice depends only on the seed and the item count, so a resumed run holds out the same.

    >>> train, held = split_eval(list(range(10)), 0.2, seed=0)
    >>> len(train), len(held), sorted(train + held) == list(range(10))
    (8, 2, True)
    """
    if len(items) < 2:
        raise DatasetError(
            "the training data",
            [f"it has {len(items)} example; an eval split needs at least 2 (or pass --eval FILE)"],
            1,
        )
    n = min(at_most, max(1, round(len(items) * fraction)), len(items) - 1)
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    held = set(order[:n])
    return (
        [x for i, x in enumerate(items) if i not in held],
        [x for i, x in enumerate(items) if i in held],
    )


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> int:
    """Write records as JSON lines (written whole, then renamed: no half files); the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(path)
    return count


@dataclass
class FromFeedback:
    """What ratings turn into: SFT examples, DPO pairs, and the runs that gave neither."""

    examples: list[ChatExample] = field(default_factory=list)
    pairs: list[PreferencePair] = field(default_factory=list)
    skipped: int = 0


def _run_prompt(run: Run) -> tuple[Turn, ...]:
    if run.messages:
        return tuple(Turn(m["role"], m["content"]) for m in run.messages)
    return (Turn("user", run.question),)


def from_feedback(rated: Iterable[tuple[Run, Rating]]) -> FromFeedback:
    """Ratings → training data.

    - up: the answer is an SFT example;
    - down with a fix: the fix is an SFT example, and (fix, answer) a DPO pair;
    - down without a fix: nothing to learn from (counted in ``skipped``).

    Without the recorded prompt (``messages``) the example is the bare question, so the
    answer's ``[n]`` markers, which point into passages the example does not have, are removed.

    >>> from lamina.feedback import Rating, Run
    >>> run = Run(id="run-1", kind="ask", created=0, question="Mascot?", answer="Pixel [1].")
    >>> data = from_feedback([(run, Rating(run_id="run-1", rating="down", fix="Pixel, a red panda.",
    ...                                      created=0))])
    >>> data.examples[0].reference, data.pairs[0].chosen, data.pairs[0].rejected
    ('Pixel, a red panda.', 'Pixel, a red panda.', 'Pixel.')
    """
    from lamina.rag.citations import strip_markers

    out = FromFeedback()
    for run, rating in rated:
        prompt = _run_prompt(run)
        answer = run.answer if run.messages else strip_markers(run.answer)
        where = f"feedback {run.id}"
        if rating.rating == "up":
            out.examples.append(ChatExample((*prompt, Turn("assistant", answer)), (), where))
        elif rating.fix:
            out.examples.append(ChatExample((*prompt, Turn("assistant", rating.fix)), (), where))
            if rating.fix.strip() != answer.strip():
                out.pairs.append(PreferencePair(prompt, rating.fix, answer, where))
        else:
            out.skipped += 1
    return out
