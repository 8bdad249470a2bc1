"""Fixtures for the bench tests: the fake SSE server on a loopback port, in-loop or in a thread."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from inferline.bench.fakeserver import FakeServer, ThreadedFakeServer


@pytest.fixture
async def fake_server() -> AsyncIterator[FakeServer]:
    """A fast server in the test's own event loop; tests may set `.plan` before sending."""
    server = FakeServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def threaded_server() -> Iterator[FakeServer]:
    """A fast server on its own loop in a thread, for code under test that runs its own loop (the CLI)."""
    with ThreadedFakeServer() as server:
        yield server
