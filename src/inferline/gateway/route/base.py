"""The picker contract: one backend among those with room (llm-d's filter -> scorer -> picker, in small).

The queue filters (gateway/saturation.py: only engines with room are candidates); a Picker scores and
chooses. Pickers are called between awaits only, so they may keep state without locks.
"""

from __future__ import annotations

from typing import Protocol

from inferline.backends.pool import BackendState


class Picker(Protocol):
    def pick(self, candidates: list[BackendState], now: float, affinity: bytes | None) -> BackendState | None:
        """The backend for the next request, or None to wait. `candidates` all have room right now."""
        ...
