#!/usr/bin/env bash
# Prometheus and promtool for tests and CI (Debian's `prometheus` package: 2.42 on bookworm).
#
#   scripts/prometheus.sh install                 install the package from apt if promtool/prometheus are missing
#   scripts/prometheus.sh start PORT CONFIG DIR   install if needed, run prometheus on 127.0.0.1:PORT with CONFIG,
#                                                 its TSDB under DIR; wait until /-/ready answers
#   scripts/prometheus.sh stop PORT               stop the server this script started on PORT
#
# Exit status: 0 ok; 1 start failed (log tail printed); 2 usage; 3 prometheus missing and not installable.
set -euo pipefail

usage() { echo "usage: $0 install | start PORT CONFIG DIR | stop PORT" >&2; exit 2; }

install_prometheus() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  echo "prometheus.sh: prometheus/promtool not found; installing Debian's prometheus package" >&2
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "prometheus.sh: not root and no sudo: cannot install prometheus" >&2; exit 3; }
    sudo=(sudo -n)
  fi
  if ! command -v apt-get >/dev/null \
    || ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    || ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      prometheus >/dev/null; then
    echo "prometheus.sh: could not install prometheus with apt-get" >&2
    exit 3
  fi
}

ready() {
  if command -v curl >/dev/null; then
    curl -fsS "http://127.0.0.1:$1/-/ready" >/dev/null 2>&1
  else
    python3 -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" \
      "http://127.0.0.1:$1/-/ready" >/dev/null 2>&1
  fi
}

[[ $# -ge 1 ]] || usage
cmd=$1
case $cmd in
  install)
    [[ $# -eq 1 ]] || usage
    install_prometheus
    echo "prometheus.sh: $(promtool --version 2>&1 | head -n 1)"
    ;;
  start)
    [[ $# -eq 4 ]] || usage
    port=$2 config=$3 dir=$4
    [[ $port =~ ^[0-9]+$ ]] && (( port > 0 && port < 65536 )) || usage
    install_prometheus
    pidfile=/tmp/inferline-prometheus-$port.pid
    logfile=$dir/prometheus.log
    mkdir -p "$dir/data"
    promtool check config "$config" >/dev/null || { promtool check config "$config" >&2; exit 1; }
    nohup prometheus --config.file="$config" --storage.tsdb.path="$dir/data" \
      --web.listen-address="127.0.0.1:$port" --web.enable-lifecycle \
      --storage.tsdb.retention.time=1d >"$logfile" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 300); do
      if ready "$port"; then
        echo "prometheus.sh: prometheus on 127.0.0.1:$port (pid $(cat "$pidfile"), log $logfile)"
        exit 0
      fi
      kill -0 "$(cat "$pidfile")" 2>/dev/null || break
      sleep 0.1
    done
    echo "prometheus.sh: prometheus did not become ready on 127.0.0.1:$port; log:" >&2
    tail -n 20 "$logfile" >&2 || true
    exit 1
    ;;
  stop)
    [[ $# -eq 2 ]] || usage
    port=$2
    pidfile=/tmp/inferline-prometheus-$port.pid
    if [[ -f $pidfile ]] && pid=$(cat "$pidfile") && kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
      echo "prometheus.sh: stopped prometheus on 127.0.0.1:$port (pid $pid)"
    else
      echo "prometheus.sh: nothing running on 127.0.0.1:$port from this script"
    fi
    rm -f "$pidfile"
    ;;
  *)
    usage
    ;;
esac
