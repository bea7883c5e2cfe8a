from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lamina.errors import InvalidRequestError
from lamina.evals.ppl import gguf_for_spec, perplexity, windows
from lamina.settings import Settings
from tests.evals.conftest import lamina

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "eval"
TEXT = (
    "A language model assigns a probability to every possible next token, given the tokens "
    "before it. Perplexity is the exponential of the average negative log-likelihood of each "
    "token. A sliding window keeps earlier tokens as context and scores only new tokens."
)


@pytest.mark.parametrize("bos", [False, True])
@pytest.mark.parametrize(("n", "ctx", "stride"), [(10, 4, 2), (37, 16, 5), (5, 64, 32), (9, 3, 1)])
def test_windows_score_every_token_once(n: int, ctx: int, stride: int, bos: bool) -> None:
    scored: list[int] = []
    for begin, end, first in windows(n, ctx=ctx, stride=stride, bos=bos):
        assert end - begin + (1 if bos else 0) <= ctx
        assert begin <= first <= end
        if not bos:
            assert first > begin  # a token is never scored without context
        scored.extend(range(first, end))
    assert scored == list(range(0 if bos else 1, n))


def test_stride_longer_than_the_window_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="--stride 9 must be between 1 and"):
        windows(100, ctx=8, stride=9, bos=False)


def test_api_models_are_refused_with_the_reason(settings: Settings) -> None:
    with pytest.raises(InvalidRequestError, match=r"'openai' backend .* does not return those"):
        gguf_for_spec("openai:gpt-4o-mini", settings)
    with pytest.raises(InvalidRequestError, match="No GGUF model file at"):
        gguf_for_spec("local:/nowhere/model.gguf", settings)


def _direct_nll(path: Path, text: str, ctx: int, stride: int) -> tuple[float, int]:
    """Total NLL and scored tokens, with llama.cpp's low-level batch API, written apart from
    lamina.evals.ppl: one llama_decode per window with logits requested for every position."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, logits_all=True, verbose=False
    )
    model, context = llm._model, llm._ctx.ctx
    assert not model.add_bos_token()  # SmolLM2: no BOS, so the first token is context only
    tokens = llm.tokenize(text.encode(), add_bos=False, special=False)
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model.model))
    total, count, previous_end = 0.0, 0, 1
    batch = llama_cpp.llama_batch_init(ctx, 0, 1)
    try:
        for begin in range(0, len(tokens), stride):
            end = min(begin + ctx, len(tokens))
            window = tokens[begin:end]
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(context), True)
            batch.n_tokens = len(window)
            for i, token in enumerate(window):
                batch.token[i] = token
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = True
            assert llama_cpp.llama_decode(context, batch) == 0
            for t in range(max(previous_end, begin + 1), end):
                row = np.ctypeslib.as_array(
                    llama_cpp.llama_get_logits_ith(context, t - begin - 1), shape=(n_vocab,)
                ).astype(np.float64)
                log_z = row.max() + math.log(np.exp(row - row.max()).sum())
                total += log_z - row[tokens[t]]
                count += 1
            previous_end = end
            if end == len(tokens):
                break
    finally:
        llama_cpp.llama_batch_free(batch)
        llm.close()
    return total, count


@pytest.mark.integration
@pytest.mark.parametrize(("ctx", "stride"), [(24, 8), (96, 48)])
def test_perplexity_equals_a_direct_llama_cpp_computation(
    gguf_path: Path, settings: Settings, ctx: int, stride: int
) -> None:
    run = perplexity(TEXT, model_path=gguf_path, ctx=ctx, stride=stride, settings=settings)
    total, count = _direct_nll(gguf_path, TEXT, ctx, stride)
    assert run.summary["tokens"] == count == run.summary["text_tokens"] - 1
    assert run.summary["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-9)
    assert sum(i["scored"] for i in run.items) == count
    assert run.meta.settings["bos"] is False
    assert 1 < run.summary["perplexity"] < 1000  # an English text, a real model


@pytest.mark.integration
def test_more_context_lowers_perplexity(gguf_path: Path, settings: Settings) -> None:
    short = perplexity(TEXT, model_path=gguf_path, ctx=8, stride=4, settings=settings)
    long = perplexity(TEXT, model_path=gguf_path, ctx=128, stride=64, settings=settings)
    assert long.summary["perplexity"] < short.summary["perplexity"]


@pytest.mark.integration
def test_a_one_token_text_is_refused(gguf_path: Path, settings: Settings) -> None:
    with pytest.raises(InvalidRequestError, match="The text has 1 token"):
        perplexity("Hello", model_path=gguf_path, settings=settings)


@pytest.mark.integration
def test_cli_prints_perplexity_and_tokens(tmp_path: Path) -> None:
    report = tmp_path / "ppl.html"
    run = lamina(
        "eval", "ppl", "--text", str(SAMPLES / "text.txt"), "--ctx", "128", "--stride", "64",
        "--json", "--report", str(report),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["perplexity"] > 1 and data["tokens"] == data["text_tokens"] - 1
    assert "data:image/svg+xml;base64," in report.read_text()


def test_cli_refuses_an_api_model_before_loading_anything() -> None:
    run = lamina("eval", "ppl", "--text", str(SAMPLES / "text.txt"), "--model", "openai:gpt-4o")
    assert run.returncode == 1
    assert "does not return those" in run.stderr and "--model local" in run.stderr
