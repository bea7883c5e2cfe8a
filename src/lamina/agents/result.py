"""What a run produces: every step, why it stopped, what it cost."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from lamina.types import Usage

__all__ = ["RunResult", "Step", "StopReason"]

#: Why a run ended. ``final_answer``: the model answered. ``max_steps``: it ran out of steps.
#: ``budget``: the token or cost budget was spent. ``timeout``: the wall-clock limit passed.
#: ``repeated_call``: the same call a third time. ``tool_errors``: too many failed calls.
#: ``max_rounds``: a crew ran out of rounds.
StopReason = Literal[
    "final_answer",
    "max_steps",
    "budget",
    "timeout",
    "repeated_call",
    "tool_errors",
    "max_rounds",
]


class Step(BaseModel):
    """One thing the run did: a tool call and its observation, a warning instead of a
    repeated call, the final answer, a critic's verdict, or a crew hand-off."""

    index: int
    kind: Literal["tool", "warning", "answer", "critic", "handoff"]
    tool: str | None = None
    arguments: dict[str, Any] | str | None = None
    observation: str = ""
    ok: bool = True
    #: The model call that produced this step (shared by the calls of one turn).
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    model_ms: float = 0.0
    tool_ms: float = 0.0
    role: str | None = None
    data: Any = None

    def public(self) -> dict[str, Any]:
        """``{"tool", "arguments", "observation"}`` (and ``ok``) as ``--json`` prints it."""
        return {
            "tool": self.tool,
            "arguments": self.arguments,
            "observation": self.observation,
            "ok": self.ok,
        }


class RunResult(BaseModel):
    """The answer (None when the run stopped without one), the stop reason and every step."""

    answer: str | None
    stop_reason: StopReason
    detail: str = ""
    steps: list[Step] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    model_calls: int = 0
    seconds: float = 0.0
    trace_id: str | None = None
    session: str | None = None
    revised: bool = False

    def tool_steps(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "tool"]

    def public(self) -> dict[str, Any]:
        """What ``lamina agent --json`` prints."""
        usage = {
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "total_tokens": self.usage.total_tokens,
            "cost_usd": self.usage.cost_usd,
            "model_calls": self.model_calls,
            "seconds": round(self.seconds, 3),
        }
        return {
            "answer": self.answer,
            "stop_reason": self.stop_reason,
            "detail": self.detail,
            "steps": [s.public() for s in self.steps if s.kind in ("tool", "warning")],
            "usage": usage,
            "trace_id": self.trace_id,
        }
