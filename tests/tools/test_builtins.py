"""The built-in tools against real things: a SQLite file, HTTP servers on loopback, an index
built from the sample corpus, long-term memory in a real collection."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lamina.settings import Settings, ToolSettings
from lamina.tools import ToolContext, get_tool, run_tool
from lamina.tools.calculator import calculate
from lamina.tools.memory import LongTermMemory

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "corpus"


def call(name: str, arguments: dict[str, Any], **context: Any) -> Any:
    return run_tool(get_tool(name, ToolContext(**context)), arguments)


# -- calculator ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "shown"),
    [
        ("1234 * 5678", "7006652"),
        ("(3 + 4) * 2", "14"),
        ("2^10", "1024"),
        ("7 / 2", "3.5"),
        ("-3 ** 2", "-9"),
        ("sqrt(16) + abs(-2)", "6"),
        ("round(pi, 3)", "3.142"),
        ("10 // 3 + 10 % 3", "4"),
        ("2 ** 0.5", "1.41421356237"),
    ],
)
def test_calculator_computes(expression: str, shown: str) -> None:
    assert calculate(expression) == shown


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("__import__('os').system('id')", "pattern"),  # quotes: refused by the schema
        ("__import__(1).system(2)", "not allowed"),  # and by the parser when they pass it
        ("open(1)", "not allowed"),
        ("(1).__class__", "not allowed"),
        ("x + 1", "not allowed"),
        ("9 ** 9 ** 9", "too large"),
        ("10 ** 5000", "too large"),
        ("factorial(100000)", "limited"),
        ("1 / 0", "division by zero"),
        ("1 +", "not an arithmetic expression"),
        ("sqrt(-1)", "math domain error"),
    ],
)
def test_calculator_refuses_with_a_reason(expression: str, problem: str) -> None:
    result = call("calculator", {"expression": expression})
    assert not result.ok and problem in str(result.error)


def test_calculator_schema_bounds_its_argument() -> None:
    result = call("calculator", {"expression": "1+1; import os"})
    assert not result.ok and "pattern" in str(result.error)


# -- sql ----------------------------------------------------------------------------------------


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE items (name TEXT, price REAL)")
        db.executemany("INSERT INTO items VALUES (?, ?)", [("tea", 3.5), ("cake", 4.0)] * 40)
    return path


def test_sql_reads_and_bounds_the_rows(database: Path) -> None:
    settings = Settings(tools=ToolSettings(sql_database=database))
    result = call("sql", {"query": "SELECT name, price FROM items LIMIT 2"}, settings=settings)
    assert result.ok and result.output == "name\tprice\ntea\t3.5\ncake\t4.0"
    many = call("sql", {"query": "SELECT * FROM items"}, settings=settings)
    assert many.ok and many.output.endswith("[only the first 50 rows are shown]")


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM items",
        "INSERT INTO items VALUES ('x', 1)",
        "DROP TABLE items",
        "UPDATE items SET price = 0",
        "ATTACH DATABASE '/tmp/evil.sqlite' AS evil",
        "PRAGMA writable_schema = 1",
        "CREATE TABLE t (x)",
    ],
)
def test_sql_is_read_only(database: Path, query: str) -> None:
    settings = Settings(tools=ToolSettings(sql_database=database))
    result = call("sql", {"query": query}, settings=settings)
    assert not result.ok
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 80


def test_sql_stops_a_runaway_query(database: Path) -> None:
    settings = Settings(tools=ToolSettings(sql_database=database, timeout_s=0.5))
    endless = (
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT COUNT(*) FROM n"
    )
    result = call("sql", {"query": endless}, settings=settings)
    assert not result.ok and "stopped" in str(result.error)


def test_sql_without_a_database_says_what_to_set() -> None:
    result = call("sql", {"query": "SELECT 1"})
    assert not result.ok and "tools.sql_database" in str(result.error)


# -- http_get and web_search on loopback --------------------------------------------------------


class _Site:
    def __init__(self) -> None:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                site.paths.append(self.path)
                if self.path.startswith("/docs/page"):
                    self._send(200, "text/html", "<html><body><p>Hello <b>docs</b></p>"
                               "<script>evil()</script></body></html>")  # fmt: skip
                elif self.path.startswith("/docs/bounce"):
                    self.send_response(302)
                    self.send_header("location", f"{site.url}/private/secret")
                    self.end_headers()
                elif self.path.startswith("/search"):
                    results = [
                        {"title": "LoRA paper", "url": "https://arxiv.org/abs/2106.09685",
                         "content": "Low-rank adaptation of large language models."},
                        {"title": "QLoRA", "url": "https://arxiv.org/abs/2305.14314",
                         "content": "Efficient finetuning of quantized LLMs."},
                    ]  # fmt: skip
                    self._send(200, "application/json", json.dumps({"results": results}))
                else:
                    self._send(200, "text/plain", "secret")

            def _send(self, status: int, kind: str, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def site() -> Iterator[_Site]:
    served = _Site()
    yield served
    served.server.shutdown()
    served.server.server_close()


def test_http_get_is_off_by_default(site: _Site) -> None:
    result = call("http_get", {"url": f"{site.url}/docs/page"})
    assert not result.ok and "http_get is off" in str(result.error)
    assert site.paths == []


def test_http_get_fetches_allowed_urls_only(site: _Site) -> None:
    settings = Settings(tools=ToolSettings(http_allow=[f"{site.url}/docs/"]))
    page = call("http_get", {"url": f"{site.url}/docs/page"}, settings=settings)
    assert page.ok and page.output == "Hello\ndocs"
    for url in (
        f"{site.url}/private/secret",
        f"{site.url}/docs/../private/secret",
        f"{site.url}/docsevil",
        "file:///etc/passwd",
    ):
        refused = call("http_get", {"url": url}, settings=settings)
        assert not refused.ok and "not under an allowed prefix" in str(refused.error), url
    bounced = call("http_get", {"url": f"{site.url}/docs/bounce"}, settings=settings)
    assert not bounced.ok and "/private/secret" in str(bounced.error)
    assert "/private/secret" not in site.paths  # the redirect was checked before following it


def test_web_search_needs_a_provider_and_uses_one_on_loopback(site: _Site) -> None:
    missing = call("web_search", {"query": "LoRA"})
    assert not missing.ok and "no search provider" in str(missing.error)
    settings = Settings(tools=ToolSettings(web_search_url=f"{site.url}/search"))
    found = call("web_search", {"query": "LoRA"}, settings=settings)
    assert found.ok
    assert found.output.startswith("[1] LoRA paper - https://arxiv.org/abs/2106.09685\nLow-rank")
    assert site.paths[-1] == "/search?q=LoRA&format=json"


# -- search_documents and long-term memory (the bundled embedder) -------------------------------


@pytest.mark.integration
def test_search_documents_returns_passages_with_spans(tmp_path: Path) -> None:
    from lamina.retrieval.index import Index

    with Index(tmp_path / "index") as index:
        index.ingest([SAMPLES / "lora.pdf", SAMPLES / "rag.md"])
    tool = get_tool("search_documents", ToolContext(index=tmp_path / "index"))
    result = run_tool(tool, {"query": "Which data type does QLoRA use?", "k": 2})
    assert result.ok and result.output.startswith("[1] ")
    assert "NF4" in result.output
    citation = result.data[0]
    assert citation["source"].endswith("lora.pdf") and citation["page"] == 2
    with Index(tmp_path / "index") as index:
        (hit,) = [h for h in index.search("QLoRA NF4", k=1)]
        assert citation["end"] > citation["start"] >= 0
        assert hit.chunk.chunk.text in result.output.replace("\n    ", " ") or citation["quote"]
    no_index = run_tool(get_tool("search_documents", ToolContext()), {"query": "x"})
    assert not no_index.ok and "--index" in str(no_index.error)


@pytest.mark.integration
def test_long_term_memory_survives_and_is_a_collection(tmp_path: Path) -> None:
    context = ToolContext(memory=tmp_path / "memory")
    remember, recall = get_tool("remember", context), get_tool("recall", context)
    assert run_tool(remember, {"note": "The user's favourite drink is green tea."}).ok
    assert run_tool(remember, {"note": "The project deadline is March 3."}).ok
    assert run_tool(remember, {"note": "The project deadline is March 3."}).ok  # stored once
    found = run_tool(recall, {"query": "what does the user like to drink?", "k": 1})
    assert found.output == "- The user's favourite drink is green tea."
    # a fresh process (a new LongTermMemory) sees the same notes, in collection "memory"
    later = LongTermMemory(tmp_path / "memory")
    assert later.recall("deadline", 1) == ["The project deadline is March 3."]
    lines = (tmp_path / "memory" / "memory.jsonl").read_text().splitlines()
    assert len(lines) == 2
    from lamina.retrieval.index import Index

    with Index(tmp_path / "memory", create=False) as index:
        assert index.collections() == ["memory"] and index.count("memory")[0] == 2
    later.close()
