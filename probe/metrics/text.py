"""The Prometheus text format, written once: label text, help lines and sample values.

    >>> label_text({"flow": "gs-adt", "region": 'hoved"staden'}.items())
    'flow="gs-adt",region="hoved\\\\"staden"'
    >>> header("probe_results_total", "counter", "Results by outcome.")
    '# HELP probe_results_total Results by outcome.\\n# TYPE probe_results_total counter\\n'
    >>> number(1.0), number(float("inf"))
    ('1.0', '+Inf')

The bytes are those prometheus_client's `generate_latest` writes (labels sorted by name,
values escaped), except the spelling of some numbers (``1234567.0`` where it writes
``1.234567e+06``), which parse to the same value; tests/test_metrics.py compares the two.
Label names are never escaped: metric names are ours, and the config only lets through
static label names that need none (``[a-zA-Z_][a-zA-Z0-9_]*``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")

# Pairs or flows per rendered chunk: big enough to be cheap, small enough that no chunk of
# a scrape (about 35 MB at 5,000 flows x 3 destinations) is large.
CHUNK = 500


def escape(value: str) -> str:
    """A label value as the text format writes it: backslash, newline and quote escaped."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def label_text(labels: Iterable[tuple[str, str]]) -> str:
    """``name="value"`` pairs sorted by name and joined by commas, without the braces."""
    return ",".join(f'{name}="{escape(value)}"' for name, value in sorted(labels))


def header(family: str, kind: str, doc: str) -> str:
    """The ``# HELP`` and ``# TYPE`` lines of a family (a counter's name ends in _total)."""
    doc = doc.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {family} {doc}\n# TYPE {family} {kind}\n"


def number(value: float) -> str:
    """A sample value: Python's shortest round-trip text, with the text format's
    spelling of the infinities and NaN."""
    if isinstance(value, int) or math.isfinite(value):
        return repr(value)
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def chunked(items: Sequence[T], size: int = CHUNK) -> list[Sequence[T]]:
    """``items`` in slices of at most ``size``, one rendered chunk each."""
    return [items[i : i + size] for i in range(0, len(items), size)]


class Labelled(Protocol):
    """A series' state: its label text (see `label_text`), and its values as attributes."""

    @property
    def text(self) -> str: ...


def single_family(
    name: str,
    kind: str,
    doc: str,
    attr: str,
    chunks: Iterable[Sequence[Labelled]],
    *,
    rest: str = "",
) -> Iterator[str]:
    """The text of a family with one value per series, ``getattr(series, attr)``, a chunk
    at a time; a series whose value is None is left out. ``rest``: label text written
    after each series' own (the same for all)."""
    family = f"{name}_total" if kind == "counter" else name
    yield header(family, kind, doc)
    for chunk in chunks:
        values = [(s.text, getattr(s, attr)) for s in chunk]
        yield "".join(f"{family}{{{t}{rest}}} {number(v)}\n" for t, v in values if v is not None)
