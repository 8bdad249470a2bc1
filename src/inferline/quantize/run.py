"""run: one `inferline quantize` job. Checks input and policy, runs the worker in the quant venv, measures the
output's memory to load, and moves the result into place only when everything succeeded.

Nothing partial is left behind: the worker writes into a hidden temp dir beside --out, renamed at the end;
on any failure (or Ctrl-C) the temp dir is removed. The worker's full log is kept under the cache dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from inferline.quantize.schemes import SCHEMES, Format, Scheme, known_schemes, policy_refusal

MANIFEST = "inferline-quantize.json"
WORKER = Path(__file__).with_name("worker.py")
SETUP_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "quant" / "setup.sh"


class QuantizeError(RuntimeError):
    """A job that cannot run or failed; the message is one line for the operator."""


def cache_dir() -> Path:
    return Path(os.environ.get("INFERLINE_CACHE") or Path.home() / ".cache" / "inferline")


def default_venv() -> Path:
    return Path(os.environ.get("INFERLINE_QUANT_VENV") or cache_dir() / "quant-venv")


@dataclass
class Job:
    model: Path
    scheme: Scheme
    out: Path
    force: bool = False
    tags: list[str] = field(default_factory=list)
    group_size: int = 64
    venv: Path = field(default_factory=default_venv)
    setup: bool = True


def resolve_scheme(name: str) -> Scheme:
    scheme = SCHEMES.get(name.lower())
    if scheme is None:
        raise QuantizeError(f"unknown scheme {name!r}; known: {known_schemes()}")
    return scheme


def weights_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(
        p.stat().st_size for p in path.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".gguf")
    )


def check_job(job: Job) -> None:
    """Everything that can be refused before any work: input, output, policy, group size."""
    if not job.model.exists():
        raise QuantizeError(f"model directory {job.model} does not exist")
    if not job.model.is_dir():
        raise QuantizeError(f"--model {job.model} is not a directory (give a Hugging Face model directory)")
    if not (job.model / "config.json").is_file():
        raise QuantizeError(f"{job.model} has no config.json: not a Hugging Face model directory")
    if weights_bytes(job.model) == 0:
        raise QuantizeError(f"{job.model} has no weights (*.safetensors / *.bin)")
    if job.out.resolve() == job.model.resolve():
        raise QuantizeError("--out must differ from --model")
    if job.out.exists() and not job.force:
        raise QuantizeError(f"{job.out} already exists; pass --force to replace it")
    if job.out.exists() and not job.out.is_dir():
        raise QuantizeError(f"{job.out} exists and is not a directory")
    if not job.out.parent.exists():
        raise QuantizeError(f"the parent of --out ({job.out.parent}) does not exist")
    reason = policy_refusal(job.scheme, job.tags)
    if reason and not job.force:
        raise QuantizeError(reason)
    if job.group_size not in (32, 64, 128):
        raise QuantizeError(f"--group-size must be 32, 64 or 128; got {job.group_size}")


def ensure_venv(job: Job, say: Callable[[str], None]) -> Path:
    python = job.venv / "bin" / "python"
    if (job.venv / ".inferline-ready").is_file() and python.is_file():
        return python
    if not job.setup:
        raise QuantizeError(f"the quant venv {job.venv} is missing; run scripts/quant/setup.sh (or drop --no-setup)")
    if not SETUP_SCRIPT.is_file():
        raise QuantizeError(f"the quant venv {job.venv} is missing and {SETUP_SCRIPT} is not there to create it")
    say(f"creating the quant venv {job.venv} (scripts/quant/setup.sh; ~3-4 min once, cached after)")
    env = {**os.environ, "INFERLINE_QUANT_VENV": str(job.venv)}
    proc = subprocess.run(
        ["bash", str(SETUP_SCRIPT)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False
    )
    if proc.returncode != 0 or not python.is_file():
        last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or ["(no output)"]
        raise QuantizeError(f"scripts/quant/setup.sh failed: {last[0][:300]}")
    return python


def _run_json(cmd: list[str], log_path: Path, say: Callable[[str], None], what: str) -> dict[str, Any]:
    """Run a worker; relay its `worker:` lines; keep everything in the log; parse its last stdout line."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TQDM_DISABLE": "1",
        "PYTHONWARNINGS": "ignore",
    }
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(cmd[:3])} ...\n")
        log.flush()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
        )
        try:
            assert proc.stderr is not None and proc.stdout is not None
            for line in proc.stderr:
                log.write(line)
                if line.startswith("worker: "):
                    say(line[len("worker: ") :].rstrip())
            out = proc.stdout.read()
            proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait()
            raise
        log.write(out)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        raise QuantizeError(f"{what} exited with {proc.returncode} and no result (log: {log_path})")
    result: dict[str, Any] = orjson.loads(lines[-1])
    if not result.get("ok"):
        raise QuantizeError(f"{what} failed: {result.get('error', 'unknown error')} (log: {log_path})")
    return result


def run_job(job: Job, say: Callable[[str], None]) -> dict[str, Any]:
    """Run the job; return the manifest written into --out."""
    check_job(job)
    t_all = time.monotonic()
    python = ensure_venv(job, say)
    setup_s = time.monotonic() - t_all
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"quantize-{job.out.name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    tmp = job.out.parent / f".{job.out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        req = {
            "src": str(job.model.resolve()),
            "out": str(tmp.resolve()),
            "scheme": job.scheme.name,
            "group_size": job.group_size,
        }
        work = _run_json(
            [str(python), str(WORKER), "quantize", orjson.dumps(req).decode()], log_path, say, "quantization"
        )
        say("measuring memory to load the output (fresh process)")
        if job.scheme.format is Format.GGUF:
            gguf = tmp / str(work["gguf_file"])
            load = _run_json(
                [sys.executable, "-m", "inferline.quantize.loadcheck", str(gguf)],
                log_path,
                say,
                "loading the GGUF in llama.cpp",
            )
            load["engine"] = "llama.cpp (xllamacpp): RSS growth after load + 1 token, 1 slot x 512 ctx"
        else:
            load = _run_json(
                [str(python), str(WORKER), "loadcheck", orjson.dumps({"dir": str(tmp)}).decode()],
                log_path,
                say,
                "loading the checkpoint",
            )
            work["format_check"] = load.pop("format_check", work.get("format_check"))
            load["engine"] = "safetensors, fresh process"
        timings: dict[str, float] = {
            "setup": round(setup_s, 2),
            **{k.removesuffix("_s"): round(v, 2) for k, v in work.items() if k.endswith("_s") and k != "total_s"},
            "load_check": round(float(load.get("load_s", 0.0)), 2),
            "worker_total": round(float(work.get("total_s", 0.0)), 2),
        }
        manifest: dict[str, Any] = {
            "scheme": job.scheme.name,
            "format": job.scheme.format.value,
            "weight_bits": job.scheme.weight_bits,
            "serving": job.scheme.serving,
            "source": str(job.model.resolve()),
            "source_bytes": weights_bytes(job.model),
            "output_bytes": weights_bytes(tmp),
            "output_file": str(job.out / work["gguf_file"]) if "gguf_file" in work else str(job.out),
            "tags": job.tags,
            "forced": job.force,
            "group_size": job.group_size if job.scheme.name == "w4a16" else None,
            "timings_s": timings,
            "quantize_peak_rss_bytes": work.get("peak_rss_bytes"),
            "source_load_rss_bytes": work.get("src_load_rss_bytes"),
            "load": {k: v for k, v in load.items() if k != "ok"},
            "format_check": work.get("format_check"),
            "tensor_types": work.get("tensor_types"),
            "log": str(log_path),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        timings["total"] = round(time.monotonic() - t_all, 2)
        (tmp / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        _move_into_place(tmp, job.out)
        return manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)
