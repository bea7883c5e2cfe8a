"""The retrieval layer, first piece: load documents and cut them into chunks.

    >>> from lamina.retrieval import load, Chunker    # doctest: +SKIP
    >>> chunks = Chunker(max_tokens=256, overlap=32).chunk(load("guide.pdf"))  # doctest: +SKIP

``load`` / ``iter_jsonl`` give :class:`LoadedDocument` s (a :class:`Document`, its full text and
its heading / paragraph / code :class:`Block` s); :class:`Chunker` gives :class:`Chunk` s that
are exact spans of that text, with heading path and page. Bad files raise :class:`LoadError`.
"""

from lamina.retrieval.chunking import Chunker, chunk_document
from lamina.retrieval.documents import Block, BlockKind, Chunk, Document, LoadedDocument
from lamina.retrieval.errors import LoadError
from lamina.retrieval.loaders import iter_jsonl, load
from lamina.retrieval.sentences import split_sentences
from lamina.retrieval.tokens import (
    FunctionCounter,
    HFTokenCounter,
    TokenCounter,
    as_counter,
    minilm_counter,
)

__all__ = [
    "Block",
    "BlockKind",
    "Chunk",
    "Chunker",
    "Document",
    "FunctionCounter",
    "HFTokenCounter",
    "LoadError",
    "LoadedDocument",
    "TokenCounter",
    "as_counter",
    "chunk_document",
    "iter_jsonl",
    "load",
    "minilm_counter",
    "split_sentences",
]
