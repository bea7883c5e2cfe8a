from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.models.scripted import ScriptedModel
from lamina.rag import RagConfig, RagPipeline
from lamina.retrieval.index import Index
from lamina.testing import HashEmbedder

GGUF = """# GGUF

GGUF is the file format used by llama.cpp to store models. It replaced the older GGML format
in August 2023. A GGUF file holds the tensors together with key-value metadata.
"""
LORA = """# LoRA

LoRA freezes the pretrained weights and trains two small low-rank matrices. Matrix B is
initialised to zero, so training starts from the unchanged model.

## Cost

Its cost is low: LoRA reduced the GPU memory requirement by 3 times.
"""


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "gguf.md").write_text(GGUF)
    (folder / "lora.md").write_text(LORA)
    return folder


@pytest.fixture
def index(tmp_path: Path, docs: Path) -> Iterator[Index]:
    with Index(tmp_path / "index", embedder=HashEmbedder()) as opened:
        opened.ingest([docs])
        yield opened


def make_pipeline(
    index: Index, model: ScriptedModel | None = None, **config: object
) -> RagPipeline:
    settings = {"min_relevance": 0.3, **config}
    return RagPipeline(
        index,
        model or ScriptedModel(),
        config=RagConfig.model_validate(settings),
        embedder=HashEmbedder(),
    )
