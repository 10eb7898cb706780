#!/usr/bin/env bash
# Creates the virtualenv; on Debian the venv module lives in a separate package (python3-venv),
# installed with apt-get when missing and running as root.
set -euo pipefail
python=$1 venv=$2
if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "gex-alertd needs Python 3.11 or newer; found: $("$python" --version 2>&1)" >&2
  exit 1
fi
if "$python" -m venv "$venv" 2>/dev/null; then
  exit 0
fi
rm -rf "$venv"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  ver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  echo "installing python${ver}-venv with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "python${ver}-venv" >/dev/null || apt-get install -y -qq python3-venv >/dev/null
  "$python" -m venv "$venv"
else
  echo "cannot create a virtualenv: install the venv module (apt-get install python3-venv)" >&2
  exit 1
fi
