#!/usr/bin/env bash
# Installs the system binaries the daemon and its tests need, when they are missing.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)  # redis-cli: the test Redis Cluster
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# the live page's browser tests drive Debian's chromium (Playwright, no browser download)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
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
