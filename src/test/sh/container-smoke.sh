#!/usr/bin/env bash
# Builds the container image tarball (Maven profile "container", no Docker engine needed) and runs it
# without a container engine: unpacks its layers into a directory and starts `qblk serve` there with
# chroot as the image's user (uid 1000), then checks readiness and one NBD read/write.
# Needs root (chroot, mount -t proc, mknod), qemu-utils, curl, python3. Usage: src/test/sh/container-smoke.sh [--no-build]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
TAR="$ROOT/target/qblk-image.tar"
if [ "${1:-}" != "--no-build" ]; then
  (cd "$ROOT" && ./mvnw -B -q package -Pcontainer -DskipTests)
fi
[ -s "$TAR" ] || { echo "container-smoke: FAIL: $TAR missing" >&2; exit 1; }
WORK="$(mktemp -d /tmp/qblk-container.XXXXXX)"
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  if mountpoint -q "$WORK/rootfs/proc" 2>/dev/null; then umount "$WORK/rootfs/proc" || umount -l "$WORK/rootfs/proc"; fi
  mountpoint -q "$WORK/rootfs/proc" 2>/dev/null || rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
fail() { echo "container-smoke: FAIL: $*" >&2; cat "$WORK/serve.log" >&2 2>/dev/null || true; exit 1; }

mkdir -p "$WORK/image" "$WORK/rootfs"
tar -xf "$TAR" -C "$WORK/image"
python3 - "$WORK/image" >"$WORK/layers" <<'PY'
import json, sys
m = json.load(open(sys.argv[1] + "/manifest.json"))[0]
print("\n".join(m["Layers"]))
c = json.load(open(sys.argv[1] + "/" + m["Config"]))
sys.stderr.write("image user=%s entrypoint=%s workdir=%s\n" % (c["config"].get("User"), c["config"].get("Entrypoint"), c["config"].get("WorkingDir")))
PY
while read -r layer; do tar --warning=no-unknown-keyword -xf "$WORK/image/$layer" -C "$WORK/rootfs"; done <"$WORK/layers"
[ -x "$WORK/rootfs/opt/java/bin/java" ] || fail "no java in the image"
[ -f "$WORK/rootfs/work/quarkus-run.jar" ] || fail "no quarkus-run.jar in /work"

# What a container engine provides: /proc (the dynamic loader and the JVM need it) and basic /dev nodes.
mkdir -p "$WORK/rootfs/proc" "$WORK/rootfs/dev"
mount -t proc proc "$WORK/rootfs/proc"
mknod -m 666 "$WORK/rootfs/dev/null" c 1 3; mknod -m 666 "$WORK/rootfs/dev/zero" c 1 5
mknod -m 444 "$WORK/rootfs/dev/random" c 1 8; mknod -m 444 "$WORK/rootfs/dev/urandom" c 1 9

HTTP_PORT=$(( 20000 + RANDOM % 20000 )); NBD_PORT=$(( 40000 + RANDOM % 20000 ))
# The image's entrypoint and environment, as a container engine would run them.
env -i PATH=/opt/java/bin:/usr/bin:/bin QBLK_IMAGES_ALLOWED_DIRS=/data QUARKUS_HTTP_PORT=$HTTP_PORT \
    QBLK_NBD_ADDRESS=127.0.0.1:$NBD_PORT "$(command -v chroot)" --userspec=1000:1000 "$WORK/rootfs" \
    /opt/java/bin/java -Djava.util.logging.manager=org.jboss.logmanager.LogManager --enable-native-access=ALL-UNNAMED \
    -Duser.dir=/work -jar /work/quarkus-run.jar serve >"$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$HTTP_PORT/q/health/ready" >/dev/null 2>&1 && break
  kill -0 "$PID" 2>/dev/null || fail "service exited"
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$HTTP_PORT/q/health/ready" >/dev/null || fail "not ready"
qemu-io -f raw -c 'write -P 0x42 0 64k' -c 'read -P 0x42 0 64k' "nbd://127.0.0.1:$NBD_PORT/default" >"$WORK/io.log" 2>&1 \
  || fail "qemu-io: $(cat "$WORK/io.log")"
grep -q "Pattern verification failed" "$WORK/io.log" && fail "wrong data"
owner=$(stat -c %u "$WORK/rootfs/data/default.qcow2")
[ "$owner" = 1000 ] || fail "image owned by uid $owner, expected the non-root uid 1000"
kill -TERM "$PID"; wait "$PID" || true; PID=""
echo "container-smoke: PASS (image $(du -h "$TAR" | cut -f1), ran as uid 1000, NBD I/O ok)"
