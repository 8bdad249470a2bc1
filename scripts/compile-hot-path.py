"""Compile the gateway's hot path (inferline.hot_path.HOT_MODULES) with mypyc, in place, next to the sources.

Usage: .venv/bin/python scripts/compile-hot-path.py [--force]   (`make compile` runs it)

Does nothing when the build already matches the sources. Needs a C compiler and Python's headers; where
they are missing it says so and leaves the pure-Python modules in use (exit 0), except under CI=true, where
a failed build fails (CI tests the compiled build, the one `make serve` runs). INFERLINE_COMPILE=0 skips it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ["INFERLINE_PURE_PYTHON"] = "1"  # importing inferline here must not load a half-written build

from inferline import hot_path  # noqa: E402


def build() -> None:
    # mypyc reads [tool.mypy] from pyproject.toml (strict, the pydantic plugin) as `make typecheck` does.
    from mypyc.build import mypycify
    from setuptools import Distribution

    paths = [str(hot_path.source_path(m).relative_to(ROOT)) for m in hot_path.HOT_MODULES]
    # multi_file: one C file per module, so the C compiler runs on both cores (parallel below).
    extensions = mypycify(paths, opt_level="3", multi_file=True, group_name="inferline_hot_path")
    dist = Distribution({"name": "inferline-hot-path", "ext_modules": extensions, "package_dir": {"": "src"}})
    cmd = dist.get_command_obj("build_ext")
    cmd.inplace = True
    cmd.parallel = os.cpu_count() or 1
    dist.run_command("build_ext")


def main() -> int:
    if os.environ.get("INFERLINE_COMPILE") == "0":
        print("hot path: not compiled (INFERLINE_COMPILE=0); the gateway runs it as pure Python")
        return 0
    os.chdir(ROOT)
    manifest = hot_path.MANIFEST
    wanted = {"python": sys.version, "modules": hot_path.source_hashes()}
    if "--force" not in sys.argv and manifest.exists() and json.loads(manifest.read_text()) == wanted:
        print(f"hot path: compiled and current ({len(hot_path.HOT_MODULES)} modules)")
        return 0
    manifest.unlink(missing_ok=True)  # no manifest while building: a failed build is never mistaken for a good one
    print(f"hot path: compiling {len(hot_path.HOT_MODULES)} modules with mypyc (about a minute on two cores)...")
    t0 = time.monotonic()
    try:
        build()
    except (Exception, SystemExit) as exc:  # setuptools reports a compiler failure as SystemExit
        print(f"hot path: compile FAILED ({exc}); the gateway runs it as pure Python", file=sys.stderr)
        return 1 if os.environ.get("CI") else 0
    missing = [m for m in hot_path.HOT_MODULES if not hot_path.extension_path(m).exists()]
    if missing:
        print(f"hot path: compile FAILED (no extension for {missing[0]})", file=sys.stderr)
        return 1 if os.environ.get("CI") else 0
    manifest.write_text(json.dumps(wanted, indent=1) + "\n")
    print(f"hot path: compiled in {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
