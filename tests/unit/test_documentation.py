"""The README documents every setting, every CLI command group and every API key scope."""

from __future__ import annotations

from pathlib import Path

import pytest

from thawline.cli import app
from thawline.config import Settings
from thawline.domain.apikeys import Scope

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_in_the_configuration_table(name: str) -> None:
    assert f"`THAWLINE_{name.upper()}`" in README


@pytest.mark.parametrize("scope", [s.value for s in Scope])
def test_every_scope_is_explained(scope: str) -> None:
    assert f"| `{scope}` |" in README


@pytest.mark.parametrize(
    "command",
    sorted({c.name or "" for c in app.registered_commands} | {g.name or "" for g in app.registered_groups}),
)
def test_every_command_is_in_the_cli_table(command: str) -> None:
    assert f"`thawline {command}" in README
