#!/usr/bin/env bash
# Smoke test of `qblk serve` as an operator runs it: start the service in a temporary directory with
# no configuration (embedded default device), wait until ready, write and read over NBD with qemu-io,
# list devices with the CLI, stop it with SIGTERM and check that the image was closed cleanly.
# Needs: qemu-utils (qemu-io, qemu-img), curl, a JDK 25. Usage: src/test/sh/serve-smoke.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
WORK="$(mktemp -d /tmp/qblk-smoke.XXXXXX)"
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
NAME=serve-smoke
. "$ROOT/src/test/sh/serve-lib.sh"

HTTP_PORT=$(free_port); NBD_PORT=$(free_port)
URL="http://127.0.0.1:$HTTP_PORT"

# Build once (the launcher rebuilds only when sources changed).
"$ROOT/qblk" --version >/dev/null

cd "$WORK"
QBLK_NO_BUILD=1 QBLK_JAVA_OPTS="-Dquarkus.http.port=$HTTP_PORT -Dqblk.nbd.address=127.0.0.1:$NBD_PORT" \
  "$ROOT/qblk" serve >serve.log 2>&1 &
PID=$!
wait_ready "$URL" "$PID"
[ -f data/default.qcow2 ] || fail "data/default.qcow2 was not created"
grep -q "qemu-io" serve.log || fail "log does not say how to connect"

NBD="nbd://127.0.0.1:$NBD_PORT/default"
qemu-io -f raw -c 'write -P 0x5c 1M 256k' -c 'flush' "$NBD" >qemu-io.log 2>&1 || fail "qemu-io write: $(cat qemu-io.log)"
qemu-io -f raw -c 'read -P 0x5c 1M 256k' "$NBD" >qemu-io.log 2>&1 || fail "qemu-io read: $(cat qemu-io.log)"
grep -q "Pattern verification failed" qemu-io.log && fail "read back wrong data: $(cat qemu-io.log)"

QBLK_NO_BUILD=1 "$ROOT/qblk" device list --url "$URL" >list.txt 2>&1 || fail "qblk device list: $(cat list.txt)"
grep -q "^default *running" list.txt || fail "device list: $(cat list.txt)"
# Whole output first: with pipefail, grep -q closing the pipe early would fail curl (error 23).
METRICS=$(curl -fsS "$URL/q/metrics") || fail "GET /q/metrics"
grep -qF 'qblk_io_bytes_total{device="default",op="write"} 262144' <<<"$METRICS" || fail "write bytes metric"

kill -TERM "$PID"
rc=0; wait "$PID" || rc=$?
PID=""
[ "$rc" = 0 ] || [ "$rc" = 143 ] || fail "exit code $rc after SIGTERM"
grep -q "device default: flushed and closed" serve.log || fail "no clean close in the log"
qemu-img check -f qcow2 data/default.qcow2 >check.txt 2>&1 || fail "qemu-img check: $(cat check.txt)"
INFO=$(qemu-img info --output=json data/default.qcow2) || fail "qemu-img info"
grep -q '"dirty-flag": false' <<<"$INFO" || fail "dirty flag still set"
qemu-io -f qcow2 -c 'read -P 0x5c 1M 256k' data/default.qcow2 >qemu-io.log 2>&1 || fail "data after restart: $(cat qemu-io.log)"
grep -q "Pattern verification failed" qemu-io.log && fail "data lost after shutdown"
echo "serve-smoke: PASS (exit code $rc, image clean, data intact)"
