#!/usr/bin/env bash
# Node tools the Python tests drive (ganache, solc), installed exactly as package-lock.json pins
# them. Quick when already installed: `npm ci` runs only when node_modules is missing or older
# than the lock file. Without npm the ganache tests skip with their reason.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f package-lock.json ] || exit 0
if ! command -v npm >/dev/null 2>&1; then
  echo "test-deps: npm not found; the ganache tests will be skipped" >&2
  exit 0
fi
STAMP=node_modules/.coffer-lock-$(cksum < package-lock.json | cut -d' ' -f1)
if [ -x node_modules/.bin/ganache ] && [ -x node_modules/.bin/solcjs ] && [ -f "$STAMP" ]; then
  exit 0
fi
echo "test-deps: npm ci (ganache, solc)"
npm ci --no-audit --no-fund --loglevel=error
rm -f node_modules/.coffer-lock-*
touch "$STAMP"
