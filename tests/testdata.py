"""Where the shared external test data lives (never copied into the repository)."""

from __future__ import annotations

import os
from pathlib import Path


def shared_testdata(name: str) -> Path:
    """Find ``name`` in $THAWLINE_TESTDATA, ../shared/testdata by the checkout, or /work/shared/testdata."""
    candidates = [
        *([Path(os.environ["THAWLINE_TESTDATA"])] if os.environ.get("THAWLINE_TESTDATA") else []),
        Path(__file__).resolve().parents[1].parent / "shared" / "testdata",
        Path("/work/shared/testdata"),
    ]
    for directory in candidates:
        if (directory / name).is_file():
            return directory / name
    searched = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"shared test data {name} not found (searched {searched}; set THAWLINE_TESTDATA)")
