"""Discovery: a model's engines from a DNS name (a headless Service), re-resolved every few seconds.

A Kubernetes headless Service answers its name with one A (or AAAA) record per *ready* pod, so the set of
addresses is the set of engines that can take requests right now. `DnsDiscovery` resolves that name every
`interval_s`, and reports the current set of ``host:port`` targets and what changed (added / removed).

Failure posture: an authoritative "no such name" or "no addresses" answer means the engines are gone (the
set becomes empty); a transport failure (timeout, SERVFAIL, refused) says nothing about the engines, so the
last known set is kept and the failure is logged. A name that has never resolved is logged once per
state change, not every interval.

The pool (backends/pool.py) turns added targets into backends after their first health check and load poll,
and stops sending new requests to removed ones while their streams finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver
from pydantic import BaseModel, ConfigDict, Field, field_validator

log = logging.getLogger("inferline.discovery")

__all__ = [
    "DISCOVERY_INTERVAL_S",
    "DiscoveryChange",
    "DiscoveryConfig",
    "DiscoveryError",
    "DnsDiscovery",
    "IpFamily",
    "valid_dns_name",
]

DISCOVERY_INTERVAL_S = 5.0  # CoreDNS' kubernetes plugin answers with a 5 s TTL by default
DISCOVERY_TIMEOUT_S = 2.0
DISCOVERY_PORT = 8000  # vLLM's default

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def valid_dns_name(name: str) -> bool:
    """RFC 1123 host name: dot-separated labels of a-z, 0-9 and '-', each at most 63, at most 253 in all."""
    name = name.rstrip(".")
    if not name or len(name) > 253:
        return False
    return all(_LABEL.match(label) for label in name.lower().split("."))


class IpFamily(StrEnum):
    IPV4 = "ipv4"  # A records
    IPV6 = "ipv6"  # AAAA records
    DUAL = "dual"  # both


class DiscoveryConfig(BaseModel):
    """Where a model's engines are found, and what each discovered engine is (the template of its backend)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dns_name: str = Field(
        ...,
        description="DNS name that resolves to one address per engine, e.g. a headless Service "
        "`llama-engine.inference.svc.cluster.local`.",
    )
    port: int = Field(DISCOVERY_PORT, ge=1, le=65535, description="Port every engine listens on.")
    kind: str = Field(
        "vllm",
        pattern="^(vllm|llamacpp|sglang)$",
        description="Engine kind of every address: vllm | llamacpp | sglang.",
    )
    scheme: str = Field("http", pattern="^https?$", description="http or https.")
    interval_s: float = Field(
        DISCOVERY_INTERVAL_S, gt=0, le=300, description="Re-resolve period; a new engine joins within about this long."
    )
    timeout_s: float = Field(DISCOVERY_TIMEOUT_S, gt=0, le=30, description="Time limit of one resolution.")
    ip_family: IpFamily = Field(IpFamily.IPV4, description="ipv4 (A records), ipv6 (AAAA) or dual.")
    nameservers: list[str] = Field(
        default_factory=list,
        description="DNS servers to ask, as IP or IP:PORT. Default: the system's (/etc/resolv.conf, so a "
        "short Service name also resolves through the pod's search domains).",
    )
    upstream_model: str | None = Field(
        None, description="Model name the engines expect; default: the gateway model name."
    )
    max_num_seqs: int = Field(256, ge=1, description="Each engine's concurrent sequence limit (vLLM --max-num-seqs).")
    kv_admit_ratio: float = Field(
        0.85, gt=0, le=1, description="Dispatch to an engine only while its KV-cache use is below this."
    )
    scheduling_priority: bool = Field(
        False, description="The engines run vLLM --scheduling-policy priority: send each request's `priority`."
    )

    @field_validator("dns_name")
    @classmethod
    def _dns_name(cls, v: str) -> str:
        if not valid_dns_name(v):
            raise ValueError(
                f"`dns_name` {v!r} can never resolve: it must be a DNS name (labels of a-z, 0-9 and '-', "
                "at most 63 characters each, 253 in all)"
            )
        return v.rstrip(".").lower()

    @field_validator("nameservers")
    @classmethod
    def _nameservers(cls, v: list[str]) -> list[str]:
        for ns in v:
            _split_nameserver(ns)
        return v


def _split_nameserver(ns: str) -> tuple[str, int]:
    """'10.0.0.10' -> ('10.0.0.10', 53); '127.0.0.1:5353' -> (.., 5353); '[::1]:5353' -> ('::1', 5353)."""
    host, port = ns, 53
    if ns.startswith("["):
        host, _, rest = ns[1:].partition("]")
        if rest:
            port = int(rest.lstrip(":"))
    elif ns.count(":") == 1:
        host, _, p = ns.partition(":")
        port = int(p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"nameserver {ns!r} must be an IP address, optionally with :PORT") from None
    if not 0 < port < 65536:
        raise ValueError(f"nameserver {ns!r}: port out of range")
    return host, port


class DiscoveryError(RuntimeError):
    """A resolution that failed in transport (timeout, SERVFAIL, refused): it says nothing about the engines."""


@dataclass(frozen=True, slots=True)
class DiscoveryChange:
    """One re-resolution that changed the set: what is there now, what joined, what left."""

    targets: frozenset[str]  # "host:port" ("[v6]:port" for IPv6)
    added: frozenset[str]
    removed: frozenset[str]
    at: float  # time.monotonic() of the resolution


def _target(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


ChangeCallback = Callable[[DiscoveryChange], Awaitable[None] | None]


class DnsDiscovery:
    """Resolves one name every interval and reports changes of its address set to `on_change`."""

    def __init__(self, config: DiscoveryConfig, on_change: ChangeCallback | None = None, *, label: str = "") -> None:
        self.config = config
        self.label = label or config.dns_name
        self.on_change = on_change
        self.targets: frozenset[str] = frozenset()
        self.resolutions = 0  # successful resolutions (an empty answer counts)
        self.failures = 0  # transport failures
        self.last_error = ""
        self._resolved_once = False
        self._task: asyncio.Task[None] | None = None
        self._resolver = dns.asyncresolver.Resolver(configure=not config.nameservers)
        if config.nameservers:
            pairs = [_split_nameserver(ns) for ns in config.nameservers]
            self._resolver.nameservers = [h for h, _ in pairs]
            self._resolver.nameserver_ports = {h: p for h, p in pairs}
        self._resolver.lifetime = config.timeout_s
        self._resolver.timeout = config.timeout_s
        self._rdtypes = {
            IpFamily.IPV4: [dns.rdatatype.A],
            IpFamily.IPV6: [dns.rdatatype.AAAA],
            IpFamily.DUAL: [dns.rdatatype.A, dns.rdatatype.AAAA],
        }[config.ip_family]

    async def resolve(self) -> frozenset[str]:
        """The name's current targets. Empty when the name does not exist or has no addresses.

        Raises DiscoveryError when the DNS servers could not answer (the caller keeps what it had).
        """
        addresses: set[str] = set()
        for rdtype in self._rdtypes:
            try:
                answer = await self._resolver.resolve(self.config.dns_name, rdtype, search=True)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue  # authoritative: no such name / no records of this type
            except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.LifetimeTimeout) as exc:
                raise DiscoveryError(f"{self.config.dns_name}: {type(exc).__name__}: {exc}") from None
            except dns.exception.DNSException as exc:
                raise DiscoveryError(f"{self.config.dns_name}: {type(exc).__name__}: {exc}") from None
            addresses.update(r.to_text() for r in answer)
        return frozenset(_target(a, self.config.port) for a in addresses)

    async def refresh(self) -> DiscoveryChange | None:
        """Resolve once; update `targets`; return the change (None when nothing changed or it failed)."""
        try:
            current = await self.resolve()
        except DiscoveryError as exc:
            self.failures += 1
            if str(exc) != self.last_error:
                log.warning(
                    "discovery %s: resolution failed, keeping %d engine(s): %s", self.label, len(self.targets), exc
                )
            self.last_error = str(exc)
            return None
        self.last_error = ""
        self.resolutions += 1
        if not current and (self.targets or not self._resolved_once):
            log.warning("discovery %s: %s resolves to no address (no ready engine)", self.label, self.config.dns_name)
        self._resolved_once = True
        if current == self.targets:
            return None
        change = DiscoveryChange(
            targets=current, added=current - self.targets, removed=self.targets - current, at=time.monotonic()
        )
        self.targets = current
        log.info(
            "discovery %s: %d engine(s); added %s; removed %s",
            self.label,
            len(current),
            sorted(change.added) or "none",
            sorted(change.removed) or "none",
        )
        if self.on_change is not None:
            result = self.on_change(change)
            if result is not None:
                await result
        return change

    async def run(self) -> None:
        """Refresh forever, every interval_s (the first refresh at once)."""
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # a callback bug must not end discovery for good
                log.exception("discovery %s: refresh failed", self.label)
            await asyncio.sleep(self.config.interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"discovery:{self.label}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
