"""loadcheck: memory to load a GGUF in the embedded engine, measured in a fresh process (python -m ...).

Starts llama.cpp (xllamacpp) on the file with one slot of 512 tokens, generates one token (so the weights
are really read), and prints one JSON line: RSS growth over the bare interpreter, peak RSS, load time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import orjson


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(path: Path) -> dict[str, object]:
    from inferline.backends.llamacpp import start_llamacpp_server
    from inferline.config import EmbeddedEngineConfig

    rss0 = _status_kib("VmRSS") * 1024
    t0 = time.monotonic()
    _server, port = start_llamacpp_server(
        EmbeddedEngineConfig(model_path=path, parallel=1, ctx_per_slot=512, threads=1), alias="loadcheck"
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"llama.cpp did not become healthy on {path}")
        time.sleep(0.1)
    load_s = time.monotonic() - t0
    resp = httpx.post(
        url + "/v1/completions",
        json={"model": "loadcheck", "prompt": "The capital of France is", "max_tokens": 1, "temperature": 0},
        timeout=60,
    )
    resp.raise_for_status()
    text = resp.json()["choices"][0]["text"]
    return {
        "load_rss_bytes": _status_kib("VmRSS") * 1024 - rss0,
        "peak_rss_bytes": _status_kib("VmHWM") * 1024,
        "load_s": load_s,
        "first_token": text,
    }


def main() -> None:
    try:
        result: dict[str, object] = {"ok": True, **measure(Path(sys.argv[1]))}
    except Exception as exc:  # reported as one line by the CLI
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    import os

    os._exit(0 if result["ok"] else 1)  # llama.cpp's server threads: leave without joining them


if __name__ == "__main__":
    main()
