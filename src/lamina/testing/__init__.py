"""Test doubles and contract suites for Lamina's interfaces, shipped in the package so that a
third-party backend is tested the way Lamina's own are.

- :class:`ScriptedModel` (chat model ``scripted``): replies and tool calls by turn, every
  call recorded; :func:`tool_call` builds a scripted call.
- :class:`HashEmbedder` (embedder ``hash``): a hashed bag of words, deterministic and instant.
- :mod:`lamina.testing.stores`: the contract every store passes, as a pytest mix-in. It imports
  pytest, so it is imported from test suites only (not from here).

>>> from lamina.retrieval.index import Index
>>> import tempfile
>>> with tempfile.TemporaryDirectory() as folder, Index(folder, embedder=HashEmbedder()) as index:
...     index.embedder.name, index.count()
('hash', (0, 0))
"""

from lamina.models.embeddings.hashing import HashEmbedder
from lamina.models.scripted import ScriptedModel, tool_call

__all__ = ["HashEmbedder", "ScriptedModel", "tool_call"]
