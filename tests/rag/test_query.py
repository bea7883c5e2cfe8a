from __future__ import annotations

from lamina.models.scripted import ScriptedModel
from lamina.rag import GroundedChat
from lamina.rag.query import is_follow_up, key_phrases, rewrite_query
from lamina.retrieval.index import Index
from tests.rag.conftest import make_pipeline


def test_follow_up_detection() -> None:
    assert is_follow_up("And what about its cost?")
    assert is_follow_up("What about them?")
    assert not is_follow_up("Which format did GGUF replace?")
    assert not is_follow_up("What about GGUF?")
    assert is_follow_up("And the rank?")


def test_key_phrases_prefer_names() -> None:
    assert key_phrases("What does LoRA freeze?") == ["LoRA"]
    assert key_phrases("How does chunk overlap help retrieval?") == [
        "chunk",
        "overlap",
        "help",
        "retrieval",
    ]


def test_follow_up_carries_the_previous_entity() -> None:
    assert rewrite_query("And what about its cost?", ["What does LoRA freeze?"]) == (
        "And what about its cost? (LoRA)"
    )
    assert rewrite_query("What about GGUF?", ["What does LoRA freeze?"]) == "What about GGUF?"
    assert rewrite_query("What does LoRA freeze?", []) == "What does LoRA freeze?"


def test_model_rewrite_is_kept_only_if_faithful() -> None:
    good = ScriptedModel(["What is the cost of LoRA?"])
    assert rewrite_query("And its cost?", ["What does LoRA freeze?"], model=good) == (
        "What is the cost of LoRA?"
    )
    drifting = ScriptedModel(["Tell me about cats."])
    assert rewrite_query("And its rank?", ["What does LoRA freeze?"], model=drifting) == (
        "And its rank? (LoRA)"
    )


def test_grounded_chat_answers_a_follow_up_from_the_right_document(index: Index) -> None:
    chat = GroundedChat(make_pipeline(index))
    first = chat.ask("What does LoRA freeze?")
    assert first.found and first.citations[0].source.endswith("lora.md")
    second = chat.ask("And what about its cost?")
    assert second.query == "And what about its cost? (LoRA)"
    assert second.found
    assert second.citations[0].source.endswith("lora.md")
    assert "3 times" in second.answer
