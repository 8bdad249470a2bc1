#!/usr/bin/env bash
# A throwaway redis-server on 127.0.0.1:PORT for tests and CI: no persistence, daemonized, pidfile in /tmp.
#
#   scripts/redis.sh start PORT   install redis-server from apt if missing, start it, wait until it answers
#   scripts/redis.sh stop PORT    stop the server this script started on PORT
#
# Exit status: 0 ok; 1 start failed (log tail printed); 2 usage; 3 redis-server missing and not installable.
set -euo pipefail

usage() { echo "usage: $0 start|stop PORT" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
cmd=$1
port=$2
[[ $port =~ ^[0-9]+$ ]] && (( port > 0 && port < 65536 )) || usage

pidfile=/tmp/inferline-redis-$port.pid
logfile=/tmp/inferline-redis-$port.log

install_redis() {
  command -v redis-server >/dev/null && return 0
  echo "redis.sh: redis-server not found; installing it from apt" >&2
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "redis.sh: not root and no sudo: cannot install redis-server" >&2; exit 3; }
    sudo=(sudo -n)
  fi
  if ! command -v apt-get >/dev/null \
    || ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    || ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      redis-server >/dev/null; then
    echo "redis.sh: could not install redis-server with apt-get" >&2
    exit 3
  fi
}

answers() { [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]; }

running_pid() {
  [[ -f $pidfile ]] || return 1
  local pid
  pid=$(cat "$pidfile")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

case $cmd in
  start)
    install_redis
    if running_pid >/dev/null && answers; then
      echo "redis.sh: already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"
      exit 0
    fi
    rm -f "$pidfile"
    redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes \
      --save "" --appendonly no --dir /tmp \
      --daemonize yes --pidfile "$pidfile" --logfile "$logfile"
    for _ in $(seq 100); do
      if answers; then
        echo "redis.sh: redis-server on 127.0.0.1:$port (pid $(cat "$pidfile" 2>/dev/null || echo ?), log $logfile)"
        exit 0
      fi
      sleep 0.05
    done
    echo "redis.sh: redis-server did not answer on 127.0.0.1:$port within 5 s; log:" >&2
    tail -n 20 "$logfile" >&2 || true
    exit 1
    ;;
  stop)
    if pid=$(running_pid); then
      kill "$pid"
      # redis-server removes its pidfile on a clean exit (kill -0 alone would also see an unreaped zombie).
      for _ in $(seq 100); do
        [[ -f $pidfile ]] && kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
      done
      if [[ -f $pidfile ]] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
      echo "redis.sh: stopped redis-server on 127.0.0.1:$port (pid $pid)"
    else
      echo "redis.sh: nothing running on 127.0.0.1:$port from this script"
    fi
    rm -f "$pidfile"
    ;;
  *)
    usage
    ;;
esac
