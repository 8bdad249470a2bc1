"""Per-chunk cost of inferline.client, measured two ways. Run: python tests/client/bench_client_overhead.py

1. Parser: the recorded SmolLM2 stream (data/smollm2_chat_stream.sse, 256 tokens from llama.cpp)
   repeated to N chunks, fed through the client's SSE decoder and chunk handling (budget, limits,
   timing included), against a bare loop that only splits lines and reads the delta with orjson.
   Two read shapes: one event per read (a live stream: each token arrives alone) and 64 KiB reads.
2. Live: a raw-socket server in a child process sends the same chunks over loopback HTTP/1.1, either
   all at once ("bulk": the client is the bottleneck, wall time per chunk) or one send() per chunk
   ("paced", 0.2 ms apart: CPU time of the consuming thread per chunk). Compared with a bare httpx
   iter_lines + orjson loop and with the openai SDK on the same server.

Not a test (pytest does not collect it): numbers depend on the machine; docs/client.md records them.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from inferline.client import AsyncClient, Client, Retry, Timeouts
from inferline.client._config import DEFAULT_RETRY, DEFAULT_TIMEOUTS, Budget
from inferline.client._core import _Call

RECORDED = Path(__file__).with_name("data") / "smollm2_chat_stream.sse"
MSG = [{"role": "user", "content": "hi"}]


def load_events(n: int) -> list[bytes]:
    """n content events from the recording (cycled), then its finish, usage and [DONE] events."""
    events = [e + b"\n\n" for e in RECORDED.read_bytes().split(b"\n\n") if e.startswith(b"data: ")]
    content = [e for e in events if b'"content":"' in e and b'"finish_reason":null' in e]
    tail = [e for e in events if b'"finish_reason":"' in e or b'"usage"' in e or b"[DONE]" in e]
    return [content[i % len(content)] for i in range(n)] + tail


# --- 1. parser ----------------------------------------------------------------------------------------


def bare_parse(reads: list[bytes]) -> int:
    n = 0
    buf = b""
    loads = orjson.loads
    for raw in reads:
        buf += raw
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                choices = loads(line[6:])["choices"]
                if choices and choices[0]["delta"].get("content"):
                    n += 1
    return n


def client_parse(reads: list[bytes]) -> int:
    call = _Call(
        messages=MSG,
        prompt=None,
        model=None,
        max_tokens=None,
        sampling={},
        budget=Budget(10**12),
        timeouts=DEFAULT_TIMEOUTS,
        retry=DEFAULT_RETRY,
        resume=False,
        max_chunks=None,
        max_chars=None,
        keep_text=False,
    )
    call.begin_attempt()
    n = 0
    monotonic = time.monotonic
    feed, on_payload = call.decoder.feed, call.on_payload
    for raw in reads:
        now = monotonic()
        for payload in feed(raw):
            if on_payload(payload, now):
                n += 1
    call.end_of_body()
    return n


def best_of(fn: Callable[[list[bytes]], int], reads: list[bytes], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(reads)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_parser(n: int, repeat: int) -> None:
    events = load_events(n)
    blob = b"".join(events)
    shapes = {"1 event/read": events, "64 KiB reads": [blob[i : i + 65536] for i in range(0, len(blob), 65536)]}
    print(f"\n## Parser: {n} recorded chunks, best of {repeat}\n")
    print("| reads | bare loop µs/chunk | inferline.client µs/chunk | overhead µs/chunk |")
    print("|---|---|---|---|")
    for name, reads in shapes.items():
        assert bare_parse(reads) == client_parse(reads) == n
        bare = best_of(bare_parse, reads, repeat) / n * 1e6
        ours = best_of(client_parse, reads, repeat) / n * 1e6
        print(f"| {name} | {bare:.2f} | {ours:.2f} | {ours - bare:+.2f} |")


# --- 2. live ------------------------------------------------------------------------------------------

_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def serve(port_file: Path | None) -> None:
    """The child process: answer every POST with `bench_chunks` events, bulk or paced (`bench_mode`)."""
    cache: dict[int, list[bytes]] = {}

    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = orjson.loads(buf[:length]), buf[length:]
                n = int(body.get("bench_chunks", 1000))
                frames = cache.get(n) or cache.setdefault(n, [_frame(e) for e in load_events(n)])
                if body.get("bench_mode") == "paced":
                    conn.sendall(_HEAD)
                    for f in frames:
                        conn.sendall(f)
                        time.sleep(0.0002)
                    conn.sendall(b"0\r\n\r\n")
                else:
                    conn.sendall(_HEAD + b"".join(frames) + b"0\r\n\r\n")

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def run_bare_httpx(url: str, n: int, mode: str) -> int:
    body = {"messages": MSG, "stream": True, "bench_chunks": n, "bench_mode": mode}
    count = 0
    with httpx.Client() as http, http.stream("POST", url + "/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = orjson.loads(line[6:])["choices"]
                if choices and choices[0]["delta"].get("content"):
                    count += 1
    return count


def run_bare_httpx_async(url: str, n: int, mode: str) -> int:
    async def go() -> int:
        body = {"messages": MSG, "stream": True, "bench_chunks": n, "bench_mode": mode}
        count = 0
        async with httpx.AsyncClient() as http, http.stream("POST", url + "/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    choices = orjson.loads(line[6:])["choices"]
                    if choices and choices[0]["delta"].get("content"):
                        count += 1
        return count

    return asyncio.run(go())


def run_client(url: str, n: int, mode: str) -> int:
    with Client(url, retry=Retry(max_attempts=1), timeouts=Timeouts()) as client:
        s = client.stream(messages=MSG, keep_text=False, bench_chunks=n, bench_mode=mode)
        return sum(1 for _ in s)


def run_async_client(url: str, n: int, mode: str) -> int:
    async def go() -> int:
        async with AsyncClient(url, retry=Retry(max_attempts=1)) as client:
            count = 0
            async for _ in client.stream(messages=MSG, keep_text=False, bench_chunks=n, bench_mode=mode):
                count += 1
            return count

    return asyncio.run(go())


def run_openai(url: str, n: int, mode: str) -> int:
    import openai

    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="m",
        messages=MSG,  # type: ignore[arg-type]
        stream=True,
        extra_body={"bench_chunks": n, "bench_mode": mode},
    )
    count = 0
    for chunk in stream:
        choices = getattr(chunk, "choices", None)
        if choices and choices[0].delta.content:
            count += 1
    client.close()
    return count


def bench_live(n: int, repeat: int) -> None:
    proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = f"http://127.0.0.1:{int(proc.stdout.readline())}/v1"
        runners: dict[str, Callable[[str, int, str], int]] = {
            "bare httpx iter_lines + orjson": run_bare_httpx,
            "inferline Client": run_client,
            "bare httpx.AsyncClient aiter_lines + orjson": run_bare_httpx_async,
            "inferline AsyncClient": run_async_client,
            "openai SDK (sync)": run_openai,
        }
        print(f"\n## Live over loopback: {n} chunks, best of {repeat}\n")
        print("| client | bulk: wall µs/chunk | paced: CPU µs/chunk |")
        print("|---|---|---|")
        for name, run in runners.items():
            run(url, 100, "bulk")  # warm up imports and connections
            bulk = paced = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                assert run(url, n, "bulk") == n
                bulk = min(bulk, time.perf_counter() - t0)
                c0 = time.thread_time()
                assert run(url, n, "paced") == n
                paced = min(paced, time.thread_time() - c0)
            print(f"| {name} | {bulk / n * 1e6:.1f} | {paced / n * 1e6:.1f} |")
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--chunks", type=int, default=50_000, help="chunks for the parser benchmark")
    parser.add_argument("--live-chunks", type=int, default=5_000, help="chunks per live run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.serve:
        serve(None)
        return
    print(f"python {sys.version.split()[0]}, httpx {httpx.__version__}, orjson {orjson.__version__}")
    bench_parser(args.chunks, args.repeat)
    bench_live(args.live_chunks, max(1, args.repeat // 2))


if __name__ == "__main__":
    main()
