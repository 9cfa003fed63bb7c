#!/usr/bin/env bash
# Tools the API benchmark (bench/api_bench.py) drives: Debian's `wrk` (the HTTP load generator,
# C, with Lua scripts) and `pgbench` (postgresql-client, for the ceiling). Nothing to do when they
# are there; as root, install them quietly (apt-get update only if the first try fails).
set -euo pipefail

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
if ! command -v pgbench >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1; then
  need+=(postgresql-client)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "bench-deps: apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; then
    { apt-get update -qq && apt-get install -y -qq "${need[@]}"; } >/dev/null 2>&1 || {
      echo "bench-deps: could not install ${need[*]} (Debian packages)" >&2
      exit 1
    }
  fi
else
  echo "bench-deps: missing ${need[*]} (Debian packages: apt-get install ${need[*]})" >&2
  exit 1
fi
