"""Pre-flight for `inferline serve`: every model must have an engine that answers, else one clear error.

Before the gateway binds its port, each HTTP backend is asked for its /health (remote providers: /v1/models).
A backend "answers" when it sends any HTTP response; a refused connection, a name that does not resolve or
a connection that never responds does not. Each model needs at least one answering backend (an embedded
engine always counts: it starts with the gateway). Backends that do not answer yet are named at once in a
warning, then retried until `server.engine_wait_s`; a model still without one by then is a StartupError
naming the model, each URL, what went wrong, and the fix. `engine_wait_s: 0` skips the check (for
orchestrators that start engines after the gateway: it then serves 503 no_backend until one answers).
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from inferline.config import BackendConfig, BackendKind, InferlineConfig
from inferline.errors import StartupError

__all__ = ["check_engines", "wait_for_engines"]

log = logging.getLogger("inferline.startup")
PROBE_TIMEOUT_S = 3.0  # one probe; an engine slower than this to answer /health is not ready anyway
RETRY_EVERY_S = 1.0


async def _probe(client: httpx.AsyncClient, backend: BackendConfig) -> str | None:
    """None when the engine answers HTTP at all; else what went wrong, in words."""
    assert backend.url is not None
    path = "/v1/models" if backend.kind is BackendKind.OPENAI else "/health"
    url = backend.url.rstrip("/") + path
    try:
        await client.get(url, timeout=PROBE_TIMEOUT_S)
    except httpx.ConnectError as exc:
        cause = exc.__cause__ or exc
        return f"cannot connect: {cause}" if str(cause) else "cannot connect"
    except httpx.TimeoutException:
        return f"no answer within {PROBE_TIMEOUT_S:g} s"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _model_ok(backends: list[BackendConfig], errors: dict[str, str | None]) -> bool:
    return any(b.kind is BackendKind.EMBEDDED or errors.get(b.name) is None for b in backends)


async def check_engines(config: InferlineConfig, client: httpx.AsyncClient) -> dict[str, dict[str, str]]:
    """One round of probes: {model: {backend: error}} for the models with no answering backend."""
    http = [(m, b) for m in config.models for b in m.backends if b.kind is not BackendKind.EMBEDDED]
    results = await asyncio.gather(*(_probe(client, b) for _, b in http))
    errors: dict[str, dict[str, str | None]] = {}
    for (m, b), err in zip(http, results, strict=True):
        errors.setdefault(m.name, {})[b.name] = err
    failing: dict[str, dict[str, str]] = {}
    for m in config.models:
        model_errors = errors.get(m.name, {})
        if not _model_ok(m.backends, model_errors):
            failing[m.name] = {name: err for name, err in model_errors.items() if err is not None}
    return failing


def _describe(config: InferlineConfig, failing: dict[str, dict[str, str]]) -> str:
    urls = {(m.name, b.name): b.url for m in config.models for b in m.backends}
    parts = []
    for model, backends in failing.items():
        detail = "; ".join(f"{name} at {urls[(model, name)]}: {err}" for name, err in backends.items())
        parts.append(f"model {model!r} has no engine that answers ({detail})")
    return ", and ".join(parts)


async def wait_for_engines(config: InferlineConfig) -> None:
    """Return once every model has an answering engine; raise StartupError after server.engine_wait_s."""
    wait_s = config.server.engine_wait_s
    if wait_s <= 0:
        return
    deadline = time.monotonic() + wait_s
    warned = False
    async with httpx.AsyncClient() as client:
        while True:
            failing = await check_engines(config, client)
            if not failing:
                if warned:
                    log.info("every model has an engine that answers now")
                return
            if time.monotonic() >= deadline:
                raise StartupError(
                    f"{_describe(config, failing)} after waiting {wait_s:g} s; fix the backend `url` in the "
                    "config or start the engine (server.engine_wait_s: 0 starts the gateway without waiting)"
                )
            if not warned:
                what = _describe(config, failing)
                log.warning("%s; waiting up to %g s (server.engine_wait_s) for it to come up", what, wait_s)
                warned = True
            await asyncio.sleep(min(RETRY_EVERY_S, max(0.0, deadline - time.monotonic())))
