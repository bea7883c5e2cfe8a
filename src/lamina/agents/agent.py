"""The ReAct loop: the model reasons and calls a tool, the tool's observation goes back, until
the model gives its final answer or a guard stops the run.

Every run ends with a stop reason (:data:`~lamina.agents.result.StopReason`):

- ``final_answer``: the model answered (by calling the ``final_answer`` tool, or in plain
  text when ``answer="text"``);
- ``max_steps``: ``max_steps`` model calls without an answer;
- ``budget``: the run's tokens (``max_tokens``) or cost (``max_cost_usd``) are spent;
- ``timeout``: ``timeout_s`` of wall-clock time passed (checked between steps: a model or
  tool call in progress finishes first, bounded by its own timeout);
- ``repeated_call``: the same tool with the same arguments a third time. The second time the
  tool is not run: the model gets a warning observation with the earlier result instead;
- ``tool_errors``: ``max_tool_errors`` calls failed (unknown tool, invalid arguments, the
  tool raised or timed out, a call cut off by the token limit).

What the model got wrong comes back to it as an observation; only our own failures (and the
model backend's: a server down, a bad key) raise. After ``max_steps``, ``repeated_call`` or
``tool_errors`` the model gets one last call that can only give the final answer (the local
grammar forces it), so a run that stalled may still answer; the stop reason stays.

How the loop decides between answering and calling: with ``answer="tool"`` (the default)
every reply must be a tool call (``tool_choice="required"``) and answering is one more tool,
``final_answer``. On the bundled 135M model that is what works: given free text as an option
it never called a tool (0 of 8 probes), forced to pick a tool it picks the right one and
answers through ``final_answer`` once an observation holds the answer (docs/agents.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lamina.agents.memory import SessionStore, as_messages
from lamina.agents.result import RunResult, Step, StopReason
from lamina.agents.templates import render
from lamina.agents.tracing import RunTracer
from lamina.errors import ConfigError, IncompleteOutputError
from lamina.models.base import ChatModel
from lamina.models.toolcalls import render_call
from lamina.settings import AgentSettings, Settings, get_settings
from lamina.telemetry import spans
from lamina.tools.base import Tool, ToolExample, run_tool
from lamina.tools.memory import LongTermMemory
from lamina.types import ChatOptions, Completion, Message, ToolCall, ToolSpec, Usage

__all__ = ["FINAL_ANSWER", "Agent", "AgentConfig"]

FINAL_ANSWER = ToolSpec(
    name="final_answer",
    description="Give the final answer to the user's task.",
    parameters={
        "type": "object",
        "properties": {"answer": {"type": "string", "minLength": 1, "maxLength": 400}},
        "required": ["answer"],
    },
)
_DIRECT = ToolExample(
    request="What is the capital of Italy?",
    arguments={},
    result="",
    answer="The capital of Italy is Rome.",
)
_PROMPT_BACKENDS = ("local", "local-batched")  # models that learn the call format from the prompt
_ELIDED = "[observation elided to fit the context window]"
_LAST_CALL = "Stop calling tools now. Give your final answer from the observations above."
# Appended to a successful observation when coaching: on the bundled model, after the
# observation the next call was final_answer with the right number in 7 of 8 probes with
# this line, 3 of 8 without (docs/agents.md).
_NUDGE = {
    "tool": "Now call final_answer with the answer, unless you need another tool.",
    "text": "Now give the answer, unless you need another tool.",
}


@dataclass
class AgentConfig:
    """The loop's limits and choices. ``from_settings`` reads the ``[agents]`` table."""

    max_steps: int = 8
    timeout_s: float = 300.0
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_tool_errors: int = 3
    #: "tool": answering is the final_answer tool and every reply is a call; "text": the model
    #: answers in plain text when it calls no tool.
    answer: Literal["tool", "text"] = "tool"
    #: Check the final answer against the observations and ask for one revision.
    critic: bool = False
    #: Coach a small model: worked examples in the system prompt and, after each successful
    #: observation, a reminder that it may answer now. None: for local models only.
    coach: bool | None = None
    #: One last call that can only answer, after max_steps, repeated_call or tool_errors.
    final_attempt: bool = True
    temperature: float = 0.0
    reply_tokens: int = 300
    #: Tokens of earlier conversation kept verbatim in a session; older turns are summarised.
    memory_tokens: int = 1024

    @classmethod
    def from_settings(cls, settings: AgentSettings, **overrides: Any) -> AgentConfig:
        values: dict[str, Any] = {
            "max_steps": settings.max_steps,
            "timeout_s": settings.timeout_s,
            "max_tokens": settings.max_tokens,
            "max_cost_usd": settings.max_cost_usd,
            "max_tool_errors": settings.max_tool_errors,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class _State:
    """What one run has done so far."""

    task: str
    started: float
    steps: list[Step] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    calls: int = 0
    errors: int = 0
    seen: dict[str, tuple[int, str]] = field(default_factory=dict)  # call key -> (count, obs)
    stop: StopReason | None = None
    detail: str = ""


class Agent:
    """A model with tools, run as a ReAct loop. See the module docstring for the guards.

    >>> from lamina.models.scripted import ScriptedModel, tool_call
    >>> from lamina.tools import get_tool
    >>> model = ScriptedModel([tool_call("calculator", expression="6 * 7"),
    ...                        tool_call("final_answer", answer="42")])
    >>> result = Agent(model, [get_tool("calculator")]).run("6 * 7?")
    >>> result.answer, result.stop_reason, result.steps[0].observation
    ('42', 'final_answer', '42')
    """

    def __init__(
        self,
        model: ChatModel,
        tools: Sequence[Tool] = (),
        *,
        instructions: str = "",
        config: AgentConfig | None = None,
        sessions: SessionStore | None = None,
        long_term: LongTermMemory | None = None,
        settings: Settings | None = None,
        name: str = "agent",
        on_step: Callable[[Step], None] | None = None,
    ) -> None:
        self.model = model
        self.tools = {t.name: t for t in tools}
        if len(self.tools) != len(tools):
            raise ConfigError(f"Two tools share a name: {[t.name for t in tools]}.")
        if FINAL_ANSWER.name in self.tools:
            raise ConfigError("'final_answer' is the agent's own tool; rename yours.")
        self.instructions = instructions
        self.settings = settings or get_settings()
        self.config = config or AgentConfig.from_settings(self.settings.agents)
        self.sessions = sessions
        self.long_term = long_term
        self.name = name
        self.on_step = on_step
        self.tracer = RunTracer(self.settings)

    # -- the run --------------------------------------------------------------------------------

    def run(self, task: str, *, session: str | None = None) -> RunResult:
        """Work on ``task`` until an answer or a guard; ``session`` resumes a conversation."""
        state = _State(task=task, started=time.monotonic())
        with self.tracer.span(
            "agent.run", agent=self.name, task=task, model=self.model.name, session=session
        ) as root:
            root.set_attributes(spans.openinference("AGENT", settings=self.settings, input=task))
            trace_id = self.tracer.trace_id(root)
            messages = self._start(task, session, state)
            answer = self._loop(messages, state)
            revised = False
            if answer is not None and self.config.critic and state.stop == "final_answer":
                answer, revised = self._reflect(messages, state, answer)
            reason: StopReason = state.stop or "max_steps"
            root.set_attributes(
                {
                    "lamina.stop_reason": reason,
                    "lamina.answer": (answer or "")[:2000],
                    "lamina.steps": len(state.steps),
                    "lamina.prompt_tokens": state.usage.prompt_tokens,
                    "lamina.completion_tokens": state.usage.completion_tokens,
                    **spans.openinference("AGENT", settings=self.settings, output=answer),
                }
            )
        self.tracer.flush()
        if self.sessions is not None and session:
            self.sessions.add(session, task, answer or "", reason, trace_id)
        return RunResult(
            answer=answer,
            stop_reason=reason,
            detail=state.detail,
            steps=state.steps,
            usage=state.usage,
            model_calls=state.calls,
            seconds=time.monotonic() - state.started,
            trace_id=trace_id,
            session=session,
            revised=revised,
        )

    def _start(self, task: str, session: str | None, state: _State) -> list[Message]:
        summary, history = "", []
        if self.sessions is not None and session:
            summary, turns = self.sessions.compact(
                session, self._fits_memory, self._summarise, keep=1
            )
            history = as_messages(summary, turns)
        memories = self.long_term.recall(task, 3) if self.long_term is not None else []
        system = render(
            "system.j2",
            instructions=self.instructions,
            answer_tool=self.config.answer == "tool",
            memories=memories,
            summary=summary,
            examples=self._examples(),
            direct={"request": _DIRECT.request, "final": self._final_text(_DIRECT.answer)},
        )
        return [Message.system(system), *history, Message.user(task)]

    def _loop(self, messages: list[Message], state: _State) -> str | None:
        while state.calls < self.config.max_steps:
            if self._over_limit(state):
                return None
            choice = "required" if self.config.answer == "tool" else "auto"
            completion = self._call(messages, state, choice)
            if completion is None:
                if state.stop:
                    return self._last_attempt(messages, state)
                continue
            if not completion.tool_calls:
                return self._answered(completion.text.strip(), completion, state)
            messages.append(completion.message())
            first = True
            for call in completion.tool_calls:
                usage = completion if first else None
                first = False
                if call.name == FINAL_ANSWER.name:
                    answer = _answer_of(call)
                    messages.append(Message.tool("Answer given.", call.id, name=call.name))
                    if answer is None:
                        problem = "Error: final_answer needs an 'answer' string."
                        self._emit(self._record(state, "tool", call, problem, False, usage))
                        state.errors += 1
                        self._check_errors(state)
                        continue
                    return self._answered(answer, usage, state)
                observation = self._act(call, state, usage)
                if self._coaching() and state.steps[-1].kind == "tool" and state.steps[-1].ok:
                    observation = f"{observation}\n{_NUDGE[self.config.answer]}"
                messages.append(Message.tool(observation, call.id, name=call.name))
                if state.stop:
                    return self._last_attempt(messages, state)
        state.stop = "max_steps"
        state.detail = f"no answer after {self.config.max_steps} steps"
        return self._last_attempt(messages, state)

    def _answered(self, answer: str, completion: Completion | None, state: _State) -> str:
        state.stop = "final_answer"
        step = self._step(state, "answer", observation=answer, completion=completion)
        step.tool = FINAL_ANSWER.name
        self._emit(step)
        return answer

    # -- one model call -------------------------------------------------------------------------

    def _call(
        self, messages: list[Message], state: _State, choice: Any, *, tools: bool = True
    ) -> Completion | None:
        specs = (
            [*self.tools.values(), FINAL_ANSWER]
            if self.config.answer == "tool"
            else [*self.tools.values()]
        )
        if not specs:
            choice = "none"
        options = ChatOptions(
            temperature=self.config.temperature,
            max_tokens=self.config.reply_tokens,
            tools=specs if tools and specs else [],
            tool_choice=choice if tools and specs else "auto",
        )
        self._fit(messages, options)
        with self.tracer.span("agent.model", model=self.model.name, step=state.calls + 1) as span:
            span.set_attributes(spans.openinference("CHAIN", settings=self.settings))
            state.calls += 1
            try:
                completion = self.model.chat(messages, options)
            except IncompleteOutputError as exc:
                # The model ran on inside a tool call until the token limit: its mistake.
                state.errors += 1
                note = (
                    f"Your tool call was cut off after {exc.max_tokens} tokens. Make the "
                    f"arguments shorter."
                )
                messages.append(Message.user(note))
                self._emit(self._step(state, "warning", observation=note, ok=False))
                self._check_errors(state)
                return None
            span.set_attributes(
                {
                    "lamina.prompt_tokens": completion.usage.prompt_tokens,
                    "lamina.completion_tokens": completion.usage.completion_tokens,
                    "lamina.cost_usd": completion.usage.cost_usd or 0.0,
                    "lamina.tool_calls": json.dumps([c.name for c in completion.tool_calls]),
                }
            )
        state.usage = _add(state.usage, completion.usage)
        return completion

    def _fit(self, messages: list[Message], options: ChatOptions) -> None:
        """Elide the oldest observations until the request fits the model's window."""
        count = getattr(self.model, "count_request_tokens", None)
        if not getattr(self.model, "exact_tokens", False) or count is None:
            return
        window = self.model.context_window
        for i, message in enumerate(messages):
            if count(messages, options) + options.max_tokens <= window:
                return
            if message.role == "tool" and message.content != _ELIDED:
                messages[i] = message.model_copy(update={"content": _ELIDED})

    def _last_attempt(self, messages: list[Message], state: _State) -> str | None:
        """After max_steps, repeated_call or tool_errors: one call that can only answer."""
        if not self.config.final_attempt or state.stop in ("budget", "timeout"):
            return None
        if self._over_limit(state, keep_reason=True):
            return None
        messages.append(Message.user(_LAST_CALL))
        if self.config.answer == "tool":
            completion = self._call(messages, state, {"name": FINAL_ANSWER.name})
        else:
            completion = self._call(messages, state, "none", tools=False)
        if completion is None:
            return None
        answer = _answer_of(completion.tool_calls[0]) if completion.tool_calls else completion.text
        if not answer:
            return None
        step = self._step(state, "answer", observation=answer, completion=completion)
        step.tool = FINAL_ANSWER.name
        self._emit(step)
        return answer.strip()

    # -- one tool call --------------------------------------------------------------------------

    def _act(self, call: ToolCall, state: _State, completion: Completion | None) -> str:
        key = _call_key(call)
        count, earlier = state.seen.get(key, (0, ""))
        state.seen[key] = (count + 1, earlier)
        if count == 1:
            then = "call final_answer" if self.config.answer == "tool" else "answer"
            warning = (
                f"You already called {call.name} with these arguments and got: {earlier} "
                f"Calling it again gives the same result: use it, or {then}."
            )
            self._emit(self._record(state, "warning", call, warning, True, completion))
            return warning
        if count >= 2:
            state.stop = "repeated_call"
            state.detail = f"{call.name} was called with the same arguments 3 times"
            note = "Stopped: the same call a third time."
            self._emit(self._record(state, "warning", call, note, False, completion))
            return note
        tool = self.tools.get(call.name)
        if tool is None:
            known = ", ".join([*self.tools, FINAL_ANSWER.name])
            observation = f"Error: there is no tool named {call.name!r}. Tools: {known}."
            ok, data = False, None
            duration = 0.0
        else:
            with self.tracer.span("agent.tool", tool=call.name, arguments=call.arguments) as span:
                capture = self.settings.telemetry.capture_content
                span.set_attributes(
                    spans.tool_attributes(call.name, call.arguments, capture=capture)
                )
                result = run_tool(
                    tool,
                    call.arguments,
                    timeout_s=self.settings.tools.timeout_s,
                    max_chars=self.settings.tools.max_output_chars,
                )
                span.set_attributes(
                    {"lamina.ok": result.ok, "lamina.observation": result.observation[:2000]}
                )
                span.set_attributes(
                    spans.openinference("TOOL", settings=self.settings, output=result.observation)
                )
            observation, ok, data, duration = (
                result.observation,
                result.ok,
                result.data,
                result.duration_ms,
            )
        state.seen[key] = (count + 1, observation)
        step = self._record(state, "tool", call, observation, ok, completion)
        step.tool_ms, step.data = duration, data
        self._emit(step)
        if not ok:
            state.errors += 1
            self._check_errors(state)
        return observation

    def _check_errors(self, state: _State) -> None:
        if state.errors >= self.config.max_tool_errors:
            state.stop = "tool_errors"
            state.detail = f"{state.errors} failed tool calls"

    # -- guards ---------------------------------------------------------------------------------

    def _over_limit(self, state: _State, *, keep_reason: bool = False) -> bool:
        cfg = self.config
        reason: StopReason | None = None
        if time.monotonic() - state.started >= cfg.timeout_s:
            reason, detail = "timeout", f"the run passed its {cfg.timeout_s:g} s limit"
        elif cfg.max_tokens is not None and state.usage.total_tokens >= cfg.max_tokens:
            reason, detail = "budget", f"{state.usage.total_tokens} tokens used of {cfg.max_tokens}"
        elif (
            cfg.max_cost_usd is not None
            and state.usage.cost_usd is not None
            and state.usage.cost_usd >= cfg.max_cost_usd
        ):
            reason = "budget"
            detail = f"${state.usage.cost_usd:.6f} spent of ${cfg.max_cost_usd:.6f}"
        if reason is None:
            return False
        if not keep_reason or state.stop is None:
            state.stop, state.detail = reason, detail
        return True

    # -- self-reflection ------------------------------------------------------------------------

    def _reflect(self, messages: list[Message], state: _State, answer: str) -> tuple[str, bool]:
        """Ask the model whether the observations support the answer; one revision if not."""
        observations = [s.observation for s in state.steps if s.kind == "tool" and s.ok]
        if not observations:
            return answer, False
        schema = {
            "type": "object",
            "properties": {
                "supported": {"type": "boolean"},
                "problem": {"type": "string", "maxLength": 300},
            },
            "required": ["supported", "problem"],
        }
        prompt = render("critic.j2", task=state.task, observations=observations, answer=answer)
        with self.tracer.span("agent.critic", answer=answer) as span:
            state.calls += 1
            try:
                verdict = self.model.chat(
                    prompt, temperature=0.0, max_tokens=200, json_schema=schema
                )
                parsed = json.loads(verdict.text)
                supported, problem = bool(parsed["supported"]), str(parsed.get("problem", ""))
            except (IncompleteOutputError, json.JSONDecodeError, KeyError, TypeError):
                return answer, False  # an unreadable verdict does not overturn an answer
            state.usage = _add(state.usage, verdict.usage)
            span.set_attributes({"lamina.supported": supported, "lamina.problem": problem})
        verdict_text = "supported" if supported else f"unsupported: {problem}"
        self._emit(self._step(state, "critic", observation=verdict_text, completion=verdict))
        if supported:
            return answer, False
        messages.append(
            Message.user(
                f"A reviewer checked your answer {answer!r}: {problem or 'it is not supported'}"
                f" Revise the answer using the observations."
            )
        )
        state.stop = None
        revised = self._loop(messages, state)
        return (revised if revised is not None else answer), revised is not None

    # -- memory ---------------------------------------------------------------------------------

    def _fits_memory(self, summary: str, turns: list[tuple[str, str]]) -> bool:
        text = [Message.system(summary), *as_messages(summary, turns)]
        return self.model.count_tokens(text) <= self.config.memory_tokens

    def _summarise(self, summary: str, turns: list[tuple[str, str]]) -> str:
        prompt = render("summary.j2", summary=summary, turns=turns)
        with self.tracer.span("agent.summarise", turns=len(turns)):
            return self.model.chat(prompt, temperature=0.0, max_tokens=150).text.strip()

    # -- helpers --------------------------------------------------------------------------------

    def _coaching(self) -> bool:
        wanted = self.config.coach
        if wanted is None:
            return getattr(self.model, "backend", None) in _PROMPT_BACKENDS
        return wanted

    def _examples(self) -> list[dict[str, str]]:
        if not self._coaching():
            return []
        shown = []
        for tool in self.tools.values():
            for example in list(getattr(tool, "examples", []))[:1]:
                shown.append(
                    {
                        "request": example.request,
                        "tool": tool.name,
                        "call": render_call(tool.name, json.dumps(example.arguments)),
                        "result": example.result,
                        "final": self._final_text(example.answer),
                    }
                )
        return shown[:3]

    def _final_text(self, answer: str) -> str:
        if self.config.answer == "tool":
            return render_call(FINAL_ANSWER.name, json.dumps({"answer": answer}))
        return answer

    def _record(
        self,
        state: _State,
        kind: Literal["tool", "warning"],
        call: ToolCall,
        observation: str,
        ok: bool,
        completion: Completion | None,
    ) -> Step:
        try:
            arguments: dict[str, Any] | str = call.parsed()
        except json.JSONDecodeError:
            arguments = call.arguments
        step = self._step(state, kind, observation=observation, ok=ok, completion=completion)
        step.tool, step.arguments = call.name, arguments
        return step

    def _step(
        self,
        state: _State,
        kind: Literal["tool", "warning", "answer", "critic"],
        *,
        observation: str,
        ok: bool = True,
        completion: Completion | None = None,
    ) -> Step:
        usage = completion.usage if completion is not None else Usage(cost_usd=0.0)
        step = Step(
            index=len(state.steps) + 1,
            kind=kind,
            observation=observation,
            ok=ok,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=usage.cost_usd,
            model_ms=completion.latency_ms if completion is not None else 0.0,
            role=self.name,
        )
        state.steps.append(step)
        return step

    def _emit(self, step: Step) -> None:
        if self.on_step is not None:
            self.on_step(step)


def _answer_of(call: ToolCall) -> str | None:
    try:
        value = call.parsed().get("answer")
    except (json.JSONDecodeError, AttributeError):
        return None
    return value.strip() if isinstance(value, str) and value.strip() else None


def _call_key(call: ToolCall) -> str:
    """The same call whatever the key order or spacing of its arguments."""
    try:
        arguments = json.dumps(call.parsed(), sort_keys=True)
    except json.JSONDecodeError:
        arguments = call.arguments
    return f"{call.name}\n{arguments}"


def _add(total: Usage, more: Usage) -> Usage:
    cost = (
        None if total.cost_usd is None or more.cost_usd is None else total.cost_usd + more.cost_usd
    )
    return Usage(
        prompt_tokens=total.prompt_tokens + more.prompt_tokens,
        completion_tokens=total.completion_tokens + more.completion_tokens,
        cost_usd=cost,
    )
