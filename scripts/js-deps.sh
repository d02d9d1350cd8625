#!/usr/bin/env bash
# Installs the JS interop client's dependencies (tests/js) exactly as locked, once: the end-to-end
# tests that run a stock automerge-repo client call this first. Needs node >= 20 and npm.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ -d "$root/tests/js/node_modules" ]; then
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "js-deps: npm is not installed; the JS interop tests need node >= 20 and npm" >&2
  exit 1
fi

npm ci --prefix "$root/tests/js" --no-audit --no-fund
