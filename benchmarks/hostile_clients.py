"""Hostile clients: normal requests' latency while hundreds of slow or half-open connections sit on the gateway.

    .venv/bin/python benchmarks/hostile_clients.py [--quick]

One `inferline sim --profile instant` engine behind `inferline serve` (default settings, except
`server.header_timeout_s` which is raised past the run so the hostile connections stay for all of it).
Per scenario, N hostile connections are opened first and held, then normal streaming requests run
(open loop, Poisson, `inferline.bench`, 16 output tokens) and their TTFT / E2E are compared with the
same load on a quiet gateway:

  half-open   - N connections that sent part of a request head and then nothing (slowloris);
  trickle     - N connections that send one more header byte every 100 ms, never finishing;
  idle        - N connections that connected and sent nothing.

Then the bounds themselves: a half-open connection is answered 408 and closed after
header_timeout_s (measured with the default 10 s), and beyond `server.max_connections` a new
connection gets 503 with Retry-After (measured with a cap of 200 and 250 connections).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

import _harness as h

NAME = "hostile_clients"
PARTIAL = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-slow: "


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (< 2 min): N = 300 only, shorter load")
    ap.add_argument("--n", default=None, help="hostile connections per scenario, comma list (default 300,1000)")
    ap.add_argument("--rate", type=float, default=50.0, help="normal requests per second (default 50)")
    ap.add_argument("--budget", type=float, default=None, help="hard wall-clock limit, s (default 420; quick 150)")
    return ap.parse_args()


class Hostile:
    """N sockets held open against the gateway, each doing one kind of misbehaviour."""

    def __init__(self, url: str, n: int, kind: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.addr = (host, int(port))
        self.n = n
        self.kind = kind
        self.socks: list[socket.socket] = []
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        for _ in range(self.n):
            s = socket.socket()
            s.setblocking(False)
            await asyncio.get_running_loop().sock_connect(s, self.addr)
            if self.kind in ("half-open", "trickle"):
                s.send(PARTIAL)
            self.socks.append(s)
        if self.kind == "trickle":
            self._task = asyncio.get_running_loop().create_task(self._trickle())

    async def _trickle(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            for s in self.socks:
                with contextlib.suppress(OSError):
                    s.send(b"a")

    def still_open(self) -> int:
        """How many the gateway has not closed (a closed one reads EOF or the 408)."""
        alive = 0
        for s in self.socks:
            try:
                data = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                if data:
                    continue  # an answer (408): closed by the gateway
            except BlockingIOError:
                alive += 1
                continue
            except OSError:
                continue
        return alive

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for s in self.socks:
            s.close()
        self.socks.clear()


def normal_load(url: str, procs: list[h.Proc], stack: h.Stack, rate: float, duration: float) -> dict[str, Any]:
    m = h.bench(
        url,
        procs,
        stack,
        rates=(rate,),
        duration_s=duration,
        grace_s=10.0,
        request_timeout_s=30.0,
        input={"mean": 64},
        output={"mean": 16},
        ignore_eos=True,
        seed=3,
    )
    s = m.summary
    return {
        "completed": s["completed"],
        "errors": s["errors"],
        "ttft_ms": {q: h.pct(s, "ttft_ms", q) for q in ("p50", "p99")},
        "e2e_ms": {q: h.pct(s, "e2e_ms", q) for q in ("p50", "p99")},
        "gateway_cpu_ms_per_request": round(m.cpu_s.get("inferline", 0) / max(1, s["completed"]) * 1e3, 3),
        "loadavg_1m": m.loadavg[0] if m.loadavg else None,
    }


async def _hold(url: str, n: int, kind: str) -> Hostile:
    hostile = Hostile(url, n, kind)
    await hostile.open()
    return hostile


def timeout_check(stack: h.Stack, sim: h.Proc) -> dict[str, Any]:
    """With default settings: 100 half-open connections are answered 408 and closed after ~header_timeout_s."""
    backends = [{"name": "sim0", "kind": "vllm", "url": sim.url, "max_num_seqs": 4096}]
    gw = stack.gateway("gateway-default", h.gateway_config(backends))
    hostile: Hostile = h.run_async(_hold(gw.url, 100, "half-open"))
    t0 = time.monotonic()
    closed_after = None
    while time.monotonic() - t0 < 30:
        h.run_async(asyncio.sleep(0.25))
        if hostile.still_open() == 0:
            closed_after = round(time.monotonic() - t0, 2)
            break
    answers = 0
    for s in hostile.socks:
        try:
            s.setblocking(True)
            s.settimeout(1)
            if s.recv(64).startswith(b"HTTP/1.1 408"):
                answers += 1
        except OSError:
            pass
    hostile.close()
    log = gw.tail(400)
    stack.stop(gw)
    return {
        "connections": 100,
        "all_closed_after_s": closed_after,
        "answered_408": answers,
        "log_lines": [ln for ln in log.splitlines() if "request headers not complete" in ln],
        "logged_closed": sum(
            int(ln.split("closed ")[1].split(" ")[0]) for ln in log.splitlines() if "request headers not complete" in ln
        ),
    }


def cap_check(stack: h.Stack, sim: h.Proc) -> dict[str, Any]:
    """server.max_connections 200: 250 held connections, then a normal request gets 503 + Retry-After."""
    backends = [{"name": "sim0", "kind": "vllm", "url": sim.url, "max_num_seqs": 4096}]
    gw = stack.gateway("gateway-cap", h.gateway_config(backends, server={"max_connections": 200}))
    hostile: Hostile = h.run_async(_hold(gw.url, 250, "idle"))
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        reply = s.recv(4096)
    hostile.close()
    h.run_async(asyncio.sleep(0.5))
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        after = s.recv(4096)
    stack.stop(gw)
    head, _, body = reply.partition(b"\r\n\r\n")
    return {
        "max_connections": 200,
        "held": 250,
        "reply_status": head.split(b"\r\n")[0].decode(errors="replace"),
        "retry_after": b"retry-after: 1" in head,
        "body": body.decode(errors="replace")[:300],
        "after_release_status": after.split(b"\r\n")[0].decode(errors="replace"),
    }


def main() -> int:
    args = parse_args()
    quick = args.quick
    ns = [int(x) for x in (args.n or ("300" if quick else "300,1000")).split(",")]
    duration = 4.0 if quick else 8.0
    stack = h.Stack(args.budget or (150.0 if quick else 420.0))
    data: dict[str, Any] = {
        "benchmark": NAME,
        "date": h.now_iso(),
        "mode": "quick" if quick else "full",
        "machine": h.machine(),
        "workload": {
            "normal": f"open loop {args.rate:g} req/s, {duration:g} s, chat stream, 64-token prompts, 16 output tokens",
            "hostile": "half-open (part of a head, then nothing), trickle (a header byte per 100 ms), idle",
        },
    }
    t0 = time.monotonic()
    sim = stack.sim(max_num_seqs=4096)[0]
    backends = [{"name": "sim0", "kind": "vllm", "url": sim.url, "max_num_seqs": 4096}]
    # header_timeout_s above the run: the hostile connections must stay for all of it
    gw = stack.gateway("inferline", h.gateway_config(backends, server={"header_timeout_s": 600}))
    procs = [sim, gw]
    h.bench(gw.url, procs, concurrency=(8,), num_requests=64, input={"mean": 64}, output={"mean": 16}, ignore_eos=True)
    rows = []
    baseline = normal_load(gw.url, procs, stack, args.rate, duration)
    rows.append({"scenario": "quiet", "n": 0, **baseline})
    h.console.print(f"quiet: {baseline}")
    for n in ns:
        for kind in ("half-open", "trickle", "idle"):
            hostile: Hostile = h.run_async(_hold(gw.url, n, kind))
            r = normal_load(gw.url, procs, stack, args.rate, duration)
            r["hostile_still_open"] = hostile.still_open()
            hostile.close()
            rows.append({"scenario": kind, "n": n, **r})
            h.console.print(f"{kind} x{n}: {r}")
            h.settle(procs, max_s=5)
    stack.stop(gw)
    data["runs"] = rows
    data["header_timeout"] = timeout_check(stack, sim)
    h.console.print(f"header timeout: {data['header_timeout']}")
    data["connection_cap"] = cap_check(stack, sim)
    h.console.print(f"connection cap: {data['connection_cap']}")
    data["wall_s"] = round(time.monotonic() - t0, 1)
    stack.stop_all()
    md = render(data)
    j, m = h.write_results(NAME, data, md, quick=quick)
    h.console.print(f"wrote {j.relative_to(h.REPO)} and {m.relative_to(h.REPO)} in {data['wall_s']} s")
    return 0


def render(data: dict[str, Any]) -> str:
    cols = [
        "hostile connections",
        "kind",
        "still open at end",
        "normal ok",
        "errors",
        "TTFT p50",
        "TTFT p99",
        "E2E p50",
        "E2E p99",
        "gateway CPU ms/req",
        "load 1m",
    ]
    rows = [
        [
            r["n"],
            r["scenario"],
            r.get("hostile_still_open"),
            r["completed"],
            sum(r["errors"].values()) if r["errors"] else 0,
            r["ttft_ms"]["p50"],
            r["ttft_ms"]["p99"],
            r["e2e_ms"]["p50"],
            r["e2e_ms"]["p99"],
            r["gateway_cpu_ms_per_request"],
            r["loadavg_1m"],
        ]
        for r in data["runs"]
    ]
    caption = "ms; normal requests: " + data["workload"]["normal"] + "; hostile: " + data["workload"]["hostile"]
    h.console.print(h.rich_table("Normal requests while hostile connections sit on the gateway", cols, rows, caption))
    md = h.header("Hostile clients: slowloris, trickling and idle connections vs normal requests", data)
    md += h.md_table(cols, rows) + "\n" + caption + ".\n\n"
    t = data["header_timeout"]
    md += (
        f"**Header timeout** (defaults: server.header_timeout_s 10 s): {t['connections']} half-open connections, "
        f"all closed after {h.fmt(t['all_closed_after_s'])} s, {t['answered_408']} of them answered 408; the log "
        f"counted {t['logged_closed']} in {len(t['log_lines'])} summary line(s), e.g. "
        f"`{(t['log_lines'] or ['-'])[0].split(' WARNING ')[-1]}`\n\n"
    )
    c = data["connection_cap"]
    md += (
        f"**Connection cap** (server.max_connections {c['max_connections']}, {c['held']} idle connections held): "
        f"a new request got `{c['reply_status']}` (Retry-After: {'yes' if c['retry_after'] else 'no'}), body "
        f"`{c['body']}`; after the held connections closed: `{c['after_release_status']}`.\n"
    )
    return md


if __name__ == "__main__":
    h.main_guard(main)
