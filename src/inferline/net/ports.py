"""free_ports: loopback ports for servers started as child processes (the simulator, tests, benchmarks).

Not the kernel's pick (bind to port 0): that comes from the ephemeral range, which is also where every
outgoing connection takes its local port, so between the check and the child's own bind a client socket
can take it ("address already in use"). Ports below the ephemeral range are only ever taken on purpose.
"""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

__all__ = ["free_port", "free_ports"]

_LOW = 20000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default range: 32768-60999


_HIGH = max(_LOW + 1000, min(_ephemeral_low(), 65536)) - 1
_pick = random.Random(os.getpid() ^ time.monotonic_ns())
_handed_out: set[int] = set()  # a port handed out once is not handed out again by this process


def free_ports(n: int = 1) -> int:
    """A base port P such that P..P+n-1 are free on 127.0.0.1 now and were not handed out before."""
    for _ in range(2000):
        base = _pick.randint(_LOW, _HIGH - n + 1)
        ports = range(base, base + n)
        if any(p in _handed_out for p in ports) or not all(_bindable(p) for p in ports):
            continue
        _handed_out.update(ports)
        return base
    raise RuntimeError(f"no {n} free loopback port(s) in {_LOW}-{_HIGH}")


def free_port() -> int:
    return free_ports(1)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
