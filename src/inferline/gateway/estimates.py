"""Expected output tokens per model, for requests without max_tokens: learned from completed answers (EWMA).

admit reserves prompt + expected output against the key's token limits, the queue orders by it, and the
KV check holds room for it. account feeds it each completed answer's real length.
"""

from __future__ import annotations

_EWMA_WEIGHT = 0.1


class OutputEstimates:
    def __init__(self, models: list[str], default_output_tokens: int) -> None:
        self._mean = {m: float(default_output_tokens) for m in models}

    def expected(self, model: str) -> float:
        return self._mean[model]

    def output_budget(self, model: str, max_tokens: int | None) -> int:
        """The output a request may produce: its max_tokens, else the model's learned mean."""
        return max_tokens if max_tokens is not None else round(self._mean[model])

    def observe(self, model: str, completion_tokens: int) -> None:
        if completion_tokens > 0 and model in self._mean:
            old = self._mean[model]
            self._mean[model] = old + _EWMA_WEIGHT * (completion_tokens - old)
