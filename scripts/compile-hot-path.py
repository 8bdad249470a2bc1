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
import hashlib
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

GROUP = "inferline_hot_path"


def build() -> None:
    # mypyc reads [tool.mypy] from pyproject.toml (strict, the pydantic plugin) as `make typecheck` does.
    from mypyc.build import mypycify
    from setuptools import Distribution

    paths = [str(hot_path.source_path(m).relative_to(ROOT)) for m in hot_path.HOT_MODULES]
    # multi_file: one C file per module, so the C compiler runs on both cores (parallel below).
    extensions = mypycify(paths, opt_level="3", multi_file=True, group_name=GROUP)
    dist = Distribution({"name": "inferline-hot-path", "ext_modules": extensions, "package_dir": {"": "src"}})
    cmd = dist.get_command_obj("build_ext")
    cmd.inplace = True
    cmd.parallel = os.cpu_count() or 1
    dist.run_command("build_ext")


def main() -> int:
    ap = argparse.ArgumentParser(description="Compile inferline's hot path with mypyc, in place.")
    ap.add_argument("--force", action="store_true", help="rebuild even when the build is current")
    ap.add_argument("--require", action="store_true", help="exit 1 when the build fails (default under CI=true)")
    ap.add_argument("--install-into", type=Path, metavar="SITE_PACKAGES", help="then copy the build there")
    args = ap.parse_args()
    failed = 1 if args.require or os.environ.get("CI") else 0
    if os.environ.get("INFERLINE_COMPILE") == "0":
        print("hot path: not compiled (INFERLINE_COMPILE=0); the gateway runs it as pure Python")
        return 0
    os.chdir(ROOT)
    manifest = hot_path.MANIFEST
    wanted = {"python": sys.version, "modules": hot_path.source_hashes()}
    if not args.force and manifest.exists() and json.loads(manifest.read_text()) == wanted:
        print(f"hot path: compiled and current ({len(hot_path.HOT_MODULES)} modules)")
    else:
        manifest.unlink(missing_ok=True)  # none while building: a failed build is never taken for a good one
        print(f"hot path: compiling {len(hot_path.HOT_MODULES)} modules with mypyc (about a minute on two cores)")
        t0 = time.monotonic()
        try:
            build()
        except (Exception, SystemExit) as exc:  # setuptools reports a compiler failure as SystemExit
            print(f"hot path: compile FAILED ({exc}); the gateway runs it as pure Python", file=sys.stderr)
            return failed
        missing = [m for m in hot_path.HOT_MODULES if not hot_path.extension_path(m).exists()]
        if missing:
            print(f"hot path: compile FAILED (no extension for {missing[0]})", file=sys.stderr)
            return failed
        manifest.write_text(json.dumps(wanted, indent=1) + "\n")
        print(f"hot path: compiled in {time.monotonic() - t0:.0f}s")
    if args.install_into is not None:
        return install_into(args.install_into, wanted)
    return 0


def install_into(site: Path, wanted: dict[str, object]) -> int:
    """Copy the extensions, the group library and the manifest beside an installed inferline's sources."""
    for module, digest in hot_path.source_hashes().items():
        installed = site / hot_path.source_path(module).relative_to(hot_path.SRC)
        if not installed.exists() or hashlib.sha256(installed.read_bytes()).hexdigest() != digest:
            print(f"hot path: {installed} is not the source that was compiled; not installed", file=sys.stderr)
            return 1
    files = [hot_path.extension_path(m) for m in hot_path.HOT_MODULES]
    files += sorted(hot_path.SRC.glob(f"{GROUP}__mypyc.*"))  # the modules' shared C code, a top-level module
    for path in [*files, hot_path.MANIFEST]:
        shutil.copy2(path, site / path.relative_to(hot_path.SRC))
    print(f"hot path: installed into {site} ({len(files)} extensions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
