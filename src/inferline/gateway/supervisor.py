"""supervisor: the requests in flight — disconnects, stalled clients, and draining on SIGTERM.

Each request's task is registered with a `Watch`. When its client disconnects the request is cancelled at
once (which closes the engine's stream: the engine frees the slot) — through the server's
`inferline.on_disconnect` callback (net/server.py), or, on other ASGI servers, a task waiting for
`http.disconnect`. One loop, not a timer per request, cancels requests past their deadline
(`routing.request_timeout_s`: upstream_timeout) and those whose client has read nothing for
`server.client_stall_timeout_s`. On SIGTERM new requests get 503 `shutting_down`; in-flight ones get
`server.shutdown_grace_s`, then end with an error event. The pipeline reads `Watch.cancel_reason` to
know why its task was cancelled. (No per-request task or timer: measured, they were most of the cyclic
garbage a request left, and the collector's passes a quarter of the gateway's CPU — docs/performance.md.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from inferline.config import ServerConfig
from inferline.errors import Outcome, ShuttingDown
from inferline.types import Receive, Scope

from .values import Delivery

log = logging.getLogger("inferline.gateway")


@dataclass(slots=True, eq=False)  # identity hash: watches key the in-flight map
class Watch:
    task: asyncio.Task[None]
    delivery: Delivery
    deadline: float  # time.monotonic() past which the request is cancelled as upstream_timeout
    cancel_reason: Outcome | None = None  # set before the task is cancelled, so the pipeline knows why
    listener: asyncio.Task[None] | None = None


class Supervisor:
    def __init__(self, cfg: ServerConfig, request_timeout_s: float) -> None:
        self._cfg = cfg
        self._request_timeout_s = request_timeout_s
        self._active: set[Watch] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self.draining = False

    def __len__(self) -> int:
        return len(self._active)

    def refuse_if_draining(self) -> None:
        if self.draining:
            raise ShuttingDown("the gateway is shutting down; retry on another replica", retry_after_s=1)

    def watch(self, task: asyncio.Task[None], delivery: Delivery, scope: Scope, receive: Receive) -> Watch:
        """Register a request whose body has been read; its client's disconnect now cancels it."""
        w = Watch(task, delivery, time.monotonic() + self._request_timeout_s)
        on_disconnect = scope.get("extensions", {}).get("inferline.on_disconnect")
        if on_disconnect is not None:
            on_disconnect(lambda: self._client_gone(w))
        else:
            w.listener = asyncio.create_task(self._listen(receive, w))
        self._active.add(w)
        return w

    def _client_gone(self, w: Watch) -> None:
        if w in self._active and not w.delivery.complete and w.cancel_reason is None:
            w.cancel_reason = Outcome.CLIENT_CANCELLED
            w.task.cancel()

    def forget(self, w: Watch) -> None:
        if w.listener is not None:
            w.listener.cancel()
        self._active.discard(w)

    async def _listen(self, receive: Receive, w: Watch) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not w.delivery.complete and w.cancel_reason is None:
                    w.cancel_reason = Outcome.CLIENT_CANCELLED
                    w.task.cancel()
                return

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._stall_watch(), name="stall-watch")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task

    async def _stall_watch(self) -> None:
        limit_ns = int(self._cfg.client_stall_timeout_s * 1e9)
        period = min(1.0, self._cfg.client_stall_timeout_s / 4, self._request_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            now_ns = time.monotonic_ns()
            now = now_ns / 1e9
            for w in list(self._active):
                since = w.delivery.sending_since_ns
                if since and now_ns - since > limit_ns:
                    self._cancel(w, Outcome.CLIENT_STALLED)
                elif now > w.deadline:
                    self._cancel(w, Outcome.UPSTREAM_TIMEOUT)

    def begin_drain(self) -> None:
        """Stop taking requests; in-flight ones get shutdown_grace_s, then end with an error event."""
        if self.draining:
            return
        self.draining = True
        grace = self._cfg.shutdown_grace_s
        log.info("draining: %d request(s) in flight, %.0fs grace", len(self._active), grace)
        asyncio.get_running_loop().call_later(grace, self._cancel_all, Outcome.SHUTDOWN)

    def _cancel_all(self, reason: Outcome) -> None:
        if self._active:
            log.warning("grace period over: cancelling %d request(s)", len(self._active))
        for w in list(self._active):
            self._cancel(w, reason)

    @staticmethod
    def _cancel(w: Watch, reason: Outcome) -> None:
        if w.cancel_reason is None:
            w.cancel_reason = reason
        w.task.cancel()
