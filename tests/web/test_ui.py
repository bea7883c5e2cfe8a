"""The web UI end to end: ``lamina serve`` (the bundled model, MiniLM, a real API key) in its
own process, driven in headless chromium. Screenshots of each step go to build/web/.

Most questions use the extract strategy: what is under test is the UI and the HTTP API, and
extraction needs no generation, so the whole module takes well under a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lamina.feedback import FeedbackStore
from tests.web.conftest import Served

pytestmark = pytest.mark.integration

GUIDE = """# Velmora field guide

Velmora is a small island nation in the northern sea.

## Capital

The capital of Velmora is Ostrava Nova, a harbour city of red roofs.

## Sport

The national sport of Velmora is ice sailing, raced every winter on the frozen bay.
"""
HOSTILE = """# Launch notes

The secret launch code is <img src=x onerror="window.__pwned=1">amber falcon\
<script>window.__pwned=2</script>.

Nothing else happens in these notes.
"""


@pytest.fixture
def page(browser: Any, served: Served) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on("dialog", lambda dialog: dialog.accept())
    opened.goto(served.url + "/")
    yield opened
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def _login(page: Any, served: Served) -> None:
    page.get_by_label("API key").fill(served.key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as browser").wait_for()


def _upload(page: Any, files: list[tuple[str, bytes]], collection: str = "default") -> Any:
    page.get_by_label("Into collection").fill(collection)
    page.get_by_label("Files").set_input_files(
        [{"name": n, "mimeType": "application/octet-stream", "buffer": b} for n, b in files]
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    job = page.locator("#jobs li").first
    page.wait_for_function(
        "() => ['done', 'failed'].includes(document.querySelector('#jobs li')?.dataset.state)",
        timeout=60_000,
    )
    return job


def _ask(page: Any, question: str, strategy: str = "extract") -> Any:
    page.get_by_label("Strategy").select_option(strategy)
    before = page.locator("#transcript li").count()
    page.get_by_label("Question").fill(question)
    page.get_by_label("Question").press("Enter")
    turn = page.locator("#transcript li.turn").nth(before)
    turn.locator(".answer-meta").wait_for(timeout=60_000)
    return turn


def test_login_upload_ask_cite_feedback_not_found_delete(
    page: Any, served: Served, shots: Path
) -> None:
    # Log in: the key is asked for, and never lands in a URL.
    page.get_by_label("API key").wait_for()
    page.screenshot(path=shots / "01-login.png")
    _login(page, served)
    assert served.key not in page.url

    # Upload two files (one a fake PDF): live progress, then the per-file error.
    job = _upload(page, [("velmora.md", GUIDE.encode()), ("fake.pdf", b"not a pdf at all")])
    assert job.get_attribute("data-state") == "done"
    assert "velmora.md: done: 1 document" in job.inner_text()
    assert "is named .pdf but is not a PDF" in job.locator(".file-failed").inner_text()
    page.locator("#documents").get_by_text("velmora.md").wait_for()
    page.screenshot(path=shots / "02-ingested.png")

    # Ask: a quoted, cited answer.
    turn = _ask(page, "What is the capital of Velmora?")
    assert "Ostrava Nova" in turn.locator(".answer").inner_text()
    page.screenshot(path=shots / "03-answer.png")

    # Click [1]: the source passage opens with the quoted span highlighted.
    turn.locator("button.cite").first.click()
    mark = page.locator("#source-text mark")
    mark.wait_for()
    assert mark.inner_text() == (
        "The capital of Velmora is Ostrava Nova, a harbour city of red roofs."
    )
    assert "velmora.md" in page.locator("#source-meta").inner_text()
    assert page.evaluate("document.activeElement.id") == "source"  # focus follows
    page.screenshot(path=shots / "04-citation.png")

    # The trace of that answer: its stages and the passages retrieved.
    trace = page.locator("#trace-body")
    assert "retrieve" in trace.inner_text() and "Passages retrieved" in trace.inner_text()

    # Thumbs down with a correction lands in the feedback store, and the tuning data sees it.
    turn.get_by_role("button", name="Bad answer").click()
    turn.get_by_label("Correction (optional)").fill("Ostrava Nova is the capital of Velmora.")
    turn.get_by_role("button", name="Send rating").click()
    turn.get_by_text("Thanks: rated down with a correction.").wait_for()
    rated = FeedbackStore(served.home / "feedback.sqlite").rated()
    assert [(run.question, rating.fix) for run, rating in rated] == [
        ("What is the capital of Velmora?", "Ostrava Nova is the capital of Velmora.")
    ]
    out = served.home / "sft.jsonl"
    subprocess.run(
        [sys.executable, "-m", "lamina", "tune", "dataset", "--from-feedback", "--out", str(out)],
        env={**os.environ, "LAMINA_HOME": str(served.home)},
        check=True,
        capture_output=True,
    )
    example = json.loads(out.read_text().splitlines()[0])
    assert "Ostrava Nova is the capital of Velmora." in json.dumps(example)

    # "Not found", with the closest sources to check.
    page.get_by_role("button", name="Close").click()
    turn = _ask(page, "Who won the 2018 FIFA World Cup?")
    assert turn.locator(".answer").inner_text() == "Not found in the documents."
    assert "not-found" in (turn.locator(".answer").get_attribute("class") or "")
    assert turn.get_by_text("Closest sources:").is_visible()
    assert turn.locator(".closest button").first.inner_text().startswith("velmora.md")
    page.screenshot(path=shots / "05-not-found.png")

    # Delete the document: gone from the list and from the answers.
    page.get_by_role("button", name="Delete velmora.md").click()
    page.locator("#documents").get_by_text("No documents yet").wait_for()
    listed = httpx.get(
        served.url + "/v1/documents", headers={"Authorization": f"Bearer {served.key}"}
    ).json()
    assert listed["data"] == []
    page.screenshot(path=shots / "06-deleted.png")


def test_hostile_document_is_shown_as_text_and_never_runs(
    page: Any, served: Served, shots: Path
) -> None:
    _login(page, served)
    name = "<img src=x onerror=window.__pwned=3>.md"  # browsers send a quote as %22
    job = _upload(page, [(name, HOSTILE.encode())], collection="hostile")
    assert job.get_attribute("data-state") == "done", job.inner_text()
    page.locator("#documents").get_by_text(name).wait_for()  # the name, as text
    page.get_by_label("Collection to ask").select_option("hostile")
    turn = _ask(page, "What is the secret launch code?")
    answer = turn.locator(".answer").inner_text()
    assert '<img src=x onerror="window.__pwned=1">amber falcon' in answer
    turn.locator("button.cite").first.click()
    page.locator("#source-text mark").wait_for()
    assert "<script>window.__pwned=2</script>" in page.locator("#source-text").inner_text()
    page.screenshot(path=shots / "07-hostile-document.png")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#app img, #app script").count() == 0


def test_headers_labels_keyboard_and_phone_width(browser: Any, served: Served, shots: Path) -> None:
    response = httpx.get(served.url + "/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    for asset in ("/ui/app.js", "/ui/app.css"):
        assert httpx.get(served.url + asset).status_code == 200
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(served.url + "/")
    _login(page, served)
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(e => e.offsetParent !== null || e.type === 'file')
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                         && !(e.textContent || '').trim())
            .map(e => e.id || e.outerHTML.slice(0, 60))"""
    )
    assert unlabelled == []
    assert page.evaluate("document.activeElement.id") == "question"  # ready to type
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.tagName") in ("INPUT", "BUTTON", "SELECT")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px screen"
    page.screenshot(path=shots / "08-phone.png", full_page=True)
    log = served.log.read_text()
    assert served.key not in log and served.key[12:] not in log
    context.close()
