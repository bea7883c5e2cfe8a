"""Write emails: a reply to one you received, or a new one from a short brief.

    >>> from lamina.testing import ScriptedModel
    >>> model = ScriptedModel(['{"subject": "Re: Lunch", "body": "Thursday works for me."}'])
    >>> reply("Subject: Lunch\\n\\nCan we meet on Thursday?", model=model).subject
    'Re: Lunch'

Tone (``neutral``, ``friendly``, ``formal``, ``firm``) and length (``short``, ``medium``,
``long``) shape the prompt. With an ``index``, facts come from your documents first: the
grounded pipeline (:mod:`lamina.rag`) answers the questions the email asks, each answer a
verified quote of a source; the model is shown them numbered and may cite ``[n]``. A fact
the draft cites is returned in ``citations`` with its exact source span.

The reply is JSON (subject and body), so the subject is never lost in the body.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from lamina.errors import InvalidRequestError
from lamina.models.base import ChatModel
from lamina.prompts import builtin_prompt
from lamina.prompts.chain import accumulate, add_usage
from lamina.prompts.templates import as_options
from lamina.rag import Citation, RagConfig, RagPipeline
from lamina.retrieval.index import Index
from lamina.retrieval.sentences import split_sentences
from lamina.types import Usage

__all__ = ["Email", "EmailDraft", "Fact", "draft", "parse_email", "reply"]

Tone = Literal["neutral", "friendly", "formal", "firm"]
Length = Literal["short", "medium", "long"]

TONES = ("neutral", "friendly", "formal", "firm")
#: Roughly how many words each length asks for.
WORDS = {"short": 60, "medium": 120, "long": 220}
MAX_FACTS = 3
SUBJECT_CHARS = 120


class Email(BaseModel):
    """An email as read: the headers that matter and the plain-text body."""

    subject: str = ""
    sender: str = ""
    body: str


class Fact(BaseModel):
    """A fact from your documents: ``[n]`` in the prompt, a verified quote of its source."""

    n: int
    question: str
    text: str
    citation: Citation


class EmailDraft(BaseModel):
    subject: str
    body: str
    #: Facts the body cites, with their source spans.
    citations: list[Fact] = Field(default_factory=list)
    #: Every fact that was offered to the model.
    facts: list[Fact] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)

    def text(self) -> str:
        return f"Subject: {self.subject}\n\n{self.body}"


def parse_email(raw: str) -> Email:
    """Read an email: RFC 822 headers if it has them (``Subject:``, ``From:``), else all body.

    >>> parse_email("From: Ann <ann@x.org>\\nSubject: Hi\\n\\nHello!").sender
    'Ann <ann@x.org>'
    >>> parse_email("Just a question?").body
    'Just a question?'
    """
    if not raw.strip():
        raise InvalidRequestError("The email is empty.")
    first = raw.lstrip().split("\n", 1)[0]
    if not re.match(r"^[A-Za-z][A-Za-z0-9-]*:\s", first):
        return Email(body=raw.strip())
    message = email.message_from_string(raw, policy=email.policy.default)
    body_part: Any = (
        message.get_body(preferencelist=("plain",)) if message.is_multipart() else message
    )
    try:
        body = body_part.get_content() if body_part is not None else ""
    except (LookupError, ValueError, AttributeError):  # an unknown charset, a broken part
        body = str(body_part.get_payload()) if body_part is not None else ""
    return Email(
        subject=_header(message.get("Subject")),
        sender=_header(message.get("From")),
        body=str(body).strip() or raw.strip(),
    )


def _header(value: Any) -> str:
    return " ".join(str(value).split())[:300] if value is not None else ""


def _questions(text: str, limit: int = MAX_FACTS) -> list[str]:
    """The sentences of an email that ask something, else its first sentence.

    >>> _questions("Hi Bo. When is the launch? Also, which format do you use?")
    ['When is the launch?', 'Also, which format do you use?']
    """
    sentences = [" ".join(text[a:b].split()) for a, b in split_sentences(text)]
    asked = [s for s in sentences if s.endswith("?")]
    return (asked or sentences[:1])[:limit]


def _facts(index: Index, questions: list[str], model: ChatModel) -> list[Fact]:
    pipeline = RagPipeline(index, model, config=RagConfig(strategy="extract"))
    facts: list[Fact] = []
    seen: set[str] = set()
    for question in questions:
        answer = pipeline.ask(question)
        if not answer.found:
            continue
        for citation in answer.citations:
            quote = " ".join(citation.quote.split())
            if quote in seen or not citation.verified:
                continue
            seen.add(quote)
            n = len(facts) + 1
            facts.append(Fact(n=n, question=question, text=quote, citation=citation))
    return facts


def _write(
    model: ChatModel,
    template_name: str,
    variables: dict[str, Any],
    facts: list[Fact],
    max_tokens: int,
) -> EmailDraft:
    template = builtin_prompt(template_name)
    prompt = template.render(**variables, facts=[f.model_dump() for f in facts])
    body_chars = max_tokens * 3
    schema = {
        "type": "object",
        "properties": {
            "subject": {"type": "string", "maxLength": SUBJECT_CHARS},
            "body": {"type": "string", "minLength": 1, "maxLength": body_chars},
        },
        "required": ["subject", "body"],
    }
    # A token is at least one character: with this many, the grammar can always close the
    # JSON, even when a small model fills the body to its limit.
    budget = SUBJECT_CHARS + body_chars + 32
    completion = model.chat(
        prompt, json_schema=schema, **as_options(template.settings, max_tokens=budget)
    )
    add_usage(completion.usage)
    usage = Usage()
    accumulate(usage, completion.usage)
    try:
        data = json.loads(completion.text)
        subject, body = str(data["subject"]).strip(), str(data["body"]).strip()
    except (ValueError, KeyError, TypeError):
        subject, body = "", completion.text.strip()  # an API model ignoring the schema
    body = cut_loop(body)
    signature = str(variables.get("signature", "")).strip()
    if signature and not body.endswith(signature):
        # Small models often forget to sign; the name is the user's, so it is added as given.
        body = f"{body}\n\n{signature}"
    cited = {int(n) for n in re.findall(r"\[(\d{1,2})\]", body)}
    return EmailDraft(
        subject=subject,
        body=body,
        citations=[f for f in facts if f.n in cited],
        facts=facts,
        usage=usage,
    )


def cut_loop(text: str, run: int = 5) -> str:
    """``text`` up to where a small model starts looping: ``run`` words in a row of one shape
    (the same word, or the same word but for its digits: ``3pm 4pm 5pm ...``).

    >>> cut_loop("See you Friday at 3pm at 4pm 5pm 6pm 7pm 8pm 9pm. Best")
    'See you Friday at 3pm at'
    >>> cut_loop("Thanks, that works.")
    'Thanks, that works.'
    """
    words = text.split(" ")
    shapes = [re.sub(r"\d+", "#", w.strip(".,;:!?").lower()) for w in words]
    for i in range(len(shapes) - run + 1):
        if shapes[i] and len(set(shapes[i : i + run])) == 1:
            return " ".join(words[:i]).rstrip(" ,;:")
    return text


def _check(tone: str, length: str) -> None:
    if tone not in TONES:
        raise InvalidRequestError(f"tone must be one of {', '.join(TONES)}, not {tone!r}.")
    if length not in WORDS:
        raise InvalidRequestError(f"length must be short, medium or long, not {length!r}.")


def reply(
    message: str | Email,
    *,
    model: ChatModel | None = None,
    tone: Tone = "neutral",
    length: Length = "short",
    instructions: str = "",
    index: Index | None = None,
    signature: str = "",
) -> EmailDraft:
    """A reply to ``message`` (raw text, headers optional, or an :class:`Email`)."""
    _check(tone, length)
    received = parse_email(message) if isinstance(message, str) else message
    if model is None:
        from lamina.models import get_model

        model = get_model()
    facts = _facts(index, _questions(received.body), model) if index is not None else []
    draft_ = _write(
        model,
        "apps/email_reply",
        {
            "email": received.body,
            "subject": received.subject,
            "sender": received.sender,
            "tone": tone,
            "words": WORDS[length],
            "instructions": instructions,
            "signature": signature,
        },
        facts,
        max_tokens=WORDS[length] * 2 + 64,
    )
    if received.subject and not draft_.subject:
        draft_.subject = received.subject
    if received.subject and not draft_.subject.lower().startswith("re:"):
        draft_.subject = f"Re: {received.subject}"
    return draft_


def draft(
    brief: str,
    *,
    to: str = "",
    model: ChatModel | None = None,
    tone: Tone = "neutral",
    length: Length = "short",
    index: Index | None = None,
    signature: str = "",
) -> EmailDraft:
    """A new email that does what ``brief`` says (``"ask Bo to move the launch to May"``)."""
    _check(tone, length)
    if not brief.strip():
        raise InvalidRequestError("Say what the email should do: the brief is empty.")
    if model is None:
        from lamina.models import get_model

        model = get_model()
    facts = _facts(index, _questions(brief), model) if index is not None else []
    return _write(
        model,
        "apps/email_draft",
        {
            "brief": brief,
            "to": to,
            "tone": tone,
            "words": WORDS[length],
            "signature": signature,
        },
        facts,
        max_tokens=WORDS[length] * 2 + 64,
    )
