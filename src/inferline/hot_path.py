"""The gateway's hot path, compiled with mypyc when built (`make compile`), pure Python otherwise.

The modules a streamed request runs through are compiled to C extensions next to their sources: one gateway
process then spends ~25% less CPU per request (benchmarks/gateway_overhead.py). The compiled build is used
only while it matches its sources byte for byte (a manifest of their hashes, written by the build); a
missing, partial or stale build, or INFERLINE_PURE_PYTHON=1, runs every hot module from its `.py` instead.
All or nothing, because compiled modules call each other directly in C: one module from source among
compiled ones would still be served its old code by the others.

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


def source_hashes(modules: Sequence[str] = HOT_MODULES) -> dict[str, str]:
    return {m: hashlib.sha256(source_path(m).read_bytes()).hexdigest() for m in modules}


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
    if built.get("python") != sys.version or built.get("modules") != source_hashes():
        return "the compiled build is older than its sources (run `make compile`)"
    missing = [m for m in HOT_MODULES if not extension_path(m).exists()]
    if missing:
        return f"compiled build incomplete: {missing[0]} has no extension"
    return None


class _FromSource(importlib.abc.MetaPathFinder):
    """Imports the hot modules from their `.py` files, ahead of the extensions beside them."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _HOT:
            return None
        src = source_path(fullname)
        search = [str(src.parent)] if src.name == "__init__.py" else None
        return importlib.util.spec_from_file_location(fullname, src, submodule_search_locations=search)


_HOT = frozenset(HOT_MODULES)


def choose() -> str:
    """Decide once per process, before any hot module is imported; returns (and sets) `mode`."""
    global mode
    reason = why_not_compiled()
    if reason is None:
        mode = "compiled"
    else:
        mode = f"pure Python ({reason})"
        if not any(isinstance(f, _FromSource) for f in sys.meta_path):
            sys.meta_path.insert(0, _FromSource())
    return mode
