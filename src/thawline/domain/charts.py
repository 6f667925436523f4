"""Dependency-free SVG charts: horizontal bars and lines over days, accessible without script.

Each chart is one ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` (named by
``aria-labelledby``), a text label and value beside every bar, and a ``<title>`` on every bar and
point that browsers show as a tooltip. Colours are presentation attributes, never ``style``, so the
SVG renders under the console's strict Content-Security-Policy (no inline styles, no script).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

# Colour-blind-safe palette (Okabe–Ito), one colour per series.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
MAX_POINTS = 120  # beyond this many x positions, points get no marker of their own
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: its label, its value, and the text shown for the value (e.g. ``33.3 %``)."""

    label: str
    value: float
    shown: str = ""


@dataclass(frozen=True, slots=True)
class Series:
    """One line: its name and one value per x position."""

    name: str
    values: Sequence[float]


def _ids(title: str) -> tuple[str, str]:
    """Stable element ids, so two charts on one page do not collide."""
    key = hashlib.sha256(title.encode()).hexdigest()[:8]
    return f"chart-{key}-title", f"chart-{key}-desc"


def _open(width: int, height: int, title: str, desc: str) -> list[str]:
    tid, did = _ids(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="{tid} {did}">',
        f'<title id="{tid}">{escape(title)}</title>',
        f'<desc id="{did}">{escape(desc)}</desc>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="8" y="18" {FONT} font-weight="bold" fill="#111111">{escape(title)}</text>',
    ]


def _text_width(text: str) -> float:
    """Rough width of ``text`` at 12 px: CJK characters are about twice as wide as Latin ones."""
    return sum(13.0 if ord(ch) >= 0x2E80 else 7.2 for ch in text)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def bar_chart(title: str, desc: str, bars: Sequence[Bar], *, width: int = 640, empty: str = "—") -> str:
    """Horizontal bars, one row per item, label on the left and the value at the bar's end."""
    row, top = 22, 30
    label_w = int(min(240.0, max(80.0, 12 + max((_text_width(b.label) for b in bars), default=0.0))))
    height = top + row * max(len(bars), 1) + 10
    out = _open(width, height, title, desc)
    if not bars:
        out.append(f'<text x="8" y="{top + 14}" {FONT} fill="#555555">{escape(empty)}</text>')
        return "\n".join([*out, "</svg>"])
    peak = max((b.value for b in bars), default=0.0) or 1.0
    span = width - label_w - 90
    for i, b in enumerate(bars):
        y = top + i * row
        w = max(0.0, b.value) / peak * span
        shown = b.shown or _number(b.value)
        out.append(
            f'<text x="{label_w - 6}" y="{y + 15}" {FONT} text-anchor="end" fill="#111111">'
            f"{escape(b.label)}</text>"
        )
        out.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" '
            f'fill="{PALETTE[0]}"><title>{escape(b.label)}: {escape(shown)}</title></rect>'
        )
        out.append(
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" {FONT} fill="#111111">{escape(shown)}</text>'
        )
    return "\n".join([*out, "</svg>"])


def line_chart(
    title: str,
    desc: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    *,
    width: int = 640,
    height: int = 260,
    empty: str = "—",
) -> str:
    """Lines over ordered x positions (days), with a legend, axis labels and a tooltip per point."""
    out = _open(width, height, title, desc)
    if not x_labels or not series:
        out.append(f'<text x="8" y="44" {FONT} fill="#555555">{escape(empty)}</text>')
        return "\n".join([*out, "</svg>"])
    left, right, top, bottom = 48, 12, 30 + 16 * ((len(series) + 2) // 3), 34
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((v for s in series for v in s.values), default=0.0) or 1.0
    step = plot_w / max(len(x_labels) - 1, 1)

    def x_at(i: int) -> float:
        return left + (i * step if len(x_labels) > 1 else plot_w / 2)

    def y_at(v: float) -> float:
        return top + plot_h - v / peak * plot_h

    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#888888"/>'
    )
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#888888"/>')
    out.append(
        f'<text x="{left - 4}" y="{top + 4}" {FONT} text-anchor="end" fill="#111111">{_number(peak)}</text>'
    )
    out.append(f'<text x="{left - 4}" y="{top + plot_h}" {FONT} text-anchor="end" fill="#111111">0</text>')
    every = max(1, len(x_labels) // 6)
    for i, label in enumerate(x_labels):
        last = i == len(x_labels) - 1
        if (i % every == 0 and len(x_labels) - i > every // 2) or last:
            anchor = "end" if last and len(x_labels) > 1 else "middle"
            out.append(
                f'<text x="{x_at(i):.1f}" y="{height - 12}" {FONT} text-anchor="{anchor}" fill="#111111">'
                f"{escape(label)}</text>"
            )
    for n, s in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        lx, ly = 8 + (n % 3) * 200, 30 + 16 * (n // 3)
        out.append(f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{lx + 14}" y="{ly + 9}" {FONT} fill="#111111">{escape(s.name)}</text>')
        points = " ".join(f"{x_at(i):.1f},{y_at(v):.1f}" for i, v in enumerate(s.values))
        out.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2">'
            f"<title>{escape(s.name)}: {_number(sum(s.values))}</title></polyline>"
        )
        if len(x_labels) > MAX_POINTS:
            continue  # too dense to point at; the line's own tooltip gives the total
        for i, v in enumerate(s.values):
            out.append(
                f'<circle cx="{x_at(i):.1f}" cy="{y_at(v):.1f}" r="3" fill="{colour}">'
                f"<title>{escape(s.name)} · {escape(x_labels[i])}: {_number(v)}</title></circle>"
            )
    return "\n".join([*out, "</svg>"])
