"""A real redis-server for the session (scripts/redis.sh on a free port), and stores over it."""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from inferline.limits import LimitStore, MemoryLimitStore

REDIS_SH = Path(__file__).resolve().parents[2] / "scripts" / "redis.sh"
NOT_INSTALLABLE = 3  # scripts/redis.sh: redis-server missing and apt could not install it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_redis(port: int | None = None) -> tuple[str, int]:
    """Start a throwaway redis-server; skip (with the reason) only when it cannot be installed."""
    port = port or free_port()
    done = subprocess.run([str(REDIS_SH), "start", str(port)], capture_output=True, text=True, timeout=600)
    if done.returncode == NOT_INSTALLABLE:
        pytest.skip(f"redis-server is not installed and apt-get could not install it: {done.stderr.strip()}")
    if done.returncode != 0:
        pytest.fail(f"scripts/redis.sh start {port} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return f"redis://127.0.0.1:{port}/0", port


def stop_redis(port: int) -> None:
    subprocess.run([str(REDIS_SH), "stop", str(port)], capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url, port = start_redis()
    yield url
    stop_redis(port)


@pytest.fixture
def key_prefix() -> str:
    """A fresh key prefix per test: tests share one Redis but never each other's counters."""
    return f"test:{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[LimitStore]:
    """Each contract test runs against both stores; the Redis one only starts Redis when needed."""
    s: LimitStore
    if request.param == "memory":
        s = MemoryLimitStore(concurrency_lease_s=120)
    else:
        from inferline.limits.redis import RedisLimitStore

        url = request.getfixturevalue("redis_url")
        s = RedisLimitStore(url, key_prefix=key_prefix, concurrency_lease_s=120, timeout_s=2)
    yield s
    await s.aclose()
