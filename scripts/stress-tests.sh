#!/usr/bin/env bash
# Run the non-heavy test tier N times in a row while every CPU core is kept busy, to prove the suite
# does not depend on a quiet machine. Prints pass/fail and wall time per run, then the total.
#
#   scripts/stress-tests.sh [-n RUNS] [-j JOBS] [-w WORKERS] [-l LOAD%] [-o LOGDIR] [PYTEST ARGS...]
#
#   -n RUNS     how many consecutive runs (default 10)
#   -j JOBS     run each pass as JOBS pytest processes side by side (pytest-xdist, a test file per
#               process at a time; default 1). Every test still runs once per pass; the tests then
#               also compete with each other for the cores: a harsher load, and a shorter pass
#   -w WORKERS  CPU burners (default: one per core, `nproc`)
#   -l LOAD%    each burner's duty cycle, 1-100 (default 100: a core fully taken)
#   -o LOGDIR   where each run's pytest output goes (default: a new /tmp/inferline-stress-XXXX)
#   PYTEST ARGS test selection and options (default: the non-heavy tier, `-m "not heavy"`)
#
# Examples:
#   scripts/stress-tests.sh                                    # the whole non-heavy tier, 10 times
#   scripts/stress-tests.sh -j 2                               # the same, two pytest processes side by side
#   scripts/stress-tests.sh -n 3 tests/client/test_client_engine.py tests/test_nothing_lost.py
#
# The load comes from stress-ng (installed from apt when missing); where it cannot be installed, a
# Python busy-loop per core does the same job. Exit status: 0 when every run passed, 1 otherwise,
# 2 on bad usage.
set -uo pipefail

runs=10
jobs=1
workers=$(nproc)
load=100
logdir=""
usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while getopts "n:j:w:l:o:h" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    j) jobs=$OPTARG ;;
    w) workers=$OPTARG ;;
    l) load=$OPTARG ;;
    o) logdir=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[[ $runs =~ ^[0-9]+$ && $runs -ge 1 ]] || { echo "stress-tests.sh: -n must be a positive integer" >&2; exit 2; }
[[ $jobs =~ ^[0-9]+$ && $jobs -ge 1 ]] || { echo "stress-tests.sh: -j must be a positive integer" >&2; exit 2; }
[[ $workers =~ ^[0-9]+$ && $workers -ge 1 ]] || { echo "stress-tests.sh: -w must be a positive integer" >&2; exit 2; }
[[ $load =~ ^[0-9]+$ && $load -ge 1 && $load -le 100 ]] || { echo "stress-tests.sh: -l must be 1-100" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
[[ -x $py ]] || { echo "stress-tests.sh: $py not found; run 'make install' first" >&2; exit 2; }
[[ -n $logdir ]] || logdir=$(mktemp -d /tmp/inferline-stress-XXXX)
mkdir -p "$logdir"
if [[ $# -eq 0 ]]; then set -- -m "not heavy"; fi
if [[ $jobs -gt 1 ]]; then
  "$py" -c "import xdist" 2>/dev/null || { echo "stress-tests.sh: -j needs pytest-xdist (make install)" >&2; exit 2; }
  set -- -n "$jobs" --dist loadfile "$@"
fi

if ! command -v stress-ng >/dev/null && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "stress-tests.sh: installing stress-ng from apt" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends stress-ng >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends stress-ng >/dev/null 2>&1; } || true
fi

burner_pids=()
test_pid=""
stop_load() {
  if [[ -n $test_pid ]]; then kill "$test_pid" 2>/dev/null; wait "$test_pid" 2>/dev/null; test_pid=""; fi
  for pid in "${burner_pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${burner_pids[@]}"; do wait "$pid" 2>/dev/null; done
  burner_pids=()
}
trap 'stop_load; exit 130' INT TERM
trap stop_load EXIT

if command -v stress-ng >/dev/null; then
  how="stress-ng --cpu $workers --cpu-load $load"
  stress-ng --cpu "$workers" --cpu-load "$load" --timeout 0 --quiet &
  burner_pids+=($!)
else
  how="python busy-loop x$workers at ${load}% (stress-ng unavailable)"
  for _ in $(seq "$workers"); do
    "$py" -c "
import time
duty = $load / 100
while True:
    end = time.monotonic() + 0.1 * duty
    while time.monotonic() < end:
        pass
    if duty < 1:
        time.sleep(0.1 * (1 - duty))
" &
    burner_pids+=($!)
  done
fi
sleep 1

echo "stress-tests.sh: $runs run(s) of: pytest $*"
echo "stress-tests.sh: load: $how on $(nproc) core(s); logs in $logdir"
printf '%-5s %-6s %9s  %-10s %s\n' run result seconds loadavg summary
passed=0
t_all=$(date +%s)
for i in $(seq "$runs"); do
  t0=$(date +%s)
  # In the background and waited for, so that Ctrl-C / SIGTERM reach the trap at once (bash runs traps
  # only between foreground commands) and the run, its servers and the burners all stop.
  (cd "$root" && exec "$py" -m pytest -q -ra -p no:cacheprovider "$@") >"$logdir/run-$i.log" 2>&1 &
  test_pid=$!
  wait "$test_pid"
  rc=$?
  test_pid=""
  secs=$(( $(date +%s) - t0 ))
  summary=$(grep -E '(passed|failed|error)' "$logdir/run-$i.log" | tail -n 1 | sed 's/=//g; s/^ *//; s/ *$//')
  result=FAIL
  if [[ $rc -eq 0 ]]; then result=pass; passed=$((passed + 1)); fi
  printf '%-5s %-6s %9s  %-10s %s\n' "$i" "$result" "$secs" "$(cut -d' ' -f1 /proc/loadavg)" "$summary"
  if [[ $rc -ne 0 ]]; then grep -E '^(FAILED|ERROR) ' "$logdir/run-$i.log" | sed 's/^/      /'; fi
done
total=$(( $(date +%s) - t_all ))
echo "stress-tests.sh: $passed/$runs runs passed under load in ${total}s ($(( total / 60 ))m$(( total % 60 ))s); logs in $logdir"
[[ $passed -eq $runs ]]
