"""pipeline: one inference request through the stages, in the order of docs/architecture.md.

    parse -> authenticate -> (cached) -> admit -> route/queue -> upstream -> relay      account: always

`Pipeline.handle` is the only place the stages are called from, and the only place an exception becomes
an ending: before the first byte a GatewayError is a response; after it, an SSE error event (relay).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time

from prometheus_client import Gauge

from inferline.cache.flight import Lead
from inferline.errors import BackendUnavailable, GatewayError, Outcome, ShuttingDown, UpstreamTimeout
from inferline.limits import Reservation
from inferline.types import Receive, Scope, Send

from .account import Accountant
from .admit import Admitter
from .authenticate import Authenticator
from .cached import Answer, CachedAnswers
from .parse import ClientGone, parse
from .queue import Queues
from .relay import Relay, replay, send_error
from .route import Decision, Router
from .supervisor import Supervisor, Watch
from .upstream import Retryable, Upstream
from .values import Delivery, Ending, EngineSequence, ParsedRequest, Principal, Target

log = logging.getLogger("inferline.gateway")


class Pipeline:
    def __init__(
        self,
        *,
        max_body_bytes: int,
        request_timeout_s: float,
        shutdown_grace_s: float,
        authenticator: Authenticator,
        cached: CachedAnswers,
        admitter: Admitter,
        router: Router,
        queues: Queues,
        upstream: Upstream,
        relay: Relay,
        accountant: Accountant,
        supervisor: Supervisor,
        in_flight: dict[str, Gauge],
    ) -> None:
        self._max_body_bytes = max_body_bytes
        self._request_timeout_s = request_timeout_s
        self._grace_s = shutdown_grace_s
        self.authenticate = authenticator.authenticate
        self.cached = cached
        self.admit = admitter.admit
        self.route = router
        self.queue = queues
        self.upstream = upstream
        self.relay = relay
        self.account = accountant.account
        self.supervisor = supervisor
        self._in_flight = in_flight  # inferline_requests_in_flight{model}, resolved once
        self._ids = itertools.count(1)
        self._id_prefix = f"{os.getpid():x}-{int(time.time()) & 0xFFFFFF:x}"

    async def handle(self, scope: Scope, receive: Receive, send: Send, kind: str) -> None:
        """Serve one chat/completions request end to end; never raises (account always runs)."""
        request_id = f"req-{self._id_prefix}-{next(self._ids)}"
        started_ns = time.monotonic_ns()
        delivery = Delivery(arrival_ns=started_ns)
        headers = [(b"x-request-id", request_id.encode())]
        task = asyncio.current_task()
        assert task is not None
        parsed: ParsedRequest | None = None
        principal: Principal | None = None
        reservation: Reservation | None = None
        watch: Watch | None = None
        lead: Lead | None = None  # this request leads identical ones waiting for its answer (single-flight)
        variant: str | None = None
        outcome, error = Outcome.OK, None
        try:
            self.supervisor.refuse_if_draining()
            parsed = await parse(scope, receive, kind, self._max_body_bytes)  # 400 / 413
            principal = self.authenticate(scope)  # 401 (400: unknown priority class)
            self.route.check(parsed.model)  # 404 before anything waits
            watch = self.supervisor.watch(task, delivery, scope, receive)  # a disconnect now cancels us
            self._in_flight[parsed.model].inc()
            cache_key = self.cached.key(parsed, principal)
            found = await self.cached.lookup(cache_key, parsed)  # a stored answer, or an identical one in flight
            if isinstance(found, Answer):
                await self._replay(parsed, found, delivery, send, headers)
                return
            lead = found
            reservation = await self.admit(principal, parsed)  # 429 / 400 / 503 limit store
            headers += reservation.headers()
            # the deadline (routing.request_timeout_s) is the supervisor's: it cancels us as upstream_timeout
            try:
                decision = self.route.resolve(parsed.model, _header(scope, b"x-inferline-session"), principal.name)
                target = await self.queue.acquire(decision.model, parsed, principal)  # 429 full/timeout, 503
            except BackendUnavailable:
                # The fallback chain's last step: an identical answer served before, if there is one.
                if (fallback := await self.cached.fallback(cache_key, parsed)) is None:
                    raise
                await self._replay(parsed, fallback, delivery, send, headers)
                outcome = Outcome.CACHE_FALLBACK
                return
            if decision.variant is not None:
                headers.append((b"x-inferline-variant", decision.variant.encode()))
            variant = decision.variant
            await self._serve(parsed, decision, target, delivery, send, headers)
            await self.cached.store(cache_key, delivery, lead)
        except GatewayError as exc:
            outcome, error = exc.outcome, exc
            await self._tell(delivery, send, exc, headers)
        except ClientGone:
            outcome, delivery.status = Outcome.CLIENT_CANCELLED, 499
        except asyncio.CancelledError:
            reason = watch.cancel_reason if watch is not None else None
            if reason is None:
                raise  # the server itself is cancelling us: let it
            task.uncancel()
            outcome = reason
            if reason is Outcome.SHUTDOWN:
                error = ShuttingDown(
                    f"the gateway shut down after a {self._grace_s:.0f}s grace period; the answer is incomplete",
                    retry_after_s=1,
                )
                await self._tell(delivery, send, error, headers)
            elif reason is Outcome.UPSTREAM_TIMEOUT:
                limit = self._request_timeout_s
                error = UpstreamTimeout(f"the request exceeded routing.request_timeout_s ({limit:.0f}s)")
                await self._tell(delivery, send, error, headers)
            if not delivery.started:
                delivery.status = 499  # nginx's "client closed request": the client left before an answer
        except Exception:  # last resort: a bug of ours is a 500 with a request id, logged once
            log.exception("internal error in %s", request_id)
            error = GatewayError(f"internal error (request id {request_id})")
            outcome = Outcome.INTERNAL
            await self._tell(delivery, send, error, headers)
        finally:
            if lead is not None:
                lead.finish(None)  # no-op once store() shared an answer; else the followers call the engine
            if watch is not None:
                self.supervisor.forget(watch)
                self._in_flight[parsed.model].dec()  # type: ignore[union-attr]  # watch implies parsed
            status = delivery.status or (error.status if error else 500)
            self.account(
                Ending(
                    request_id,
                    started_ns,
                    time.monotonic_ns(),
                    outcome,
                    status,
                    parsed,
                    principal,
                    reservation,
                    delivery,
                    error,
                    variant,
                )
            )

    async def _serve(
        self,
        parsed: ParsedRequest,
        decision: Decision,
        target: Target,
        delivery: Delivery,
        send: Send,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """upstream -> relay on the granted engine; before the first token, failures move to route's next
        target. Every slot is released exactly once."""
        tried: set[str] = set()
        tracked = EngineSequence(parsed, delivery, target.prompt_tokens)
        while True:
            tried.add(target.state.name)
            generated_before = delivery.content_chunks
            target.state.in_flight_requests[id(tracked)] = tracked
            try:
                resp = await self.upstream.open(parsed, target, delivery)  # 400 / Retryable
                await self.relay.relay(parsed, resp, target, delivery, send, headers)  # Retryable / error event
                self.route.succeeded(decision, target, delivery)
                return
            except Retryable as exc:
                last = exc.error
                if exc.count_failure:
                    self.route.failed(decision, target, last.message)
            except GatewayError as error:  # not `exc`: mypyc gives a name one type per function
                if error.outcome is Outcome.STREAM_INTERRUPTED:
                    self.route.failed(decision, target, error.message)
                raise
            finally:
                del target.state.in_flight_requests[id(tracked)]
                self.queue.release(target, delivery.content_chunks - generated_before)
            retry = self.route.retry(decision, target, tried) if delivery.attempts < self.route.max_attempts else None
            if retry is None:
                if delivery.attempts > 1:
                    last.message += f" (tried {delivery.attempts} backends)"
                raise last
            target = retry

    @staticmethod
    async def _replay(
        parsed: ParsedRequest, answer: Answer, delivery: Delivery, send: Send, headers: list[tuple[bytes, bytes]]
    ) -> None:
        delivery.backend, delivery.model = "cache", parsed.model
        await replay(parsed, answer.body, delivery, send, [(b"x-inferline-cache", answer.how.encode()), *headers])

    async def _tell(
        self, delivery: Delivery, send: Send, exc: GatewayError, headers: list[tuple[bytes, bytes]]
    ) -> None:
        try:
            await send_error(delivery, send, exc, headers)
        except Exception:  # the client may be gone: nothing left to tell it
            delivery.complete = True


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None
