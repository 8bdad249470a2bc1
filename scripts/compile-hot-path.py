"""Compile the gateway's hot path (inferline.hot_path.HOT_MODULES) with mypyc, in place, next to the sources.

Usage: PYTHON scripts/compile-hot-path.py [--force] [--require] [--install-into SITE_PACKAGES]
    (`make compile` runs it with .venv/bin/python; the Dockerfile with the image's venv)

Does nothing when the build already matches the sources. Needs a C compiler, Python's headers and mypy;
where they are missing it says so and leaves the pure-Python modules in use (exit 0), except with
--require or under CI=true, where a failed build fails (CI tests the compiled build, the one `make serve`
runs). INFERLINE_COMPILE=0 skips it. --install-into copies the build into an installed (non-editable)
inferline, after checking that its sources are the ones compiled: that is how the image gets it.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ["INFERLINE_PURE_PYTHON"] = "1"  # importing inferline here must not load a half-written build

from inferline import hot_path  # noqa: E402

del os.environ["INFERLINE_PURE_PYTHON"]  # imported: from here on, the check must see what the gateway sees


def build() -> None:
    # mypyc reads [tool.mypy] from pyproject.toml (strict, the pydantic plugin) as `make typecheck` does.
    from mypyc.build import mypycify
    from setuptools import Distribution

    paths = [str(hot_path.source_path(m).relative_to(ROOT)) for m in hot_path.HOT_MODULES]
    # multi_file: one C file per module, so the C compiler runs on both cores (parallel below).
    extensions = mypycify(paths, opt_level="3", multi_file=True, group_name=hot_path.GROUP)
    dist = Distribution({"name": "inferline-hot-path", "ext_modules": extensions, "package_dir": {"": "src"}})
    cmd = dist.get_command_obj("build_ext")
    cmd.inplace = True
    cmd.parallel = os.cpu_count() or 1
    dist.run_command("build_ext")


def built_files() -> list[Path]:
    """Every extension a build leaves in the tree, this one's or an older one's (a module since dropped)."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return sorted((hot_path.SRC / "inferline").rglob(f"*{suffix}")) + sorted(
        hot_path.SRC.glob(f"{hot_path.GROUP}__mypyc*{suffix}")
    )


def mypy_version() -> str:
    from mypy.version import __version__

    return __version__


def main() -> int:
    ap = argparse.ArgumentParser(description="Compile inferline's hot path with mypyc, in place.")
    ap.add_argument("--force", action="store_true", help="rebuild even when the build is current")
    ap.add_argument("--require", action="store_true", help="exit 1 when the build fails (default under CI=true)")
    ap.add_argument("--install-into", type=Path, metavar="SITE_PACKAGES", help="then copy the build there")
    args = ap.parse_args()
    failed = 1 if args.require or os.environ.get("CI", "").lower() not in ("", "0", "false") else 0
    if os.environ.get("INFERLINE_COMPILE") == "0":
        print("hot path: not compiled (INFERLINE_COMPILE=0); the gateway runs it as pure Python")
        return 0
    os.chdir(ROOT)
    manifest = hot_path.MANIFEST
    # The gateway checks python + sources (hot_path.why_not_compiled); a new mypyc also means a rebuild.
    wanted = {"python": sys.version, "mypy": mypy_version(), "sources": hot_path.source_hashes()}
    current = hot_path.why_not_compiled() is None and json.loads(manifest.read_text()).get("mypy") == wanted["mypy"]
    if current and not args.force:
        print(f"hot path: compiled and current ({len(hot_path.HOT_MODULES)} modules)")
    else:
        manifest.unlink(missing_ok=True)  # none while building: a failed build is never taken for a good one
        for old in built_files():  # an extension left from an older module list must not shadow its .py
            old.unlink()
        print(f"hot path: compiling {len(hot_path.HOT_MODULES)} modules with mypyc (about a minute on two cores)")
        t0 = time.monotonic()
        try:
            build()
        except (Exception, SystemExit) as exc:  # setuptools reports a compiler failure as SystemExit
            print(f"hot path: compile FAILED ({exc}); the gateway runs it as pure Python", file=sys.stderr)
            return failed
        manifest.write_text(json.dumps(wanted, indent=1) + "\n")
        reason = hot_path.why_not_compiled()
        if reason is not None:
            manifest.unlink()
            print(f"hot path: compile FAILED ({reason})", file=sys.stderr)
            return failed
        print(f"hot path: compiled in {time.monotonic() - t0:.0f}s")
    if args.install_into is not None:
        return install_into(args.install_into, wanted)
    return 0


def install_into(site: Path, wanted: dict[str, object]) -> int:
    """Copy the extensions, the group library and the manifest beside an installed inferline's sources."""
    if hot_path.source_hashes(site) != wanted["sources"]:
        print(f"hot path: the inferline in {site} is not the source that was compiled; not installed", file=sys.stderr)
        return 1
    files = [*map(hot_path.extension_path, hot_path.HOT_MODULES), hot_path.group_library(), hot_path.MANIFEST]
    for path in files:
        dest = site / path.relative_to(hot_path.SRC)
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copy2(path, tmp)
        os.replace(tmp, dest)  # never overwrite a loaded extension in place
    print(f"hot path: installed into {site} ({len(files) - 1} extensions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
