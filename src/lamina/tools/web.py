"""``http_get`` (off unless URLs are allowed) and ``web_search`` (through a search provider).

``http_get`` fetches only URLs under a prefix in ``tools.http_allow``: same scheme, host and
port, and a path under the prefix's path. Redirects are followed by hand (at most three), each
one checked the same way, so an allowed page cannot bounce the request elsewhere. At most
1 MB is read; HTML comes back as its text.

``web_search`` asks a :class:`SearchProvider`. The built-in one speaks SearxNG's JSON API
(``tools.web_search_url``); without one configured the tool says so instead of guessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Protocol

import httpx
from pydantic import BaseModel, Field

from lamina.tools.base import FunctionTool
from lamina.tools.errors import ToolError
from lamina.tools.registry import ToolContext

__all__ = [
    "SearchProvider",
    "SearchResult",
    "SearxngProvider",
    "is_allowed",
    "make_http_get",
    "make_web_search",
    "web_search_tool",
]

_MAX_BYTES = 1_000_000
_MAX_REDIRECTS = 3
Url = Annotated[str, Field(min_length=8, max_length=2000, examples=["https://example.org/page"])]
Query = Annotated[str, Field(min_length=1, max_length=300, examples=["LoRA fine-tuning"])]


def is_allowed(url: str, prefixes: Sequence[str]) -> bool:
    """True when ``url`` lies under one of ``prefixes`` (scheme, host, port, path).

    >>> is_allowed("https://docs.python.org/3/library/", ["https://docs.python.org/3/"])
    True
    >>> is_allowed("https://docs.python.org.evil.com/3/", ["https://docs.python.org/3/"])
    False
    >>> is_allowed("https://docs.python.org@evil.com/3/", ["https://docs.python.org/3/"])
    False
    >>> is_allowed("https://docs.python.org/3/../2/", ["https://docs.python.org/3/"])
    False
    """
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return False
    if target.scheme not in ("http", "https") or target.userinfo:
        return False
    path = _normal_path(target.path)
    for prefix in prefixes:
        allowed = httpx.URL(prefix)
        base = _normal_path(allowed.path or "/")
        same_origin = (target.scheme, target.host, target.port) == (
            allowed.scheme,
            allowed.host,
            allowed.port,
        )
        if same_origin and (path == base or path.startswith(base.rstrip("/") + "/")):
            return True
    return False


def _normal_path(path: str) -> str:
    """Resolve ``.`` and ``..`` segments, so a prefix cannot be walked out of.

    >>> _normal_path("/a/b/../c/./d")
    '/a/c/d'
    """
    parts: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if parts:
                parts.pop()
        elif segment not in ("", "."):
            parts.append(segment)
    return "/" + "/".join(parts) + ("/" if path.endswith("/") and parts else "")


def make_http_get(context: ToolContext) -> FunctionTool:
    """The ``http_get`` tool, limited to ``tools.http_allow``."""
    prefixes = list(context.settings.tools.http_allow)
    timeout = context.settings.tools.timeout_s

    def http_get(url: Url) -> str:
        """Fetch a web page or API response from an allowed site and return its text.

        Args:
            url: the full http(s) URL to fetch
        """
        if not prefixes:
            raise ToolError(
                "http_get is off: no URL is allowed. Add URL prefixes to tools.http_allow "
                "(LAMINA_TOOLS__HTTP_ALLOW='[\"https://example.org/\"]') to turn it on."
            )
        return _fetch(url, prefixes, timeout)

    return FunctionTool(http_get)


def _fetch(url: str, prefixes: list[str], timeout: float) -> str:
    with httpx.Client(follow_redirects=False, timeout=timeout) as client:
        for _ in range(_MAX_REDIRECTS + 1):
            if not is_allowed(url, prefixes):
                raise ToolError(
                    f"{url!r} is not under an allowed prefix ({', '.join(prefixes)}); "
                    f"http_get only fetches those."
                )
            try:
                with client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = str(response.url.join(response.headers.get("location", "")))
                        continue
                    body = b""
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > _MAX_BYTES:
                            break
                    kind = response.headers.get("content-type", "")
                    status = response.status_code
            except httpx.HTTPError as exc:
                raise ToolError(f"Cannot fetch {url!r}: {exc!r}") from None
            text = body[:_MAX_BYTES].decode("utf-8", errors="replace")
            if "html" in kind:
                text = _html_text(text)
            if status >= 400:
                raise ToolError(f"{url!r} answered {status}: {text[:300]}")
            return text
    raise ToolError(f"{url!r} redirected more than {_MAX_REDIRECTS} times.")


def _html_text(html: str) -> str:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    for node in tree.css("script, style, noscript, template"):
        node.decompose()
    root = tree.body or tree.root
    text = root.text(separator="\n") if root is not None else ""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


class SearchResult(BaseModel):
    title: str
    url: str
    snippet: str = ""


class SearchProvider(Protocol):
    """Where ``web_search`` gets results: implement ``search`` for any search service."""

    def search(self, query: str, k: int) -> list[SearchResult]: ...


class SearxngProvider:
    """A SearxNG instance (or anything answering its ``/search?q=...&format=json`` API)."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url
        self.timeout = timeout

    def search(self, query: str, k: int) -> list[SearchResult]:
        try:
            response = httpx.get(
                self.url, params={"q": query, "format": "json"}, timeout=self.timeout
            )
            response.raise_for_status()
            items: list[dict[str, Any]] = response.json().get("results", [])
        except (httpx.HTTPError, ValueError) as exc:
            raise ToolError(f"The search provider at {self.url} failed: {exc!r}") from None
        return [
            SearchResult(
                title=str(i.get("title", "")),
                url=str(i.get("url", "")),
                snippet=str(i.get("content") or i.get("snippet") or ""),
            )
            for i in items[:k]
        ]


def web_search_tool(provider: SearchProvider | None) -> FunctionTool:
    """The ``web_search`` tool over ``provider`` (None: every call explains how to set one)."""

    def web_search(query: Query) -> str:
        """Search the web and return the top results with their titles, URLs and snippets.

        Args:
            query: what to search for
        """
        if provider is None:
            raise ToolError(
                "web_search has no search provider configured (Lamina works offline by "
                "default). Set tools.web_search_url (LAMINA_TOOLS__WEB_SEARCH_URL) to a "
                "SearxNG-compatible endpoint, or pass a SearchProvider in Python."
            )
        results = provider.search(query, 5)
        if not results:
            return f"No results for {query!r}."
        return "\n".join(
            f"[{n}] {r.title} - {r.url}\n{r.snippet}".rstrip() for n, r in enumerate(results, 1)
        )

    return FunctionTool(web_search)


def make_web_search(context: ToolContext) -> FunctionTool:
    """The ``web_search`` tool with the provider the context or the settings name."""
    provider = context.extra.get("search_provider")
    url = context.settings.tools.web_search_url
    if provider is None and url:
        provider = SearxngProvider(url, timeout=context.settings.tools.timeout_s)
    return web_search_tool(provider)
