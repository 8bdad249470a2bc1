"""A real DNS server for tests (dnslib's UDP+TCP server on a loopback port) whose records a test edits live.

It plays a headless Service: `set(name, ["127.0.0.2", ...])` is "these pods are ready". Names it does not
know get NXDOMAIN, `fail = True` makes every answer SERVFAIL (a broken DNS, not an empty Service).
"""

from __future__ import annotations

import threading
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from support import free_port


class _Records(BaseResolver):  # type: ignore[misc]
    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self.lock = threading.Lock()
        self.records: dict[str, list[str]] = {}
        self.fail = False
        self.queries = 0

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        with self.lock:
            self.queries += 1
            if self.fail:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            addresses = self.records.get(qname)
        if addresses is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            for ip in addresses:
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(ip), ttl=self.ttl))
        return reply  # other types: NOERROR with no data, like a headless Service asked for AAAA


class TestDnsServer:
    """`with TestDnsServer() as dns: dns.set("engines.test", ["127.0.0.2"])`; `dns.nameserver` = "127.0.0.1:PORT"."""

    __test__ = False  # not a pytest class

    def __init__(self, ttl: int = 1) -> None:
        self._records = _Records(ttl)
        self.port = free_port()
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self._servers = [
            DNSServer(self._records, port=self.port, address="127.0.0.1", tcp=tcp, logger=quiet)
            for tcp in (False, True)
        ]

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def queries(self) -> int:
        return self._records.queries

    def set(self, name: str, addresses: list[str]) -> None:
        with self._records.lock:
            self._records.records[name.lower()] = list(addresses)

    def delete(self, name: str) -> None:
        with self._records.lock:
            self._records.records.pop(name.lower(), None)

    def fail(self, on: bool = True) -> None:
        with self._records.lock:
            self._records.fail = on

    def __enter__(self) -> TestDnsServer:
        for s in self._servers:
            s.start_thread()
        return self

    def __exit__(self, *exc: Any) -> None:
        for s in self._servers:
            s.stop()
            s.server.server_close()
