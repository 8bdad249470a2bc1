"""inferline.net.ports: ports for child processes come from below the kernel's ephemeral range."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from inferline.net.ports import free_port


def _ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_ports_are_below_the_ephemeral_range_bindable_and_never_repeated() -> None:
    seen = {free_port() for _ in range(200)}
    assert len(seen) == 200  # never handed out twice
    assert all(20000 <= p < _ephemeral_low() for p in seen)
    for port in list(seen)[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_skipped_and_a_range_is_free_as_a_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    from inferline.net import ports

    free = lambda q: q not in ports._handed_out and ports._bindable(q)  # noqa: E731
    low = next(p for p in range(21000, 30000, 20) if all(free(q) for q in range(p, p + 12)))
    with socket.socket() as listener:  # someone else's server on low + 2
        listener.bind(("127.0.0.1", low + 2))
        listener.listen()
        proposals = iter([low, low + 10, low + 2])  # what the random picker will propose, in order
        monkeypatch.setattr(ports._pick, "randint", lambda _a, _b: next(proposals))
        assert ports.free_ports(3) == low + 10  # low..low+2 holds the listener: the whole range is refused
        with pytest.raises(StopIteration):  # low + 2 alone is refused too, and nothing else was proposed
            ports.free_port()
