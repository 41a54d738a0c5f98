#!/usr/bin/env bash
# Builds a container base image (docker-save tarball) from this machine's JDK, for Jib builds where no
# registry is reachable: a jlink'ed Java 25 runtime in /opt/java, the shared libraries it links against,
# and an unprivileged user qblk (uid 1000). Usage: make-base-image.sh <out.tar>
set -euo pipefail
OUT="$1"
JDK="${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}"
WORK="$(realpath -m "$(dirname "$OUT")")/base-rootfs"
rm -rf "$WORK" && mkdir -p "$WORK/root/opt" "$WORK/root/etc" "$WORK/root/tmp" "$WORK/root/proc" "$WORK/root/dev" "$WORK/root/work" "$WORK/root/data"
"$JDK/bin/jlink" --add-modules java.se,jdk.unsupported,jdk.crypto.ec,jdk.zipfs,jdk.management,jdk.naming.dns,jdk.jfr,jdk.net,jdk.charsets --strip-debug --no-man-pages --no-header-files \
  --compress zip-6 --output "$WORK/root/opt/java"
# Shared libraries of the runtime (glibc, zlib, ...) at their usual paths.
find "$WORK/root/opt/java" -type f \( -name '*.so' -o -path '*/bin/*' \) -print0 |
  xargs -0 ldd 2>/dev/null | grep -o '/[^ ]*\.so[^ ]*' | sort -u | while read -r lib; do
    case "$lib" in "$WORK"/*) continue ;; esac
    [ -e "$lib" ] || continue
    mkdir -p "$WORK/root$(dirname "$lib")"
    cp -L "$lib" "$WORK/root$lib"
  done
# /lib64 -> the dynamic loader path the binaries ask for.
printf 'root:x:0:0:root:/root:/sbin/nologin\nqblk:x:1000:1000:qblk:/work:/sbin/nologin\n' >"$WORK/root/etc/passwd"
printf 'root:x:0:\nqblk:x:1000:\ndisk:x:6:qblk\n' >"$WORK/root/etc/group"
# The application runs as qblk (uid 1000): its working directory and ./data must be writable.
chmod 1777 "$WORK/root/tmp" "$WORK/root/work" "$WORK/root/data"
(cd "$WORK/root" && tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf ../layer.tar .)
DIFF="sha256:$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1)"
cat >"$WORK/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/opt/java/bin:/usr/bin:/bin","JAVA_HOME=/opt/java"],"User":"1000"},"rootfs":{"type":"layers","diff_ids":["$DIFF"]}}
JSON
cat >"$WORK/manifest.json" <<JSON
[{"Config":"config.json","RepoTags":["qblk-base:local"],"Layers":["layer.tar"]}]
JSON
(cd "$WORK" && tar -cf "$(realpath -m "$OUT")" manifest.json config.json layer.tar)
echo "base image: $OUT ($(du -h "$OUT" | cut -f1))"
