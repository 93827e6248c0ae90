"""An Atom 1.0 document (RFC 4287) from plain values, built with `xml.etree.ElementTree`.

    >>> entry = Entry(id="tag:drift.example.org,2026-10-03:notice/17", title="Labka & EPM3",
    ...               updated=now, published=now, link="https://drift.example.org/#notice-17",
    ...               content_html="<p>We are <strong>on it</strong>.</p>")
    >>> xml = atom_document(Head(id=..., title="Status", self_url=..., alternate_url=...,
    ...                          updated=now, lang="en"), [entry])

Every text is set as element text or an attribute value, so ElementTree escapes it: a
title with ``<script>`` or ``&`` reads back as those characters. ``content_html`` is HTML
sent as ``type="html"``: escaped once into the XML, a feed reader unescapes it and shows
the HTML (which must already be safe: `probe.markdown.render`). Characters that XML 1.0
cannot hold at all (most C0 controls) are dropped, so an odd byte in a title cannot make
the whole feed unreadable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from xml.etree import ElementTree as ET

ATOM_NS: Final = "http://www.w3.org/2005/Atom"
_XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"
MEDIA_TYPE: Final = "application/atom+xml; charset=utf-8"
# XML 1.0 "Char": tab, LF, CR and everything from U+0020 except surrogates, FFFE and FFFF.
_NOT_XML: Final = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class Head:
    """The feed's own elements: a permanent id, a title, its own URL and the page it is for."""

    id: str
    title: str
    self_url: str
    alternate_url: str
    updated: datetime
    lang: str
    author: str = "dataflow-probe"
    subtitle: str = ""


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry: a permanent id, a text title, times, a link, and safe HTML content."""

    id: str
    title: str
    updated: datetime
    published: datetime
    link: str
    content_html: str
    summary: str = ""
    categories: tuple[tuple[str, str], ...] = ()  # (term, label)


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot carry."""
    return _NOT_XML.sub("", text)


def rfc3339(moment: datetime) -> str:
    """An aware time as RFC 3339 in UTC, to the second: ``2026-10-03T12:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def atom_document(head: Head, entries: Sequence[Entry]) -> bytes:
    """The feed as UTF-8 XML with its declaration, entries in the order given."""
    # Unprefixed names in the Atom namespace, declared once on the root (ElementTree's
    # default_namespace option refuses the unqualified attributes Atom uses: rel, href).
    feed = ET.Element("feed", {"xmlns": ATOM_NS, _XML_LANG: head.lang})
    _text(feed, "id", head.id)
    _text(feed, "title", head.title)
    if head.subtitle:
        _text(feed, "subtitle", head.subtitle)
    _text(feed, "updated", rfc3339(head.updated))
    author = ET.SubElement(feed, "author")
    _text(author, "name", head.author)
    _link(feed, head.self_url, rel="self", kind="application/atom+xml")
    _link(feed, head.alternate_url, rel="alternate", kind="text/html")
    _text(feed, "generator", "dataflow-probe")
    for entry in entries:
        _entry(feed, entry)
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body


def _entry(feed: ET.Element, entry: Entry) -> None:
    element = ET.SubElement(feed, "entry")
    _text(element, "id", entry.id)
    _text(element, "title", entry.title, kind="text")
    _text(element, "updated", rfc3339(entry.updated))
    _text(element, "published", rfc3339(entry.published))
    _link(element, entry.link, rel="alternate", kind="text/html")
    for term, label in entry.categories:
        ET.SubElement(element, "category", {"term": xml_text(term), "label": xml_text(label)})
    if entry.summary:
        _text(element, "summary", entry.summary, kind="text")
    _text(element, "content", entry.content_html, kind="html")


def _text(parent: ET.Element, name: str, text: str, *, kind: str | None = None) -> None:
    element = ET.SubElement(parent, name, {} if kind is None else {"type": kind})
    element.text = xml_text(text)


def _link(parent: ET.Element, href: str, *, rel: str, kind: str) -> None:
    ET.SubElement(parent, "link", {"rel": rel, "type": kind, "href": xml_text(href)})
