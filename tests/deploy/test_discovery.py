"""backends/discovery.py against a real DNS server (dnslib on a loopback port): sets, changes, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from inferline.backends.discovery import DiscoveryChange, DiscoveryConfig, DnsDiscovery, valid_dns_name
from support import free_port

from .dnsserver import TestDnsServer

NAME = "smollm2-engine.inference.svc.cluster.local"


@pytest.fixture
def dns_server() -> Iterator[TestDnsServer]:
    with TestDnsServer() as server:
        yield server


def _config(server: TestDnsServer, **kw: object) -> DiscoveryConfig:
    return DiscoveryConfig.model_validate(
        {"dns_name": NAME, "port": 8000, "nameservers": [server.nameserver], "interval_s": 0.1, **kw}
    )


async def test_resolves_every_address_with_the_port(dns_server: TestDnsServer) -> None:
    dns_server.set(NAME, ["127.0.0.2", "127.0.0.3"])
    d = DnsDiscovery(_config(dns_server))
    assert await d.resolve() == {"127.0.0.2:8000", "127.0.0.3:8000"}


async def test_changes_report_added_and_removed(dns_server: TestDnsServer) -> None:
    changes: list[DiscoveryChange] = []
    d = DnsDiscovery(_config(dns_server), changes.append)
    dns_server.set(NAME, ["127.0.0.2"])
    await d.refresh()
    dns_server.set(NAME, ["127.0.0.2", "127.0.0.3"])
    await d.refresh()
    await d.refresh()  # unchanged: no report
    dns_server.set(NAME, ["127.0.0.3"])
    await d.refresh()
    assert [(set(c.added), set(c.removed)) for c in changes] == [
        ({"127.0.0.2:8000"}, set()),
        ({"127.0.0.3:8000"}, set()),
        (set(), {"127.0.0.2:8000"}),
    ]
    assert d.targets == {"127.0.0.3:8000"}


async def test_name_gone_means_no_engines(dns_server: TestDnsServer) -> None:
    d = DnsDiscovery(_config(dns_server))
    dns_server.set(NAME, ["127.0.0.2"])
    await d.refresh()
    dns_server.delete(NAME)  # NXDOMAIN: authoritative, the Service has no ready pod
    change = await d.refresh()
    assert change is not None and change.removed == {"127.0.0.2:8000"}
    assert d.targets == frozenset()


async def test_dns_failure_keeps_the_last_known_engines(dns_server: TestDnsServer) -> None:
    d = DnsDiscovery(_config(dns_server))
    dns_server.set(NAME, ["127.0.0.2", "127.0.0.3"])
    await d.refresh()
    dns_server.fail()  # SERVFAIL says nothing about the engines
    assert await d.refresh() is None
    assert d.targets == {"127.0.0.2:8000", "127.0.0.3:8000"}
    assert d.failures == 1 and ("SERVFAIL" in d.last_error or "NoNameservers" in d.last_error)
    dns_server.fail(False)
    dns_server.set(NAME, ["127.0.0.3"])
    change = await d.refresh()
    assert change is not None and change.removed == {"127.0.0.2:8000"}


async def test_unreachable_dns_server_times_out_and_keeps_engines() -> None:
    cfg = DiscoveryConfig(dns_name=NAME, nameservers=[f"127.0.0.1:{free_port()}"], timeout_s=0.3)
    d = DnsDiscovery(cfg)
    d.targets = frozenset({"127.0.0.9:8000"})
    assert await d.refresh() is None
    assert d.failures == 1 and d.targets == {"127.0.0.9:8000"}


async def test_run_loop_sees_a_new_engine_within_one_interval(dns_server: TestDnsServer) -> None:
    seen = asyncio.Event()

    def on_change(change: DiscoveryChange) -> None:
        if "127.0.0.4:8000" in change.added:
            seen.set()

    d = DnsDiscovery(_config(dns_server, interval_s=0.2), on_change)
    dns_server.set(NAME, ["127.0.0.2"])
    d.start()
    try:
        await asyncio.sleep(0.3)
        dns_server.set(NAME, ["127.0.0.2", "127.0.0.4"])
        # one interval (0.2 s) plus generous slack for a busy machine
        await asyncio.wait_for(seen.wait(), timeout=5)
    finally:
        await d.close()
    assert d.resolutions >= 2


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("engine", True),
        ("llama-8b-engine.inference.svc.cluster.local", True),
        ("Engine.Example.", True),
        ("bad_name.svc", False),
        ("-lead.svc", False),
        ("a" * 64 + ".svc", False),
        ("a..b", False),
        ("", False),
    ],
)
def test_dns_name_syntax(name: str, ok: bool) -> None:
    assert valid_dns_name(name) is ok


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValidationError) as exc:
        DiscoveryConfig(dns_name="llama_8b.svc")
    assert "dns_name" in str(exc.value) and "can never resolve" in str(exc.value)
    with pytest.raises(ValidationError, match="nameservers"):
        DiscoveryConfig(dns_name="engine", nameservers=["dns.local"])
