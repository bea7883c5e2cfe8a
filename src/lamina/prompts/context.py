"""One context builder: instructions, knowledge, memory and tools within a token budget.

A prompt is assembled from *sections* in priority order. A required section (instructions,
the task itself) goes in whole or the build fails with
:class:`~lamina.errors.ContextOverflowError`; the others are filled greedily, piece by piece in
the order given, while the whole prompt still fits. Nothing is cut silently: a piece that
repeats one already in (``duplicate``), or that does not fit (``budget``), is recorded in
:attr:`Context.omitted` with the reason. A piece that does not fit does not stop the section:
a shorter, lower-ranked one after it may still fit.

The budget is measured on the whole rendered prompt (template text, the task, every chosen
piece), with the model's own token counter, so what is counted is what is sent.

>>> words = lambda text: len(text.split())
>>> builder = ContextBuilder.for_template(builtin_prompt("context/default"), words, budget=30)
>>> context = (builder.add("instructions", [Piece("Answer from the documents.")], required=True)
...            .add("knowledge", [Piece("LoRA freezes the base weights.", key="lora.md"),
...                               Piece("LoRA freezes the base weights.", key="copy.md"),
...                               Piece("A very long passage " * 10, key="long.md"),
...                               Piece("GGUF replaced GGML.", key="gguf.md")])
...            .build(task="What does LoRA freeze?"))
>>> [p.key for p in context.chosen["knowledge"]]
['lora.md', 'gguf.md']
>>> [(o.piece.key, o.reason) for o in context.omitted]
[('copy.md', 'duplicate'), ('long.md', 'budget')]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lamina.errors import ContextOverflowError
from lamina.prompts.templates import PromptTemplate, builtin_prompt

__all__ = [
    "Context",
    "ContextBuilder",
    "Omitted",
    "Piece",
    "Section",
    "same_text",
]

#: The sections of the default template, in the order a prompt usually wants them.
SECTIONS = ("instructions", "tools", "memory", "knowledge", "examples")

Selection = Mapping[str, Sequence["Piece"]]


@dataclass(frozen=True)
class Piece:
    """One thing a section may include: its ``text``, a ``key`` naming it in reports (a
    source, a tool name), and ``data``: whatever the caller wants back (a search hit)."""

    text: str
    key: str | None = None
    data: Any = None


@dataclass(frozen=True)
class Omitted:
    """A piece left out of the prompt, from which section, and why."""

    section: str
    piece: Piece
    reason: str  # "duplicate" | "budget"


def same_text(piece: Piece, chosen: Sequence[Piece]) -> bool:
    """The default duplicate test: the same text, ignoring case and white space.

    >>> same_text(Piece("A  b"), [Piece("a B")])
    True
    """
    norm = " ".join(piece.text.split()).lower()
    return any(" ".join(c.text.split()).lower() == norm for c in chosen)


@dataclass
class Section:
    name: str
    pieces: list[Piece]
    required: bool = False
    max_items: int | None = None
    #: ``duplicate(piece, chosen_so_far)``: True leaves the piece out as a duplicate.
    duplicate: Callable[[Piece, Sequence[Piece]], bool] | None = same_text


@dataclass
class Context:
    """What the builder chose: pieces by section, what it left out, and the prompt's size."""

    chosen: dict[str, list[Piece]]
    omitted: list[Omitted] = field(default_factory=list)
    tokens: int = 0
    #: The rendered prompt ("" when the builder was given a measure, not a template).
    text: str = ""

    def report(self) -> dict[str, Any]:
        """A summary to keep in a trace: counts in, and each omission with its reason."""
        return {
            "tokens": self.tokens,
            "chosen": {name: len(pieces) for name, pieces in self.chosen.items()},
            "omitted": [
                {"section": o.section, "key": o.piece.key, "reason": o.reason} for o in self.omitted
            ],
        }


class ContextBuilder:
    """Assemble a prompt within ``budget`` tokens; see the module docstring.

    ``measure(selection)`` gives the tokens of the whole prompt built from a selection (a
    mapping of section name to chosen pieces). :meth:`for_template` builds one from a
    template and a token counter, which is the usual way; RAG passes its own measure.
    """

    def __init__(
        self,
        measure: Callable[[Selection], int],
        budget: int,
        *,
        render: Callable[[Selection], str] | None = None,
        model: str = "model",
        window: int | None = None,
    ) -> None:
        self.measure = measure
        self.budget = budget
        self.render = render
        self.model = model
        self.window = window
        self.sections: list[Section] = []
        self._fixed: dict[str, Any] = {}

    @classmethod
    def for_template(
        cls,
        template: PromptTemplate | str,
        count: Callable[[str], int],
        budget: int,
        *,
        model: str = "model",
        window: int | None = None,
        **fixed: Any,
    ) -> ContextBuilder:
        """Sections become the template's variables (lists of :class:`Piece`) of ``template``
        (a template, or a built-in's name such as ``"context/default"``); ``fixed``
        variables (the task) are given to :meth:`build`. Sections the template declares but
        nobody added render as empty lists."""
        if isinstance(template, str):
            template = builtin_prompt(template)
        builder: ContextBuilder

        def render(selection: Selection) -> str:
            return template.render(**builder._variables(template, selection), **builder._fixed)

        def measure(selection: Selection) -> int:
            return count(render(selection))

        builder = cls(measure, budget, render=render, model=model, window=window)
        builder._fixed = dict(fixed)
        return builder

    def _variables(self, template: PromptTemplate, selection: Selection) -> dict[str, Any]:
        values: dict[str, Any] = {
            name: [] for name in SECTIONS if name in template.variables and name not in self._fixed
        }
        values.update({name: list(pieces) for name, pieces in selection.items()})
        return values

    def add(
        self,
        name: str,
        pieces: Sequence[Piece],
        *,
        required: bool = False,
        max_items: int | None = None,
        duplicate: Callable[[Piece, Sequence[Piece]], bool] | None = same_text,
    ) -> ContextBuilder:
        """Add a section; sections added first are filled first."""
        if any(s.name == name for s in self.sections):
            raise ValueError(f"section {name!r} was added twice")
        self.sections.append(Section(name, list(pieces), required, max_items, duplicate))
        return self

    def build(self, **fixed: Any) -> Context:
        """Choose the pieces. ``fixed`` adds template variables (for :meth:`for_template`)."""
        if fixed:
            self._fixed = {**self._fixed, **fixed}
        chosen: dict[str, list[Piece]] = {s.name: [] for s in self.sections}
        for section in self.sections:
            if section.required:
                chosen[section.name] = list(section.pieces)
        tokens = self.measure(chosen)
        if tokens > self.budget:
            window = self.window if self.window is not None else self.budget
            raise ContextOverflowError(tokens, window, self.model)
        omitted: list[Omitted] = []
        for section in self.sections:
            if section.required:
                continue
            taken = chosen[section.name]
            for piece in section.pieces:
                if section.duplicate is not None and section.duplicate(piece, taken):
                    omitted.append(Omitted(section.name, piece, "duplicate"))
                    continue
                if section.max_items is not None and len(taken) >= section.max_items:
                    omitted.append(Omitted(section.name, piece, "budget"))
                    continue
                trial = {**chosen, section.name: [*taken, piece]}
                n = self.measure(trial)
                if n > self.budget:
                    omitted.append(Omitted(section.name, piece, "budget"))
                    continue  # a shorter, lower-ranked piece may still fit
                chosen, taken, tokens = trial, trial[section.name], n
        text = self.render(chosen) if self.render is not None else ""
        return Context(chosen=chosen, omitted=omitted, tokens=tokens, text=text)
