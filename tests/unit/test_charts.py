"""Pure SVG charts: accessible, escaped, and renderable under a CSP without inline styles."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from thawline.domain.charts import MAX_POINTS, Bar, Series, bar_chart, line_chart

SVG = "{http://www.w3.org/2000/svg}"


def test_a_bar_chart_names_itself_and_labels_every_bar() -> None:
    svg = bar_chart("Freezes by cause", "Freezes", [Bar("high frequency", 30), Bar("KYC", 10, "10 (25 %)")])
    root = ET.fromstring(svg)
    assert root.get("role") == "img"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None
    assert desc is not None
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    rects = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert [r.find(f"{SVG}title").text for r in rects] == ["high frequency: 30", "KYC: 10 (25 %)"]  # type: ignore[union-attr]
    widths = [float(r.get("width", "0")) for r in rects]
    assert widths[0] == 3 * widths[1]
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "high frequency" in texts
    assert "10 (25 %)" in texts


def test_text_is_escaped_and_no_inline_style_is_used() -> None:
    svg = bar_chart("<script>", "a & b", [Bar('rule "x" <y>', 1)])
    ET.fromstring(svg)  # well-formed
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "style=" not in svg


def test_a_line_chart_has_a_point_with_a_tooltip_per_day_and_a_legend() -> None:
    svg = line_chart(
        "Per day", "d", ["01-01", "01-02", "01-03"], [Series("aml", [1, 0, 2]), Series("kyc", [0, 0, 1])]
    )
    root = ET.fromstring(svg)
    tips = [c.find(f"{SVG}title").text for c in root.iter(f"{SVG}circle")]  # type: ignore[union-attr]
    assert tips == [
        "aml · 01-01: 1",
        "aml · 01-02: 0",
        "aml · 01-03: 2",
        "kyc · 01-01: 0",
        "kyc · 01-02: 0",
        "kyc · 01-03: 1",
    ]
    assert len(list(root.iter(f"{SVG}polyline"))) == 2


def test_long_lines_drop_their_point_markers_but_keep_a_tooltip() -> None:
    days = [f"d{i}" for i in range(MAX_POINTS + 1)]
    svg = line_chart("Per day", "d", days, [Series("aml", [1] * len(days))])
    assert "<circle" not in svg
    assert re.search(r"<polyline[^>]*><title>aml: 121</title>", svg)


def test_empty_charts_say_so() -> None:
    assert "no data" in bar_chart("t", "d", [], empty="no data")
    assert "没有数据" in line_chart("t", "d", [], [], empty="没有数据")
