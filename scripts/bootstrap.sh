#!/usr/bin/env bash
# Set up bankgrowth on a machine that has only Python 3.11+ and pip:
#   1. uv (from PyPI, into .tools/ if it is not already on PATH);
#   2. the locked Python environment (.venv) with every extra;
#   3. with --test: a Java runtime for PySpark (Debian package) when none is present.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if command -v uv >/dev/null 2>&1; then
  UV=$(command -v uv)
else
  if [ ! -x .tools/bin/uv ]; then
    echo "bootstrap: installing uv into .tools/" >&2
    "$PYTHON" -m venv .tools
    .tools/bin/pip install --quiet --disable-pip-version-check "uv==0.13.9"
  fi
  UV=$PWD/.tools/bin/uv
fi

"$UV" sync --locked --all-extras --quiet

if [ "${1:-}" = "--test" ] && ! command -v java >/dev/null 2>&1; then
  echo "bootstrap: installing a Java runtime for the PySpark tests" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq default-jre-headless >/dev/null
fi
echo "$UV"
