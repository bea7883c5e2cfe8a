"""Extraction: the schema as structured output, validation, one retry with the errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lamina.apps.extract import check_schema, extract, load_schema
from lamina.errors import InvalidRequestError
from lamina.prompts import OutputParseError
from lamina.testing import ScriptedModel

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "year": {"type": "integer", "minimum": 1800, "maximum": 2100},
    },
    "required": ["name", "year"],
}
TEXT = "Ada Lovelace published the first program in 1843."


def test_the_schema_is_the_structured_output_and_the_reply_validates() -> None:
    model = ScriptedModel(['{"name": "Ada Lovelace", "year": 1843}'])
    result = extract(TEXT, SCHEMA, model=model)
    assert result.data == {"name": "Ada Lovelace", "year": 1843}
    assert result.attempts == 1
    assert model.options[0].json_schema == SCHEMA
    assert TEXT in model.history[0][0].content


def test_a_reply_that_does_not_validate_is_shown_to_the_model_once() -> None:
    model = ScriptedModel(['{"name": "Ada", "year": 43}', '{"name": "Ada", "year": 1843}'])
    result = extract(TEXT, SCHEMA, model=model)
    assert (result.data["year"], result.attempts) == (1843, 2)
    feedback = model.history[1][-1].content
    assert "year: 43 is less than the minimum of 1800" in feedback


def test_two_bad_replies_raise_naming_the_problem() -> None:
    model = ScriptedModel(["not json", '{"name": "Ada"}'])
    with pytest.raises(OutputParseError, match="'year' is a required property"):
        extract(TEXT, SCHEMA, model=model)


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ([], "must be a JSON Schema object"),
        ({"type": "nope"}, "not a valid JSON Schema"),
        ({"$ref": "https://evil.example/schema.json"}, "only local references"),
        ({"$ref": "HTTP://evil.example/schema.json"}, "only local references"),
        ({"items": {"$dynamicRef": "file:///etc/passwd"}}, "only local references"),
        ({"description": "x" * 40_000}, "bytes of JSON"),
    ],
)
def test_bad_schemas_are_refused(schema: object, problem: str) -> None:
    with pytest.raises(InvalidRequestError, match=problem):
        check_schema(schema)


def test_validation_never_fetches_a_reference() -> None:
    from referencing.exceptions import Unresolvable

    from lamina.jsonschemas import validator

    # Even a schema that skipped check(): an unknown reference fails, nothing is opened.
    schema = {"type": "object", "properties": {"a": {"$ref": "file:///etc/hostname"}}}
    with pytest.raises(Unresolvable):
        list(validator(schema).iter_errors({"a": 1}))


def test_a_schema_file_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(SCHEMA))
    assert load_schema(path) == SCHEMA
    path.write_text("{bad")
    with pytest.raises(InvalidRequestError, match=r"s\.json' is not JSON"):
        load_schema(path)
    with pytest.raises(InvalidRequestError, match="No schema file"):
        load_schema(tmp_path / "missing.json")


def test_empty_text_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="empty"):
        extract(" ", SCHEMA, model=ScriptedModel())
