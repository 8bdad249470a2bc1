"""A headless Service on loopback: a real DNS server (dnslib, UDP + TCP) answering one name with the ready engines.

In a cluster, a headless Service answers its name with one A record per Ready pod, and the gateway's discovery
(backends/discovery.py) re-resolves it. The live autoscaling run plays that part here: the fleet puts an
engine's address into the answer when the engine is Ready and takes it out first when it scales down.
Other names get NXDOMAIN; other record types NOERROR with no data (as a headless Service asked for AAAA).

dnslib is a development dependency (`pip install -e '.[dev]'`); it is imported only when a server starts.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

__all__ = ["ServiceDns"]


def _free_udp_tcp_port(host: str) -> int:
    """A port free for both UDP and TCP on HOST (the server listens on both)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind((host, port))
            except OSError:
                continue
        return port
    raise OSError(f"no free UDP+TCP port on {host}")


class ServiceDns:
    """`with ServiceDns("engines.test") as dns: dns.set(["127.0.0.2"])`; `dns.nameserver` is "127.0.0.1:PORT"."""

    def __init__(self, name: str, ttl: int = 1, host: str = "127.0.0.1") -> None:
        self.name = name.rstrip(".").lower()
        self.ttl = ttl
        self.host = host
        self.port = 0
        self._lock = threading.Lock()
        self._addresses: list[str] = []
        self._servers: list[Any] = []
        self.queries = 0

    @property
    def nameserver(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def addresses(self) -> list[str]:
        with self._lock:
            return list(self._addresses)

    def set(self, addresses: list[str]) -> None:
        """The Service's ready addresses from now on (the next resolution sees them)."""
        with self._lock:
            self._addresses = list(addresses)

    def start(self) -> None:
        try:
            from dnslib import QTYPE, RCODE, RR, A
            from dnslib.server import BaseResolver, DNSLogger, DNSServer
        except ImportError:
            raise RuntimeError("the live run's DNS server needs dnslib: pip install -e '.[dev]'") from None
        outer = self

        class _Resolver(BaseResolver):  # type: ignore[misc]
            def resolve(self, request: Any, handler: Any) -> Any:
                reply = request.reply()
                qname = str(request.q.qname).rstrip(".").lower()
                with outer._lock:
                    outer.queries += 1
                    addresses = list(outer._addresses)
                if qname != outer.name:
                    reply.header.rcode = RCODE.NXDOMAIN
                elif request.q.qtype == QTYPE.A:
                    for ip in addresses:
                        reply.add_answer(RR(qname, QTYPE.A, rdata=A(ip), ttl=outer.ttl))
                return reply

        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self.port = _free_udp_tcp_port(self.host)
        resolver = _Resolver()
        self._servers = [
            DNSServer(resolver, port=self.port, address=self.host, tcp=tcp, logger=quiet) for tcp in (False, True)
        ]
        for s in self._servers:
            s.start_thread()

    def stop(self) -> None:
        for s in self._servers:
            s.stop()
            s.server.server_close()
        self._servers = []

    def __enter__(self) -> ServiceDns:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
