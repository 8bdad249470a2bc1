"""dataset: an eval set file (JSONL) -> validated EvalItems; every problem named with its line number.

One JSON object per line (blank lines and lines starting with `#` are skipped):

- generated answer: {"id", "category", "prompt", "answer" | "checks", ["match", "aliases", "max_tokens", "system"]}
  The prompt is sent as a chat message (temperature 0, streamed); the reply is compared with `answer`.
- multiple choice: {"id", "category", "prompt", "choices": [...], "answer": INDEX, ["norm"]}
  `prompt` is raw text (no chat template) and each choice a continuation of it; the choice with the highest
  log-probability wins (per byte when `norm` is true, for choices of different lengths).
- `reference` (either kind): a text whose perplexity given `prompt` (raw text) is measured, where the engine
  returns log-probabilities.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path

import orjson

SHIPPED_SET = "inferline-eval-v1.jsonl"
CHECKS_HELP = "no_refusal, refusal, json, one_line, max_words:N, regex:PATTERN"


class EvalSetError(ValueError):
    """An eval set that cannot be used; the message names the file and the line."""


class Match(StrEnum):
    EXACT = "exact"  # normalized reply == normalized answer (or an alias)
    CONTAINS = "contains"  # the normalized answer appears in the normalized reply, on word boundaries
    NUMBER = "number"  # the last number in the reply equals the answer


@dataclass(frozen=True, slots=True)
class EvalItem:
    id: str
    category: str
    prompt: str
    answer: str | None = None
    aliases: tuple[str, ...] = ()
    match: Match = Match.CONTAINS
    checks: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    answer_index: int | None = None
    norm: bool = False
    reference: str | None = None
    system: str | None = None
    max_tokens: int = 48
    line: int = 0

    @property
    def is_choice(self) -> bool:
        return bool(self.choices)

    @property
    def is_generated(self) -> bool:
        return not self.choices and (self.answer is not None or bool(self.checks))


_KEYS = {
    "id",
    "category",
    "prompt",
    "answer",
    "aliases",
    "match",
    "checks",
    "choices",
    "norm",
    "reference",
    "system",
    "max_tokens",
    "note",
}
_CHECK_RE = re.compile(r"^(no_refusal|refusal|json|one_line|max_words:\d+|regex:.+)$", re.S)


def shipped_set_path() -> Path:
    """The eval set shipped with inferline (CC0/Apache-2.0, written for the project): data/inferline-eval-v1.jsonl."""
    return Path(str(resources.files("inferline.eval") / "data" / SHIPPED_SET))


def _str(obj: dict[str, object], key: str, where: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise EvalSetError(f"{where}: `{key}` is required")
        return None
    if not isinstance(value, str) or not value:
        raise EvalSetError(f"{where}: `{key}` must be a non-empty string; got {orjson.dumps(value).decode()[:60]}")
    return value


def _str_list(obj: dict[str, object], key: str, where: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise EvalSetError(f"{where}: `{key}` must be a list of non-empty strings")
    return tuple(value)


def parse_item(obj: object, where: str, line: int) -> EvalItem:
    """One decoded JSON line -> EvalItem, or EvalSetError naming `where` (file:line) and the field."""
    if not isinstance(obj, dict):
        raise EvalSetError(f"{where}: each line must be a JSON object; got {type(obj).__name__}")
    unknown = sorted(set(obj) - _KEYS)
    if unknown:
        raise EvalSetError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    item_id = _str(obj, "id", where, required=True)
    category = _str(obj, "category", where, required=True)
    prompt = _str(obj, "prompt", where, required=True)
    assert item_id is not None and category is not None and prompt is not None
    choices = _str_list(obj, "choices", where)
    checks = _str_list(obj, "checks", where)
    for c in checks:
        if not _CHECK_RE.match(c):
            raise EvalSetError(f"{where}: unknown check {c!r} (known: {CHECKS_HELP})")
        if c.startswith("regex:"):
            try:
                re.compile(c[len("regex:") :])
            except re.error as exc:
                raise EvalSetError(f"{where}: check {c!r} is not a valid regex: {exc}") from None
    reference = _str(obj, "reference", where)
    max_tokens = obj.get("max_tokens", 48)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= 4096:
        raise EvalSetError(f"{where}: `max_tokens` must be an integer in 1..4096; got {max_tokens!r}")
    norm = obj.get("norm", False)
    if not isinstance(norm, bool):
        raise EvalSetError(f"{where}: `norm` must be true or false")
    answer = obj.get("answer")
    if choices:
        if len(choices) < 2:
            raise EvalSetError(f"{where}: `choices` needs at least 2 entries")
        if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
            raise EvalSetError(
                f"{where}: with `choices`, `answer` must be the index of the right choice (0..{len(choices) - 1}); "
                f"got {orjson.dumps(answer).decode()[:40]}"
            )
        if checks or "match" in obj:
            raise EvalSetError(f"{where}: `checks` and `match` apply to generated answers, not to `choices`")
        return EvalItem(
            id=item_id,
            category=category,
            prompt=prompt,
            choices=choices,
            answer_index=answer,
            norm=norm,
            reference=reference,
            line=line,
        )
    answer_s = _str(obj, "answer", where)
    if answer_s is None and not checks and reference is None:
        raise EvalSetError(f"{where}: give `answer` (text), `choices` + `answer` (index), `checks` or `reference`")
    match_raw = obj.get("match", Match.CONTAINS.value)
    try:
        match = Match(match_raw)
    except ValueError:
        raise EvalSetError(
            f"{where}: `match` must be one of {', '.join(m.value for m in Match)}; got {match_raw!r}"
        ) from None
    if match is Match.NUMBER and answer_s is not None and _as_number(answer_s) is None:
        raise EvalSetError(f"{where}: `match: number` needs a numeric `answer`; got {answer_s!r}")
    return EvalItem(
        id=item_id,
        category=category,
        prompt=prompt,
        answer=answer_s,
        aliases=_str_list(obj, "aliases", where),
        match=match,
        checks=checks,
        reference=reference,
        system=_str(obj, "system", where),
        max_tokens=max_tokens,
        line=line,
    )


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def load_eval_set(path: Path) -> list[EvalItem]:
    """Read and validate a JSONL eval set. Raises EvalSetError at the first bad line (with its number)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise EvalSetError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EvalSetError(f"{path}: is a directory, expected a JSONL file") from None
    except OSError as exc:
        raise EvalSetError(f"{path}: cannot read: {exc.strerror}") from None
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(raw.splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith(b"#"):
            continue
        where = f"{path}:{n}"
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise EvalSetError(f"{where}: not valid JSON ({exc})") from None
        item = parse_item(obj, where, n)
        if item.id in seen:
            raise EvalSetError(f"{where}: duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = n
        items.append(item)
    if not items:
        raise EvalSetError(f"{path}: no items (one JSON object per line)")
    return items
