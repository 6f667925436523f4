"""Compile ``thawline.domain.features`` with Cython into ``thawline.domain._features_c``.

    python tools/build_accel.py [--check]

The risk engine's per-event feature update is its hot loop. This script compiles the very same
``features.py`` (typed by ``features.pxd``) into an extension module placed beside it in the source
tree; ``features.py`` uses it only if it was built from its current text (the module carries the
SHA-256 of the source it came from), so an edited ``features.py`` never runs stale compiled code.
Without Cython or a C compiler nothing changes: the plain module runs, only slower.
``--check`` exits 1 unless the compiled module is present, current and in use.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = ROOT / "src" / "thawline" / "domain"
MODULE = "thawline.domain._features_c"


def target() -> Path:
    """Where the compiled module goes (the interpreter's extension suffix)."""
    return DOMAIN / f"_features_c{sysconfig.get_config_var('EXT_SUFFIX')}"


# The window methods index their lists only inside bounds they have just tested, never with a
# negative index; compiled without Cython's bounds and wrap-around checks they read the lists
# directly. Directives cannot go into an augmenting .pxd, so they are added to the compiled copy.
UNCHECKED = ("    def _add(", "    def slide(")
DIRECTIVES = b"    @cython.boundscheck(False)\n    @cython.wraparound(False)\n"


def unchecked(source: bytes) -> bytes:
    """The source with the two window methods marked for compilation without index checks."""
    out = source.replace(b"\nimport hashlib\n", b"\nimport cython\nimport hashlib\n", 1)
    for head in UNCHECKED:
        marker = b"\n" + head.encode()
        if out.count(marker) != 1:
            raise SystemExit(f"features.py: expected one {head.strip()!r}")
        out = out.replace(marker, b"\n" + DIRECTIVES + head.encode())
    return out


def build() -> Path:
    """Cythonize and compile a copy of features.py named _features_c; return the installed path."""
    from Cython.Build import cythonize  # noqa: PLC0415 - a build-time dependency only
    from setuptools import Distribution, Extension  # noqa: PLC0415

    source = (DOMAIN / "features.py").read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    with tempfile.TemporaryDirectory(prefix="thawline-accel-") as tmp:
        pkg = Path(tmp) / "src" / "thawline" / "domain"
        pkg.mkdir(parents=True)
        (pkg.parent / "__init__.py").write_text("")
        (pkg / "__init__.py").write_text("")
        copy = pkg / "_features_c.py"
        copy.write_bytes(unchecked(source) + f'\nSOURCE_SHA256 = "{digest}"\n'.encode())
        shutil.copy(DOMAIN / "features.pxd", pkg / "_features_c.pxd")
        extension = Extension(MODULE, [str(copy)])
        modules = cythonize(
            [extension],
            quiet=True,
            # Python semantics everywhere: the compiled module must compute the same floats.
            compiler_directives={"language_level": 3, "annotation_typing": False, "cdivision": False},
        )
        dist = Distribution({"ext_modules": modules, "package_dir": {"": str(Path(tmp) / "src")}})
        cmd = dist.get_command_obj("build_ext")
        cmd.build_lib = str(Path(tmp) / "lib")
        cmd.build_temp = str(Path(tmp) / "obj")
        dist.run_command("build_ext")
        built = Path(tmp) / "lib" / "thawline" / "domain" / target().name
        # Into place by rename, never by overwriting: a running process has the old file mapped,
        # and writing into it would crash that process; a rename leaves its mapping intact.
        staged = target().with_name(target().name + ".new")
        shutil.copy(built, staged)
        os.replace(staged, target())
    return target()


def in_use() -> bool:
    """Whether a fresh interpreter imports features with the compiled build active."""
    probe = "import thawline.domain.features as f; raise SystemExit(0 if f.ACCELERATED else 1)"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("THAWLINE_PURE_PYTHON", None)
    return subprocess.run([sys.executable, "-c", probe], env=env, check=False).returncode == 0


def main() -> int:
    """Build (or with --check only verify) the compiled features module."""
    if "--check" not in sys.argv:
        path = build()
        print(f"compiled {path.relative_to(ROOT)}")
    if not in_use():
        print("the compiled features module is missing, stale or failed to load", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
