"""admit: reserve the request's tokens against its API key's limits and budgets. 429 / 400 / 503.

Reserves prompt estimate + output budget (max_tokens, or the model's learned mean) in the limit store
(memory, or Redis shared by every replica), before the request may wait for an engine; account reconciles
the reservation with the real usage. Denials say which limit, the values, and when to retry.
"""

from __future__ import annotations

from inferline.limits import Limiter, Reservation

from .estimates import OutputEstimates
from .values import ParsedRequest, Principal


class Admitter:
    def __init__(self, limiter: Limiter, estimates: OutputEstimates) -> None:
        self._limiter = limiter
        self._estimates = estimates

    async def admit(self, principal: Principal, parsed: ParsedRequest) -> Reservation:
        """Raises LimitDenied (429, reason = outcome), RequestTooLarge (400), or StoreUnavailable (503)."""
        output = self._estimates.output_budget(parsed.model, parsed.max_tokens)
        return await self._limiter.admit(principal.key, parsed.prompt_tokens_estimate + output)
