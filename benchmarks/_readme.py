"""Copy the latest results/NAME.md tables into benchmarks/README.md (between `<!-- results:NAME -->` and
`<!-- /results:NAME -->`): `.venv/bin/python benchmarks/_readme.py [NAME ...]` after a full run."""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
NAMES = ("gateway_overhead", "hostile_clients", "relay_capacity", "serving")


def section(name: str) -> str:
    text = (HERE / "results" / f"{name}.md").read_text()
    lines = text.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    body = "\n".join(lines).strip()
    body = re.sub(r"^## ", "#### ", body, flags=re.M)
    return f"<!-- results:{name} -->\n**Latest results** (`results/{name}.md`):\n\n{body}\n<!-- /results:{name} -->"


def main(names: list[str]) -> None:
    readme = README.read_text()
    for name in names or NAMES:
        pattern = re.compile(rf"<!-- results:{name} -->.*?<!-- /results:{name} -->", re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no <!-- results:{name} --> ... <!-- /results:{name} --> block")
        match = pattern.search(readme)
        assert match is not None
        readme = readme[: match.start()] + section(name) + readme[match.end() :]
    README.write_text(readme)


if __name__ == "__main__":
    main(sys.argv[1:])
