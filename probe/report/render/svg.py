"""Hand-made inline SVG charts: daily availability against the objective, daily latency.

No JavaScript, fonts or images: the charts must draw from an email attachment on a hospital
network with no internet. Colours come from the Okabe-Ito palette (safe for colour-blind
readers) and every series also differs in line style or marker shape, so a black-and-white
printout still reads. A day without data is a gap with a grey band, never a point at 100 %.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape
from typing import Final

from probe.report.render import formats
from probe.report.render.i18n import Lang, label
from probe.report.render.view import Day

WIDTH: Final = 720
HEIGHT: Final = 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 14, 34, 30  # room for tick labels, legend and day numbers
_NICE: Final = (1.0, 2.0, 2.5, 5.0)
BLUE, ORANGE, PURPLE, RED, GREY = "#0b5394", "#c26b00", "#8e3b8e", "#c0392b", "#9aa3ad"


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
    values = [daily[d].availability if d in daily else None for d in days]
    known = [v for v in values if v is not None]
    lowest = min([*known, *([objective] if objective is not None else [])], default=0.99)
    step = nice_step(1.0 - lowest)
    low = max(0.0, math.floor(lowest / step - 0.25) * step)
    plot = _Plot(days=len(days), low=low, high=1.0)
    decimals = _decimals(step * 100)
    parts = _frame(plot, days, step, lambda v: formats.percent(v, lang, decimals=decimals))
    parts += _gaps(plot, values, lang)
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
        if objective is not None and value < objective:
            parts.append(_diamond(plot.x(index), plot.y(value), RED))
        else:
            parts.append(f'<circle cx="{plot.x(index)}" cy="{plot.y(value)}" r="3" fill="{BLUE}"/>')
    legend = [(label("availability", lang), _swatch_line(BLUE, ""))]
    if objective is not None:
        if any(v < objective for v in known):
            legend.append((label("below", lang), _diamond(0, 0, RED)))
        text = f"{label('objective_line', lang)} {formats.percent(objective, lang, trim=True)}"
        legend.append((text, _swatch_line(RED, "6 4")))
    if None in values:
        legend.append((label("gap", lang), _swatch_gap()))
    parts += _legend(legend)
    desc = label("chart_availability_desc", lang, name=name)
    return _svg(label("daily_availability", lang), desc, parts)


def latency_chart(days: Sequence[date], daily: dict[date, Day], *, lang: Lang, name: str) -> str:
    """Daily p50, p95 and p99 latency in seconds, from zero up."""
    lats = [daily[d].latency if d in daily else None for d in days]
    highest = max((lat.p99 for lat in lats if lat is not None), default=1.0)
    step = nice_step(highest)
    # A little headroom, so the highest point is not drawn on the chart's top edge.
    plot = _Plot(days=len(days), low=0.0, high=step * math.ceil(highest * 1.04 / step) or step)
    parts = _frame(plot, days, step, lambda v: formats.number(v, lang, decimals=_decimals(step)))
    parts += _gaps(plot, [None if lat is None else 0.0 for lat in lats], lang)
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
    if None in lats:
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


def _gaps(plot: _Plot, values: Sequence[float | None], lang: Lang) -> list[str]:
    """A hatched grey band over each day without data, so it reads as missing, not good."""
    parts = []
    height = HEIGHT - _TOP - _BOTTOM
    for index, value in enumerate(values):
        if value is None:
            x = round(plot.x(index) - plot.slot / 2, 1)
            parts.append(
                f'<rect x="{x}" y="{_TOP}" width="{round(plot.slot, 1)}" height="{height}" '
                f'class="gap"><title>{escape(label("gap", lang))}</title></rect>'
            )
    return parts


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


def _diamond(x: float, y: float, colour: str) -> str:
    return f'<path d="M{x} {y - 4.5}L{x + 4.5} {y}L{x} {y + 4.5}L{x - 4.5} {y}Z" fill="{colour}"/>'


def _swatch_line(colour: str, dash: str) -> str:
    dashing = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<line x1="-9" x2="9" y1="0" y2="0" stroke="{colour}" stroke-width="2"{dashing}/>'


def _swatch_gap() -> str:
    return '<rect x="-6" y="-6" width="12" height="12" class="gap"/>'


def _legend(items: list[tuple[str, str]]) -> list[str]:
    """Legend entries in a row above the plot, each a small symbol and its text."""
    parts, x = [], float(_LEFT + 10)
    for text, symbol in items:
        parts.append(
            f'<g transform="translate({x} 14)">{symbol}<text x="14" y="4">{escape(text)}</text></g>'
        )
        # DejaVu Sans / Segoe UI at 11 px average about 6.5 px per character.
        x += 36 + 6.5 * len(text)
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
