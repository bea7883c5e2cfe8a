"""Prompt templates: the header, strict rendering, folders, and every built-in template."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.prompts import PromptError, PromptLibrary, PromptTemplate, builtin_prompt, render
from lamina.prompts.templates import _builtins, as_options, user_library
from lamina.settings import Settings

HEADER = """---
description: Greet.
variables:
  who: a name
  mood: {description: m, default: glad}
settings: {temperature: 0, max_tokens: 8}
---
"""


def template(body: str = "Hello {{ who }}, {{ mood }}.", header: str = HEADER) -> PromptTemplate:
    return PromptTemplate.parse(header + body, "greet")


def test_a_template_renders_with_its_declared_variables_and_defaults() -> None:
    t = template()
    assert t.render(who="Ada") == "Hello Ada, glad."
    assert t.render(who="Ada", mood="sad") == "Hello Ada, sad."
    assert t.description == "Greet."
    assert t.settings == {"temperature": 0, "max_tokens": 8}
    assert t.variables["who"].required and not t.variables["mood"].required


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "missing variable 'who' (declared: who, mood)"),
        ({"who": "A", "whom": "B"}, "unexpected variable 'whom' (declared: who, mood)"),
    ],
)
def test_a_missing_or_extra_variable_is_an_error_naming_it(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(PromptError, match=message.replace("(", r"\(").replace(")", r"\)")):
        template().render(**values)


def test_an_attribute_missing_from_a_value_is_an_error_not_an_empty_string() -> None:
    t = PromptTemplate.parse("---\nvariables: {p: a passage}\n---\n{{ p.title }}", "t")
    with pytest.raises(PromptError, match="title"):
        t.render(p={"text": "x"})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Hello {{ who }}", "no header"),
        ("---\nvariables: [who]\n---\n{{ who }}", "'variables' must map"),
        ("---\nvariables: {}\n---\nHello {{ who }}", "uses 'who', which the header does not"),
        ("---\nvariables: {who: x, extra: y}\n---\n{{ who }}", "declares 'extra', which the body"),
        ("---\nsettings: {temperature: 9}\n---\nHi", "bad settings (temperature"),
        ("---\nsettings: {tempreature: 0}\n---\nHi", "tempreature"),
        ("---\ntitle: x\n---\nHi", "unknown header field(s) 'title'"),
        ("---\nname: other\n---\nHi", "the header says name 'other'"),
        ("---\n: [\n---\nHi", "not valid YAML"),
        ("---\nvariables: {x: y}\n---\n{% for %}{{ x }}", "Jinja syntax error"),
    ],
)
def test_a_malformed_template_does_not_load(text: str, problem: str) -> None:
    with pytest.raises(PromptError) as caught:
        PromptTemplate.parse(text, "t")
    assert problem in str(caught.value)


def test_the_sandbox_refuses_reaching_into_python() -> None:
    t = PromptTemplate.parse("---\nvariables: {x: v}\n---\n{{ x.__class__.__mro__ }}", "t")
    with pytest.raises(PromptError, match="unsafe"):
        t.render(x="s")


def test_every_builtin_template_loads_and_names_itself() -> None:
    found = _builtins()
    assert {"rag/answer", "rag/strict", "rag/select", "rag/rewrite", "rag/verify"} <= set(found)
    assert {"evals/nli", "evals/question", "evals/synthetic_question"} <= set(found)
    for name, t in found.items():
        assert t.name == name and t.description, name


def test_rag_answer_renders_as_before() -> None:
    """The exact text the RAG pipeline sends (moving it into lamina.prompts changed nothing)."""
    passages = [{"n": 1, "title": "D > H", "text": "T one."}, {"n": 2, "title": "E", "text": "T2"}]
    assert render("rag/answer", question="Q?", passages=passages) == (
        "Answer the question using only the numbered passages. Answer in one or two short "
        "sentences, copying the words of the passage, and put the passage number in brackets "
        "after each sentence, like [1]. If the passages do not contain the answer, say exactly: "
        "Not found in the documents.\n\n[1] D > H\nT one.\n\n[2] E\nT2\n\nQuestion: Q?"
    )


def test_a_library_finds_user_folders_first_and_reserves_builtin_names(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    (mine / "email").mkdir(parents=True)
    (theirs / "rag").mkdir(parents=True)
    (mine / "email" / "polite.j2").write_text("---\nvariables: {x: v}\n---\nMine {{ x }}")
    (theirs / "email").mkdir()
    (theirs / "email" / "polite.j2").write_text("---\n---\nTheirs")
    (theirs / "rag" / "answer.j2").write_text("---\n---\nhijack")
    (theirs / "broken.j2").write_text("no header")
    library = PromptLibrary([mine, theirs])
    assert library.render("email/polite", x="1") == "Mine 1"
    assert library.get("rag/answer").origin == "builtin:rag/answer"
    reasons = {Path(p.path).name: p.reason for p in library.problems}
    assert "built-in prompt's name 'rag/answer'" in reasons["answer.j2"]
    assert "no header" in reasons["broken.j2"]
    with pytest.raises(PromptError, match="no header"):
        library.get("broken")
    with pytest.raises(PromptError, match="no such prompt"):
        library.get("nothing/here")
    assert "email/polite" in library and "rag/answer" in library


def test_a_template_file_can_be_named_by_its_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.j2"
    path.write_text("---\n---\nfrom a file")
    assert PromptLibrary().get(str(path)).render() == "from a file"


def test_the_user_library_reads_lamina_home_prompts(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "hi.j2").write_text("---\n---\nhi")
    assert user_library(settings).render("hi") == "hi"


def test_recommended_settings_take_overrides() -> None:
    assert as_options(builtin_prompt("rag/select").settings, max_tokens=None) == {
        "temperature": 0,
        "max_tokens": 24,
    }
