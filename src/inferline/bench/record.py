"""One request's recorded timeline: what the load generator saw, with no interpretation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    """Why a request did not complete. `http` kinds carry their status: the label is `http_<status>`."""

    HTTP = "http"  # a non-200 answer before the stream started
    CONNECT = "connect"  # no response: refused, reset or closed before the status line
    TIMEOUT = "timeout"  # --request-timeout passed
    STREAM_ERROR = "stream_error"  # the server sent an error event inside the stream
    TRUNCATED = "truncated"  # the stream ended (or the connection dropped) without `data: [DONE]`
    EMPTY = "empty"  # a clean stream with no content at all: no TTFT to measure
    CANCELLED = "cancelled"  # still running at the hard deadline (or Ctrl-C): cancelled by the generator
    CLIENT = "client"  # anything else the HTTP client raised


@dataclass(slots=True)
class RequestRecord:
    """Times are seconds from the start of the run (`time.perf_counter()` based).

    `chunk_s` holds the arrival time of every SSE event that carried content (text or reasoning),
    in order; events with empty content, the usage event and `[DONE]` are not content chunks.
    """

    index: int
    cls: str = "random"  # workload class: random, prefix, short, long, sharegpt
    prompt_tokens: int = 0  # from usage when the server reported it, else the generator's estimate
    max_tokens: int = 0
    scheduled_s: float = math.nan  # intended send time (open loop); equals send_s in a closed loop
    send_s: float = math.nan
    chunk_s: list[float] = field(default_factory=list)
    end_s: float = math.nan  # when the stream ended or the request failed
    usage_output_tokens: int | None = None  # completion_tokens from the usage event, if any
    status: int = 0
    error: str | None = None  # ErrorKind value, or http_<status>
    error_detail: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def output_tokens(self) -> int:
        """Usage's completion_tokens when present, else the number of content chunks."""
        if self.usage_output_tokens is not None:
            return self.usage_output_tokens
        return len(self.chunk_s)

    def fail(self, kind: ErrorKind, end_s: float, detail: str = "", status: int = 0) -> None:
        self.error = f"http_{status}" if kind is ErrorKind.HTTP else kind.value
        self.end_s = end_s
        self.error_detail = detail[:300]
        if status:
            self.status = status

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "cls": self.cls,
            "prompt_tokens": self.prompt_tokens,
            "max_tokens": self.max_tokens,
            "scheduled_s": _num(self.scheduled_s),
            "send_s": _num(self.send_s),
            "chunk_s": [round(t, 6) for t in self.chunk_s],
            "end_s": _num(self.end_s),
            "usage_output_tokens": self.usage_output_tokens,
            "status": self.status,
            "error": self.error,
            "error_detail": self.error_detail,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RequestRecord:
        nan = math.nan
        return cls(
            index=int(d["index"]),
            cls=str(d.get("cls", "random")),
            prompt_tokens=int(d.get("prompt_tokens", 0)),
            max_tokens=int(d.get("max_tokens", 0)),
            scheduled_s=nan if d.get("scheduled_s") is None else float(d["scheduled_s"]),
            send_s=nan if d.get("send_s") is None else float(d["send_s"]),
            chunk_s=[float(t) for t in d.get("chunk_s", [])],
            end_s=nan if d.get("end_s") is None else float(d["end_s"]),
            usage_output_tokens=d.get("usage_output_tokens"),
            status=int(d.get("status", 0)),
            error=d.get("error"),
            error_detail=str(d.get("error_detail", "")),
        )


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)
