"""Issue 9, item 4: serving one's own GGUF file, end to end, with the official client."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.server.test_openai_sdk import client, lamina_serve


@pytest.mark.integration
@pytest.mark.parametrize("form", ["local:{}", "{}", "local-batched:{}"])
def test_lamina_serve_a_gguf_path_from_lamina_model(
    form: str, gguf_path: Path, tmp_path: Path
) -> None:
    own = tmp_path / "my-model.gguf"
    shutil.copyfile(gguf_path, own)
    with lamina_serve(env={"LAMINA_MODEL": form.format(own)}) as base:
        sdk = client(base)
        assert next(m.id for m in sdk.models.list()) == "lamina"
        reply = sdk.chat.completions.create(
            model="lamina",
            messages=[{"role": "user", "content": "What is the capital of France? One word."}],
            temperature=0,
            max_tokens=8,
        )
        assert "Paris" in (reply.choices[0].message.content or "")
