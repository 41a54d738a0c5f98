#!/bin/bash
# End-to-end test of `qblk serve` with ublk devices; run INSIDE the guest:
#   flock /tmp/qblk-vm.lock xfstests-runner/vm-run 'xfstests-runner/e2e-service.sh'
# (build the jar on the host first: ./qblk --version). Two service runs, images on /scratch:
#   1. no device configured: the embedded default device must be served over NBD *and* ublk; a qcow2
#      device added over REST with frontend=ublk gets /dev/ublkbN, fio verifies data on it (crc32c),
#      readiness is UP, the metrics counters moved; DELETE removes the node and leaves a clean image;
#      SIGTERM removes every ublk device and leaves clean images.
#   2. forced exit: the default device (NBD + ublk) with a NBD client that stops reading: still
#      draining 3 s after SIGTERM, a second SIGTERM ends it with status 75; data flushed through
#      ublk is in the image; ublk devices the forced exit left are deleted with `qblk ublk del`.
#   3. a ublk device declared in configuration (qblk.devices.boot.*) starts at boot; data written
#      through it is in the image after SIGTERM, which must be clean; the image of run 2 is served
#      again (over NBD) and is clean after this run's SIGTERM (repaired on open).
# Prints PASS/FAIL per check, exits 1 if any failed (2 if not in a ublk guest).
set -u
cd "$(dirname "$0")/.."
. src/test/sh/serve-lib.sh   # nbd_stuck_client (its fail/wait helpers are replaced below)
QBLK="$PWD/qblk"
WORK=${E2E_WORK:-/scratch/svc}
PORT=${E2E_HTTP_PORT:-8420}
URL=http://127.0.0.1:$PORT
START_TIMEOUT=${E2E_START_TIMEOUT:-300}
FIO_SIZE=${E2E_FIO_SIZE:-32M}
rm -rf "$WORK"; mkdir -p "$WORK/data"
. xfstests-runner/e2e-lib.sh

# JVM options: the caller's, else a short-start set (+ the AOT cache xfstests-runner/e2e-ublk trains, when fresh).
jopts=${QBLK_JAVA_OPTS:-}
if [ -z "$jopts" ]; then
  jopts="-XX:+UseSerialGC -XX:TieredStopAtLevel=1"
  aot=target/qblk-e2e.aot
  if [ -f "$aot" ] && [ "$aot" -nt target/quarkus-app/quarkus-run.jar ]; then
    jopts="$jopts -XX:AOTCache=$PWD/$aot -Xlog:aot=off -Xlog:cds=off"
  fi
fi

svc_pid=""
# start_service LOG -Dkey=value...: runs `qblk serve` in $WORK, waits for /q/health/ready
start_service() {
  local log=$1; shift
  (cd "$WORK" && exec env QBLK_JAVA_OPTS="$jopts -Dquarkus.http.port=$PORT -Dqblk.images.allowed-dirs=$WORK/data -Dqblk.nbd.address=127.0.0.1:0 $*" \
      "$QBLK" serve) >"$log" 2>&1 &
  svc_pid=$!
  local start; start=$(date +%s)
  until curl -fsS "$URL/q/health/ready" >/dev/null 2>&1; do
    if ! kill -0 "$svc_pid" 2>/dev/null; then fail "qblk serve exited before becoming ready"; tail -20 "$log"; svc_pid=""; return 1; fi
    if [ $(( $(date +%s) - start )) -ge "$START_TIMEOUT" ]; then fail "qblk serve not ready after $START_TIMEOUT s"; tail -20 "$log"; return 1; fi
    sleep 1
  done
  pass "qblk serve ready after $(( $(date +%s) - start )) s"
}

# stop_service LOG: SIGTERM, expect exit 143 and no ublk device left
stop_service() {
  local log=$1
  kill -TERM "$svc_pid"
  local rc=0 start; start=$(date +%s)
  wait "$svc_pid" || rc=$?
  svc_pid=""
  if [ $rc -eq 143 ] || [ $rc -eq 0 ]; then pass "SIGTERM stops the service (rc $rc, $(( $(date +%s) - start )) s)"; else fail "service ended with rc $rc"; tail -20 "$log"; fi
  sleep 1
  local left; left=$(ls /dev/ublkb* /dev/ublkc* 2>/dev/null)
  if [ -z "$left" ]; then pass "no /dev/ublkb*/ublkc* left after SIGTERM"; else fail "left behind after SIGTERM: $left"; fi
}

clean_image() { # clean_image IMG: qemu-img check passes and the dirty flag is clear
  qemu-img check -q "$1" && qemu-img info --output=json "$1" | jq -e '.["dirty-flag"] == false' >/dev/null
}

api() { curl -sS -H 'Content-Type: application/json' "$@"; }

fio_verify() { # fio_verify NAME DEV extra-args...: fails on any I/O or verify error
  local name=$1 d=$2; shift 2
  fio --name="$name" --filename="$d" --direct=1 --ioengine=libaio --size="$FIO_SIZE" \
      --verify=crc32c --do_verify=1 --verify_fatal=1 --exitall_on_error=1 --randrepeat=0 "$@"
}

metric() { # metric NAME LABELS: the value of one Prometheus sample, or 0
  curl -fsS "$URL/q/metrics" | awk -v k="$1{$2}" '$1 == k { print $2; found = 1 } END { if (!found) print 0 }'
}

say "guest $(uname -r), $(nproc) CPUs"
[ -e /dev/ublk-control ] || { echo "no /dev/ublk-control: run this inside xfstests-runner/vm-run"; exit 2; }
# The guest starts with the loopback interface down; the REST API and NBD listen on 127.0.0.1.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null || busybox ifconfig lo 127.0.0.1 up
ls /dev/ublkb* /dev/ublkc* >/dev/null 2>&1 && { fail "ublk devices exist before the test: $(ls /dev/ublk[bc]*)"; }

cleanup() { if [ -n "$svc_pid" ]; then kill -KILL "$svc_pid" 2>/dev/null; wait "$svc_pid" 2>/dev/null; fi; }
trap cleanup EXIT

# ---------------------------------------------------------------- run 1: default device + REST
say "=== run 1: no configured device, ublk device over REST"
if start_service "$WORK/serve1.log"; then
  default_ublk=$(api "$URL/devices/default" | jq -r '.endpoints[] | select(startswith("/dev/ublkb"))')
  if [ -n "$default_ublk" ] && [ -b "$default_ublk" ]; then pass "default device also served over ublk as $default_ublk"
  else fail "default device has no ublk endpoint: $(api "$URL/devices/default")"; grep -i ublk "$WORK/serve1.log" | tail -3; fi

  code=$(api -o "$WORK/add.json" -w '%{http_code}' -X POST "$URL/devices" \
      -d '{"name":"api","image":"api.qcow2","createSize":"1G","frontend":"ublk","queues":2,"depth":64}')
  dev=$(jq -r '.endpoint // empty' "$WORK/add.json" 2>/dev/null)
  if [ "$code" = 201 ] && [[ "$dev" == /dev/ublkb* ]]; then pass "POST /devices frontend=ublk: 201, endpoint $dev"
  else fail "POST /devices frontend=ublk: HTTP $code $(cat "$WORK/add.json")"; dev=""; fi

  if [ -n "$dev" ]; then
    [ -b "$dev" ] && pass "$dev is a block device" || fail "$dev does not exist"
    listed=$(api "$URL/devices" | jq -r --arg d "$dev" '.[] | select(.name == "api" and .state == "running" and .frontend == "ublk" and .endpoint == $d and .queues == 2) | .name')
    [ "$listed" = api ] && pass "GET /devices reports api running on $dev" || fail "GET /devices: $(api "$URL/devices")"
    [ "$(blockdev --getsize64 "$dev" 2>/dev/null)" = 1073741824 ] && pass "$dev is 1 GiB" || fail "$dev size $(blockdev --getsize64 "$dev" 2>&1)"

    check "fio 4k randwrite depth 32 on $dev + crc32c verify" fio_verify s4k "$dev" --rw=randwrite --bs=4k --iodepth=32
    check "fio 64k randwrite depth 16 on $dev + crc32c verify" fio_verify s64k "$dev" --rw=randwrite --bs=64k --iodepth=16 --offset=64M
    check "write a pattern with dd (O_DIRECT) + fsync" sh -c "head -c 1048576 /dev/urandom >$WORK/pattern && dd if=$WORK/pattern of=$dev bs=1M seek=512 oflag=direct conv=fsync status=none"

    ready=$(curl -sS -o "$WORK/ready.json" -w '%{http_code}' "$URL/q/health/ready")
    if [ "$ready" = 200 ] && jq -e '.status == "UP" and (.checks[] | select(.name == "devices") | .data.api == "UP" and .data.default == "UP")' "$WORK/ready.json" >/dev/null
    then pass "/q/health/ready UP with api and default"; else fail "/q/health/ready: $ready $(cat "$WORK/ready.json")"; fi

    wbytes=$(metric qblk_io_bytes_total 'device="api",op="write"')
    rbytes=$(metric qblk_io_bytes_total 'device="api",op="read"')
    wcount=$(metric qblk_io_seconds_count 'device="api",op="write"')
    fcount=$(metric qblk_io_seconds_count 'device="api",op="flush"')
    say "metrics api: write bytes $wbytes, read bytes $rbytes, writes $wcount, flushes $fcount"
    awk -v w="$wbytes" -v r="$rbytes" -v c="$wcount" 'BEGIN { exit !(w >= 33554432 + 1048576 && r >= 33554432 && c > 0) }' \
      && pass "/q/metrics counters moved (write bytes $wbytes, read bytes $rbytes)" || fail "/q/metrics counters: write $wbytes read $rbytes count $wcount"
    awk -v f="$fcount" 'BEGIN { exit !(f > 0) }' && pass "/q/metrics counted the flush" || fail "no flush counted ($fcount)"

    id=${dev#/dev/ublkb}
    code=$(api -o "$WORK/del.json" -w '%{http_code}' -X DELETE "$URL/devices/api")
    [ "$code" = 204 ] && pass "DELETE /devices/api: 204" || fail "DELETE /devices/api: $code $(cat "$WORK/del.json")"
    sleep 1
    if [ -e "$dev" ] || [ -e "/dev/ublkc$id" ]; then fail "$dev / ublkc$id still exist after DELETE"; else pass "$dev and /dev/ublkc$id gone after DELETE"; fi
    code=$(curl -sS -o /dev/null -w '%{http_code}' "$URL/devices/api")
    [ "$code" = 404 ] && pass "GET /devices/api: 404 after DELETE" || fail "GET /devices/api after DELETE: $code"
    # fio's verify reads hit allocated clusters: the service's devices link reads to their commit too
    # (MeteredTarget forwards the plans)
    served=$(grep -o "device api: ublk device $id served .*" "$WORK/serve1.log" | tail -1)
    say "log: ${served:-no served line for api}"
    [[ "$served" =~ reads\ linked\ to\ their\ commit:\ [1-9] ]] && pass "api's reads went out linked to their commit" \
      || fail "api: no linked reads (${served:-no served line in the log})"
    check "api.qcow2 passes qemu-img check, dirty flag clear" clean_image "$WORK/data/api.qcow2"
    check "data written through ublk is in api.qcow2" sh -c "qemu-img convert -O raw $WORK/data/api.qcow2 $WORK/api.raw && cmp -i 0:536870912 -n 1048576 $WORK/pattern $WORK/api.raw"
    rm -f "$WORK/api.raw"
  fi

  # A bad request over the ublk path: invalid queue count is refused, nothing is created.
  code=$(api -o "$WORK/bad.json" -w '%{http_code}' -X POST "$URL/devices" -d '{"name":"bad","image":"bad.qcow2","createSize":"1G","frontend":"ublk","queues":0}')
  [ "$code" = 400 ] && [ ! -e "$WORK/data/bad.qcow2" ] && pass "queues=0 refused with 400, no image created" || fail "queues=0: $code $(cat "$WORK/bad.json")"

  stop_service "$WORK/serve1.log"
  grep -q "device default: flushed and closed" "$WORK/serve1.log" && pass "log: default flushed and closed" || fail "no clean close of default in the log"
  check "default.qcow2 passes qemu-img check, dirty flag clear" clean_image "$WORK/data/default.qcow2"
fi

# ---------------------------------------------------------------- run 2: forced exit
say "=== run 2: second SIGTERM while the shutdown waits for a stuck NBD client"
rm -f "$WORK/data/default.qcow2"
if start_service "$WORK/serve2.log"; then
  dev=$(api "$URL/devices/default" | jq -r '.endpoints[] | select(startswith("/dev/ublkb"))')
  nbd_port=$(api "$URL/devices/default" | jq -r '.endpoints[] | select(startswith("nbd://"))' | sed 's|.*:\([0-9]*\)/.*|\1|')
  check "write a pattern through $dev with fsync" sh -c "head -c 1048576 /dev/urandom >$WORK/pattern3 && dd if=$WORK/pattern3 of=$dev bs=1M seek=20 oflag=direct conv=fsync status=none"
  if nbd_stuck_client "$nbd_port" default; then
    sleep 1
    kill -TERM "$svc_pid"
    sleep 3
    if kill -0 "$svc_pid" 2>/dev/null; then pass "still draining 3 s after the first SIGTERM (stuck NBD client)"; else fail "the first SIGTERM did not wait for the stuck client"; fi
    kill -TERM "$svc_pid"
    rc=0; start=$(date +%s)
    wait "$svc_pid" || rc=$?
    svc_pid=""
    [ $rc -eq 75 ] && pass "second SIGTERM: exit status 75 after $(( $(date +%s) - start )) s" || { fail "second SIGTERM: exit status $rc"; tail -20 "$WORK/serve2.log"; }
    grep -q "second SIGTERM: forcing exit (status 75)" "$WORK/serve2.log" && pass "log: forcing exit line" || fail "no forcing exit line"
  else
    fail "NBD handshake of the stuck client on port $nbd_port"
  fi
  exec 3>&-
  sleep 1
  left=$(ls /dev/ublkb* /dev/ublkc* 2>/dev/null | tr '\n' ' ')
  say "ublk nodes after the forced exit: ${left:-none}"
  if [ -n "$left" ]; then
    "$QBLK" ublk list >"$WORK/ublk-list.txt" 2>&1; cat "$WORK/ublk-list.txt"
    for c in /dev/ublkc*; do [ -e "$c" ] && "$QBLK" ublk del "${c#/dev/ublkc}" >>"$WORK/ublk-del.txt" 2>&1; done
    sleep 1
    if ls /dev/ublkb* /dev/ublkc* >/dev/null 2>&1; then fail "qblk ublk del left: $(ls /dev/ublk[bc]* | tr '\n' ' ') $(cat "$WORK/ublk-del.txt")"
    else pass "qblk ublk del removed what the forced exit left"; fi
  fi
  say "default.qcow2 after the forced exit: $(qemu-img check "$WORK/data/default.qcow2" 2>&1 | tr '\n' ' ')"
  check "data flushed before the forced exit is in default.qcow2" \
    sh -c "qemu-img convert -O raw $WORK/data/default.qcow2 $WORK/def.raw && cmp -i 0:20971520 -n 1048576 $WORK/pattern3 $WORK/def.raw"
  rm -f "$WORK/def.raw"
fi

# ---------------------------------------------------------------- run 3: configured ublk device
say "=== run 3: ublk device declared in configuration"
if start_service "$WORK/serve3.log" -Dqblk.devices.boot.image="$WORK/data/boot.qcow2" -Dqblk.devices.boot.create-size=512M \
    -Dqblk.devices.boot.frontend=ublk -Dqblk.devices.boot.queues=2 -Dqblk.devices.boot.depth=32 \
    -Dqblk.devices.old.image="$WORK/data/default.qcow2"; then
  dev=$(api "$URL/devices/boot" | jq -r '.endpoint // empty')
  if [[ "$dev" == /dev/ublkb* ]] && [ -b "$dev" ]; then pass "configured device boot served at boot as $dev"; else fail "configured ublk device: $(api "$URL/devices")"; dev=""; fi
  [ "$(api "$URL/devices" | jq -r '[.[].name] | join(",")')" = boot,old ] && pass "the configured devices run (boot, old; no default)" || fail "devices: $(api "$URL/devices")"
  if [ -n "$dev" ]; then
    check "fio 16k randwrite depth 16 on $dev + crc32c verify" fio_verify b16k "$dev" --rw=randwrite --bs=16k --iodepth=16 --size=16M
    check "write a pattern with dd (O_DIRECT, no fsync)" sh -c "head -c 2097152 /dev/urandom >$WORK/pattern2 && dd if=$WORK/pattern2 of=$dev bs=1M seek=100 oflag=direct status=none"
  fi
  stop_service "$WORK/serve3.log"
  check "default.qcow2 of the forced exit is clean after being served again" clean_image "$WORK/data/default.qcow2"
  check "boot.qcow2 passes qemu-img check, dirty flag clear" clean_image "$WORK/data/boot.qcow2"
  [ -n "$dev" ] && check "unflushed data written before SIGTERM is in boot.qcow2" \
    sh -c "qemu-img convert -O raw $WORK/data/boot.qcow2 $WORK/boot.raw && cmp -i 0:104857600 -n 2097152 $WORK/pattern2 $WORK/boot.raw"
  rm -f "$WORK/boot.raw"
fi

say "e2e-service: $passes passed, $fails failed"
[ $fails -eq 0 ]
