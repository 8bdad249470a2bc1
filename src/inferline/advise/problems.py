"""Every problem pydantic found in a user's file, on one line (fix them all in one go, not one per run)."""

from __future__ import annotations

from pydantic import ValidationError


def validation_problems(exc: ValidationError, unknown: str = "unknown key (typo?)") -> str:
    """`loc: what` for each error, joined by '; '."""
    plain = {"missing": "required", "extra_forbidden": unknown}
    parts = []
    for e in exc.errors():
        where = ".".join(str(x) for x in e["loc"]) or "(top level)"
        what = plain.get(e["type"], e["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {what}")
    return "; ".join(parts)
