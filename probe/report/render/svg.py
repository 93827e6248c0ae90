"""Hand-made inline SVG charts: daily availability against the objective, daily latency.

No JavaScript, fonts or images: the charts must draw from an email attachment on a hospital
network with no internet. Colours come from the Okabe-Ito palette (safe for colour-blind
readers) and every series also differs in line style or marker shape, so a black-and-white
printout still reads. A day without data is a gap with a grey band, never a point at 100 %;
a day that was not measured at all (coverage 0, no probes) is a hatched band of its own,
never a point at 0 %; a day measured only in part has a hollow marker.

Styling is in presentation attributes as well as classes, so a chart copied out of the page
still draws the same; ``url(...)`` paint (an SVG pattern) is avoided, since the page names
no URL at all, so the hatching is drawn line by line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape
from typing import Final

from probe.report.models import Day
from probe.report.render import formats
from probe.report.render.i18n import Lang, label

WIDTH: Final = 720
HEIGHT: Final = 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 14, 34, 30  # room for tick labels, legend and day numbers
_NICE: Final = (1.0, 2.0, 2.5, 5.0)
BLUE, ORANGE, PURPLE, RED, GREY = "#0b5394", "#c26b00", "#8e3b8e", "#c0392b", "#9aa3ad"
_HATCH: Final = 6  # px between the hatching's lines


@dataclass(frozen=True, slots=True)
class _Plot:
    """Maps day indexes and values onto the drawing area of one chart."""

    days: int
    low: float
    high: float

    def x(self, index: float) -> float:
        return round(_LEFT + self.slot * (index + 0.5), 1)

    def y(self, value: float) -> float:
        share = (value - self.low) / (self.high - self.low)
        return round(HEIGHT - _BOTTOM - share * (HEIGHT - _TOP - _BOTTOM), 1)

    @property
    def slot(self) -> float:
        return (WIDTH - _LEFT - _RIGHT) / self.days


def nice_step(span: float, ticks: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) that cuts `span` in ~`ticks`."""
    raw = max(span, 1e-9) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next((n * power for n in _NICE if n * power >= raw), 10 * power)


def availability_chart(
    days: Sequence[date], daily: dict[date, Day], *, objective: float | None, lang: Lang, name: str
) -> str:
    """Daily availability as a line with markers, the objective as a dashed line.

    The y axis is zoomed to the values (from a round number up to 100 %) because the
    interesting range is a fraction of a percent; the axis labels say where it starts.
    """
    unmeasured = _not_measured(days, daily)
    values = [
        None if gone or d not in daily else daily[d].availability
        for d, gone in zip(days, unmeasured, strict=True)
    ]
    partly = [d in daily and daily[d].partly_measured for d in days]
    known = [v for v in values if v is not None]
    lowest = min([*known, *([objective] if objective is not None else [])], default=0.99)
    step = nice_step(1.0 - lowest)
    low = max(0.0, math.floor(lowest / step - 0.25) * step)
    plot = _Plot(days=len(days), low=low, high=1.0)
    decimals = _decimals(step * 100)
    parts = _frame(plot, days, step, lambda v: formats.percent(v, lang, decimals=decimals))
    parts += _gaps(plot, values, unmeasured, lang)
    parts += _unmeasured(plot, unmeasured, lang)
    if objective is not None:
        y = plot.y(objective)
        parts.append(
            f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y}" y2="{y}" stroke="{RED}" '
            'stroke-width="1.5" stroke-dasharray="6 4"/>'
        )
    parts += _series(plot, values, colour=BLUE, dash="")
    for index, value in enumerate(values):
        if value is None:
            continue
        x, y, hollow = plot.x(index), plot.y(value), partly[index]
        note = _partly_note(daily[days[index]], lang) if hollow else ""
        if objective is not None and value < objective:
            parts.append(_diamond(x, y, RED, hollow=hollow, note=note))
        else:
            parts.append(_circle(x, y, BLUE, hollow=hollow, note=note))
    parts += _legend(_availability_legend(values, partly, unmeasured, objective, lang))
    desc = label("chart_availability_desc", lang, name=name)
    return _svg(label("daily_availability", lang), desc, parts)


def _availability_legend(
    values: Sequence[float | None],
    partly: Sequence[bool],
    unmeasured: Sequence[bool],
    objective: float | None,
    lang: Lang,
) -> list[tuple[str, str]]:
    """The availability chart's legend: only the symbols the chart draws."""
    legend = [(label("availability", lang), _swatch_line(BLUE, ""))]
    if objective is not None:
        if any(v is not None and v < objective for v in values):
            legend.append((label("below", lang), _diamond(0, 0, RED)))
        text = f"{label('objective_line', lang)} {formats.percent(objective, lang, trim=True)}"
        legend.append((text, _swatch_line(RED, "6 4")))
    if any(p and v is not None for p, v in zip(partly, values, strict=True)):
        legend.append((label("partly_measured", lang), _circle(0, 0, BLUE, hollow=True)))
    if any(unmeasured):
        legend.append((label("not_measured", lang), _swatch_unmeasured()))
    if any(v is None and not u for v, u in zip(values, unmeasured, strict=True)):
        legend.append((label("gap", lang), _swatch_gap()))
    return legend


def latency_chart(days: Sequence[date], daily: dict[date, Day], *, lang: Lang, name: str) -> str:
    """Daily p50, p95 and p99 latency in seconds, from zero up."""
    unmeasured = _not_measured(days, daily)
    lats = [
        None if gone or d not in daily else daily[d].latency_seconds
        for d, gone in zip(days, unmeasured, strict=True)
    ]
    highest = max((lat.p99 for lat in lats if lat is not None), default=1.0)
    step = nice_step(highest)
    # A little headroom, so the highest point is not drawn on the chart's top edge.
    plot = _Plot(days=len(days), low=0.0, high=step * math.ceil(highest * 1.04 / step) or step)
    parts = _frame(plot, days, step, lambda v: formats.number(v, lang, decimals=_decimals(step)))
    parts += _gaps(plot, [None if lat is None else 0.0 for lat in lats], unmeasured, lang)
    parts += _unmeasured(plot, unmeasured, lang)
    styles = (("p50", BLUE, ""), ("p95", ORANGE, "7 4"), ("p99", PURPLE, "2 3"))
    legend: list[tuple[str, str]] = []
    for key, colour, dash in styles:
        values = [None if lat is None else float(getattr(lat, key)) for lat in lats]
        parts += _series(plot, values, colour=colour, dash=dash)
        parts += [
            f'<circle cx="{plot.x(i)}" cy="{plot.y(v)}" r="2" fill="{colour}"/>'
            for i, v in enumerate(values)
            if v is not None
        ]
        legend.append((key, _swatch_line(colour, dash)))
    if any(unmeasured):
        legend.append((label("not_measured", lang), _swatch_unmeasured()))
    if any(lat is None and not u for lat, u in zip(lats, unmeasured, strict=True)):
        legend.append((label("gap", lang), _swatch_gap()))
    parts += _legend(legend)
    desc = label("chart_latency_desc", lang, name=name)
    return _svg(label("daily_latency", lang), desc, parts)


def _frame(
    plot: _Plot, days: Sequence[date], step: float, tick: Callable[[float], str]
) -> list[str]:
    """Horizontal grid lines with value labels, and the day numbers along the bottom."""
    parts = []
    count = round((plot.high - plot.low) / step)
    for i in range(count + 1):
        # Rounded, so float error cannot turn the top tick into 99.9999...% instead of 100%.
        value = round(plot.low + i * step, 9)
        y = plot.y(value)
        parts.append(
            f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y}" y2="{y}" class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4}" text-anchor="end">{escape(tick(value))}</text>'
        )
    baseline = HEIGHT - _BOTTOM
    parts.append(
        f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{baseline}" y2="{baseline}" class="axis"/>'
    )
    for index, day in enumerate(days):
        parts.append(
            f'<text x="{plot.x(index)}" y="{baseline + 16}" text-anchor="middle">{day.day}</text>'
        )
    return parts


def _not_measured(days: Sequence[date], daily: dict[date, Day]) -> list[bool]:
    """For each day, whether nothing was measured (a day missing from the report is unknown)."""
    return [d in daily and daily[d].not_measured for d in days]


def _partly_note(day: Day, lang: Lang) -> str:
    """``Partly measured: 95.83%``, the tooltip of a day measured only in part."""
    share = "" if day.coverage is None else f": {formats.percent(day.coverage, lang)}"
    return f"{label('partly_measured', lang)}{share}"


def _gaps(
    plot: _Plot, values: Sequence[float | None], unmeasured: Sequence[bool], lang: Lang
) -> list[str]:
    """A plain grey band over each day without data, so it reads as missing, not good."""
    parts = []
    height = HEIGHT - _TOP - _BOTTOM
    for index, value in enumerate(values):
        if value is None and not unmeasured[index]:
            x = round(plot.x(index) - plot.slot / 2, 1)
            parts.append(
                f'<rect x="{x}" y="{_TOP}" width="{round(plot.slot, 1)}" height="{height}" '
                f'class="gap"><title>{escape(label("gap", lang))}</title></rect>'
            )
    return parts


def _unmeasured(plot: _Plot, unmeasured: Sequence[bool], lang: Lang) -> list[str]:
    """A hatched band over each day not measured: neither good nor bad, and never 0 %."""
    parts = []
    title = escape(label("not_measured", lang))
    for index, gone in enumerate(unmeasured):
        if gone:
            x = round(plot.x(index) - plot.slot / 2, 1)
            band = _hatched(x, _TOP, round(plot.slot, 1), HEIGHT - _TOP - _BOTTOM)
            parts.append(f'<g class="unmeasured"><title>{title}</title>{band}</g>')
    return parts


def _hatched(x: float, y: float, width: float, height: float) -> str:
    """A light rectangle crossed by diagonal lines, each clipped to the rectangle by hand."""
    lines = []
    # Lines x + y = c, from the top-left corner to the bottom-right one.
    c = x + y + _HATCH
    while c < x + width + y + height:
        x1, x2 = max(x, c - (y + height)), min(x + width, c - y)
        lines.append(
            f'<line x1="{round(x1, 1)}" y1="{round(c - x1, 1)}" '
            f'x2="{round(x2, 1)}" y2="{round(c - x2, 1)}"/>'
        )
        c += _HATCH
    return (
        f'<rect x="{x}" y="{y}" width="{width}" height="{height}" fill="#f4f5f7" '
        f'stroke="{GREY}" stroke-width="1"/>'
        f'<g stroke="{GREY}" stroke-width="1">{"".join(lines)}</g>'
    )


def _series(plot: _Plot, values: Sequence[float | None], *, colour: str, dash: str) -> list[str]:
    """One polyline per run of days with data: a missing day breaks the line."""
    runs: list[list[str]] = [[]]
    for index, value in enumerate(values):
        if value is None:
            runs.append([])
        else:
            runs[-1].append(f"{plot.x(index)},{plot.y(value)}")
    dashing = f' stroke-dasharray="{dash}"' if dash else ""
    return [
        f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" '
        f'stroke-width="2" stroke-linejoin="round"{dashing}/>'
        for run in runs
        if len(run) > 1
    ]


def _paint(colour: str, *, hollow: bool) -> str:
    """Filled, or hollow (white with a coloured ring) for a day measured only in part."""
    if hollow:
        return f'fill="#fff" stroke="{colour}" stroke-width="1.5" class="partly"'
    return f'fill="{colour}"'


def _marker(tag: str, attributes: str, note: str) -> str:
    """An element, with a tooltip when there is a `note`."""
    if not note:
        return f"<{tag} {attributes}/>"
    return f"<{tag} {attributes}><title>{escape(note)}</title></{tag}>"


def _circle(x: float, y: float, colour: str, *, hollow: bool = False, note: str = "") -> str:
    return _marker("circle", f'cx="{x}" cy="{y}" r="3" {_paint(colour, hollow=hollow)}', note)


def _diamond(x: float, y: float, colour: str, *, hollow: bool = False, note: str = "") -> str:
    shape = f"M{x} {y - 4.5}L{x + 4.5} {y}L{x} {y + 4.5}L{x - 4.5} {y}Z"
    return _marker("path", f'd="{shape}" {_paint(colour, hollow=hollow)}', note)


def _swatch_line(colour: str, dash: str) -> str:
    dashing = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<line x1="-9" x2="9" y1="0" y2="0" stroke="{colour}" stroke-width="2"{dashing}/>'


def _swatch_gap() -> str:
    return '<rect x="-6" y="-6" width="12" height="12" class="gap"/>'


def _swatch_unmeasured() -> str:
    return f'<g class="unmeasured">{_hatched(-6, -6, 12, 12)}</g>'


def _legend(items: list[tuple[str, str]]) -> list[str]:
    """Legend entries in a row above the plot, each a small symbol and its text."""
    parts, x, y = [], float(_LEFT + 10), 14
    for text, symbol in items:
        # DejaVu Sans / Segoe UI at 11 px average about 6.5 px per character.
        width = 36 + 6.5 * len(text)
        if x + width > WIDTH and x > _LEFT + 10:
            x, y = float(_LEFT + 10), y + 13  # a second line, still above the plot
        parts.append(
            f'<g transform="translate({x} {y})">{symbol}'
            f'<text x="14" y="4">{escape(text)}</text></g>'
        )
        x += width
    return parts


def _decimals(step: float) -> int:
    """Decimals a tick label needs so that round steps such as 0.25 are shown exactly."""
    return next((d for d in range(6) if abs(round(step, d) - step) < 1e-9), 6)


def _svg(title: str, desc: str, parts: list[str]) -> str:
    return (
        # No xmlns: inline SVG in HTML needs none, and the page must name no URL at all.
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>"
        f"{''.join(parts)}</svg>"
    )
