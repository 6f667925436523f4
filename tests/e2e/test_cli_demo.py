"""``thawline demo`` (what ``make run`` does first): an empty database gets a lived-in month, once."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.test_cli import thawline
from thawline.config import Settings
from thawline.services import staff
from thawline.services.runtime import build_runtime
from thawline.services.unit_of_work import UnitOfWork


def test_demo_loads_once_and_its_key_and_sign_ins_work(tmp_path: Path) -> None:
    first = thawline(tmp_path, "demo", "--accounts", "40", "--days", "3")
    out = first.stderr
    assert "demo: 40 accounts" in out
    assert "Freezes:" in out  # the freeze report over the demo month (services.analytics)
    key = next(line.split()[-1] for line in out.splitlines() if "tlk_" in line)
    assert key.startswith("tlk_ak_")  # printed once, for trying the API
    sign_ins = dict(
        re.findall(r"^\s+\w+\s+(reviewer|senior|analyst|auditor|admin)\s+password: (\S+)$", out, re.M)
    )
    assert set(sign_ins) == {"reviewer", "senior", "analyst", "auditor", "admin"}
    assert len(set(sign_ins.values())) == 5  # generated for this database, never a fixed one

    assert "already present" in thawline(tmp_path, "demo").stderr
    assert "OK:" in thawline(tmp_path, "log", "verify").stdout
    shown = thawline(tmp_path, "account", "show", "acc_0000001")
    assert '"kyc_level"' in shown.stdout

    rt = build_runtime(
        Settings(database_url=f"sqlite:///{tmp_path / 'thawline.db'}", data_dir=tmp_path / "thawline-data")
    )
    try:
        with UnitOfWork(rt, read_only=True) as uow:
            for username, password in sign_ins.items():
                row = staff.find(uow, username)
                assert staff.password_matches(row.password_hash, password), username
                assert not staff.password_matches(row.password_hash, password + "x")
    finally:
        rt.close()
