#!/bin/bash
# End-to-end ublk tests; run INSIDE the guest (xfstests-runner/e2e-ublk runs it through vm-run).
# For each target (null, raw, qcow2 empty, qcow2 preallocated): qblk export --ublk, fio with
# crc32c verification (4k and 64k random writes at depth 1 and 64, 512k sequential), mkfs.xfs +
# files + xfs_repair -n, SIGTERM, qemu-img check; then kill -9 during fio + qblk ublk recover;
# finally no /dev/ublk* may be left. Prints PASS/FAIL per check and exits 1 if any failed.
# E2E_TARGETS="null raw qcow2 qcow2-prealloc" and E2E_RECOVERY=1|0 select what runs.
set -u
cd "$(dirname "$0")/.."
QBLK="$PWD/qblk"
WORK=${E2E_WORK:-/scratch/e2e}
SIZE=${E2E_SIZE:-1G}
FIO_SIZE=${E2E_FIO_SIZE:-48M}
START_TIMEOUT=${E2E_START_TIMEOUT:-240}
mkdir -p "$WORK"
fails=0; passes=0
t0=$(date +%s)
say() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
pass() { passes=$((passes + 1)); say "PASS $*"; }
fail() { fails=$((fails + 1)); say "FAIL $*"; }
check() { local what=$1; shift; if "$@" >"$WORK/last.log" 2>&1; then pass "$what"; else fail "$what"; tail -20 "$WORK/last.log"; fi; }

export_pid=""
# start_export LOG ARGS...: runs qblk in the background, sets $dev once it printed /dev/ublkbN
start_export() {
  local log=$1; shift
  : >"$log.out"
  "$QBLK" "$@" >"$log.out" 2>"$log.err" &
  export_pid=$!
  dev=""
  local i
  for ((i = 0; i < START_TIMEOUT * 5; i++)); do
    dev=$(grep -m1 '^/dev/ublkb' "$log.out" 2>/dev/null || true)
    [ -n "$dev" ] && break
    kill -0 "$export_pid" 2>/dev/null || break
    sleep 0.2
  done
  if [ -z "$dev" ] || [ ! -b "$dev" ]; then
    fail "qblk $* did not export a block device: $(tail -3 "$log.err" | tr '\n' ' ')"
    kill -9 "$export_pid" 2>/dev/null; wait "$export_pid" 2>/dev/null
    dev=""; return 1
  fi
  say "exported $dev ($*)"
}

stop_export() {
  local log=$1 id=${dev#/dev/ublkb}
  kill -TERM "$export_pid"
  wait "$export_pid"; local rc=$?
  if [ $rc -eq 143 ] || [ $rc -eq 0 ]; then pass "SIGTERM stops the export (rc $rc)"; else fail "export ended with rc $rc: $(tail -3 "$log.err" | tr '\n' ' ')"; fi
  if [ -e "/dev/ublkb$id" ] || [ -e "/dev/ublkc$id" ]; then fail "/dev/ublk[bc]$id left behind"; else pass "device $id removed"; fi
}

fio_job() { # fio_job NAME DEV extra-args...: fails on any I/O or verify error
  local name=$1 d=$2; shift 2
  fio --name="$name" --filename="$d" --direct=1 --ioengine=libaio --size="$FIO_SIZE" \
      --verify=crc32c --do_verify=1 --verify_fatal=1 --exitall_on_error=1 --randrepeat=0 "$@"
}

fio_suite() {
  local d=$1 label=$2
  check "$label: fio 4k randwrite depth 1 + crc32c verify" fio_job w4k1 "$d" --rw=randwrite --bs=4k --iodepth=1 --size=8M
  check "$label: fio 4k randwrite depth 64 + crc32c verify" fio_job w4k64 "$d" --rw=randwrite --bs=4k --iodepth=64
  check "$label: fio 64k randwrite depth 1 + crc32c verify" fio_job w64k1 "$d" --rw=randwrite --bs=64k --iodepth=1
  check "$label: fio 64k randwrite depth 64 + crc32c verify" fio_job w64k64 "$d" --rw=randwrite --bs=64k --iodepth=64 --offset=64M
  check "$label: fio 512k sequential write + crc32c verify" fio_job s512k "$d" --rw=write --bs=512k --iodepth=16 --offset=128M
}

fs_suite() {
  local d=$1 label=$2 mnt=$WORK/mnt
  mkdir -p "$mnt"
  check "$label: mkfs.xfs" mkfs.xfs -q -f "$d"
  if mount "$d" "$mnt"; then
    local ok=1
    for i in 1 2 3 4; do dd if=/dev/urandom of="$mnt/f$i" bs=1M count=4 status=none || ok=0; done
    mkdir -p "$mnt/dir" && cp "$mnt/f1" "$mnt/dir/copy" || ok=0
    sync
    (cd "$mnt" && sha256sum f1 f2 f3 f4 dir/copy) >"$WORK/sums" || ok=0
    umount "$mnt" || ok=0
    mount "$d" "$mnt" && (cd "$mnt" && sha256sum -c --quiet "$WORK/sums") && umount "$mnt" || ok=0
    [ $ok = 1 ] && pass "$label: xfs files written, synced, remounted, checksums match" || fail "$label: xfs file round trip"
    mountpoint -q "$mnt" && umount -l "$mnt"
  else
    fail "$label: mount xfs"
  fi
  check "$label: xfs_repair -n clean" xfs_repair -n "$d"
}

run_target() {
  local kind=$1 img args label=$1
  case $kind in
    null) img=""; args=(export --ublk -t null --size "$SIZE" -d 64) ;;
    raw) img=$WORK/raw.img; rm -f "$img"; truncate -s "$SIZE" "$img"; args=(export --ublk -t raw -d 64 "$img") ;;
    qcow2) img=$WORK/empty.qcow2; rm -f "$img"; qemu-img create -q -f qcow2 "$img" "$SIZE"; args=(export --ublk -t qcow2 -d 64 "$img") ;;
    qcow2-prealloc) img=$WORK/prealloc.qcow2; rm -f "$img"; qemu-img create -q -f qcow2 -o preallocation=falloc "$img" "$SIZE"; args=(export --ublk -t qcow2 -d 64 "$img") ;;
    *) fail "unknown target $kind"; return ;;
  esac
  say "=== $label"
  start_export "$WORK/$label" "${args[@]}" || return
  if [ "$kind" = null ]; then
    check "$label: fio 4k randread depth 64 completes" fio --name=nr --filename="$dev" --direct=1 --ioengine=libaio --rw=randread --bs=4k --iodepth=64 --size="$FIO_SIZE"
    check "$label: fio 64k randwrite depth 64 completes" fio --name=nw --filename="$dev" --direct=1 --ioengine=libaio --rw=randwrite --bs=64k --iodepth=64 --size="$FIO_SIZE"
    check "$label: fio 512k sequential read completes" fio --name=ns --filename="$dev" --direct=1 --ioengine=libaio --rw=read --bs=512k --iodepth=16 --size="$FIO_SIZE"
    check "$label: blkdiscard" blkdiscard "$dev"
  else
    fio_suite "$dev" "$label"
    check "$label: blkdiscard + zeroout" sh -c "blkdiscard -o 0 -l 16777216 $dev && blkdiscard -z -o 16777216 -l 16777216 $dev && cmp -n 33554432 $dev /dev/zero"
    fs_suite "$dev" "$label"
  fi
  stop_export "$WORK/$label"
  case $kind in qcow2*) check "$label: qemu-img check clean after SIGTERM" qemu-img check -q "$img" ;; esac
}

run_recovery() {
  local img=$WORK/recover.qcow2 label=recovery
  rm -f "$img"; qemu-img create -q -f qcow2 "$img" "$SIZE"
  say "=== $label"
  start_export "$WORK/$label" export --ublk -t qcow2 -d 32 "$img" || return
  local d=$dev id=${dev#/dev/ublkb}
  fio_job rec "$d" --rw=randwrite --bs=16k --iodepth=32 --size=32M >"$WORK/rec-fio.log" 2>&1 &
  local fio_pid=$!
  sleep "${E2E_KILL_AFTER:-8}"
  kill -9 "$export_pid"; wait "$export_pid" 2>/dev/null
  say "killed the server (-9) during fio"
  "$QBLK" ublk recover -t qcow2 "$id" "$img" >"$WORK/recover.out" 2>"$WORK/recover.err" &
  export_pid=$!
  local i got=""
  for ((i = 0; i < START_TIMEOUT * 5; i++)); do
    got=$(grep -m1 '^/dev/ublkb' "$WORK/recover.out" 2>/dev/null || true)
    [ -n "$got" ] && break
    kill -0 "$export_pid" 2>/dev/null || break
    sleep 0.2
  done
  if [ "$got" = "$d" ]; then pass "recover reattached the same $d"; else fail "recover printed '$got', wanted $d: $(tail -3 "$WORK/recover.err" | tr '\n' ' ')"; fi
  if wait "$fio_pid"; then pass "fio across kill -9 + recover completes and verifies"; else fail "fio across recovery"; tail -15 "$WORK/rec-fio.log"; fi
  dev=$d
  stop_export "$WORK/recover"
  check "$label: qemu-img check after recovery (leaks allowed, no corruption)" sh -c "qemu-img check '$img'; rc=\$?; [ \$rc -eq 0 ] || [ \$rc -eq 3 ]"
}

say "guest $(uname -r), $(nproc) CPUs, clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
[ -e /dev/ublk-control ] || { echo "no /dev/ublk-control: run this inside xfstests-runner/vm-run"; exit 2; }
for t in ${E2E_TARGETS:-null raw qcow2 qcow2-prealloc}; do run_target "$t"; done
[ "${E2E_RECOVERY:-1}" = 1 ] && run_recovery
sleep 1
left=$(ls /dev/ublkb* /dev/ublkc* 2>/dev/null)
if [ -z "$left" ]; then pass "no /dev/ublkb*/ublkc* left behind"; else fail "left behind: $left"; fi
say "e2e-ublk: $passes passed, $fails failed"
[ $fails -eq 0 ]
