#!/bin/bash
# Runs fstests (xfstests) on qcow2-backed ublk devices; runs INSIDE the guest (xfstests-runner/xfstests
# starts it through vm-run). Usage: xfstests.sh FSTESTS_DIR TEST...
#
# Two qcow2 images on /scratch (the guest's virtio disk) are exported with `qblk export --ublk -t qcow2`
# as TEST_DEV and SCRATCH_DEV; fstests' ./check runs the given tests with FSTYP=xfs (XFSTESTS_FSTYP
# overrides). Afterwards both exports get SIGTERM and both images must pass `qemu-img check`: a test
# run that leaves a corrupt or leaking image fails even when every fstests test passed.
# Results (check.log, *.out.bad, *.full) go to $VM_OUT/results when VM_OUT is set.
set -u
cd "$(dirname "$0")/.."
QBLK="$PWD/qblk"
fst=${1:?usage: xfstests.sh FSTESTS_DIR TEST...}; shift
[ $# -gt 0 ] || { echo "xfstests.sh: no tests given"; exit 2; }
[ -x "$fst/check" ] || { echo "xfstests.sh: $fst/check not found (run xfstests-runner/build-xfstests)"; exit 2; }
[ -e /dev/ublk-control ] || { echo "xfstests.sh: no /dev/ublk-control: run this inside xfstests-runner/vm-run"; exit 2; }
W=${XFSTESTS_WORK:-/scratch/xfstests}
SIZE=${XFSTESTS_IMAGE_SIZE:-5G}
FSTYP=${XFSTESTS_FSTYP:-xfs}
TARGET=${XFSTESTS_TARGET:-qcow2} # qcow2 | raw (qblk targets) | loop (kernel loop device, for comparison)
RESULTS=${VM_OUT:-$W}/results
mkdir -p "$W" "$RESULTS" /mnt/test /mnt/scratch
t0=$(date +%s)
say() { echo "[$(( $(date +%s) - t0 ))s] $*"; }

# The users fstests expects, created in the guest's writable overlay (the host is not touched).
for u in fsgqa fsgqa2 123456-fsgqa; do id "$u" >/dev/null 2>&1 || useradd -m "$u" 2>/dev/null || true; done

pids=() devs=() loops=()
export_image() { # export_image NAME -> appends to devs/pids
  local img=$W/$1.$TARGET out=$W/$1.out i dev=""
  rm -f "$img"
  case $TARGET in
    qcow2) qemu-img create -q -f qcow2 "$img" "$SIZE" || return 1 ;;
    *) truncate -s "$SIZE" "$img" || return 1 ;;
  esac
  if [ "$TARGET" = loop ]; then # the kernel's loop driver on the same kind of file: the reference
    dev=$(losetup --direct-io=on -f --show "$img") || return 1
    loops+=("$dev"); devs+=("$dev"); say "$img attached as $dev (kernel loop, direct I/O)"; return 0
  fi
  "$QBLK" export --ublk -t "$TARGET" -d 64 "$img" >"$out" 2>"$W/$1.err" &
  local pid=$!
  for ((i = 0; i < 1500; i++)); do
    dev=$(grep -m1 '^/dev/ublkb' "$out" 2>/dev/null || true)
    [ -n "$dev" ] && [ -b "$dev" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if [ -z "$dev" ] || [ ! -b "$dev" ]; then
    echo "xfstests.sh: qblk did not export $img: $(tail -3 "$W/$1.err" | tr '\n' ' ')"; kill -9 "$pid" 2>/dev/null; return 1
  fi
  pids+=("$pid"); devs+=("$dev")
  say "$img exported as $dev"
}
export_image test && export_image scratch || exit 1
mkfs."$FSTYP" -q -f "${devs[0]}" >/dev/null 2>&1 || mkfs."$FSTYP" -q -F "${devs[0]}" || { echo "mkfs of TEST_DEV failed"; exit 1; }

cat >"$W/local.config" <<EOF
export FSTYP=$FSTYP
export TEST_DEV=${devs[0]}
export TEST_DIR=/mnt/test
export SCRATCH_DEV=${devs[1]}
export SCRATCH_MNT=/mnt/scratch
export RESULT_BASE=$RESULTS
EOF
say "fstests ($fst) on $FSTYP over $TARGET devices: $*"
(cd "$fst" && HOST_OPTIONS="$W/local.config" ./check "$@") 2>&1 | tee "$W/check.out"
rc=${PIPESTATUS[0]}
# ./check's own summary: "Failures: ..." and "Passed all N tests" / "Failed X of N tests".
failed=$(grep -E '^Failures:' "$W/check.out" | tail -1)
umount /mnt/test /mnt/scratch 2>/dev/null

bad=0
for l in "${loops[@]}"; do losetup -d "$l"; done
for i in "${!pids[@]}"; do
  kill -TERM "${pids[$i]}"; wait "${pids[$i]}"; r=$?
  if [ $r -ne 0 ] && [ $r -ne 143 ]; then echo "FAIL export of ${devs[$i]} ended with rc $r"; bad=1; fi
done
for n in test scratch; do
  [ "$TARGET" = qcow2 ] || continue
  if qemu-img check -q "$W/$n.qcow2"; then say "PASS qemu-img check $n.qcow2 clean after the run"
  else echo "FAIL qemu-img check $n.qcow2"; qemu-img check "$W/$n.qcow2" | tail -5; bad=1; fi
done
left=$(ls /dev/ublkb* 2>/dev/null)
[ -z "$left" ] || { echo "FAIL left behind: $left"; bad=1; }
say "fstests exit $rc${failed:+; $failed}"
[ $rc -eq 0 ] && [ $bad -eq 0 ]
