#!/usr/bin/env bash
# Installs the system binaries the daemon and its tests need, when they are missing.
#   ensure-system-deps.sh        what the tests and benches need (make test, make bench)
#   ensure-system-deps.sh run    what the demo needs (make run): its Redis, nothing of the tests'
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# redis-cli: the demo's readiness check, and the test Redis Cluster
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if [ "${1:-}" != run ]; then
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
  # the live page's browser tests drive Debian's chromium (Playwright, no browser download)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing: ${need[*]}. Install them with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${need[*]} and no apt-get here: install them with your package manager" >&2
  exit 1
fi
echo "installing ${need[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
