"""Turn a follow-up question into a standalone search query, using the conversation so far.

A 135M model rewrites questions unreliably (it drifts, answers instead, or drops the entity),
so the default is a heuristic measured on follow-up pairs: when the question leans on the
conversation (a pronoun, "what about", or hardly any content words of its own), carry over the
key terms of the previous standalone query. A stronger model can rewrite instead
(``use_model=True``); its output is kept only if it still contains the question's own terms.

>>> rewrite_query("And what is its matrix B initialised to?", ["Who introduced LoRA?"])
'And what is its matrix B initialised to? (LoRA)'
>>> rewrite_query("What is GGUF?", ["Who introduced LoRA?"])
'What is GGUF?'
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lamina.models.base import ChatModel
from lamina.prompts import render
from lamina.rag.lexical import STOPWORDS, terms
from lamina.types import Message

__all__ = ["is_follow_up", "key_phrases", "rewrite_query"]

_ANAPHORA = re.compile(
    r"\b(it|its|it's|they|them|their|theirs|this|that|these|those|he|she|his|her|one|ones)\b",
    re.IGNORECASE,
)
_CONTINUATION = re.compile(r"^\s*(and|also|what about|how about|and what|so|then)\b", re.I)
_ENTITY = re.compile(r"\b([A-Z][\w\-.]*[A-Z0-9][\w\-.]*|[A-Z][a-z]+[A-Z]\w*|\w*\d\w*)\b")


def is_follow_up(question: str) -> bool:
    """True when ``question`` probably needs the conversation to be understood: it refers back
    ("its cost"), or goes on ("and what about...") without naming a new subject."""
    if _ANAPHORA.search(question):
        return True
    if _ENTITY.search(question):
        return False  # "What about GGUF?" names its own subject
    return bool(_CONTINUATION.search(question)) or len(terms(question)) < 2


def key_phrases(question: str, limit: int = 4) -> list[str]:
    """The terms of ``question`` worth carrying into the next one: acronyms and names first
    (``GGUF``, ``LoRA``, ``Q4_K_M``), else its content words.

    >>> key_phrases("How does LoRA compare with QLoRA on GPT-3?")
    ['LoRA', 'QLoRA', 'GPT-3']
    """
    entities = [m.group(1).strip(".-") for m in _ENTITY.finditer(question)]
    entities = [e for e in dict.fromkeys(entities) if e.lower() not in STOPWORDS]
    if entities:
        return entities[:limit]
    words = re.findall(r"[\w\-]+", question)
    content = [w for w in words if w.lower() not in STOPWORDS and len(w) > 2]
    return list(dict.fromkeys(content))[:limit]


def rewrite_query(
    question: str,
    previous: Sequence[str],
    *,
    model: ChatModel | None = None,
) -> str:
    """A standalone version of ``question`` given the ``previous`` standalone queries.

    Heuristic by default; with ``model``, the model rewrites and the heuristic is the fallback.
    """
    if not previous or not is_follow_up(question):
        return question
    if model is not None:
        history = [Message.user(q) for q in previous[-3:]]
        prompt = render("rag/rewrite", history=history, question=question)
        text = model.chat(prompt, temperature=0.0, max_tokens=48, stop=["\n"]).text.strip()
        own = set(terms(question)) - {"what", "about"}
        if text and own <= set(terms(text)) and len(text) < 4 * len(question) + 80:
            return text
    carried = [p for p in key_phrases(previous[-1]) if p.lower() not in question.lower()]
    if not carried:
        return question
    return f"{question} ({' '.join(carried)})"
