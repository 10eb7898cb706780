#!/usr/bin/env bash
# The demo: a private redis-server (AOF on, data under .run/) unless REDIS_URL is given,
# then the daemon on the embedded simulator with alerts on the console. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-config.example.yaml}
redis_pid=""
cleanup() {
  if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
    kill -TERM "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
if [ -z "${REDIS_URL:-}" ]; then
  port=${DEMO_REDIS_PORT:-6390}
  mkdir -p .run/redis
  # its own session, so Ctrl-C reaches only the daemon, which then drains into a live Redis
  setsid redis-server --port "$port" --bind 127.0.0.1 --dir "$PWD/.run/redis" --appendonly yes \
    --save "" --daemonize no --logfile "$PWD/.run/redis/redis.log" &
  redis_pid=$!
  for _ in $(seq 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  export REDIS_URL="redis://127.0.0.1:$port/0"
  echo "private redis-server on $REDIS_URL (data in .run/redis)" >&2
fi
.venv/bin/gex-alertd run --config "$CONFIG" &
daemon_pid=$!
# forward Ctrl-C/TERM to the daemon and wait for its clean exit
trap 'kill -TERM $daemon_pid 2>/dev/null || true' INT TERM
wait $daemon_pid || wait $daemon_pid || true
