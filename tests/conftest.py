"""Session fixtures: the suite's gateway (`inferline serve` with the embedded engine)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support import EMBEDDED_CONFIG, Proc, start_gateway


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """`inferline serve` with the embedded engine, shared by the whole session."""
    proc = start_gateway(tmp_path_factory.mktemp("gateway"), EMBEDDED_CONFIG)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def gateway_url(gateway: Proc) -> str:
    return gateway.url
