#!/usr/bin/env bash
# The demo: a private redis-server (AOF on, data under .run/) unless REDIS_URL is given,
# then the daemon on the embedded simulator with alerts on the console. Ctrl-C stops both.
#
# The private Redis is not open to every local user: it has a generated password (kept in
# .run/redis.password, 0600, the same on every run), its data directory is 0700 and its files
# 0600. The password reaches redis-server in a config file and the daemon in a credential file
# ($CREDENTIALS_DIRECTORY/REDIS_URL, read by `${REDIS_URL}` in the config): never on a command
# line (`ps` shows those) and never printed.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-config.example.yaml}
GEX_ALERTD=${GEX_ALERTD:-.venv/bin/gex-alertd}
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
  umask 077 # what follows creates only owner-only files: the password, Redis's data
  mkdir -p "${RUN_DIR:-.run}"
  run=$(cd "${RUN_DIR:-.run}" && pwd)
  mkdir -p "$run/redis" "$run/credentials"
  # also files an older demo left world-readable
  chmod -R go-rwx "$run"
  if [ ! -s "$run/redis.password" ]; then
    head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$run/redis.password"
  fi
  password=$(<"$run/redis.password")
  printf 'requirepass %s\n' "$password" >"$run/redis/redis.conf"
  printf 'redis://:%s@127.0.0.1:%s/0\n' "$password" "$port" >"$run/credentials/REDIS_URL"
  # its own session, so Ctrl-C reaches only the daemon, which then drains into a live Redis
  setsid redis-server "$run/redis/redis.conf" --port "$port" --bind 127.0.0.1 --dir "$run/redis" \
    --appendonly yes --save "" --daemonize no --logfile "$run/redis/redis.log" &
  redis_pid=$!
  # ready once the server on the port is this one (its process_id): another server already on
  # the port (another demo, a test) would take the daemon's data, or refuse its password
  ours=""
  for _ in $(seq 300); do
    kill -0 "$redis_pid" 2>/dev/null || break # it ended: the port was taken, a bad --dir...
    answer=$(REDISCLI_AUTH=$password redis-cli --no-auth-warning -p "$port" info server 2>/dev/null |
      tr -d '\r' | sed -n 's/^process_id://p') || true # not listening yet
    [ "$answer" = "$redis_pid" ] && ours=1 && break
    sleep 0.1
  done
  unset password
  if [ -z "$ours" ]; then
    echo "the demo's redis-server did not start on 127.0.0.1:$port: $(tail -n 2 "$run/redis/redis.log" \
      2>/dev/null | tr "\n" " ")Another server on that port? Choose another with DEMO_REDIS_PORT=PORT, or use a" \
      "Redis of yours with REDIS_URL=redis://..." >&2
    exit 1
  fi
  export CREDENTIALS_DIRECTORY="$run/credentials"
  echo "private redis-server on 127.0.0.1:$port (data in $run/redis, password in" \
    "$run/redis.password)" >&2
fi
"$GEX_ALERTD" run --config "$CONFIG" &
daemon_pid=$!
# forward Ctrl-C/TERM to the daemon and wait for its clean exit. Each signal cuts a `wait`
# short, and there can be several: SIGTERM to `make run`'s process group reaches this script
# twice (make forwards it too), so wait until the daemon is gone, however many came: Redis,
# stopped on the way out, is still there for the daemon's drain
trap 'kill -TERM $daemon_pid 2>/dev/null || true' INT TERM
# and end with its exit status (2: a bad config, 1: a failure), which a signal's cut-short
# `wait` (128 + the signal) does not replace
status=0
while :; do
  wait $daemon_pid && { status=0; break; }
  status=$?
  kill -0 $daemon_pid 2>/dev/null || break
done
exit $status
