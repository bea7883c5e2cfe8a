"""The private llama-cpp-python API Lamina relies on is still there in the installed version."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.models import llama_private


def test_the_installed_llama_cpp_python_has_every_private_name_we_use() -> None:
    assert llama_private.problems() == []


def test_a_missing_private_name_is_reported_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from llama_cpp import _internals

    monkeypatch.delattr(_internals.LlamaModel, "n_vocab")
    found = llama_private.problems()
    assert "llama_cpp._internals.LlamaModel.n_vocab is missing" in found
    assert "make install" in found[-1]


def test_the_installed_version_is_one_the_adapter_was_checked_against() -> None:
    # Bumping the pin fails here until someone re-reads llama_private.py against the new
    # release and widens TESTED.
    assert llama_private.version_tested()
    assert llama_private.version_tested("0.3.36")
    assert not llama_private.version_tested("0.4.0")
    assert not llama_private.version_tested("0.2.90")


@pytest.mark.integration
def test_a_model_and_context_from_the_adapter_decode(tmp_path: Path) -> None:
    import llama_cpp

    from lamina.models.local import bundled_model_path

    model = llama_private.load_model(bundled_model_path())
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = params.n_batch = params.n_ubatch = 64
    context = llama_private.new_context(model, params)
    try:
        tokens = list(model.tokenize(b"Hello", add_bos=False, special=False))
        batch = llama_cpp.llama_batch_get_one((llama_cpp.llama_token * len(tokens))(*tokens),
                                              len(tokens))  # fmt: skip
        assert llama_cpp.llama_decode(llama_private.context_handle(context), batch) == 0
        assert llama_cpp.llama_vocab_n_tokens(model.vocab) > 1000
    finally:
        context.close()
