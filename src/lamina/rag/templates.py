"""Prompt templates are data: Jinja files under ``rag/prompts/``, rendered strictly.

A variable the template uses but the caller did not pass is an error, never an empty string.

>>> "[1]" in render("answer.j2", question="Q?", passages=[{"n": 1, "text": "T", "title": "D"}])
True
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import jinja2

__all__ = ["render"]


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_source),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # plain-text prompts, not HTML
    )


def _source(name: str) -> str:
    return resources.files("lamina.rag").joinpath("prompts", name).read_text(encoding="utf-8")


def render(name: str, **variables: Any) -> str:
    """Render template ``name`` (e.g. ``"answer.j2"``) with ``variables``."""
    return _environment().get_template(name).render(**variables).strip()
