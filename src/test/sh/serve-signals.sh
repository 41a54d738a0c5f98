#!/usr/bin/env bash
# Signals of `qblk serve`: a second SIGTERM forces exit while a graceful shutdown hangs, and the next
# start repairs what the forced exit left; a single SIGINT shuts down gracefully.
#   1. serve a qcow2 device over NBD; qemu-io writes 4 MiB (flushed);
#   2. a NBD client that never reads its replies asks for 4 x 32 MiB: the graceful shutdown waits for
#      those replies, so after SIGTERM the process must still be running 3 s later;
#   3. a second SIGTERM must end it within 10 s with status 75 and the "forcing exit" line;
#   4. serve the same image again: the data is there; a single SIGINT ends it with status 130, the
#      image passes qemu-img check with the dirty flag clear and holds both writes.
# Needs: qemu-utils, curl, ss, a JDK 25. Usage: src/test/sh/serve-signals.sh (about 30 s).
set -euo pipefail
set -m   # background jobs get their own process group and keep SIGINT (not ignored)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
WORK="$(mktemp -d /tmp/qblk-signals.XXXXXX)"
PID=""
cleanup() {
  exec 3>&- 2>/dev/null || true
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
NAME=serve-signals
. "$ROOT/src/test/sh/serve-lib.sh"
FORCED=75

HTTP_PORT=$(free_port); NBD_PORT=$(free_port)
URL="http://127.0.0.1:$HTTP_PORT"
IMG="$WORK/data/disk.qcow2"
NBD="nbd://127.0.0.1:$NBD_PORT/disk"
"$ROOT/qblk" --version >/dev/null   # build once

mkdir -p "$WORK/data"
# qblk keeps a signal ignored that it inherited as ignored (as nohup'd programs expect), and a shell
# started in the background by a non-interactive shell (`(bash .ci/run &)`) ignores SIGINT for good
# (set -m cannot undo that): env gives the service SIGINT's default back, so step 4 tests qblk's
# handler however this script was started.
start_serve() {
  cd "$WORK"
  QBLK_NO_BUILD=1 QBLK_JAVA_OPTS="-Dquarkus.http.port=$HTTP_PORT -Dqblk.images.allowed-dirs=$WORK/data \
    -Dqblk.devices.disk.image=$IMG -Dqblk.devices.disk.create-size=1G -Dqblk.devices.disk.nbd-address=127.0.0.1:$NBD_PORT" \
    env --default-signal=INT "$ROOT/qblk" serve >"$WORK/serve.log" 2>&1 &
  PID=$!
  wait_ready "$URL" "$PID"
}

qemu_io() { # qemu_io WHAT ARGS...: fails the test unless qemu-io succeeds and every pattern matched
  local what=$1; shift
  qemu-io "$@" >"$WORK/qemu-io.log" 2>&1 || fail "$what: $(cat "$WORK/qemu-io.log")"
  if grep -q "Pattern verification failed" "$WORK/qemu-io.log"; then fail "$what: wrong data"; fi
}

# --- 1-3: forced exit
start_serve
qemu_io "qemu-io write" -f raw -c 'write -P 0x3c 0 4M' -c flush "$NBD"
nbd_stuck_client "$NBD_PORT" disk || fail "NBD handshake with the stuck client: $(od -c "$WORK/nbd-greeting" | head -2)"
sleep 1
kill -TERM "$PID"
wait_exit "$PID" 3; rc=$RC
[ "$rc" = running ] || fail "the graceful shutdown did not wait for the stuck client (exit status $rc)"
grep -q "SIGTERM: shutting down" "$WORK/serve.log" || fail "no 'SIGTERM: shutting down' line"
echo "$NAME: still draining 3 s after the first SIGTERM"
t0=$(date +%s%N)
kill -TERM "$PID"
wait_exit "$PID" 10; rc=$RC
PID=""
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$rc" = "$FORCED" ] || fail "second SIGTERM: exit status $rc, wanted $FORCED"
grep -q "second SIGTERM: forcing exit (status $FORCED), images may be left dirty; they are repaired on next open" "$WORK/serve.log" \
  || fail "no 'forcing exit' line"
echo "$NAME: second SIGTERM: exit status $rc after $ms ms"
exec 3>&-
echo "$NAME: after the forced exit: dirty flag $(qemu-img info --output=json "$IMG" | grep -o '"dirty-flag": [a-z]*')"

# --- 4: reopen, single SIGINT
start_serve
qemu_io "data after forced exit" -f raw -c 'read -P 0x3c 0 4M' "$NBD"
qemu_io "qemu-io write after restart" -f raw -c 'write -P 0x5d 64M 1M' "$NBD"
kill -INT "$PID"
wait_exit "$PID" 60; rc=$RC
PID=""
[ "$rc" = 130 ] || fail "SIGINT: exit status $rc, wanted 130"
grep -q "device disk: flushed and closed" "$WORK/serve.log" || fail "no clean close after SIGINT"
qemu-img check -f qcow2 "$IMG" >"$WORK/check.txt" 2>&1 || fail "qemu-img check: $(cat "$WORK/check.txt")"
INFO=$(qemu-img info --output=json "$IMG") || fail "qemu-img info"
grep -q '"dirty-flag": false' <<<"$INFO" || fail "dirty flag still set after SIGINT"
qemu_io "data in the image" -f qcow2 -c 'read -P 0x3c 0 4M' -c 'read -P 0x5d 64M 1M' "$IMG"
echo "$NAME: PASS (second SIGTERM forced exit $FORCED in $ms ms; SIGINT: status 130, image clean, data intact)"
