#!/usr/bin/env bash
# The end-to-end test drives Debian's Chromium (/usr/bin/chromium) through playwright-core, which
# downloads no browser of its own. Installs it when it is missing, e.g. in CI on a fresh machine.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
echo "installing chromium (apt-get)…" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq chromium >/dev/null
[ -x /usr/bin/chromium ]
