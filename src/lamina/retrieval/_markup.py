"""Blocks from plain text, Markdown and HTML (private helpers of :mod:`loaders`)."""

from __future__ import annotations

import re

from lamina.errors import MissingDependencyError
from lamina.retrieval._text import BlockBuilder, clean_inline
from lamina.retrieval.documents import Block, BlockKind

_BLANK_LINE = re.compile(r"\n[^\S\n]*\n\s*")
_ATX = re.compile(r" {0,3}(#{1,6})(?=[ \t]|$)")
_ATX_CLOSE = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*$")
_THEMATIC = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_FRONT_MATTER_END = re.compile(r"^(?:---|\.\.\.)[ \t]*$", re.MULTILINE)
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_WHITESPACE = re.compile(r"\s+")


def _block(
    text: str, start: int, end: int, kind: BlockKind, level: int | None = None
) -> Block | None:
    """The block over ``text[start:end]`` with surrounding whitespace trimmed off the span."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start == end:
        return None
    return Block(kind=kind, text=text[start:end], start=start, end=end, level=level)


def text_blocks(text: str, start: int = 0, end: int | None = None) -> list[Block]:
    """Paragraph blocks of ``text[start:end]``, split on blank lines, as spans of ``text``.

    >>> [(b.text, b.start) for b in text_blocks("One.\\n\\n  Two\\nlines.\\n")]
    [('One.', 0), ('Two\\nlines.', 8)]
    """
    end = len(text) if end is None else end
    blocks: list[Block] = []
    position = start
    for gap in _BLANK_LINE.finditer(text, start, end):
        block = _block(text, position, gap.start(), "paragraph")
        if block:
            blocks.append(block)
        position = gap.end()
    block = _block(text, position, end, "paragraph")
    if block:
        blocks.append(block)
    return blocks


def markdown_blocks(text: str) -> tuple[str | None, list[Block]]:
    """The title and blocks of a Markdown text: ATX and setext headings, paragraphs, code.

    Lines inside fenced code are never headings (a ``# comment`` in a shell block stays code).
    YAML front matter is skipped; its ``title:`` becomes the title, else the first ``#``.

    >>> title, blocks = markdown_blocks("# Guide\\n\\n## Install\\n\\nRun `pip`.\\n")
    >>> title, [(b.kind, b.level, b.text) for b in blocks]  # doctest: +NORMALIZE_WHITESPACE
    ('Guide', [('heading', 1, 'Guide'), ('heading', 2, 'Install'),
               ('paragraph', None, 'Run `pip`.')])
    """
    blocks: list[Block] = []
    title: str | None = None
    position, size = 0, len(text)
    if text.startswith("---\n"):
        close = _FRONT_MATTER_END.search(text, 4)
        if close:
            found = _FRONT_MATTER_TITLE.search(text, 4, close.start())
            if found:
                title = found.group(1).strip("'\"") or None
            position = close.end()

    paragraph: int | None = None  # start of the open paragraph
    paragraph_end = 0
    fence: tuple[str, int, int] | None = None  # fence character, its length, block start

    def flush() -> None:
        nonlocal paragraph
        if paragraph is not None:
            block = _block(text, paragraph, paragraph_end, "paragraph")
            if block:
                blocks.append(block)
            paragraph = None

    while position <= size:
        newline = text.find("\n", position)
        line_end = size if newline == -1 else newline
        line = text[position:line_end]
        if fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence[0] * fence[1]) and not stripped.strip(fence[0]):
                block = _block(text, fence[2], line_end, "code")
                if block:
                    blocks.append(block)
                fence = None
        elif not line.strip():
            flush()
        elif match := _FENCE.match(line):
            flush()
            fence = (match.group(1)[0], len(match.group(1)), position)
        elif match := _ATX.match(line):
            flush()
            content_end = line_end
            closing = _ATX_CLOSE.search(line, match.end())
            if closing:
                content_end = position + closing.start()
            block = _block(text, position + match.end(), content_end, "heading", len(match[1]))
            if block:
                blocks.append(block)
        elif paragraph is not None and (match := _SETEXT.match(line)):
            level = 1 if match.group(1)[0] == "=" else 2
            block = _block(text, paragraph, paragraph_end, "heading", level)
            if block:
                blocks.append(block)
            paragraph = None
        elif _THEMATIC.match(line):
            flush()
        else:
            if paragraph is None:
                paragraph = position
            paragraph_end = line_end
        position = line_end + 1
    flush()
    if fence is not None:  # an unclosed fence runs to the end, as in CommonMark
        block = _block(text, fence[2], size, "code")
        if block:
            blocks.append(block)
    if title is None:
        title = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), None)
    return title, blocks


_DROP = ("script", "style", "noscript", "template", "svg", "iframe", "nav", "aside", "form")
_CHROME = "header, footer, [role=navigation], [role=banner], [role=contentinfo]"
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCK_TAGS = {
    *("address", "article", "blockquote", "body", "caption", "dd", "details", "div", "dl"),
    *("dt", "fieldset", "figcaption", "figure", "hr", "li", "main", "ol", "p", "section"),
    *("summary", "table", "tbody", "thead", "tfoot", "tr", "ul"),
}


#: Elements with no content (never on the stack of open elements).
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
    | {"track", "wbr", "param", "keygen", "basefont", "bgsound", "frame", "image"}
)
#: Elements whose end tag may be left out: a parser closes them when the next one starts, so an
#: unclosed run of them (``<p>a<p>b``, ``<li>``) is not nesting.
_IMPLIED_END = frozenset(
    {"p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "tbody", "thead"}
    | {"tfoot", "colgroup", "caption", "rb", "rt", "rp", "rtc", "html", "head", "body"}
)
#: Elements whose content is text up to their own end tag.
_RAW_TEXT = frozenset(
    {"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"}
)
_TAG_NAME = re.compile(r"<(/?)([A-Za-z][^\s/>]*)")


def nesting_depth(markup: str, limit: int) -> int:
    """How deep elements nest in ``markup``, counted up to just past ``limit``, in one pass.

    HTML parsers do work proportional to the depth of the open elements for each tag they
    read (the HTML standard's scope checks), so a page that nests 100k ``<div>`` takes
    minutes; checking the depth first keeps loading linear. Void elements and those whose
    end tag is implied (``<p>``, ``<li>``, ``<td>``...) do not count; comments and the text of
    scripts and styles are skipped.

    >>> nesting_depth("<div><p>a<p>b<br><div>c</div></div>", 100)
    2
    >>> nesting_depth("<div>" * 50, 10)
    11
    """
    depth = peak = 0
    position, size = 0, len(markup)
    while position < size:
        start = markup.find("<", position)
        if start == -1:
            break
        if markup.startswith("<!--", start):
            end = markup.find("-->", start + 4)
            if end == -1:
                break
            position = end + 3
            continue
        match = _TAG_NAME.match(markup, start)
        end = markup.find(">", start + 1)
        if end == -1:
            break
        position = end + 1
        if match is None:
            continue
        closing, name = match.group(1) == "/", match.group(2).lower()
        if name in _VOID or name in _IMPLIED_END:
            continue
        if closing:
            depth = max(0, depth - 1)
            continue
        if markup[end - 1] == "/":  # <x/>: self-closing in foreign content (svg, math)
            continue
        depth += 1
        if depth > peak:
            peak = depth
            if peak > limit:
                return peak
        if name in _RAW_TEXT:
            close = _find_close(markup, name, position)
            if close == -1:
                break
            position = close
    return peak


def _find_close(markup: str, name: str, position: int) -> int:
    """Where the end tag of a raw-text element starts (any letter case), or -1."""
    pattern = re.compile(rf"</{re.escape(name)}\b", re.IGNORECASE)
    found = pattern.search(markup, position)
    return found.start() if found else -1


def html_blocks(markup: str) -> tuple[str | None, str, list[Block]]:
    """Title, main text and blocks of an HTML page, boilerplate dropped.

    Scripts, styles, navigation, asides and forms go; so do headers and footers that are page
    chrome (outside ``<main>``/``<article>``). The text comes from ``<main>`` if there is one,
    else from a single ``<article>``, else from ``<body>``. h1-h6 become headings, ``<pre>``
    code, table rows one paragraph with cells joined by `` | ``.

    >>> title, text, blocks = html_blocks(
    ...     "<title>T</title><nav>Home</nav><h1>Hi</h1><p>A <b>b</b>.</p><footer>(c)</footer>")
    >>> title, text
    ('T', 'Hi\\n\\nA b.')
    """
    try:
        from selectolax.lexbor import LexborHTMLParser, LexborNode
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("selectolax", "retrieval") from error

    tree = LexborHTMLParser(markup)
    title_node = tree.css_first("title")
    title = _WHITESPACE.sub(" ", title_node.text()).strip() if title_node else ""
    if not title:
        meta = tree.css_first('meta[property="og:title"]')
        title = (meta.attributes.get("content") or "").strip() if meta else ""

    tree.strip_tags(list(_DROP))
    chrome = tree.css(_CHROME)
    chrome_ids = {node.mem_id for node in chrome}
    for node in chrome:
        ancestor, keep = node.parent, False
        while ancestor is not None and ancestor.is_element_node:
            if ancestor.tag in ("main", "article") or ancestor.mem_id in chrome_ids:
                keep = True  # inside content, or inside chrome that is removed with it
                break
            ancestor = ancestor.parent
        if not keep:
            node.decompose()

    articles = tree.css("article")
    root = tree.css_first("main") or (articles[0] if len(articles) == 1 else None)
    root = root or tree.body or tree.root
    builder = BlockBuilder()
    buffer: list[str] = []

    def flush() -> None:
        builder.add("paragraph", clean_inline("".join(buffer)))
        buffer.clear()

    stack: list[tuple[LexborNode, bool]] = [(root, False)] if root is not None else []
    while stack:
        node, closing = stack.pop()
        tag = node.tag
        if closing:
            flush()
        elif tag == "-text":
            buffer.append(_WHITESPACE.sub(" ", node.text_content or ""))
        elif not node.is_element_node:
            continue
        elif tag in _HEADINGS:
            flush()
            text = _WHITESPACE.sub(" ", node.text(deep=True, separator=""))
            builder.add("heading", clean_inline(text), level=int(tag[1]))
        elif tag == "pre":
            flush()
            builder.add("code", node.text(deep=True, separator=""))
        elif tag == "br":
            buffer.append("\n")
        else:
            if tag in ("td", "th") and buffer and buffer[-1].strip():
                buffer.append(" | ")
            if tag in _BLOCK_TAGS:
                flush()
                stack.append((node, True))
            children = list(node.iter(include_text=True))
            stack.extend((child, False) for child in reversed(children))
    flush()
    text, blocks = builder.build()
    if not title:
        title = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), "")
    return title or None, text, blocks
