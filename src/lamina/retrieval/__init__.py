"""The retrieval layer: load documents, chunk, embed, store, search, rerank and route.

Most code opens an :class:`~lamina.retrieval.index.Index` (ingest and search one index
directory, configured by an :class:`~lamina.retrieval.index.IndexConfig`); its parts live in
their own modules: ``loaders`` and ``chunking`` (files to exact-span chunks), ``ingest``,
``store`` (the Store boundary, its engines registered by URL scheme), ``search`` (BM25, dense,
fusion, MMR), ``rerank`` and ``router``. This package exports the loading and chunking API:

    >>> from lamina.retrieval import load, Chunker    # doctest: +SKIP
    >>> chunks = Chunker(max_tokens=256, overlap=32).chunk(load("guide.pdf"))  # doctest: +SKIP

``load`` / ``iter_jsonl`` give :class:`LoadedDocument` s (a :class:`Document`, its full text and
its heading / paragraph / code :class:`Block` s); :class:`Chunker` gives :class:`Chunk` s that
are exact spans of that text, with heading path and page, sized in the tokens of a
:class:`TokenCounter` (``Chunker.for_embedder`` counts an embedder's). Bad files raise
:class:`LoadError`.
"""

from lamina.retrieval.chunking import Chunker, chunk_document
from lamina.retrieval.documents import Block, BlockKind, Chunk, Document, LoadedDocument
from lamina.retrieval.errors import LoadError
from lamina.retrieval.loaders import iter_jsonl, load
from lamina.retrieval.sentences import split_sentences
from lamina.retrieval.tokens import (
    EmbedderCounter,
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
    "EmbedderCounter",
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
