"""Real-vLLM tier: vLLM 0.32 (CPU build) serving SmolLM2, and an inferline gateway in front of it.

Step 1 (engine): the module starts real vLLM with scripts/vllm/start.sh (running scripts/vllm/setup.sh first,
which is instant once its cached venv and converted model exist, 3-4 min on a fresh machine) and checks the
engine facts the gateway relies on: /v1/models' max_model_len, the /metrics gauge names and labels, and that
closing a stream aborts the request in the engine.
Step 2 (gateway): `inferline serve` in front of that vLLM; streaming and non-streaming requests through the
real openai SDK, the gateway's metrics and /backends mirroring vLLM's load, and cancel-on-disconnect
end to end.

Model output is never asserted (SmolLM2 is tiny and sampling differs between engines): only structure, finish
reasons and token counts. Long generations use vLLM's `ignore_eos` so they cannot end early by chance.
Skipped with INFERLINE_SKIP_HEAVY=1. Timings and RAM measured on a 2-core machine: docs/vllm.md.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from support import free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "vllm"
INFERLINE = Path(sys.executable).parent / "inferline"
MODEL = "smollm2"
BACKEND = "vllm-0"
MAX_MODEL_LEN = 2048
MAX_NUM_SEQS = 8
SETUP_TIMEOUT_S = 1800  # fresh machine: 171-247 s measured; generous for a slow PyPI
START_TIMEOUT_S = 300  # ~35 s measured
CANCEL_DEADLINE_S = 2.0  # vLLM drops the request ~50 ms after the client closes (measured)

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.heavy,
    pytest.mark.skipif(
        os.environ.get("INFERLINE_SKIP_HEAVY") == "1",
        reason="INFERLINE_SKIP_HEAVY=1: real vLLM on CPU (3.4 GB venv, ~4 GB RAM) not run",
    ),
    # The first test also pays for setup.sh (minutes on a fresh machine) and vLLM's start (~35 s).
    pytest.mark.timeout(SETUP_TIMEOUT_S + START_TIMEOUT_S + 300),
]


# -- helpers -------------------------------------------------------------------------------------


def _tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"(no log at {path})"


def _wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> float:
    """Poll predicate() until truthy; returns the seconds it took. AssertionError on timeout."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a Prometheus text page as (name, labels, value)."""
    resp = httpx.get(url + "/metrics", timeout=5)
    resp.raise_for_status()
    out = []
    for line in resp.text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def metric(url: str, name: str, **labels: str) -> float | None:
    """The value of one sample (labels must match those given), or None when absent."""
    for n, lab, value in scrape(url):
        if n == name and all(lab.get(k) == v for k, v in labels.items()):
            return value
    return None


def vllm_running(vllm_url: str) -> float | None:
    return metric(vllm_url, "vllm:num_requests_running", model_name=MODEL)


@dataclass
class Server:
    url: str
    log_path: Path


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Real vLLM on SmolLM2 (scripts/vllm/start.sh), on a free loopback port; stopped with stop.sh."""
    tmp = tmp_path_factory.mktemp("vllm")
    setup_log = tmp / "setup.log"
    t0 = time.monotonic()
    with setup_log.open("wb") as out:
        rc = subprocess.run(
            ["bash", str(SCRIPTS / "setup.sh")],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=SETUP_TIMEOUT_S,
            check=False,
        ).returncode
    if rc != 0:
        pytest.fail(f"scripts/vllm/setup.sh failed ({rc}):\n{_tail(setup_log)}")
    t_setup = time.monotonic() - t0

    port = free_port()
    env = {
        **os.environ,
        "INFERLINE_VLLM_LOG": str(tmp / "vllm.log"),
        "INFERLINE_VLLM_PIDFILE": str(tmp / "vllm.pid"),
        "INFERLINE_VLLM_START_TIMEOUT": str(START_TIMEOUT_S),
        "INFERLINE_VLLM_MAX_MODEL_LEN": str(MAX_MODEL_LEN),
        "INFERLINE_VLLM_MAX_NUM_SEQS": str(MAX_NUM_SEQS),
    }
    t1 = time.monotonic()
    start = subprocess.run(
        ["bash", str(SCRIPTS / "start.sh"), str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S + 60,
        check=False,
    )
    if start.returncode != 0:
        subprocess.run(["bash", str(SCRIPTS / "stop.sh"), str(port)], env=env, check=False)
        pytest.fail(f"scripts/vllm/start.sh failed ({start.returncode}):\n{start.stderr[-4000:]}")
    url = start.stdout.strip().splitlines()[-1]
    print(f"\nvllm: setup {t_setup:.1f}s, start {time.monotonic() - t1:.1f}s, {url}, log {tmp / 'vllm.log'}")
    try:
        yield Server(url, tmp / "vllm.log")
    finally:
        subprocess.run(["bash", str(SCRIPTS / "stop.sh"), str(port)], env=env, check=False, timeout=60)


@pytest.fixture(scope="module")
def gw(vllm: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`inferline serve` with one vLLM backend (the contract config), on a free port; SIGTERM at the end."""
    tmp = tmp_path_factory.mktemp("vllm-gateway")
    if not INFERLINE.exists():
        pytest.fail(f"{INFERLINE} not found: install the project (make install)")
    config = {
        "server": {"shutdown_grace_s": 2},
        "routing": {"load_interval_s": 0.2},
        "models": [
            {
                "name": MODEL,
                "backends": [{"name": BACKEND, "kind": "vllm", "url": vllm.url, "max_num_seqs": MAX_NUM_SEQS}],
            }
        ],
    }
    cfg_path = tmp / "gateway.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp / "gateway.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(INFERLINE), "serve", "--config", str(cfg_path), "--port", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"inferline serve exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"inferline serve not ready after 60s:\n{_tail(log_path)}")
            time.sleep(0.1)
        yield Server(url, log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def client(gw: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


@pytest.fixture
def vllm_client(vllm: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=vllm.url + "/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


LONG = {
    "messages": [{"role": "user", "content": "Tell me a very long story about a lighthouse keeper."}],
    "max_tokens": 1500,
    "extra_body": {"ignore_eos": True},  # vLLM extension: the stream cannot end early by chance
}


# -- step 1: the engine itself -------------------------------------------------------------------


def test_vllm_models_card(vllm: Server) -> None:
    cards = httpx.get(vllm.url + "/v1/models", timeout=5).json()["data"]
    assert [c["id"] for c in cards] == [MODEL]
    assert cards[0]["max_model_len"] == MAX_MODEL_LEN


def test_vllm_metric_names_and_labels(vllm: Server) -> None:
    """The gauges the gateway reads, under the names and labels this vLLM version uses."""
    samples = scrape(vllm.url)
    by_name = {n: lab for n, lab, _ in samples}
    for name in ("vllm:kv_cache_usage_perc", "vllm:num_requests_running", "vllm:num_requests_waiting"):
        assert name in by_name, f"{name} missing from vLLM /metrics"
        assert by_name[name] == {"engine": "0", "model_name": MODEL}
    assert "vllm:gpu_cache_usage_perc" not in by_name  # renamed in 0.9.2; the gateway reads either
    for name in ("vllm:generation_tokens_total", "vllm:prompt_tokens_total"):
        assert name in by_name
    assert any(n == "vllm:time_to_first_token_seconds_count" for n, _, _ in samples)


def test_vllm_stream_usage_and_cancel(vllm: Server, vllm_client: openai.OpenAI) -> None:
    """Directly on vLLM: usage chunk before [DONE]; closing the stream aborts the request in the engine."""
    chunks = list(
        vllm_client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12

    stream = vllm_client.chat.completions.create(model=MODEL, stream=True, **LONG)
    it = iter(stream)
    for _ in range(5):
        next(it)
    running = vllm_running(vllm.url)
    stream.close()
    assert running is not None and running >= 1
    waited = _wait_until(lambda: vllm_running(vllm.url) == 0, CANCEL_DEADLINE_S)
    print(f"\nvllm direct: running -> 0 {waited * 1000:.0f} ms after close")


# -- step 2: the gateway in front of vLLM ----------------------------------------------------------


def test_gateway_ready_health_backends(gw: Server) -> None:
    assert httpx.get(gw.url + "/health", timeout=5).status_code == 200
    assert httpx.get(gw.url + "/ready", timeout=5).status_code == 200
    backends = httpx.get(gw.url + "/backends", timeout=5).json()["backends"]
    (b,) = [b for b in backends if b["name"] == BACKEND]
    for key in (
        "name",
        "model",
        "kind",
        "healthy",
        "running",
        "waiting",
        "kv_cache_usage_ratio",
        "load_age_s",
    ):
        assert key in b, f"/backends entry lacks {key}: {b}"
    assert "in_flight" in b
    assert b["model"] == MODEL and b["kind"] == "vllm" and b["healthy"] is True
    assert isinstance(b["running"], int) and isinstance(b["waiting"], int)
    assert 0.0 <= b["kv_cache_usage_ratio"] <= 1.0
    assert b["load_age_s"] < 5


def test_gateway_stream_chat_with_usage(gw: Server, client: openai.OpenAI) -> None:
    max_tokens = 16
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count from one to ten."}],
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    assert raw.headers["x-inferline-backend"] == BACKEND
    assert raw.headers["x-inferline-model"] == MODEL
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())
    assert chunks, "empty stream"
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    with_choices = [c for c in chunks if c.choices]
    finishes = [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason]
    assert finishes == ["length"]
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text.strip()
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == max_tokens
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    content_chunks = [c for c in with_choices if c.choices[0].delta.content]
    assert 1 <= len(content_chunks) <= max_tokens


def test_gateway_stream_natural_stop(client: openai.OpenAI) -> None:
    """Without ignore_eos the model may stop on its own: either way the counts stay within max_tokens."""
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=40,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1 and finishes[0] in ("stop", "length")
    usage = chunks[-1].usage
    assert usage is not None and 1 <= usage.completion_tokens <= 40
    if finishes[0] == "length":
        assert usage.completion_tokens == 40


def test_gateway_non_stream_chat(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=10,
        extra_body={"ignore_eos": True},
    )
    assert raw.headers["x-inferline-backend"] == BACKEND
    assert raw.headers["x-inferline-model"] == MODEL
    resp = raw.parse()
    assert resp.object == "chat.completion"
    assert resp.model == MODEL
    (choice,) = resp.choices
    assert choice.finish_reason == "length"
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 10
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_gateway_non_stream_completion(client: openai.OpenAI) -> None:
    raw = client.completions.with_raw_response.create(
        model=MODEL, prompt="The quick brown fox", max_tokens=8, extra_body={"ignore_eos": True}
    )
    assert raw.headers["x-inferline-backend"] == BACKEND
    resp = raw.parse()
    assert resp.object == "text_completion"
    (choice,) = resp.choices
    assert choice.finish_reason == "length" and isinstance(choice.text, str)
    assert resp.usage is not None and resp.usage.completion_tokens == 8


def test_gateway_priority_passes_through(client: openai.OpenAI) -> None:
    """vLLM runs with --scheduling-policy priority: a request `priority` is accepted end to end."""
    resp = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        extra_body={"priority": -10, "ignore_eos": True},
    )
    assert resp.usage is not None and resp.usage.completion_tokens == 4


def test_gateway_metrics_follow_vllm_load(gw: Server, vllm: Server, client: openai.OpenAI) -> None:
    """The gateway's load gauges are read from vLLM: running rises during a long generation, then falls."""
    assert metric(gw.url, "inferline_backend_healthy", backend=BACKEND) == 1.0
    _wait_until(lambda: metric(gw.url, "inferline_backend_requests_running", backend=BACKEND) == 0, 5)
    stream = client.chat.completions.create(model=MODEL, stream=True, **LONG)
    it = iter(stream)
    seen: dict[str, float] = {}

    def loaded() -> bool:
        next(it)  # keep the stream flowing while we poll
        running = metric(gw.url, "inferline_backend_requests_running", backend=BACKEND)
        kv = metric(gw.url, "inferline_backend_kv_cache_usage_ratio", backend=BACKEND)
        if running is not None and running >= 1 and kv is not None and kv > 0:
            seen.update(running=running, kv=kv)
            return True
        return False

    try:
        _wait_until(loaded, 5, interval=0.05)
        assert metric(gw.url, "inferline_backend_requests_waiting", backend=BACKEND) == 0
        b = next(b for b in httpx.get(gw.url + "/backends", timeout=5).json()["backends"] if b["name"] == BACKEND)
        assert b["in_flight"] >= 1
    finally:
        stream.close()
    assert 0 < seen["kv"] < 0.5  # one sequence of a few hundred tokens in a 46k-token KV cache
    _wait_until(lambda: metric(gw.url, "inferline_backend_requests_running", backend=BACKEND) == 0, 5)
    assert metric(gw.url, "inferline_backend_kv_cache_usage_ratio", backend=BACKEND) == 0.0

    # Request accounting of what went through earlier in this module.
    ok = metric(gw.url, "inferline_requests_total", model=MODEL, backend=BACKEND, status="200")
    assert ok is not None and ok >= 1
    gen = metric(gw.url, "inferline_generation_tokens_total", model=MODEL, backend=BACKEND)
    assert gen is not None and gen >= 16
    ttft_count = metric(gw.url, "inferline_time_to_first_token_seconds_count", model=MODEL)
    assert ttft_count is not None and ttft_count >= 1


def test_gateway_cancel_on_disconnect(gw: Server, vllm: Server, client: openai.OpenAI) -> None:
    """A client that closes its stream mid-generation frees vLLM within ~1-2 s (measured: ~50 ms)."""
    _wait_until(lambda: vllm_running(vllm.url) == 0, 5)
    stream = client.chat.completions.create(model=MODEL, stream=True, **LONG)
    it = iter(stream)
    for _ in range(5):
        next(it)

    def engine_busy() -> bool:
        next(it)
        running = vllm_running(vllm.url)
        return running is not None and running >= 1

    _wait_until(engine_busy, 5)
    stream.close()
    waited = _wait_until(lambda: vllm_running(vllm.url) == 0, CANCEL_DEADLINE_S)
    print(f"\ngateway: vLLM running -> 0 {waited * 1000:.0f} ms after the client closed")
    _wait_until(lambda: metric(gw.url, "inferline_backend_requests_running", backend=BACKEND) == 0, 5)
