"""Agents: a guarded ReAct loop over any ChatModel, session memory, and crews of agents.

- :mod:`~lamina.agents.agent`: ``Agent``, ``AgentConfig`` (the loop and its guards)
- :mod:`~lamina.agents.result`: ``RunResult``, ``Step``, ``StopReason``
- :mod:`~lamina.agents.memory`: ``SessionStore`` (SQLite sessions, summarised history)
- :mod:`~lamina.agents.crew`: ``Crew``, ``Role`` (supervisor, workers, reviewer)
- :mod:`~lamina.agents.tracing`: the run's spans in Lamina's trace store
"""

from lamina.agents.agent import FINAL_ANSWER, Agent, AgentConfig
from lamina.agents.memory import SessionStore
from lamina.agents.result import RunResult, Step, StopReason

__all__ = [
    "FINAL_ANSWER",
    "Agent",
    "AgentConfig",
    "RunResult",
    "SessionStore",
    "Step",
    "StopReason",
]
