"""Fixtures for the bench tests: the fake SSE server on a loopback port, in-loop or in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from inferline.bench.fakeserver import FakeServer, Plan


@pytest.fixture
async def fake_server() -> AsyncIterator[FakeServer]:
    """A fast server in the test's own event loop; tests may set `.plan` before sending."""
    server = FakeServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class ThreadedServer:
    """A FakeServer on its own loop in a thread: for code under test that runs its own event loop."""

    def __init__(self, plan: Plan | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = FakeServer(plan)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.stop())
        self.loop.close()

    def __enter__(self) -> FakeServer:
        self._thread.start()
        self._ready.wait(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def threaded_server() -> Iterator[FakeServer]:
    with ThreadedServer() as server:
        yield server
