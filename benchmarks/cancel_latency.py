"""Cancel latency: how soon after a client closes a stream the engine's slot is free again.

    .venv/bin/python benchmarks/cancel_latency.py            # 10 trials each way
    .venv/bin/python benchmarks/cancel_latency.py --trials 3

The tests assert that a cancel frees the slot (the engine stops generating well before max_tokens); this
measures how fast. A real llama.cpp engine (`inferline engine`, SmolLM2) is asked for a 400-token stream
(ignore_eos), the client reads 3 chunks and closes the connection, and the engine's /slots is polled every
5 ms until no slot is processing: directly, and through a gateway (`inferline serve` in front of the same
engine). The load average is recorded: on a busy machine these numbers are upper bounds.
Writes benchmarks/results/cancel_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import httpx
from _harness import (
    REPO,
    Procs,
    console,
    free_port,
    git_state,
    header,
    inferline_cmd,
    loadavg,
    machine,
    main_guard,
    md_table,
    now_iso,
    rich_table,
    start_gateway,
    write_results,
)

BODY = {
    "model": "smollm2",
    "messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
    "max_tokens": 400,
    "ignore_eos": True,
    "stream": True,
}


def busy(engine_url: str) -> int:
    return sum(1 for s in httpx.get(engine_url + "/slots", timeout=10).json() if s["is_processing"])


def trial(url: str, engine_url: str) -> float:
    while busy(engine_url):  # start from an idle engine
        time.sleep(0.05)
    with httpx.Client(timeout=120) as client, client.stream("POST", url + "/v1/chat/completions", json=BODY) as r:
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data:"):
                seen += 1
                if seen >= 3:
                    break
        closed = time.monotonic()
    while busy(engine_url):
        time.sleep(0.005)
        if time.monotonic() - closed > 60:
            raise RuntimeError("the slot was still busy 60 s after the client closed")
    return (time.monotonic() - closed) * 1000


def stats(ms: list[float]) -> list[Any]:
    s = sorted(ms)
    return [len(s), s[len(s) // 2], s[-1], sum(s) / len(s)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=10, help="Cancels measured per path (default 10).")
    args = ap.parse_args()
    procs = Procs(budget_s=900)
    data: dict[str, Any] = {"machine": machine(), "date": now_iso(), "mode": "full"}
    data["machine"]["git"] = git_state()
    port = free_port()
    engine = procs.start("engine", inferline_cmd("engine", "--port", str(port), "--parallel", "4"))
    engine.url = f"http://127.0.0.1:{port}"
    procs.wait_http(engine, engine.url + "/health", 120)
    gw = start_gateway(
        procs,
        {
            "routing": {"load_interval_s": 0.1},
            "models": [{"name": "smollm2", "backends": [{"name": "engine", "kind": "llamacpp", "url": engine.url}]}],
        },
    )
    try:
        direct = [trial(engine.url, engine.url) for _ in range(args.trials)]
        through = [trial(gw.url, engine.url) for _ in range(args.trials)]
    finally:
        procs.stop_all()
    cols = ["path", "cancels", "p50 ms", "max ms", "mean ms"]
    rows = [["client -> engine", *stats(direct)], ["client -> gateway -> engine", *stats(through)]]
    data.update(direct_ms=direct, through_gateway_ms=through, loadavg_at_end=loadavg())
    md = header("Cancel latency", data)
    md += "Client closes a 400-token stream after 3 chunks; time until the engine's /slots shows no slot busy "
    md += "(polled every 5 ms).\n\n" + md_table(cols, rows)
    jpath, mpath = write_results("cancel_latency", data, md)
    console.print(rich_table("Cancel latency", cols, rows))
    console.print(f"wrote {jpath.relative_to(REPO)} and {mpath.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    main_guard(main)
