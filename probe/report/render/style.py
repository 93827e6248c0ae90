"""The HTML report's stylesheet, inlined into the page so it needs no file beside it.

Fonts are system fonts only (Segoe UI on the Windows desktops of a hospital, DejaVu on
Linux): an external font would be a request to the internet. Print rules target A4 and
keep colours, since green and red carry meaning (always next to a symbol and a word).
"""

from __future__ import annotations

from typing import Final

CSS: Final = """
:root {
  --ink: #1d2733; --muted: #5b6673; --line: #d8dee6; --soft: #f4f6f9;
  --ok: #17663a; --ok-bg: #e3f4e8; --bad: #a9231b; --bad-bg: #fbe7e5;
  --none: #4f5b67; --none-bg: #e9edf1; --warn: #8a5a00; --warn-bg: #fdf3dc; --accent: #0b5394;
}
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body {
  margin: 0; background: #e9edf2; color: var(--ink);
  font: 14px/1.45 "Segoe UI", "Helvetica Neue", Arial, "DejaVu Sans", sans-serif;
}
.page { max-width: 1000px; margin: 24px auto; background: #fff; padding: 36px 44px;
  box-shadow: 0 1px 4px rgba(0, 0, 0, .12); }
header.report { border-bottom: 3px solid var(--accent); padding-bottom: 14px; margin-bottom: 20px; }
header.report .kicker { margin: 0; color: var(--accent); font-weight: 600; letter-spacing: .06em;
  text-transform: uppercase; font-size: 12px; }
h1 { margin: 4px 0 6px; font-size: 26px; line-height: 1.2; }
h2 { font-size: 19px; margin: 0; }
h3 { font-size: 15px; margin: 18px 0 6px; break-after: avoid; page-break-after: avoid; }
.meta { margin: 0; color: var(--muted); font-size: 13px; }
.tiles { display: flex; gap: 12px; margin: 0 0 16px; }
.tile { flex: 1; border-radius: 6px; padding: 10px 14px; border: 1px solid var(--line); }
.tile b { display: block; font-size: 24px; line-height: 1.1; }
.tile.met { background: var(--ok-bg); color: var(--ok); border-color: #b7dfc3; }
.tile.missed { background: var(--bad-bg); color: var(--bad); border-color: #f0c2bd; }
.tile.none { background: var(--none-bg); color: var(--none); }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
thead th { background: var(--soft); color: var(--muted); font-weight: 600; font-size: 12px;
  border-bottom: 2px solid var(--line); }
table.summary td:first-child { white-space: nowrap; }
table.summary a { color: inherit; text-decoration: none; border-bottom: 1px dotted #8b96a3; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
thead th.num { white-space: normal; }
tr { break-inside: avoid; page-break-inside: avoid; }
.badge { display: inline-block; white-space: nowrap; border-radius: 999px; padding: 2px 10px;
  font-weight: 600; font-size: 12px; }
.badge.met { background: var(--ok-bg); color: var(--ok); }
.badge.missed { background: var(--bad-bg); color: var(--bad); }
.badge.none { background: var(--none-bg); color: var(--none); }
.badge.partial { background: var(--warn-bg); color: var(--warn); }
.banner.partial { margin: 0 0 16px; padding: 10px 14px; border-radius: 6px; font-weight: 600;
  background: var(--warn-bg); color: var(--warn); border-left: 4px solid var(--warn); }
.partial-note { margin: 0 0 10px; color: var(--warn); font-size: 13px; }
.mark.partial { display: block; color: var(--warn); font-size: 12px; }
.note { margin: 6px 0 0; font-size: 12px; color: var(--muted); }
.better { color: var(--ok); } .worse { color: var(--bad); } .same { color: var(--muted); }
.muted { color: var(--muted); }
section.flow { margin-top: 28px; padding-top: 18px; border-top: 1px solid var(--line);
  break-inside: avoid; page-break-inside: avoid; }
.flow-head { display: flex; align-items: center; justify-content: space-between; gap: 12px;
  margin-bottom: 12px; }
.flow-head + .partial-note { margin-top: -6px; }
.figures { display: grid; grid-template-columns: repeat(5, minmax(0, 1fr)); gap: 8px; margin: 0; }
.figures div { background: var(--soft); border-radius: 6px; padding: 8px 10px; }
.figures dt { color: var(--muted); font-size: 12px; }
.figures dd { margin: 0; font-size: 18px; font-weight: 600; white-space: nowrap;
  font-variant-numeric: tabular-nums; }
.figures dd small { display: block; font-size: 12px; font-weight: 400; color: var(--muted);
  white-space: normal; }
.figures dd small.better { color: var(--ok); } .figures dd small.worse { color: var(--bad); }
.outcomes { margin: 10px 0 0; font-size: 13px; color: var(--muted); }
figure { margin: 14px 0 0; break-inside: avoid; page-break-inside: avoid; }
figcaption { font-weight: 600; font-size: 13px; margin-bottom: 2px; }
svg.chart { display: block; width: 100%; height: auto; }
svg.chart text { font-size: 11px; fill: #4a5563; }
svg.chart .grid { stroke: #e3e8ee; stroke-width: 1; }
svg.chart .axis { stroke: #9aa3ad; stroke-width: 1; }
svg.chart .gap { fill: #eef0f3; stroke: #c9cfd6; stroke-dasharray: 3 3; }
svg.chart .unmeasured rect { fill: #f4f5f7; stroke: #9aa3ad; }
.nodata { background: var(--none-bg); border-radius: 6px; padding: 12px 14px; margin: 0; }
.outcomes .item { white-space: nowrap; }
aside.definitions { margin-top: 14px; font-size: 12px; color: var(--muted);
  break-inside: avoid; page-break-inside: avoid; }
aside.definitions ul { margin: 4px 0 0; padding-left: 18px; }
section.written { margin-top: 22px; }
article.notice { margin-top: 14px; padding: 10px 14px; border-left: 4px solid var(--accent);
  background: var(--soft); border-radius: 0 6px 6px 0; break-inside: avoid;
  page-break-inside: avoid; }
article.notice h3 { margin: 0 0 4px; }
article.notice .outcomes { margin: 0 0 6px; }
ol.timeline { margin: 0; padding-left: 20px; }
ol.timeline li { margin: 6px 0 0; }
ol.timeline .when { margin: 0; font-size: 13px; }
ol.timeline .body p { margin: 2px 0; }
ol.timeline .body a, small.explained a { color: var(--accent); text-decoration: underline; }
small.explained { display: block; font-size: 12px; color: var(--muted); }
@page { size: A4; margin: 15mm; }
@media print {
  body { background: #fff; font-size: 12px; }
  .page { max-width: none; margin: 0; padding: 0; box-shadow: none; }
  section.flow { margin-top: 16px; }
}
"""
