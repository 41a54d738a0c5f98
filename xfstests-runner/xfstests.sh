#!/bin/bash
# Runs fstests (xfstests) on qblk devices; runs INSIDE the guest (xfstests-runner/run starts it through
# vm-run, one boot per shard). Usage: xfstests.sh FSTESTS_DIR TEST...
#
# Three images on /scratch (the guest's virtio disk): test, scratch and logwrites. Per XFSTESTS_TARGET
# they become block devices:
#   qcow2           qblk export --ublk -t qcow2 (empty qcow2 images)          -> /dev/ublkbN
#   qcow2-prealloc  the same on qcow2 images made with preallocation=falloc
#   raw             qblk export --ublk -t raw on sparse raw files
#   nbd             qblk export --nbd -t qcow2 on 127.0.0.1, attached with the kernel nbd client -> /dev/nbdN
#   loop            the kernel loop driver (direct I/O) on raw files: the reference
# TEST_DEV, SCRATCH_DEV and LOGWRITES_DEV (the dm-log-writes power-fail tests) are the three devices;
# dm-flakey/dm-error tests stack their targets on SCRATCH_DEV. ./check runs with -R xunit.
# Afterwards the exports get SIGTERM and every qcow2 image must pass `qemu-img check`: a run that
# leaves a corrupt or leaking image fails even when every fstests test passed.
# Output in $VM_OUT (host-visible while the guest runs): results/ (RESULT_BASE: result.xml, *.out.bad,
# *.full, *.dmesg), check.out (./check's console, also the progress a crashed boot leaves), images
# (one line per image: "NAME clean|dirty|no-check DETAIL"), local.config. A file "stop" appearing in
# $VM_OUT ends ./check early (within 5 s); the images are checked all the same.
# Knobs: XFSTESTS_FSTYP (xfs|ext4), XFSTESTS_TARGET, XFSTESTS_IMAGE_SIZE (default 5G per image),
#        XFSTESTS_WORK (default /scratch/xfstests), XFSTESTS_QBLK.
set -u
# XFSTESTS_QBLK: the qblk launcher to use (xfstests-runner/run passes a snapshot of the built application)
QBLK=${XFSTESTS_QBLK:-$(cd "$(dirname "$0")/.." && pwd)/qblk}
fst=${1:?usage: xfstests.sh FSTESTS_DIR TEST...}; shift
[ $# -gt 0 ] || { echo "xfstests.sh: no tests given"; exit 2; }
[ -x "$fst/check" ] || { echo "xfstests.sh: $fst/check not found (run xfstests-runner/build-xfstests)"; exit 2; }
[ -e /dev/ublk-control ] || { echo "xfstests.sh: no /dev/ublk-control: run this inside xfstests-runner/vm-run"; exit 2; }
W=${XFSTESTS_WORK:-/scratch/xfstests}
SIZE=${XFSTESTS_IMAGE_SIZE:-5G}
FSTYP=${XFSTESTS_FSTYP:-xfs}
TARGET=${XFSTESTS_TARGET:-qcow2}
OUT=${VM_OUT:-$W}
RESULTS=$OUT/results
case $TARGET in qcow2|qcow2-prealloc|raw|nbd|loop) ;; *) echo "xfstests.sh: unknown target $TARGET"; exit 2 ;; esac
mkdir -p "$W" "$RESULTS" /mnt/test /mnt/scratch
: >"$OUT/images"
t0=$(date +%s)
say() { echo "[$(( $(date +%s) - t0 ))s] $*"; }

# The users fstests expects, created in the guest's writable overlay (the host is not touched).
for u in fsgqa fsgqa2 123456-fsgqa; do id "$u" >/dev/null 2>&1 || useradd -m "$u" 2>/dev/null || true; done
# No udev in the guest: `dmsetup create` succeeds but /dev/mapper/NAME never appears. A dmsetup
# earlier in PATH (in the guest's overlay only) runs the real one with DM_DISABLE_UDEV=1, so that
# libdevmapper makes the node, then turns /dev/mapper/NAME into the symlink to ../dm-N udev would
# make (fstests finds /sys/fs/xfs/dm-N through it).
mkdir -p /usr/local/sbin
cat >/usr/local/sbin/dmsetup <<'WRAP'
#!/bin/bash
DM_DISABLE_UDEV=1 /usr/sbin/dmsetup "$@"; rc=$?
for n in /dev/mapper/*; do
  [ -b "$n" ] && [ ! -L "$n" ] || continue
  mm=$(stat -c '%t:%T' "$n")
  for d in /dev/dm-*; do
    [ -b "$d" ] && [ "$(stat -c '%t:%T' "$d")" = "$mm" ] && { ln -sfn "../${d#/dev/}" "$n"; break; }
  done
done
exit $rc
WRAP
chmod 755 /usr/local/sbin/dmsetup
hash -r
if dmsetup create qblk-probe --table "0 8 error" >/dev/null 2>&1 && [ -b /dev/mapper/qblk-probe ]; then
  dmsetup remove qblk-probe
else
  say "dmsetup does not work in this guest (no /dev/mapper node): dm-flakey/log-writes tests will fail"
  dmsetup remove qblk-probe >/dev/null 2>&1
fi
# Loopback for every target: the nbd target serves over it, and tests such as generic/131 (fcntl
# locks between a client and a server over TCP) need it whatever the block device is.
ip link set lo up 2>/dev/null || busybox ip link set lo up

pids=() devs=() loops=() nbds=() imgs=()
image_file() { case $TARGET in qcow2|qcow2-prealloc|nbd) echo "$W/$1.qcow2" ;; *) echo "$W/$1.raw" ;; esac; }
names=(test scratch logwrites)
# Creates the three images and starts their exports at once (each JVM start is tens of seconds
# under TCG), then waits for each device in turn.
for idx in "${!names[@]}"; do
  n=${names[$idx]} img=$(image_file "${names[$idx]}")
  rm -f "$img"
  case $TARGET in
    qcow2|nbd) qemu-img create -q -f qcow2 "$img" "$SIZE" || exit 1 ;;
    qcow2-prealloc) qemu-img create -q -f qcow2 -o preallocation=falloc "$img" "$SIZE" || exit 1 ;;
    *) truncate -s "$SIZE" "$img" || exit 1 ;;
  esac
  imgs+=("$img")
  case $TARGET in
    loop) ;; # the kernel's loop driver on the same kind of file: the reference
    nbd) "$QBLK" export --nbd "127.0.0.1:$((10810 + idx))" --name xfstests -t qcow2 "$img" >"$W/$n.out" 2>"$W/$n.err" & pids+=($!) ;;
    raw) "$QBLK" export --ublk -t raw -d 64 "$img" >"$W/$n.out" 2>"$W/$n.err" & pids+=($!) ;;
    *) "$QBLK" export --ublk -t qcow2 -d 64 "$img" >"$W/$n.out" 2>"$W/$n.err" & pids+=($!) ;;
  esac
done
for idx in "${!names[@]}"; do
  n=${names[$idx]} img=${imgs[$idx]} dev=""
  if [ "$TARGET" = loop ]; then
    dev=$(losetup --direct-io=on -f --show "$img") || exit 1
    loops+=("$dev"); devs+=("$dev"); say "$img attached as $dev (kernel loop, direct I/O)"; continue
  fi
  pid=${pids[$idx]}
  for ((i = 0; i < 3000; i++)); do
    if [ "$TARGET" = nbd ]; then grep -q '^nbd://' "$W/$n.out" 2>/dev/null && break
    else
      dev=$(grep -m1 '^/dev/ublkb' "$W/$n.out" 2>/dev/null || true)
      [ -n "$dev" ] && [ -b "$dev" ] && break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if [ "$TARGET" = nbd ] && grep -q '^nbd://' "$W/$n.out" 2>/dev/null; then
    dev=/dev/nbd$idx
    if ! nbd-client -b 4096 -N xfstests 127.0.0.1 "$((10810 + idx))" "$dev" >"$W/$n.nbd" 2>&1; then
      echo "xfstests.sh: nbd-client failed: $(tail -3 "$W/$n.nbd" | tr '\n' ' ')"; dev=""
    else nbds+=("$dev"); fi
  fi
  if [ -z "$dev" ] || [ ! -b "$dev" ]; then
    echo "xfstests.sh: qblk did not export $img: $(tail -3 "$W/$n.err" | tr '\n' ' ')"; kill -9 "${pids[@]}" 2>/dev/null; exit 1
  fi
  devs+=("$dev")
  say "$img ($TARGET) exported as $dev"
done
mkfs."$FSTYP" -q -f "${devs[0]}" >/dev/null 2>&1 || mkfs."$FSTYP" -q -F "${devs[0]}" || { echo "mkfs of TEST_DEV failed"; exit 1; }

cat >"$OUT/local.config" <<EOF
export FSTYP=$FSTYP
export TEST_DEV=${devs[0]}
export TEST_DIR=/mnt/test
export SCRATCH_DEV=${devs[1]}
export SCRATCH_MNT=/mnt/scratch
export LOGWRITES_DEV=${devs[2]}
export RESULT_BASE=$RESULTS
# LVM (generic/081) without udev in the guest: no udev cookies to wait for, and libdevmapper makes
# the /dev/mapper nodes itself; a configuration of our own, so the host's lvm.conf stays untouched.
mkdir -p /run/qblk-lvm
cat >/run/qblk-lvm/lvm.conf <<'LVM'
activation {
    udev_sync = 0
    udev_rules = 0
}
devices {
    obtain_device_list_from_udev = 0
}
LVM
export LVM_SYSTEM_DIR=/run/qblk-lvm
EOF
# What the guest is doing, refreshed every 30 s in $OUT/ps.txt (host-visible): tells a slow test from a hung one.
(while sleep 30; do { date; uptime; ps -eo pid,etime,time,stat,wchan:20,args --sort=start_time | cut -c1-200 | tail -25; } >"$OUT/ps.txt.new" 2>&1; mv -f "$OUT/ps.txt.new" "$OUT/ps.txt"; done) &
watcher=$!
say "fstests ($fst) on $FSTYP over $TARGET devices: $*"
# ./check in a session of its own, so that a stop can end it and the test it runs at once.
HOST_OPTIONS="$OUT/local.config" setsid bash -c 'cd "$1" && shift && exec ./check -R xunit "$@"' check "$fst" "$@" \
  > >(tee "$OUT/check.out") 2>&1 &
check=$!
# A stop asked for by the host (xfstests-runner/run --stop: the file $OUT/stop) ends ./check and the
# test it is running; the images are still checked below, as after a full run.
(while sleep 5; do
   if [ -e "$OUT/stop" ]; then echo "xfstests.sh: stop asked for: ending ./check"; kill -TERM -- -$check 2>/dev/null; break; fi
 done) &
stopper=$!
wait $check; rc=$?
sleep 1 # tee writes the last lines of check.out
kill $watcher $stopper 2>/dev/null
if [ -e "$OUT/stop" ]; then # what the cut-short test left behind: processes on the mounts, dm targets
  sleep 2; kill -KILL -- -$check 2>/dev/null; fuser -km /mnt/test /mnt/scratch >/dev/null 2>&1; sleep 1
fi
failed=$(grep -E '^Failures:' "$OUT/check.out" | tail -1)
umount /mnt/test /mnt/scratch 2>/dev/null
dmsetup remove_all 2>/dev/null

bad=0
for l in "${loops[@]}"; do losetup -d "$l"; done
for n in "${nbds[@]}"; do nbd-client -d "$n" >/dev/null 2>&1 || { echo "FAIL nbd-client -d $n"; bad=1; }; done
for i in "${!pids[@]}"; do
  kill -TERM "${pids[$i]}"; wait "${pids[$i]}"; r=$?
  if [ $r -ne 0 ] && [ $r -ne 143 ]; then echo "FAIL export of ${devs[$i]} ended with rc $r"; bad=1; fi
done
for img in "${imgs[@]}"; do
  n=$(basename "$img")
  case $img in
    *.qcow2)
      if qemu-img check -q "$img" >"$W/check-img.out" 2>&1; then say "PASS qemu-img check $n clean after the run"; echo "$n clean" >>"$OUT/images"
      else
        echo "FAIL qemu-img check $n"; qemu-img check "$img" 2>&1 | tail -5
        echo "$n dirty $(qemu-img check "$img" 2>&1 | grep -E 'leaked|corrupt|error' | tr '\n' ' ')" >>"$OUT/images"; bad=1
      fi ;;
    *) echo "$n no-check raw file" >>"$OUT/images" ;;
  esac
done
left=$(ls /dev/ublkb* 2>/dev/null)
[ -z "$left" ] || { echo "FAIL left behind: $left"; bad=1; }
say "fstests exit $rc${failed:+; $failed}"
[ $rc -eq 0 ] && [ $bad -eq 0 ]
