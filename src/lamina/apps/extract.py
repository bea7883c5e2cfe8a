"""Extract fields and entities from text as JSON that validates against your schema.

    >>> from lamina.testing import ScriptedModel
    >>> schema = {"type": "object", "properties": {"name": {"type": "string"}},
    ...           "required": ["name"]}
    >>> extract("Ada Lovelace wrote the first program.", schema,
    ...         model=ScriptedModel(['{"name": "Ada Lovelace"}'])).data
    {'name': 'Ada Lovelace'}

The schema goes to the model as structured output: a grammar on local models, so the reply is
always JSON of that shape; ``response_format`` on API models. The reply is then validated
with ``jsonschema`` (a grammar cannot express every keyword: ``format``, ``multipleOf``...).
A reply that does not validate is a model-caused error: the model is asked once more with
the validation errors, and a second failure raises
:class:`~lamina.prompts.errors.OutputParseError` naming them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from lamina import jsonschemas
from lamina.errors import InvalidRequestError
from lamina.models.base import ChatModel
from lamina.prompts import builtin_prompt
from lamina.prompts.chain import accumulate, add_usage
from lamina.prompts.errors import OutputParseError
from lamina.prompts.templates import as_options
from lamina.types import Message, Usage

__all__ = ["Extraction", "check_schema", "extract", "load_schema"]

#: A schema is instructions, not data: a few kilobytes describe any form.
MAX_SCHEMA_BYTES = 32_000
MAX_SCHEMA_DEPTH = 8


class Extraction(BaseModel):
    data: Any
    #: Model calls it took (2 when the first reply did not validate).
    attempts: int = 1
    usage: Usage = Field(default_factory=Usage)


def check_schema(schema: Any) -> dict[str, Any]:
    """``schema`` if it is a usable JSON Schema object; else an error saying what is wrong.

    >>> check_schema({"type": "object", "properties": {"x": {"type": "nope"}}})
    ...                                                   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lamina.errors.InvalidRequestError: The schema['properties']['x']['type'] is not ...
    """
    checked: dict[str, Any] = jsonschemas.check(
        schema, "The schema", max_bytes=MAX_SCHEMA_BYTES, max_depth=2 * MAX_SCHEMA_DEPTH
    )
    return checked


def load_schema(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON Schema from a file, checked."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidRequestError(f"No schema file at {str(file)!r}.") from None
    except UnicodeDecodeError:
        raise InvalidRequestError(f"{str(file)!r} is not UTF-8 text.") from None
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"{str(file)!r} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    return check_schema(schema)


def _problems(data: Any, schema: dict[str, Any]) -> list[str]:
    validator = jsonschemas.validator(schema)
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
        for e in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    ][:10]


def extract(
    text: str,
    schema: dict[str, Any],
    *,
    model: ChatModel | None = None,
    instructions: str = "",
    max_tokens: int = 512,
) -> Extraction:
    """The fields of ``schema`` found in ``text``, as validated JSON."""
    schema = check_schema(schema)
    if not text.strip():
        raise InvalidRequestError("Nothing to extract from: the text is empty.")
    if model is None:
        from lamina.models import get_model

        model = get_model()
    template = builtin_prompt("apps/extract")
    fields = json.dumps(schema, ensure_ascii=False)
    prompt = template.render(text=text, schema=fields, instructions=instructions)
    messages = [Message.user(prompt)]
    options = as_options(template.settings, max_tokens=max_tokens)
    usage = Usage()
    problems: list[str] = []
    for attempt in (1, 2):
        reply = model.chat(messages, json_schema=schema, **options)
        accumulate(usage, reply.usage)
        add_usage(reply.usage)
        try:
            data = json.loads(reply.text)
        except json.JSONDecodeError as exc:
            problems = [f"not JSON ({exc.msg})"]
        else:
            problems = _problems(data, schema)
            if not problems:
                return Extraction(data=data, attempts=attempt, usage=usage)
        # A model-caused error: show it to the model once, as smolagents shows observations.
        messages = [
            *messages,
            Message.assistant(reply.text),
            Message.user(
                "That reply does not match the schema: "
                + "; ".join(problems)
                + ". Reply again with JSON that does."
            ),
        ]
    raise OutputParseError(model.name, "the reply does not validate: " + "; ".join(problems))
