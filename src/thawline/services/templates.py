"""Notification templates for account holders and staff, in zh-CN and English.

Each template lives in ``resources/templates/<lang>/<name>.j2`` and defines three blocks:
``subject`` (email subject or in-site title), ``body`` (plain-text email body or in-site message)
and ``sms`` (one short line). The blocks are rendered separately with ``StrictUndefined``, so a
missing variable is an error rather than a silently empty string, then normalised: subject and
SMS become one line, the body loses surrounding blank space and runs of blank lines.

Templates never receive names, phone numbers, ID numbers or bank card numbers; callers pass ids,
dates, portal links and text that is already translated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, Template

HOLDER_TEMPLATES: frozenset[str] = frozenset(
    {
        "frozen",
        "restricted",
        "appeal_received",
        "materials_missing",
        "in_review",
        "needs_more_info",
        "approved",
        "rejected",
        "verification_requested",
        "verification_code",
        "released",
        "probation_ended",
        "sla_reminder",
    }
)
STAFF_TEMPLATES: frozenset[str] = frozenset(
    {
        "staff_assigned",
        "staff_sla_warning",
        "staff_sla_breached",
        "staff_four_eyes_waiting",
    }
)
LANGS = ("zh-CN", "en")

_BLANK_RUNS = re.compile(r"\n{3,}")


@dataclass(frozen=True, slots=True)
class Rendered:
    """One rendered notification: a one-line subject, a plain-text body and a one-line SMS."""

    subject: str
    body: str
    sms: str


@cache
def _environment() -> Environment:
    """The shared Jinja environment, built on first use."""
    return Environment(
        loader=PackageLoader("thawline", "resources/templates"),
        undefined=StrictUndefined,
        autoescape=False,  # plain text and SMS, never HTML  # noqa: S701
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _one_line(text: str) -> str:
    """Collapse every whitespace run to one space and strip."""
    return " ".join(text.split())


def _tidy_body(text: str) -> str:
    """Strip the body and collapse three or more newlines into a single blank line."""
    return _BLANK_RUNS.sub("\n\n", text.strip())


def _block(template: Template, block: str, variables: Mapping[str, Any]) -> str:
    """Render one named block of ``template`` with ``variables``."""
    try:
        render_block = template.blocks[block]
    except KeyError:
        raise ValueError(f"template {template.name!r} has no {block!r} block") from None
    return "".join(render_block(template.new_context(dict(variables))))


def render(name: str, lang: str, variables: Mapping[str, Any]) -> Rendered:
    """Render template ``name`` in ``lang`` ("zh-CN" or "en") with ``variables``."""
    if name not in HOLDER_TEMPLATES and name not in STAFF_TEMPLATES:
        raise ValueError(f"unknown notification template: {name!r}")
    if lang not in LANGS:
        raise ValueError(f"unknown notification language: {lang!r} (expected one of {', '.join(LANGS)})")
    template = _environment().get_template(f"{lang}/{name}.j2")
    return Rendered(
        subject=_one_line(_block(template, "subject", variables)),
        body=_tidy_body(_block(template, "body", variables)),
        sms=_one_line(_block(template, "sms", variables)),
    )
