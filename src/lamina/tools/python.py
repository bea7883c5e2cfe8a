"""``python``: run a short Python program in the sandbox and return what it printed."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from lamina.settings import SandboxSettings
from lamina.tools.base import FunctionTool, ToolExample
from lamina.tools.errors import ToolError
from lamina.tools.registry import ToolContext
from lamina.tools.sandbox import Sandbox

__all__ = ["make"]

Code = Annotated[
    str,
    Field(min_length=1, max_length=4000, examples=["print(sum(range(1, 11)))"]),
]


def make(context: ToolContext) -> FunctionTool:
    """The ``python`` tool, with the ``[sandbox]`` settings of ``context``."""
    sandbox = Sandbox(context.settings.sandbox if context else SandboxSettings())

    def python(code: Code) -> str:
        """Run a Python program and return what it prints. Only the standard library; no
        network; files only under the current directory. Print the result.

        Args:
            code: a complete Python program that prints its result, e.g. print(2 ** 10)
        """
        result = sandbox.run(code)
        if not result.ok:
            raise ToolError(result.report())
        return result.report()

    return FunctionTool(
        python,
        examples=[
            ToolExample(
                request="What is the sum of the numbers from 1 to 10? Use python.",
                arguments={"code": "print(sum(range(1, 11)))"},
                result="55",
                answer="The sum of the numbers from 1 to 10 is 55.",
            )
        ],
    )
