#!/usr/bin/env bash
# Set up bankgrowth on a machine that has only Python 3.11+ and pip:
#   1. uv (from PyPI, into .tools/ if it is not already on PATH);
#   2. the locked Python environment (.venv) with every extra, its packages compiled to bytecode
#      once here, so that no command compiles them again where Python may not write bytecode;
#   3. with --test: a Java runtime for PySpark and a PostgreSQL server for the ledger tests
#      (Debian packages) when they are not present.
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

"$UV" sync --locked --all-extras --compile-bytecode --quiet

if [ "${1:-}" = "--test" ]; then
  MISSING=""
  command -v java >/dev/null 2>&1 || MISSING="$MISSING default-jre-headless"
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || MISSING="$MISSING postgresql"
  if [ -n "$MISSING" ]; then
    echo "bootstrap: installing$MISSING for the tests" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING >/dev/null
  fi
fi
echo "$UV"
