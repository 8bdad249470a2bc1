#!/usr/bin/env bash
# CI for @inferline/client: clean install from package-lock.json, then `npm test` (strict type-check
# and build of src/ and test/, then unit, fault-injection and real-engine tests under node --test).
# The engine tests start `inferline engine` from the repository's venv (../../.venv relative to this
# directory, made by `make install` at the repo root); set INFERLINE_TEST_URL to use a running server
# instead, or INFERLINE_BIN to another inferline executable.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
export INFERLINE_BIN="${INFERLINE_BIN:-$(cd "$here/../.." && pwd)/.venv/bin/inferline}"
if [[ -z "${INFERLINE_TEST_URL:-}" && ! -x "$INFERLINE_BIN" ]]; then
  echo "ci.sh: $INFERLINE_BIN not found; run 'make install' at the repository root first" >&2
  exit 1
fi
start=$(date +%s)
npm ci --no-audit --no-fund --loglevel=error
npm test
echo "clients/typescript: ci done in $(( $(date +%s) - start ))s"
