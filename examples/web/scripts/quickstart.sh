#!/usr/bin/env bash
# The JS quick start: installs the package and the app (once), makes the demo couple (once per
# database), and serves the app on http://localhost:5173 with Vite. The server must be running
# (README: `CORS_ORIGIN=http://localhost:5173 cargo run -p splitsave-server`).
set -euo pipefail
web="$(cd "$(dirname "$0")/.." && pwd)"
sdk="$web/../../client-sdk/js"
[ -d "$sdk/node_modules" ] || npm --prefix "$sdk" ci --no-audit --no-fund
[ -d "$web/node_modules" ] || npm --prefix "$web" ci --no-audit --no-fund
node "$web/scripts/demo-couple.mjs"
exec npm --prefix "$web" run dev
