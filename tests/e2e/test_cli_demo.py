"""``thawline demo`` (what ``make run`` does first): an empty database gets a working demo world, once."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_cli import thawline


def test_demo_loads_once_and_its_key_works(tmp_path: Path) -> None:
    first = thawline(tmp_path, "demo", "--accounts", "40", "--days", "3")
    assert "demo: 40 accounts" in first.stderr
    key = next(line.split()[-1] for line in first.stderr.splitlines() if "tlk_" in line)
    assert "already present" in thawline(tmp_path, "demo").stderr
    assert "OK:" in thawline(tmp_path, "log", "verify").stdout
    shown = thawline(tmp_path, "account", "show", "acc_0000001")
    assert '"kyc_level"' in shown.stdout
    assert key.startswith("tlk_ak_")  # printed once, for trying the API
