"""The evals tests reuse the RAG tests' small corpus and index (hash embedder, instant)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.rag.conftest import docs, index, make_pipeline

__all__ = ["docs", "index", "lamina", "make_pipeline"]


def lamina(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real ``lamina`` command in a process."""
    return subprocess.run(
        [sys.executable, "-m", "lamina", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )
