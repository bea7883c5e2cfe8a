"""Grounded answers with verified citations: rewrite → retrieve → pack → answer → verify.

See :mod:`lamina.rag.pipeline` for the flow and docs/rag.md for what was measured.
"""

from lamina.rag.answer import NOT_FOUND, Answer, Citation, LeftOut, SourceRef
from lamina.rag.chat import GroundedChat
from lamina.rag.pipeline import RagConfig, RagPipeline, Retry, Strategy, Token

__all__ = [
    "NOT_FOUND",
    "Answer",
    "Citation",
    "GroundedChat",
    "LeftOut",
    "RagConfig",
    "RagPipeline",
    "Retry",
    "SourceRef",
    "Strategy",
    "Token",
]
