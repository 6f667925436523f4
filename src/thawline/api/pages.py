"""Server-rendered pages: one Jinja2 environment over ``resources/web`` (autoescaped), and the helper
that renders a template in a language."""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from thawline.i18n import t

environment = Environment(
    loader=PackageLoader("thawline", "resources/web"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def page(name: str, lang: str, http_status: int = 200, **values: Any) -> HTMLResponse:
    """Render template ``name`` with ``t`` bound to ``lang``."""
    html = environment.get_template(name).render(lang=lang, t=lambda key, **kw: t(key, lang, **kw), **values)
    return HTMLResponse(html, status_code=http_status)
