from __future__ import annotations

from lamina.models.scripted import ScriptedModel
from lamina.rag.verify import Verifier
from lamina.testing import HashEmbedder

SPAN = "LoRA freezes the pretrained weights and trains two small low-rank matrices."


def test_quote_and_close_paraphrase_are_supported() -> None:
    verifier = Verifier(HashEmbedder())
    assert verifier.check(SPAN, SPAN).supported
    assert verifier.check("LoRA trains two low-rank matrices.", SPAN).supported


def test_unrelated_claim_is_not_supported() -> None:
    check = Verifier(HashEmbedder()).check("GGUF replaced GGML in August 2023.", SPAN)
    assert not check.supported
    assert check.lexical < 0.3


def test_judge_has_the_last_word_when_configured() -> None:
    judge = ScriptedModel(['{"supported": "no"}'])
    assert not Verifier(judge=judge).check("LoRA trains two matrices.", SPAN).supported
    assert "Claim: LoRA trains two matrices." in judge.history[0][0].content


def test_the_judge_verdict_is_parsed_not_searched_for() -> None:
    """A reply that mentions "yes" but says no is a no; an unparseable reply is a no."""
    replies = ['{"supported": "no", "why": "\\"yes\\" is wrong"}', "yes, I think so", "[]"]
    for n, reply in enumerate(replies):
        claim = f"LoRA trains {n + 2} matrices."  # a new prompt each: no cached verdict
        assert not Verifier(judge=ScriptedModel([reply])).check(claim, SPAN).supported, reply
    yes = Verifier(judge=ScriptedModel(['{"supported": "yes"}']))
    assert yes.check("LoRA trains two small matrices.", SPAN).supported
