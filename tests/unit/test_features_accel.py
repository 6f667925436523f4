"""The compiled build of the feature update (``tools/build_accel.py``) is used only when current.

The golden tests (``test_features_golden.py``) check that the compiled and the plain module decide
the stored world identically; these check that the switch between them is safe: a build from
another version of ``features.py`` is never loaded, and CI (``THAWLINE_REQUIRE_ACCEL=1``) fails
rather than quietly benchmarking and testing the plain module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from thawline.domain import features

DOMAIN = Path(features.__file__).parent
BUILT = DOMAIN / f"_features_c{sysconfig.get_config_var('EXT_SUFFIX')}"


def test_ci_uses_the_compiled_build() -> None:
    if not os.environ.get("THAWLINE_REQUIRE_ACCEL"):
        pytest.skip("THAWLINE_REQUIRE_ACCEL is not set (CI sets it)")
    assert BUILT.exists(), "tools/build_accel.py did not build the compiled features module"
    assert features.ACCELERATED, "the compiled features module is present but not in use"


def test_a_present_build_is_in_use_unless_plain_python_is_asked_for() -> None:
    if not BUILT.exists():
        pytest.skip("no compiled build here (no C compiler, or not built)")
    # Present but unused means stale: rebuild with `make install` (or python tools/build_accel.py).
    assert (not os.environ.get("THAWLINE_PURE_PYTHON")) == features.ACCELERATED
    if features.ACCELERATED:
        assert features.AccountState.__module__ == "thawline.domain._features_c"
        state = features.AccountState("acct_1", kyc_level="full")
        assert (state.kyc_level, state.newest, state.day, state.times) == ("full", 0.0, -1, [])


def _probe(src: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import warnings, thawline.domain.features as f; print(f.ACCELERATED)"
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        env={**os.environ, **env, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        check=True,
    )


def test_a_build_from_another_source_is_refused_with_a_warning(tmp_path: Path) -> None:
    if not BUILT.exists():
        pytest.skip("no compiled build here (no C compiler, or not built)")
    copy = tmp_path / "src" / "thawline"
    shutil.copytree(DOMAIN.parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    env = {"THAWLINE_PURE_PYTHON": ""}
    assert _probe(tmp_path / "src", env).stdout.strip() == "True"  # the copy, unchanged, uses it
    source = copy / "domain" / "features.py"
    source.write_text(source.read_text("utf-8") + "\n# an edit after the build\n", "utf-8")
    edited = _probe(tmp_path / "src", env)
    assert edited.stdout.strip() == "False"
    assert "was built from another version of features.py" in edited.stderr
    assert _probe(tmp_path / "src", {"THAWLINE_PURE_PYTHON": "1"}).stdout.strip() == "False"


def test_the_compiled_window_arrays_hold_every_window() -> None:
    # features.pxd gives AccountState one C array entry per window (starts, sums, heads) and
    # features.py fills them with literal lists of 5: a sixth window must change both.
    pxd = (DOMAIN / "features.pxd").read_text("utf-8")
    for name in ("starts", "sums", "heads"):
        assert f" {name}[{len(features.WINDOWS)}]" in pxd, name
    state = features.AccountState("acct_1")
    assert [len(state.starts), len(state.sums), len(state.heads)] == [len(features.WINDOWS)] * 3
