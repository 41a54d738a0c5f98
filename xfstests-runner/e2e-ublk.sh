#!/bin/bash
# End-to-end ublk tests; run INSIDE the guest (xfstests-runner/e2e-ublk runs it through vm-run).
# For each target (null, raw, qcow2 empty, qcow2 preallocated): qblk export --ublk, fio with
# crc32c verification (4k and 64k random writes at depth 1 and 64, 512k sequential), mkfs.xfs +
# files + xfs_repair -n, SIGTERM, qemu-img check. raw and qcow2 run with -q 2 (E2E_QUEUES): fio
# verify at depth 64 with one job per CPU, both hardware queues must have served requests. They
# also end with kill -9 + `qblk ublk recover` on the same device (one JVM start fewer than a
# separate export): an XFS stays mounted across the kill with a writer inside, and a verifying fio
# across the kill verifies every block it wrote; the XFS keeps working, unmounts and checks clean.
# qcow2 also: a pattern flushed before the kill reads back, no corruption right after the kill, the
# image is repaired (dirty bit) before I/O resumes, I/O continues, qemu-img check clean at the end.
# Finally no /dev/ublk* may be left. Prints PASS/FAIL per check and exits 1 if any failed.
# E2E_TARGETS="null raw qcow2 qcow2-prealloc", E2E_RECOVERY="null raw qcow2 qcow2-prealloc" (1 = all four, 0 = none),
# E2E_QUEUES=2 select what runs.
set -u
cd "$(dirname "$0")/.."
QBLK="$PWD/qblk"
WORK=${E2E_WORK:-/scratch/e2e}
# writes linked to their commit are off by default (measured slower so far, docs/performance.md);
# the suite turns them on so that path (docs/ordering.md W2) keeps its end-to-end test
export QBLK_UBLK_LINKED_WRITES=${QBLK_UBLK_LINKED_WRITES:-1}
SIZE=${E2E_SIZE:-1G}
FIO_SIZE=${E2E_FIO_SIZE:-32M}
# E2E_QCOW2_METADATA=writeback runs qcow2 with metadata write-back instead of the ublk default
# (write-through): the recovery checks that need every completed write are then expected to fail.
QMETA=(); [ -n "${E2E_QCOW2_METADATA:-}" ] && QMETA=(--metadata "$E2E_QCOW2_METADATA")
START_TIMEOUT=${E2E_START_TIMEOUT:-240}
QUEUES=${E2E_QUEUES:-2}
RECOVERY=${E2E_RECOVERY:-1}
[ "$RECOVERY" = 1 ] && RECOVERY="null raw qcow2 qcow2-prealloc"
[ "$RECOVERY" = 0 ] && RECOVERY=""
mkdir -p "$WORK"
. xfstests-runner/e2e-lib.sh

export_pid=""
RUN_AS=()   # a command prefix for qblk (the unprivileged test runs it as another user)
# start_export LOG ARGS...: runs qblk in the background, sets $dev once it printed /dev/ublkbN
start_export() {
  local log=$1; shift
  : >"$log.out"
  "${RUN_AS[@]}" "$QBLK" "$@" >"$log.out" 2>"$log.err" &
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

# queues_served LOG N: the server's exit line "served queue 0: X requests, queue 1: Y requests"
# shows every one of the N queues completed requests
queues_served() {
  local line q n
  line=$(grep -m1 'served queue 0' "$1.err") || { echo "no per-queue line in $1.err"; return 1; }
  echo "$line"
  for ((q = 0; q < $2; q++)); do
    n=$(echo "$line" | sed -n "s/.*queue $q: \([0-9]*\) requests.*/\1/p")
    [ -n "$n" ] && [ "$n" -gt 0 ] || { echo "queue $q served nothing"; return 1; }
  done
}

# linked_io LOG KINDS: the server's exit line counts reads and writes sent as one file read or write
# linked to their commit (UblkQueue.serveLinked; fio's verify passes above checked the data): for
# each of KINDS ("reads", "writes"), some where the export's start line says they are linked (the
# default for reads; writes: QBLK_UBLK_LINKED_WRITES=1, set above), none where it says they are
# committed separately (QBLK_UBLK_LINKED_READS=0, or writes without QBLK_UBLK_LINKED_WRITES=1)
linked_io() {
  local line n k
  line=$(grep -m1 'reads linked to their commit:' "$1.err") || { echo "no linked count in $1.err"; return 1; }
  echo "$line"
  for k in $2; do
    case $k in
      reads) n=$(echo "$line" | sed -n 's/.*reads linked to their commit: \([0-9]*\).*/\1/p') ;;
      writes) n=$(echo "$line" | sed -n 's/.*reads linked to their commit: [0-9]*, writes: \([0-9]*\).*/\1/p') ;;
    esac
    [ -n "$n" ] || { echo "no count of linked $k"; return 1; }
    if grep -q "$k committed separately" "$1.err"; then
      [ "$n" -eq 0 ] || { echo "$n $k linked although the start line says they are not"; return 1; }
    else
      [ "$n" -gt 0 ] || { echo "no $k linked to their commit"; return 1; }
    fi
  done
}

# one fio job per CPU (2 in the default guest), each on its own region: with -q 2 each CPU's
# requests go to its own hardware queue
MQ_FIO=(--numjobs=2 --cpus_allowed=0-1 --cpus_allowed_policy=split --group_reporting)

# fio_job NAME DEV extra-args...: fails on any I/O or verify error, and when fio did no I/O at all
# (fio refuses some setups, e.g. a mounted device, with a message and exit status 0).
fio_job() {
  local name=$1 d=$2 out=$WORK/fio-$1.out rc=0; shift 2
  fio --name="$name" --filename="$d" --direct=1 --ioengine=libaio --size="$FIO_SIZE" \
      --verify=crc32c --do_verify=1 --verify_fatal=1 --exitall_on_error=1 --randrepeat=0 "$@" >"$out" 2>&1 || rc=$?
  cat "$out"
  [ $rc = 0 ] || return $rc
  if grep -q 'Aborting' "$out" || ! grep -qE '^ *WRITE: bw=' "$out"; then echo "fio did no I/O"; return 1; fi
}

# What a failed fio printed: its error and verify lines first (the tail alone is statistics), then the tail.
# fio_failure LOG [DEV IMG]: with DEV (and IMG, a qcow2 image), also what each block fio found bad
# reads now and how IMG maps it: data there now means a read saw stale contents at verify time, zeroes
# still mean the acknowledged write is gone.
fio_failure() {
  grep -nE 'err=|error|verify|bad |mismatch|Aborting|fio: ' "$1" | grep -v 'verify=' | head -20
  tail -8 "$1"
  [ -n "${2:-}" ] || return 0
  local off len
  grep -oE 'at file [^ ]+ offset [0-9]+, length [0-9]+' "$1" | sort -u | head -4 | while read -r _ _ _ _ off _ len; do
    off=${off%,}
    echo "block $off+$len now reads:"
    dd if="$2" bs="$len" skip=$((off / len)) count=1 iflag=direct status=none | od -A d -t x1 | head -3
    [ -n "${3:-}" ] || continue
    local map host
    map=$(qemu-img map -U -f qcow2 --output=json --start-offset="$off" --max-length="$len" "$3" 2>&1)
    echo "$map" | head -3
    # the host bytes the mapping points at, read from the image file itself (not through qblk)
    host=$(echo "$map" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(m[0].get("offset","") if m else "")' 2>/dev/null)
    if [ -n "$host" ]; then
      echo "image file at host offset $host (cluster start $((host / 65536 * 65536))):"
      dd if="$3" bs=4096 skip=$((host / 4096)) count=$((len / 4096)) status=none | od -A d -t x1 | head -3
    fi
  done
  [ -n "${3:-}" ] && qemu-img check -U "$3" 2>&1 | tail -4
}

# lat_log_of_bad FIO_LOG PREFIX: when fio (--write_lat_log=PREFIX --log_offset=1) completed each block
# it found bad (ms since the job started; the kill came E2E_KILL_AFTER s after the start), and the
# longest gap between completions (the recovery), to tell a write acknowledged before the kill from one after.
lat_log_of_bad() {
  local off
  grep -oE 'at file [^ ]+ offset [0-9]+' "$1" | sort -u | head -4 | while read -r _ _ _ _ off; do
    echo "completions of offset $off: $(grep -h ", $off\b" "$2"_clat.*.log 2>/dev/null | tr '\n' ';')"
  done
  cat "$2"_clat.*.log 2>/dev/null | awk -F, '{print $1+0}' | sort -n | awk 'NR>1 && $1-p>g {g=$1-p; a=p; b=$1} {p=$1} END {print "longest completion gap: " g " ms, from " a " to " b " ms"}'
}

fio_suite() {
  local d=$1 label=$2
  check "$label: fio 4k randwrite depth 1 + crc32c verify" fio_job w4k1 "$d" --rw=randwrite --bs=4k --iodepth=1 --size=4M
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

# mq_suite DEV LABEL: fio verify at depth 64 from both CPUs (so both hardware queues get I/O)
mq_suite() {
  local d=$1 label=$2
  check "$label: /sys/block/${d#/dev/}/mq has $QUEUES hardware queues" test "$(ls -d /sys/block/"${d#/dev/}"/mq/[0-9]* | wc -l)" -eq "$QUEUES"
  check "$label: fio 4k randwrite depth 64, 2 jobs on 2 CPUs + crc32c verify" \
    fio_job mq4k "$d" --rw=randwrite --bs=4k --iodepth=64 --size=16M --offset=256M --offset_increment=64M "${MQ_FIO[@]}"
}

# frontend_line LOG LABEL: the export's stderr line names the opcode encoding and where the tag
# threads run: ioctl-encoded on kernels with GET_FEATURES (6.12), legacy on 6.1; carried by the
# queue's ring thread (the JVM opens java.lang through the launcher); the rings in the task-run mode
# asked for (QBLK_RING_TASKRUN, default coop), which both guest kernels accept.
frontend_line() {
  local line i want
  for ((i = 0; i < 50; i++)); do line=$(grep -m1 'ublk opcodes' "$1.err" 2>/dev/null) && break; sleep 0.1; done
  say "${line:-no frontend line in $1.err}"
  case $(uname -r) in 6.1.*) want=legacy ;; *) want=ioctl-encoded ;; esac
  if [[ "$line" == *"$want ublk opcodes"* ]]; then pass "$2: $want opcodes on $(uname -r)"; else fail "$2: expected $want opcodes on $(uname -r)"; fi
  if [[ "$line" == *"carried by their queue's ring thread"* ]]; then pass "$2: tag threads carried by the ring thread"; else fail "$2: tag threads not carried"; fi
  want=${QBLK_RING_TASKRUN:-coop}
  if [[ "$line" == *"ring task-run ${want,,}"* ]]; then pass "$2: rings in task-run mode ${want,,}"; else fail "$2: expected ring task-run ${want,,}"; fi
}

run_target() {
  local kind=$1 img args label=$1 q=1
  case $kind in raw|qcow2) q=$QUEUES; [ "$q" -gt 1 ] && label="$kind -q $q" ;; esac
  case $kind in
    null) img=""; args=(export --ublk -t null --size "$SIZE" -d 64) ;;
    raw) img=$WORK/raw.img; rm -f "$img"; truncate -s "$SIZE" "$img"; args=(export --ublk -t raw -q "$q" -d 64 "$img") ;;
    qcow2) img=$WORK/empty.qcow2; rm -f "$img"; qemu-img create -q -f qcow2 "$img" "$SIZE"; args=(export --ublk -t qcow2 -q "$q" -d 64 "${QMETA[@]}" "$img") ;;
    qcow2-prealloc) img=$WORK/prealloc.qcow2; rm -f "$img"; qemu-img create -q -f qcow2 -o preallocation=falloc "$img" "$SIZE"; args=(export --ublk -t qcow2 -d 64 "${QMETA[@]}" "$img") ;;
    *) fail "unknown target $kind"; return ;;
  esac
  say "=== $label"
  start_export "$WORK/$kind" "${args[@]}" || return
  frontend_line "$WORK/$kind" "$label"
  if [ "$kind" = null ]; then
    check "$label: fio 4k randread depth 64 completes" fio --name=nr --filename="$dev" --direct=1 --ioengine=libaio --rw=randread --bs=4k --iodepth=64 --size="$FIO_SIZE"
    check "$label: fio 64k randwrite depth 64 completes" fio --name=nw --filename="$dev" --direct=1 --ioengine=libaio --rw=randwrite --bs=64k --iodepth=64 --size="$FIO_SIZE"
    check "$label: fio 512k sequential read completes" fio --name=ns --filename="$dev" --direct=1 --ioengine=libaio --rw=read --bs=512k --iodepth=16 --size="$FIO_SIZE"
    check "$label: blkdiscard" blkdiscard "$dev"
  else
    fio_suite "$dev" "$label"
    [ "$q" -gt 1 ] && mq_suite "$dev" "$label"
    check "$label: blkdiscard + zeroout" sh -c "blkdiscard -o 0 -l 16777216 $dev && blkdiscard -z -o 16777216 -l 16777216 $dev && cmp -n 33554432 $dev /dev/zero"
    fs_suite "$dev" "$label"
  fi
  local log=$WORK/$kind
  case " $RECOVERY " in
    *" $kind "*) "recover_$kind" "$img" "$label"; log=$WORK/${kind%-prealloc}-recovered ;; # recover_qcow2-prealloc is recover_qcow2
    *) stop_export "$log" ;;
  esac
  [ "$q" -gt 1 ] && check "$label: all $q hardware queues served requests" queues_served "$log" "$q"
  # writes: raw and the preallocated image take in-place writes (the empty image's first writes allocate)
  case $kind in
    null) ;;
    raw|qcow2-prealloc) check "$label: reads and writes linked to their commit" linked_io "$log" "reads writes" ;;
    *) check "$label: reads linked to their commit" linked_io "$log" reads ;;
  esac
  case $kind in qcow2*) check "$label: qemu-img check clean (rc 0) after SIGTERM" qemu-img check -q "$img" ;; esac
}

# await_recovered OUT: waits for `qblk ublk recover` (pid $export_pid) to print the device
await_recovered() {
  local i got=""
  for ((i = 0; i < START_TIMEOUT * 5; i++)); do
    got=$(grep -m1 '^/dev/ublkb' "$1" 2>/dev/null || true)
    [ -n "$got" ] && break
    kill -0 "$export_pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "$got"
}

# kill_server_during FIO_PID LABEL: kill -9 the export while fio is still writing
kill_server_during() {
  sleep "${E2E_KILL_AFTER:-3}"
  if kill -0 "$1" 2>/dev/null; then pass "$2: fio still writing when the server is killed"; else fail "$2: fio ended before the kill"; fi
  kill -9 "$export_pid"; wait "$export_pid" 2>/dev/null
  say "killed the server (-9) during fio"
}

# Around a kill -9: an XFS in the first 512 MiB of $dev stays MOUNTED, with a writer creating
# fsync'd files inside it. xfs_mounted_start LABEL before the kill, xfs_mounted_finish LABEL after
# the recovery: the writer must finish, files synced before the kill must match, and the filesystem
# must unmount and check clean. Every completed write must have survived for that: raw keeps them in
# the file, qcow2 writes its metadata through (the ublk default) before completing a request.
xfs_mounted_start() {
  local label=$1 d=$dev mnt=$WORK/mnt ok=1
  mkdir -p "$mnt"
  if mkfs.xfs -q -f -d size=512m "$d" && mount "$d" "$mnt"; then
    for i in 1 2 3; do dd if=/dev/urandom of="$mnt/f$i" bs=1M count=4 status=none || ok=0; done
    sync; (cd "$mnt" && sha256sum f1 f2 f3) >"$WORK/xfs-sums" || ok=0
  else
    ok=0
  fi
  [ $ok = 1 ] && pass "$label: xfs mounted, files written and synced" || fail "$label: xfs setup"
  (for i in $(seq 1 40); do dd if=/dev/urandom of="$mnt/g$i" bs=64k count=8 conv=fsync status=none || exit 1; sleep 0.1; done) \
      >"$WORK/xfs-writer.log" 2>&1 &
  xfs_writer=$!
}

xfs_mounted_at_kill() {
  kill -0 "$xfs_writer" 2>/dev/null && pass "$1: file writer in the mounted xfs still running at the kill" || fail "$1: writer ended before the kill"
}

xfs_mounted_finish() {
  local label=$1 d=$dev mnt=$WORK/mnt
  if wait "$xfs_writer"; then pass "$label: the mounted xfs kept working: 40 fsync'd files written across kill -9 + recover"; else fail "$label: writer in the mounted xfs failed"; tail -5 "$WORK/xfs-writer.log"; fi
  check "$label: files synced before the kill still match, new files readable" \
    sh -c "cd $mnt && sha256sum -c --quiet $WORK/xfs-sums && cat g* >/dev/null && ls g* | wc -l | grep -qx 40"
  check "$label: umount after recovery" umount "$mnt"
  mountpoint -q "$mnt" && umount -l "$mnt"
  check "$label: xfs_repair -n clean after recovery" xfs_repair -n "$d"
}

xfs_mounted_abandon() { wait "$xfs_writer"; umount -l "$WORK/mnt"; }

# recover_raw IMG LABEL: on the running raw export ($dev, $export_pid): the mounted XFS carries on,
# and a verifying fio across the kill checks every block it wrote (completed writes sit in the file).
recover_raw() {
  local img=$1 label="$2 recovery" d=$dev id=${dev#/dev/ublkb}
  xfs_mounted_start "$label"
  # rate-limited so that the job is surely still writing when the server dies
  fio_job rec "$d" --rw=randwrite --bs=16k --iodepth=32 --allow_mounted_write=1 --offset=512M --size=16M --offset_increment=64M --rate_iops=150 \
      "${MQ_FIO[@]}" >"$WORK/rec-fio.log" 2>&1 &
  local fio_pid=$!
  kill_server_during "$fio_pid" "$label"
  xfs_mounted_at_kill "$label"
  start_recovery "$label" raw "$id" "$img" || { wait "$fio_pid"; xfs_mounted_abandon; return; }
  if wait "$fio_pid"; then pass "$label: fio (2 jobs) across kill -9 + recover completes and verifies every block"; else fail "$label: fio across recovery"; fio_failure "$WORK/rec-fio.log"; fi
  xfs_mounted_finish "$label"
  stop_export "$WORK/raw-recovered"
}

# recover_qcow2 IMG LABEL: on the running qcow2 export (metadata write-through, the ublk default):
# the mounted XFS carries on and a verifying fio across the kill checks every block it wrote, like
# raw; a pattern flushed before the kill reads back; the image has no corruption after the kill and
# is repaired (dirty bit, set here by hand as a lazy-refcounts writer leaves it) before I/O resumes.
# Layout of the device:
#   [0, 512M) xfs, mounted across the kill                    [512M, 544M) fio verify after recovery
#   [576M, 608M) random pattern, O_DIRECT + fsync             [640M, 792M) fio verifying across the kill
recover_qcow2() {
  local img=$1 label="$2 recovery" d=$dev id=${dev#/dev/ublkb}
  xfs_mounted_start "$label"
  head -c 32M /dev/urandom >"$WORK/pattern"
  check "$label: 32 MiB pattern written with O_DIRECT and flushed (conv=fsync)" \
    dd if="$WORK/pattern" of="$d" bs=1M seek=576 oflag=direct conv=fsync status=none
  fio_job recq "$d" --rw=randwrite --bs=16k --iodepth=32 --allow_mounted_write=1 --offset=640M --size=24M --offset_increment=128M \
      --rate_iops=150 "${MQ_FIO[@]}" \
      --write_lat_log="$WORK/recq" --log_offset=1 >"$WORK/recq-fio.log" 2>&1 &
  local fio_pid=$!
  kill_server_during "$fio_pid" "$label"
  xfs_mounted_at_kill "$label"
  # Leaks are allowed right after a crash (rc 3: clusters allocated, not yet referenced); corruption is not.
  qemu-img check "$img" >"$WORK/last.log" 2>&1; local rc=$?
  if [ $rc -eq 0 ] || [ $rc -eq 3 ]; then pass "$label: image after kill -9 has no corruption (qemu-img check rc $rc)"; else fail "$label: image after kill -9: qemu-img check rc $rc"; tail -5 "$WORK/last.log"; fi
  # Also set the dirty bit (incompatible feature bit 0), as a writer with lazy refcounts leaves it.
  python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(79); b=f.read(1)[0]; f.seek(79); f.write(bytes([b|1]))' "$img"
  start_recovery "$label" qcow2 "$id" "$img" || { wait "$fio_pid"; xfs_mounted_abandon; return; }
  local repaired; repaired=$(grep -m1 'reopened after its server died' "$WORK/qcow2-recovered.err")
  if echo "$repaired" | grep -q 'dirty bit was set, repaired while opening; check repaired'; then
    pass "$label: image repaired before I/O resumed (${repaired#*: })"
  else
    fail "$label: no repair before serving: $(tail -3 "$WORK/qcow2-recovered.err" | tr '\n' ' ')"
  fi
  if wait "$fio_pid"; then pass "$label: fio (2 jobs) across kill -9 + recover completes and verifies every block"; else fail "$label: fio across recovery"; fio_failure "$WORK/recq-fio.log" "$d" "$img"; tail -5 "$WORK/qcow2-recovered.err"; lat_log_of_bad "$WORK/recq-fio.log" "$WORK/recq"; fi
  check "$label: the flushed pattern reads back intact after recovery" \
    sh -c "dd if=$d bs=1M skip=576 count=32 iflag=direct status=none | cmp - $WORK/pattern"
  check "$label: I/O continues: fio 4k randwrite depth 64, 2 jobs + crc32c verify" \
    fio_job recv "$d" --rw=randwrite --bs=4k --iodepth=64 --allow_mounted_write=1 --offset=512M --size=16M --offset_increment=16M "${MQ_FIO[@]}"
  xfs_mounted_finish "$label"
  # The recovery repaired what the crash left and the shutdown is clean: qemu-img check must give rc 0.
  stop_export "$WORK/qcow2-recovered"
}

# recover_null _ LABEL: kill -9 during a fio write job on the null device, recover onto the same
# /dev/ublkbN; the job must finish without I/O errors and I/O must continue (no data to verify).
recover_null() {
  local label="$2 recovery" d=$dev id=${dev#/dev/ublkb}
  fio --name=recn --filename="$d" --direct=1 --ioengine=libaio --rw=randwrite --bs=16k --iodepth=32 \
      --size=64M --rate_iops=150 >"$WORK/recn-fio.log" 2>&1 &
  local fio_pid=$!
  kill_server_during "$fio_pid" "$label"
  start_recovery "$label" null "$id" "--size=$SIZE" || { wait "$fio_pid"; return; }
  if wait "$fio_pid"; then pass "$label: fio write job across kill -9 + recover completes without I/O errors"; else fail "$label: fio across recovery"; fio_failure "$WORK/recn-fio.log"; fi
  check "$label: I/O continues: fio 4k randread depth 64" \
    fio --name=recn2 --filename="$d" --direct=1 --ioengine=libaio --rw=randread --bs=4k --iodepth=64 --size="$FIO_SIZE"
  stop_export "$WORK/null-recovered"
}

# recover_qcow2-prealloc IMG LABEL: the qcow2 recovery on a preallocated (falloc) image.
recover_qcow2-prealloc() { recover_qcow2 "$@"; }

# start_recovery LABEL TYPE ID FILE|--size=N: qblk ublk recover in the background; it must print the same device
start_recovery() {
  local label=$1 type=$2 id=$3 what=$4 d=$dev out=$WORK/$2-recovered
  local meta=(); [ "$type" = qcow2 ] && meta=("${QMETA[@]}")
  "$QBLK" ublk recover -t "$type" "${meta[@]}" "$id" "$what" >"$out.out" 2>"$out.err" &
  export_pid=$!
  local got; got=$(await_recovered "$out.out")
  if [ "$got" = "$d" ]; then pass "$label: qblk ublk recover reattached the same $d"; return 0; fi
  fail "$label: recover printed '$got', wanted $d: $(tail -3 "$out.err" | tr '\n' ' ')"
  kill -9 "$export_pid" 2>/dev/null; wait "$export_pid" 2>/dev/null
  "$QBLK" ublk del "$id" >/dev/null 2>&1
  return 1
}

say "guest $(uname -r), $(nproc) CPUs, clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
[ -e /dev/ublk-control ] || { echo "no /dev/ublk-control: run this inside xfstests-runner/vm-run"; exit 2; }
for t in ${E2E_TARGETS:-null raw qcow2 qcow2-prealloc}; do run_target "$t"; done
# Unprivileged devices (UBLK_F_UNPRIVILEGED_DEV, Linux >= 6.5; not on 6.1): qblk runs as uid 65534
# with read-write access to /dev/ublk-control; a root loop gives new /dev/ublk[bc]N nodes to that
# user, as the udev rule of an unprivileged setup does. The device must serve a verifying fio.
unprivileged_test() {
  local uid=65534 log=$WORK/unpriv chowner
  say "=== unprivileged null device (uid $uid)"
  chmod 666 /dev/ublk-control
  ( while :; do for n in /dev/ublkc* /dev/ublkb*; do [ -e "$n" ] && [ "$(stat -c %u "$n")" = 0 ] && chown $uid:$uid "$n"; done; sleep 0.1; done ) &
  chowner=$!
  RUN_AS=(setpriv --reuid=$uid --regid=$uid --clear-groups -- env HOME=/tmp)
  if start_export "$log" export --ublk -t null --size 256M -d 16; then
    pass "unprivileged: qblk as uid $uid exported $dev"
    sleep 0.5
    if grep -q 'unprivileged device' "$log.err"; then pass "unprivileged: created with UBLK_F_UNPRIVILEGED_DEV"; else fail "unprivileged: no unprivileged line in $log.err"; fi
    say "$(grep -m1 'ublk opcodes' "$log.err")"
    check "unprivileged: fio 4k randwrite depth 16 completes" fio --name=uw --filename="$dev" --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 --size="$FIO_SIZE"
    stop_export "$log"
  fi
  RUN_AS=()
  kill "$chowner" 2>/dev/null; wait "$chowner" 2>/dev/null
  chmod 600 /dev/ublk-control
}
case $(uname -r) in
  6.1.*) say "unprivileged devices: skipped on $(uname -r) (UBLK_F_UNPRIVILEGED_DEV needs Linux 6.5 or later)" ;;
  *) [ "${E2E_UNPRIVILEGED:-1}" = 1 ] && unprivileged_test ;;
esac
sleep 1
left=$(ls /dev/ublkb* /dev/ublkc* 2>/dev/null)
if [ -z "$left" ]; then pass "no /dev/ublkb*/ublkc* left behind"; else fail "left behind: $left"; fi
say "e2e-ublk: $passes passed, $fails failed"
[ $fails -eq 0 ]
