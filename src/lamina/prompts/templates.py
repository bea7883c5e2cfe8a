"""Prompt templates as data: a YAML header, then a Jinja body, rendered strictly.

A template file (``NAME.j2``) starts with a header between ``---`` lines::

    ---
    name: apps/classify              # optional; when given it must match the file's name
    description: Pick one label for a text.
    variables:                       # every variable the body uses, and no other
      text: the text to classify
      labels: the allowed labels
      hint: {description: a sentence of guidance, default: ""}
    settings:                        # recommended model settings (any ChatOptions field)
      temperature: 0
      max_tokens: 16
    ---
    Classify the text as one of: {{ labels | join(", ") }}. ...

Rendering is strict: a declared variable not given (and without a default) or a variable given
but not declared is a :class:`~lamina.prompts.errors.PromptError` naming it. The header is
checked against the body when the file is read, so a template that uses an undeclared
variable, or declares one it never uses, does not load. Bodies run in Jinja's sandbox (a
prompt folder may come from someone else) with ``trim_blocks`` and ``lstrip_blocks``, and the
result is stripped of surrounding white space.

>>> t = PromptTemplate.parse("---\\nvariables: {who: a name}\\n---\\nHello {{ who }}!", "hi")
>>> t.render(who="Ada")
'Hello Ada!'
>>> t.render()
Traceback (most recent call last):
...
lamina.prompts.errors.PromptError: Prompt 'hi': missing variable 'who' (declared: who)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import ValidationError

from lamina.prompts import delimiters
from lamina.prompts.errors import PromptError
from lamina.settings import Settings, get_settings
from lamina.types import ChatOptions

__all__ = [
    "PromptLibrary",
    "PromptTemplate",
    "Variable",
    "as_options",
    "builtin_prompt",
    "render",
    "user_library",
]

SUFFIX = ".j2"
_HEADER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*(?:\r?\n|\Z)", re.DOTALL | re.MULTILINE)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")
_HEADER_KEYS = frozenset({"name", "description", "variables", "settings"})
_MISSING = object()


@cache
def _environment() -> jinja2.Environment:
    environment = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # plain-text prompts, not HTML
    )
    # Untrusted text inside XML-style blocks: {{ doc | delimited }}, <d source="{{ s | xml_attr }}">
    environment.filters["delimited"] = delimiters.escape
    environment.filters["xml_attr"] = delimiters.attribute
    return environment


@dataclass(frozen=True)
class Variable:
    """A declared template variable; ``default`` is absent (required) unless given."""

    name: str
    description: str = ""
    default: Any = _MISSING

    @property
    def required(self) -> bool:
        return self.default is _MISSING


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt: its metadata and its Jinja body. Build with :meth:`parse` or :meth:`load`."""

    name: str
    body: str
    description: str = ""
    variables: dict[str, Variable] = field(default_factory=dict)
    #: Recommended model settings: keyword arguments for ``ChatModel.chat``.
    settings: dict[str, Any] = field(default_factory=dict)
    origin: str = ""

    @classmethod
    def parse(cls, text: str, name: str, origin: str = "") -> PromptTemplate:
        """A template from the text of a file; ``name`` is what it is looked up by."""
        match = _HEADER.match(text)
        if match is None:
            raise PromptError(
                name,
                "no header: a template starts with a '---' line, a YAML header (description, "
                "variables, settings) and another '---' line, then the Jinja body",
            )
        try:
            header = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as exc:
            raise PromptError(name, f"the header is not valid YAML ({exc})") from None
        if not isinstance(header, dict):
            raise PromptError(name, f"the header must be a mapping, not {type(header).__name__}")
        unknown = sorted(set(map(str, header)) - _HEADER_KEYS)
        if unknown:
            raise PromptError(
                name,
                f"unknown header field(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(sorted(_HEADER_KEYS))}",
            )
        declared = header.get("name")
        if declared is not None and declared != name:
            raise PromptError(
                name, f"the header says name {declared!r} but the file is named {name!r}"
            )
        template = cls(
            name=name,
            body=text[match.end() :],
            description=str(header.get("description") or "").strip(),
            variables=_variables(name, header.get("variables")),
            settings=_settings(name, header.get("settings")),
            origin=origin,
        )
        template._check_body()
        return template

    @classmethod
    def load(cls, path: str | os.PathLike[str], name: str | None = None) -> PromptTemplate:
        """Read a template file; its name defaults to the file name without ``.j2``."""
        file = Path(path)
        label = name or file.name.removesuffix(SUFFIX)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PromptError(label, f"no file at {str(file)!r}") from None
        except UnicodeDecodeError:
            raise PromptError(label, f"{str(file)!r} is not UTF-8 text") from None
        except OSError as exc:
            raise PromptError(label, f"cannot read {str(file)!r} ({exc.strerror})") from None
        return cls.parse(text, label, origin=str(file))

    def _compiled(self) -> jinja2.Template:
        return _compile(self.name, self.body)

    def _check_body(self) -> None:
        used = _used_variables(self.name, self.body)
        undeclared = sorted(used - set(self.variables))
        if undeclared:
            raise PromptError(
                self.name,
                f"the body uses {', '.join(map(repr, undeclared))}, which the header does "
                f"not declare; add them under 'variables'",
            )
        unused = sorted(set(self.variables) - used)
        if unused:
            raise PromptError(
                self.name,
                f"the header declares {', '.join(map(repr, unused))}, which the body never "
                f"uses; remove them or use them",
            )

    def render(self, **values: Any) -> str:
        """The prompt text; every declared variable without a default must be given."""
        declared = ", ".join(self.variables) or "none"
        extra = sorted(set(values) - set(self.variables))
        if extra:
            raise PromptError(
                self.name,
                f"unexpected variable {', '.join(map(repr, extra))} (declared: {declared})",
            )
        filled = dict(values)
        for variable in self.variables.values():
            if variable.name in filled:
                continue
            if variable.required:
                raise PromptError(
                    self.name, f"missing variable {variable.name!r} (declared: {declared})"
                )
            filled[variable.name] = variable.default
        try:
            return self._compiled().render(**filled).strip()
        except jinja2.UndefinedError as exc:
            # A declared variable lacks an attribute the body reads (passages[0].title, say).
            raise PromptError(self.name, f"{exc.message} while rendering") from None
        except jinja2.exceptions.SecurityError as exc:
            raise PromptError(self.name, f"the sandbox refused: {exc}") from None

    def describe(self) -> dict[str, Any]:
        """The metadata as plain data (what ``lamina prompts show --json`` prints)."""
        return {
            "name": self.name,
            "description": self.description,
            "variables": {
                v.name: {"description": v.description}
                | ({} if v.required else {"default": v.default})
                for v in self.variables.values()
            },
            "settings": self.settings,
            "origin": self.origin,
        }


@cache
def _compile(name: str, body: str) -> jinja2.Template:
    try:
        return _environment().from_string(body)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax(name, exc) from None


def _syntax(name: str, exc: jinja2.TemplateSyntaxError) -> PromptError:
    return PromptError(name, f"Jinja syntax error on body line {exc.lineno}: {exc.message}")


def _used_variables(name: str, body: str) -> set[str]:
    try:
        ast = _environment().parse(body)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax(name, exc) from None
    return set(jinja2.meta.find_undeclared_variables(ast))


def _variables(name: str, raw: Any) -> dict[str, Variable]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PromptError(name, "'variables' must map each variable to its description")
    out: dict[str, Variable] = {}
    for key, spec in raw.items():
        key = str(key)
        if not key.isidentifier():
            raise PromptError(name, f"variable name {key!r} is not an identifier")
        if isinstance(spec, dict):
            unknown = sorted(set(map(str, spec)) - {"description", "default"})
            if unknown:
                raise PromptError(
                    name, f"variable {key!r}: unknown field(s) {unknown}; use description, default"
                )
            description = str(spec.get("description", ""))
            out[key] = Variable(key, description, spec.get("default", _MISSING))
        else:
            out[key] = Variable(key, "" if spec is None else str(spec))
    return out


def _settings(name: str, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PromptError(name, "'settings' must be a mapping of model settings")
    try:
        ChatOptions.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise PromptError(name, f"bad settings ({problems})") from None
    return dict(raw)


# -- where templates live ---------------------------------------------------------------------


def _walk(root: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(SUFFIX):
            yield f"{prefix}{entry.name.removesuffix(SUFFIX)}", entry


@cache
def _builtins() -> dict[str, PromptTemplate]:
    root = resources.files("lamina.prompts").joinpath("builtin")
    found = {}
    for name, entry in _walk(root):
        found[name] = PromptTemplate.parse(
            entry.read_text(encoding="utf-8"), name, origin=f"builtin:{name}"
        )
    return found


def builtin_prompt(name: str) -> PromptTemplate:
    """One of the package's own templates (``rag/answer``, ``apps/classify``, ...)."""
    found = _builtins().get(name.removesuffix(SUFFIX))
    if found is None:
        raise PromptError(name, f"no such built-in prompt; known: {', '.join(sorted(_builtins()))}")
    return found


def render(name: str, **variables: Any) -> str:
    """Render built-in template ``name`` strictly.

    >>> passages = [{"n": 1, "text": "T", "title": "D"}]
    >>> "[1] D" in render("rag/answer", question="Q?", passages=passages)
    True
    """
    return builtin_prompt(name).render(**variables)


@dataclass(frozen=True)
class Problem:
    """A template file that was skipped, and why."""

    path: str
    reason: str


class PromptLibrary:
    """Templates found in folders (searched in order) and, after them, the built-in ones.

    A folder holds ``NAME.j2`` files, in sub-folders too (``email/polite.j2`` is named
    ``email/polite``). Built-in names are reserved: a user file that takes one is skipped and
    reported in :attr:`problems`, so the package's own pipelines always render their own
    prompts; copy a built-in under a new name to change it, and pass it to the app.
    """

    def __init__(self, folders: Sequence[str | os.PathLike[str]] = (), *, builtin: bool = True):
        self.folders = [Path(f) for f in folders]
        self.builtin = builtin
        self.problems: list[Problem] = []
        self._templates: dict[str, PromptTemplate] = {}
        self._broken: dict[str, PromptError] = {}
        reserved = _builtins() if builtin else {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob(f"*{SUFFIX}")):
                relative = path.relative_to(folder).as_posix().removesuffix(SUFFIX)
                if any(part.startswith((".", "_")) for part in relative.split("/")):
                    continue
                if relative in self._templates or relative in self._broken:
                    continue  # an earlier folder has it
                if relative in reserved:
                    self.problems.append(
                        Problem(
                            str(path),
                            f"takes the built-in prompt's name {relative!r}; it is skipped. "
                            f"Give it another name and pass that name to the app",
                        )
                    )
                    continue
                try:
                    self._templates[relative] = PromptTemplate.load(path, relative)
                except PromptError as exc:
                    self._broken[relative] = exc
                    self.problems.append(Problem(str(path), exc.problem))
        if builtin:
            for name, template in reserved.items():
                self._templates.setdefault(name, template)

    def names(self) -> list[str]:
        return sorted(self._templates)

    def __iter__(self) -> Iterator[PromptTemplate]:
        return (self._templates[name] for name in self.names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.removesuffix(SUFFIX) in self._templates

    def get(self, name: str) -> PromptTemplate:
        """The template called ``name``, or a file path to a ``.j2`` template."""
        key = name.removesuffix(SUFFIX)
        if key in self._templates:
            return self._templates[key]
        if key in self._broken:
            raise self._broken[key]
        path = Path(name)
        if name.endswith(SUFFIX) and path.is_file():
            return PromptTemplate.load(path)
        if not _NAME.match(key):
            raise PromptError(name, "not a prompt name (letters, digits, '_', '-', '.', '/')")
        where = ", ".join(str(f) for f in self.folders) or "no folders"
        close = [n for n in self.names() if key.rsplit("/", 1)[-1] in n]
        hint = f" Did you mean {', '.join(close[:3])}?" if close else ""
        raise PromptError(
            name,
            f"no such prompt in {where} or the built-in ones.{hint} "
            f"`lamina prompts list` shows them all",
        )

    def render(self, name: str, **variables: Any) -> str:
        return self.get(name).render(**variables)


def user_library(
    settings: Settings | None = None, folders: Sequence[str | os.PathLike[str]] = ()
) -> PromptLibrary:
    """``folders``, then ``$LAMINA_HOME/prompts``, then the built-in templates."""
    settings = settings or get_settings()
    return PromptLibrary([*folders, settings.home / "prompts"])


def as_options(settings: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """A template's recommended settings with the caller's overrides on top.

    >>> as_options({"temperature": 0, "max_tokens": 16}, max_tokens=32)
    {'temperature': 0, 'max_tokens': 32}
    """
    return {**settings, **{k: v for k, v in overrides.items() if v is not None}}
