#!/usr/bin/env bash
# Start real vLLM (CPU) on SmolLM2 at http://127.0.0.1:PORT, served as model "smollm2"; wait for /health.
#
#   scripts/vllm/start.sh PORT [extra vLLM args...]    # prints the URL on stdout when healthy
#   scripts/vllm/stop.sh PORT
#
# Runs scripts/vllm/setup.sh first if the venv or the converted model is missing.
# vLLM runs in its own session/process group (pid in the pid file = group id); stop.sh ends the whole group.
# Environment (all optional):
#   INFERLINE_CACHE               cache root (default $HOME/.cache/inferline)
#   INFERLINE_VLLM_VENV           venv (default $INFERLINE_CACHE/vllm-venv)
#   INFERLINE_VLLM_MODEL          converted model dir (default $INFERLINE_CACHE/smollm2-hf), or an
#                                 `inferline quantize` output (compressed-tensors) as is
#   INFERLINE_VLLM_SERVED_NAME    model name vLLM answers to (default smollm2)
#   INFERLINE_VLLM_LOG            log file (default $INFERLINE_CACHE/run/vllm-PORT.log)
#   INFERLINE_VLLM_PIDFILE        pid file (default $INFERLINE_CACHE/run/vllm-PORT.pid)
#   INFERLINE_VLLM_MAX_MODEL_LEN  default 2048
#   INFERLINE_VLLM_MAX_NUM_SEQS   default 8
#   INFERLINE_VLLM_KV_GIB         KV cache GiB (VLLM_CPU_KVCACHE_SPACE), default 1
#   INFERLINE_VLLM_SCHEDULING     priority (default) | fcfs
#   INFERLINE_VLLM_START_TIMEOUT  seconds to wait for /health, default 300
#   INFERLINE_VLLM_FOREGROUND=1   exec vLLM in the foreground instead (for debugging; no wait, no pid file)
set -euo pipefail

if [[ $# -lt 1 || ! "$1" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 PORT [extra vLLM args...]" >&2
  exit 2
fi
PORT="$1"
shift

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${INFERLINE_CACHE:-$HOME/.cache/inferline}"
VENV="${INFERLINE_VLLM_VENV:-$CACHE/vllm-venv}"
MODEL_DIR="${INFERLINE_VLLM_MODEL:-$CACHE/smollm2-hf}"
RUN_DIR="$CACHE/run"
LOG="${INFERLINE_VLLM_LOG:-$RUN_DIR/vllm-$PORT.log}"
PIDFILE="${INFERLINE_VLLM_PIDFILE:-$RUN_DIR/vllm-$PORT.pid}"
TIMEOUT="${INFERLINE_VLLM_START_TIMEOUT:-300}"
URL="http://127.0.0.1:$PORT"

log() { echo "vllm-start: $*" >&2; }
healthy() { curl -sf -o /dev/null --max-time 2 "$URL/health"; }

# A checkpoint made by `inferline quantize` (its manifest is inferline-quantize.json) needs no conversion.
if [[ ! -f "$VENV/.inferline-ready" || ( ! -f "$MODEL_DIR/.inferline-ready" && ! -f "$MODEL_DIR/inferline-quantize.json" ) ]]; then
  log "venv or model missing: running setup.sh"
  INFERLINE_CACHE="$CACHE" INFERLINE_VLLM_VENV="$VENV" INFERLINE_VLLM_MODEL="$MODEL_DIR" "$HERE/setup.sh" >&2
fi

# Already ours and healthy on this port: nothing to do.
if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && healthy; then
  log "already running (pid $(cat "$PIDFILE"))"
  echo "$URL"
  exit 0
fi
if (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  log "port $PORT is already taken by another process"
  exit 1
fi

# CPU settings: use both cores (reserve none for the front end), bind OpenMP to them, a small KV cache.
export VLLM_CPU_OMP_THREADS_BIND="${VLLM_CPU_OMP_THREADS_BIND:-0-$(($(nproc) - 1))}"
export VLLM_CPU_NUM_OF_RESERVED_CPU="${VLLM_CPU_NUM_OF_RESERVED_CPU:-0}"
export VLLM_CPU_KVCACHE_SPACE="${INFERLINE_VLLM_KV_GIB:-${VLLM_CPU_KVCACHE_SPACE:-1}}"
# Nothing may reach a model hub; usage stats off.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::DeprecationWarning,ignore::FutureWarning}"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

ARGS=(
  -m vllm.entrypoints.openai.api_server # the `vllm` console script fails under the vllm-cpu distribution
  --model "$MODEL_DIR"
  --served-model-name "${INFERLINE_VLLM_SERVED_NAME:-smollm2}"
  --host 127.0.0.1 --port "$PORT"
  --dtype bfloat16
  --enforce-eager # no torch.compile: start-up ~35 s instead of ~2 min
  --max-model-len "${INFERLINE_VLLM_MAX_MODEL_LEN:-2048}"
  --max-num-seqs "${INFERLINE_VLLM_MAX_NUM_SEQS:-8}"
  --scheduling-policy "${INFERLINE_VLLM_SCHEDULING:-priority}"
  --disable-uvicorn-access-log
  "$@"
)

if [[ "${INFERLINE_VLLM_FOREGROUND:-0}" == 1 ]]; then
  exec "$VENV/bin/python" "${ARGS[@]}"
fi

mkdir -p "$(dirname "$LOG")" "$(dirname "$PIDFILE")"
t0=$(date +%s%N)
# setsid: vLLM (API server, EngineCore, worker) gets its own process group, so the pid is also the group id.
setsid "$VENV/bin/python" "${ARGS[@]}" >"$LOG" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$PIDFILE"
log "pid $PID, log $LOG"

while ! healthy; do
  if ! kill -0 "$PID" 2>/dev/null; then
    log "vLLM exited during start-up; last lines of $LOG:"
    tail -n 40 "$LOG" >&2
    rm -f "$PIDFILE"
    exit 1
  fi
  if (( ($(date +%s%N) - t0) / 1000000000 >= TIMEOUT )); then
    log "not healthy after ${TIMEOUT}s; last lines of $LOG:"
    tail -n 40 "$LOG" >&2
    "$HERE/stop.sh" "$PORT" >&2 || true
    exit 1
  fi
  sleep 0.5
done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
rss_kb=$(ps -o rss= -g "$PID" 2>/dev/null | awk '{s += $1} END {print s + 0}')
log "healthy after $((ms / 1000)).$((ms % 1000 / 100))s, RSS of the process group $((rss_kb / 1024)) MiB"
echo "$URL"
