"""What a finished call returns: Usage and Completion."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Completion", "Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the server reported them (summed over attempts after a resume)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
        )


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole answer from `complete()`; `backend` and `model` come from x-inferline-* headers."""

    text: str
    usage: Usage | None
    finish_reason: str | None
    backend: str | None
    model: str | None
    ttft_s: float | None
    tokens_per_s: float | None
    attempts: int
