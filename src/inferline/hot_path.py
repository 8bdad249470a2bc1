"""The gateway's hot path, compiled with mypyc when built (`make compile`), pure Python otherwise.

The modules a streamed request runs through are compiled to C extensions next to their sources: one gateway
process then spends ~25% less CPU per request (benchmarks/gateway_overhead.py). The compiled build is used
only while the package's sources are byte for byte the ones it was built from (a manifest of every
`inferline/**/*.py` hash, written by the build: compiled code also bakes in the types of the modules it
imports); a missing, partial or stale build, or INFERLINE_PURE_PYTHON=1, runs every hot module from its
`.py` instead. All or nothing, because compiled modules call each other directly in C: one module from
source among compiled ones would still be served its old code by the others. An extension beside a module
that is not (or no longer) in the list is never loaded: those always come from their `.py`.

This module must stay pure Python and import nothing from inferline: `inferline/__init__.py` runs
`choose()` before any hot module is imported.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# The stages of docs/architecture.md and what they call per request. Not here: pydantic models (compiled
# classes cannot be pydantic models), typing.Protocol classes, and modules off the request path.
HOT_MODULES: tuple[str, ...] = (
    "inferline.backends.openai_http",
    "inferline.backends.pool",
    "inferline.gateway.account",
    "inferline.gateway.admit",
    "inferline.gateway.app",
    "inferline.gateway.authenticate",
    "inferline.gateway.cached",
    "inferline.gateway.estimates",
    "inferline.gateway.parse",
    "inferline.gateway.pipeline",
    "inferline.gateway.queue",
    "inferline.gateway.relay",
    "inferline.gateway.route",
    "inferline.gateway.route.least_loaded",
    "inferline.gateway.route.prefix_affinity",
    "inferline.gateway.saturation",
    "inferline.gateway.supervisor",
    "inferline.gateway.upstream",
    "inferline.gateway.values",
    "inferline.limits.limiter",
    "inferline.limits.memory",
    "inferline.logs",
    "inferline.net.client",
    "inferline.net.server",
)

SRC = Path(__file__).resolve().parent.parent  # the directory holding the `inferline` package
MANIFEST = SRC / "inferline" / ".hot_path.json"
PURE_ENV = "INFERLINE_PURE_PYTHON"
GROUP = "inferline_hot_path"  # mypyc's shared library of the compiled modules: SRC/GROUP__mypyc.<suffix>

# "compiled" or "pure Python (why)"; set by choose(), logged by the gateway at start.
mode = "pure Python (not chosen yet)"


def source_path(module: str) -> Path:
    rel = Path(*module.split("."))
    package = SRC / rel / "__init__.py"
    return package if package.exists() else SRC / rel.with_suffix(".py")


def extension_path(module: str) -> Path:
    """Where the build puts a module's extension (a package's is its `__init__`'s sibling, by name)."""
    rel = Path(*module.split("."))
    base = SRC / rel / "__init__" if (SRC / rel).is_dir() else SRC / rel
    return base.with_name(base.name + importlib.machinery.EXTENSION_SUFFIXES[0])


def group_library() -> Path:
    return SRC / (GROUP + "__mypyc" + importlib.machinery.EXTENSION_SUFFIXES[0])


def source_hashes(root: Path = SRC) -> dict[str, str]:
    """Every source file of the `inferline` package under `root`, by path (~10 ms): what a build was made
    from (root: another installed copy, for the build script's --install-into check)."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((root / "inferline").rglob("*.py"))
    }


def why_not_compiled() -> str | None:
    """None when the compiled build is present and current; otherwise why it is not used."""
    if os.environ.get(PURE_ENV) == "1":
        return f"{PURE_ENV}=1"
    try:
        built = json.loads(MANIFEST.read_text())
    except FileNotFoundError:
        return "not compiled (`make compile` builds it in a source checkout)"
    except (OSError, ValueError) as exc:
        return f"unreadable build manifest {MANIFEST}: {exc}"
    if not isinstance(built, dict):
        return f"unreadable build manifest {MANIFEST}: not a JSON object"
    if built.get("python") != sys.version or built.get("sources") != source_hashes():
        return "the compiled build is older than its sources (run `make compile`)"
    missing = [str(p) for p in [*map(extension_path, HOT_MODULES), group_library()] if not p.exists()]
    if missing:
        return f"compiled build incomplete: {missing[0]} is missing"
    return None


class _FromSource(importlib.abc.MetaPathFinder):
    """Imports inferline's modules from their `.py` files, ahead of any extension beside them; in compiled
    mode the hot modules are left to the normal import (their extensions)."""

    def __init__(self, compiled: bool) -> None:
        self.compiled = compiled

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("inferline.") or (self.compiled and fullname in _HOT):
            return None
        src = source_path(fullname)
        if not src.exists():
            return None
        search = [str(src.parent)] if src.name == "__init__.py" else None
        return importlib.util.spec_from_file_location(fullname, src, submodule_search_locations=search)


_HOT = frozenset(HOT_MODULES)


def choose() -> str:
    """Decide once per process, before any hot module is imported; returns (and sets) `mode`."""
    global mode
    reason = why_not_compiled()
    mode = "compiled" if reason is None else f"pure Python ({reason})"
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _FromSource)]
    sys.meta_path.insert(0, _FromSource(compiled=reason is None))
    return mode
