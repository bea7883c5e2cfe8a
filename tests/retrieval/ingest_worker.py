"""Run by the durability test as a separate process, to be killed with SIGKILL mid-ingest.

usage: python -m tests.retrieval.ingest_worker INDEX_DIR CORPUS_DIR DELAY
Prints one line per committed batch, so the test knows where the ingest is.
"""

from __future__ import annotations

import sys

from lamina.retrieval.index import Index
from lamina.retrieval.ingest import Ingestor
from lamina.testing import HashEmbedder


def main() -> None:
    index_dir, corpus, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    index = Index(index_dir, embedder=HashEmbedder(delay=delay))
    store_add = index.store.add_many

    def add_many(*args, **kwargs):  # type: ignore[no-untyped-def]
        store_add(*args, **kwargs)
        print("committed", flush=True)

    index.store.add_many = add_many  # type: ignore[method-assign]
    print("ready", flush=True)
    Ingestor(index.store, index.embedder, index.chunker, batch=5).ingest([corpus])
    print("finished", flush=True)


if __name__ == "__main__":
    main()
