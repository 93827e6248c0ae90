"""Operators' Markdown (incident and announcement bodies) as safe HTML, and as plain text.

    >>> render("**Down**. <script>alert(1)</script> [more](javascript:x)")
    '<p><strong>Down</strong>. &lt;script&gt;alert(1)&lt;/script&gt; [more](javascript:x)</p>\\n'
    >>> plain("Labka is **down**, see [the log](https://example.org/log).")
    'Labka is down, see the log (https://example.org/log).'

Two layers, each enough on its own: markdown-it-py with the CommonMark preset and raw HTML
off writes any ``<tag>`` in the text as text, and refuses ``javascript:`` links; then nh3
keeps only the tags and attributes of `TAGS` and `ATTRIBUTES`, and links to http, https or
mailto, each with ``rel="noopener noreferrer nofollow"``. Headings move down two levels
(``#`` is ``<h3>``): on the page the notice's title is the heading above its body. Images
are not rendered (a body cannot make a reader's browser fetch anything), so ``![alt](url)``
reads as a link.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

TAGS: Final = frozenset(
    {"p", "br", "strong", "em", "code", "pre", "ul", "ol", "li", "a", "blockquote"}
    | {"h3", "h4", "h5", "h6"}
)
ATTRIBUTES: Final = {"a": {"href"}, "ol": {"start"}}
URL_SCHEMES: Final = frozenset({"http", "https", "mailto"})
LINK_REL: Final = "noopener noreferrer nofollow"
_HEADING_SHIFT = 2


def _shift_headings(state: StateCore) -> None:
    """``#`` to ``<h3>``, and so on down to ``<h6>``."""
    for token in state.tokens:
        if token.type in ("heading_open", "heading_close"):
            level = min(int(token.tag[1]) + _HEADING_SHIFT, 6)
            token.tag = f"h{level}"


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable("image")
    md.core.ruler.push("shift_headings", _shift_headings)
    return md


_MD: Final = _parser()
_CLEANER: Final = nh3.Cleaner(
    tags=set(TAGS),
    attributes={tag: set(names) for tag, names in ATTRIBUTES.items()},
    link_rel=LINK_REL,
    url_schemes=set(URL_SCHEMES),
    url_relative="deny",  # a relative link would point into whatever page shows it
    strip_comments=True,
)


def render(markdown: str) -> str:
    """Markdown as HTML that is safe to put inside a page or an e-mail as it is."""
    return sanitise(_MD.render(markdown))


def sanitise(html: str) -> str:
    """``html`` with only `TAGS`, `ATTRIBUTES` and links to `URL_SCHEMES` left (the second
    layer of `render`, on its own: it is enough for any HTML)."""
    return str(_CLEANER.clean(html))


def plain(markdown: str) -> str:
    """The text of ``markdown`` without markup, for e-mail plain parts and feed summaries.

    Blocks are separated by a blank line (a tight list's items by a line break), list
    items start with ``- `` (or their number), quotes with ``> ``, and a link's URL follows
    its text in brackets. The result is text, not HTML: escape it where HTML is written."""
    out: list[str] = []
    prefix: list[str] = []  # the markers of the lists and quotes we are inside
    numbers: list[int | None] = []
    tight = was_tight = False
    for token in _MD.parse(markdown):
        if token.type in ("bullet_list_open", "ordered_list_open"):
            numbers.append(int(token.attrGet("start") or 1) if token.tag == "ol" else None)
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            numbers.pop()
        elif token.type == "list_item_open":
            prefix.append(_item_marker(numbers))
        elif token.type == "blockquote_open":
            prefix.append("> ")
        elif token.type in ("list_item_close", "blockquote_close"):
            prefix.pop()
        elif token.type == "paragraph_open":
            tight = token.hidden  # a paragraph of a tight list item
        elif token.type in ("inline", "fence", "code_block"):
            text = _inline(token.children or ()) if token.type == "inline" else token.content
            if out:
                out.append("\n" if tight and was_tight else "\n\n")
            out.append(_indent("".join(prefix), text.rstrip("\n")))
            was_tight, tight = tight, False
            # a list item's marker is written once, before its first block
            prefix[:] = [" " * len(p) if p[0] in "-0123456789" else p for p in prefix]
    return "".join(out)


def _item_marker(numbers: list[int | None]) -> str:
    number = numbers[-1] if numbers else None
    if number is None:
        return "- "
    numbers[-1] = number + 1
    return f"{number}. "


def _indent(prefix: str, text: str) -> str:
    rest = "".join(" " if c in "-.0123456789" else c for c in prefix)
    lines = text.split("\n")
    return "\n".join([prefix + lines[0], *(rest + line for line in lines[1:])])


def _inline(children: Iterable[Token]) -> str:
    parts: list[str] = []
    href: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):  # the author's lines are kept
            parts.append("\n")
        elif child.type == "link_open":
            href.append(str(child.attrGet("href") or ""))
        elif child.type == "link_close":
            url = href.pop()
            text = parts[-1] if parts else ""
            if url and url != text and url.removeprefix("mailto:") != text:
                parts.append(f" ({url})")
    return "".join(parts)
