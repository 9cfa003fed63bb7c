#!/usr/bin/env bash
# Tools the Python tests drive: Debian's Chromium (Playwright) and the Node tools (ganache, solc),
# installed exactly as package-lock.json pins them. Quick when already installed: `npm ci` runs
# only when node_modules is missing or older than the lock file. Without npm the ganache tests
# skip with their reason.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's Chromium for the Playwright checkout tests (they skip with their reason without it).
# Nothing to do when it is there; as root, install it quietly (apt-get update only if needed).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: apt-get install chromium"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq chromium >/dev/null 2>&1; then
      { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null 2>&1 \
        || echo "test-deps: could not install chromium; the browser tests will be skipped" >&2
    fi
  else
    echo "test-deps: chromium not found (Debian package chromium); the browser tests will be skipped" >&2
  fi
fi

# Debian's PgBouncer for the scale-out tests (tests/scaleout: they start their own on a free port
# with their own config; the package's service is not used). Same rules as Chromium.
if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: apt-get install pgbouncer"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq pgbouncer >/dev/null 2>&1; then
      { apt-get update -qq && apt-get install -y -qq pgbouncer; } >/dev/null 2>&1 \
        || echo "test-deps: could not install pgbouncer; the PgBouncer tests will be skipped" >&2
    fi
  else
    echo "test-deps: pgbouncer not found (Debian package pgbouncer); the PgBouncer tests will be skipped" >&2
  fi
fi

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
