"""The agent's prompts are data: Jinja files under ``agents/prompts/``, rendered strictly.

>>> "final_answer" in render("system.j2", instructions="", answer_tool=True, memories=[],
...                          summary="", examples=[], direct=None)
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
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # plain-text prompts
    )


def _source(name: str) -> str:
    return resources.files("lamina.agents").joinpath("prompts", name).read_text(encoding="utf-8")


def render(name: str, **variables: Any) -> str:
    """Render template ``name``; a variable it uses but was not given is an error."""
    return _environment().get_template(name).render(**variables).strip()
