#!/usr/bin/env bash
# The README's tour, unattended and offline: a loopback upstream from ../shared/upstream,
# an on_demand mirror of fixtures/small, the artifact count before and after pulls, and a
# pull-through distribution of the whole upstream.
set -euo pipefail
cd "$(dirname "$0")"
SHARED="${SHARED:-$(cd .. && pwd)/shared}"
UP="$SHARED/upstream/upstream"
LAZYREG=.venv/bin/lazyreg
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lazyreg-demo.XXXXXX")"
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cleanup() {
  [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  "$UP" stop --dir "$WORK/upstream" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "starting the test upstream (CNCF distribution) and seeding it"
UPSTREAM_URL=$("$UP" start --dir "$WORK/upstream" --port "$(free_port)")
"$UP" seed --url "$UPSTREAM_URL" --dir "$WORK/upstream" --big-mib 0 --many-tags 0 >/dev/null 2>&1
echo "upstream: $UPSTREAM_URL"

PORT=$(free_port)
export LAZYREG_SERVER="http://127.0.0.1:$PORT"
"$LAZYREG" serve --port "$PORT" --data-dir "$WORK/data" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do "$LAZYREG" status >/dev/null 2>&1 && break; sleep 0.1; done
say "lazyreg: $LAZYREG_SERVER"

say "lazyreg remote create / repository create / distribution create"
"$LAZYREG" remote create small --url "$UPSTREAM_URL" --upstream-name fixtures/small --policy on_demand >/dev/null
"$LAZYREG" repository create small >/dev/null
"$LAZYREG" distribution create small --base-path mirrors/small --repository small >/dev/null

say "lazyreg repository sync small --remote small"
"$LAZYREG" repository sync small --remote small

say "stored after the sync: manifests and configs, no layer"
"$LAZYREG" artifact list

say "skopeo copy docker://127.0.0.1:$PORT/mirrors/small:v1"
skopeo copy -q --src-tls-verify=false "docker://127.0.0.1:$PORT/mirrors/small:v1" "dir:$WORK/v1"
say "stored now: + the 3 layers of v1"
"$LAZYREG" artifact list

say "skopeo copy docker://127.0.0.1:$PORT/mirrors/small:v2 (shares its base layer with v1)"
skopeo copy -q --src-tls-verify=false "docker://127.0.0.1:$PORT/mirrors/small:v2" "dir:$WORK/v2"
say "stored now: + the one layer v2 does not share"
"$LAZYREG" artifact list

say "pull-through: one distribution for the whole upstream, no sync"
"$LAZYREG" remote create upstream --url "$UPSTREAM_URL" >/dev/null
"$LAZYREG" distribution create hub --base-path hub --remote upstream --pull-through >/dev/null
"$LAZYREG" distribution list
say "skopeo copy docker://127.0.0.1:$PORT/hub/fixtures/oci:1.0"
skopeo copy -q --src-tls-verify=false "docker://127.0.0.1:$PORT/hub/fixtures/oci:1.0" "dir:$WORK/oci"
say "the first pull created the repository hub/fixtures/oci"
"$LAZYREG" repository list
say "done"
