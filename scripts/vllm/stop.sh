#!/usr/bin/env bash
# Stop the vLLM that scripts/vllm/start.sh PORT started: SIGTERM to its process group, SIGKILL after a grace period.
#   scripts/vllm/stop.sh PORT       (INFERLINE_VLLM_PIDFILE / INFERLINE_CACHE as for start.sh)
set -euo pipefail
if [[ $# -ne 1 ]]; then
  echo "usage: $0 PORT" >&2
  exit 2
fi
CACHE="${INFERLINE_CACHE:-$HOME/.cache/inferline}"
PIDFILE="${INFERLINE_VLLM_PIDFILE:-$CACHE/run/vllm-$1.pid}"
GRACE="${INFERLINE_VLLM_STOP_GRACE:-15}"
if [[ ! -f "$PIDFILE" ]]; then
  echo "vllm-stop: no pid file $PIDFILE" >&2
  exit 0
fi
PID="$(cat "$PIDFILE")"
alive() { kill -0 -- "-$PID" 2>/dev/null; }
if alive; then
  kill -TERM -- "-$PID" 2>/dev/null || true
  for _ in $(seq 1 $((GRACE * 10))); do
    alive || break
    sleep 0.1
  done
  if alive; then
    echo "vllm-stop: group $PID still alive after ${GRACE}s: SIGKILL" >&2
    kill -KILL -- "-$PID" 2>/dev/null || true
  fi
fi
rm -f "$PIDFILE"
echo "vllm-stop: stopped $PID" >&2
