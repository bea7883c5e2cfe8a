"""JSON Schemas from untrusted sources: checked without recursion, validated without fetching.

A schema arrives from API clients (tool ``parameters``, ``response_format``, ``/v1/apps/extract``)
and from files. It may be huge, nested thousands of levels deep (Python's recursion limit is a
500 away), or refer to ``http://``/``file://`` URLs that ``jsonschema`` would otherwise open:
a request forgery against the server's network and a read of its files. :func:`check`
refuses all of that with an error that says what to change, and :func:`validator` never
retrieves anything, whatever the schema says.

>>> check({"type": "object", "properties": {"a": {"$ref": "HTTP://10.0.0.1/x"}}}, "schema")
Traceback (most recent call last):
...
lamina.errors.InvalidRequestError: schema refers to 'HTTP://10.0.0.1/x': only local references ('#/...') are allowed; nothing is fetched.
"""  # noqa: E501

from __future__ import annotations

import json
from typing import Any

from lamina.errors import InvalidRequestError

__all__ = ["check", "depth", "largest", "remote_ref", "validator"]

#: Keywords whose value names another schema (JSON Schema 2019-09 and 2020-12).
REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")


def depth(value: Any) -> int:
    """How deeply JSON containers nest, without recursion (a hostile schema may be deep).

    >>> depth({"a": [{"b": 1}]}), depth(3)
    (3, 0)
    """
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def largest(value: Any, key: str) -> int:
    """The largest integer value of ``key`` anywhere in a JSON value (0 when none).

    >>> largest({"a": {"minItems": 3}, "b": [{"minItems": 7}]}, "minItems")
    7
    """
    found, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            bound = item.get(key)
            if isinstance(bound, int | float) and not isinstance(bound, bool):
                found = max(found, int(bound))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def remote_ref(value: Any) -> str | None:
    """The first reference anywhere in ``value`` that is not local (``#...``), else None.

    >>> remote_ref({"items": {"$ref": "#/$defs/x"}}), remote_ref({"a": {"$dynamicRef": "file:/"}})
    (None, 'file:/')
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key in REF_KEYWORDS:
                ref = item.get(key)
                if isinstance(ref, str) and not ref.startswith("#"):
                    return ref
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def check(schema: Any, where: str, *, max_bytes: int = 32 * 1024, max_depth: int = 24) -> Any:
    """``schema`` if it is a usable, self-contained JSON Schema object; else an
    :class:`~lamina.errors.InvalidRequestError` naming ``where`` and what to change."""
    import jsonschema

    if not isinstance(schema, dict):
        raise InvalidRequestError(
            f"{where} must be a JSON Schema object, e.g. "
            f'{{"type": "object", "properties": {{"name": {{"type": "string"}}}}}}; '
            f"got {type(schema).__name__}."
        )
    # Depth first: json.dumps recurses, and a deep enough schema would crash it.
    nesting = depth(schema)
    if nesting > max_depth:
        raise InvalidRequestError(f"{where} nests {nesting} levels deep; the limit is {max_depth}.")
    size = len(json.dumps(schema, separators=(",", ":")))
    if size > max_bytes:
        raise InvalidRequestError(
            f"{where} is {size} bytes of JSON; the limit is {max_bytes}. Use a smaller schema."
        )
    ref = remote_ref(schema)
    if ref is not None:
        raise InvalidRequestError(
            f"{where} refers to {ref[:100]!r}: only local references ('#/...') are allowed; "
            f"nothing is fetched."
        )
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        path = "".join(f"[{p!r}]" for p in error.path)
        raise InvalidRequestError(
            f"{where}{path} is not a valid JSON Schema: {error.message[:200]}."
        ) from None
    return schema


def validator(schema: dict[str, Any]) -> Any:
    """A Draft 2020-12 validator for ``schema`` that resolves only references inside it.

    jsonschema's default registry retrieves unknown URLs with ``urlopen`` (``file://``
    included); an empty registry makes such a reference an error instead.
    """
    import jsonschema
    import referencing

    return jsonschema.Draft202012Validator(schema, registry=referencing.Registry())
