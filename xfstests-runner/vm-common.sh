# Shared helpers for vm-kernel and vm-run (sourced, not executed).
VM_CACHE=${QBLK_VM_CACHE:-/var/cache/qblk-vm}
VM_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_FRAGMENT="$VM_HERE/guest.config"
# Guest kernel version: QBLK_VM_KERNEL=6.1 (default) or 6.12, both Debian linux-source packages,
# built from the same fragment and cached side by side (the version is part of the cache key).
VM_KERNEL=${QBLK_VM_KERNEL:-6.1}
case "$VM_KERNEL" in
  6.1|6.12) ;;
  *) echo "vm: QBLK_VM_KERNEL must be 6.1 or 6.12 (got '$VM_KERNEL')" >&2; exit 2 ;;
esac
# Per-version additions, merged after guest.config and hashed only into that version's key (6.12:
# VDUSE needs ARCH_HAS_DMA_OPS, which x86 selects only with GART_IOMMU or XEN).
VM_FRAGMENTS=("$VM_FRAGMENT")
[ ! -f "$VM_HERE/guest-$VM_KERNEL.config" ] || VM_FRAGMENTS+=("$VM_HERE/guest-$VM_KERNEL.config")
VM_SRC_PKG=linux-source-$VM_KERNEL
VM_SRC_TARBALL=/usr/src/$VM_SRC_PKG.tar.xz

vm_log() { echo "vm: $*" >&2; }

# Installs the Debian packages the harness needs when one is missing.
vm_ensure_packages() {
  local want=("$VM_SRC_PKG" busybox-static qemu-system-x86 bc flex bison libelf-dev libssl-dev
              cpio make gcc xz-utils e2fsprogs xfsprogs fio qemu-utils)
  local missing=()
  local p
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    vm_log "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  fi
}

vm_kernel_key() {
  local ver
  ver=$(dpkg-query -W -f='${Version}' "$VM_SRC_PKG")
  { cat "${VM_FRAGMENTS[@]}"; echo "$VM_SRC_PKG=$ver"; } | sha256sum | cut -c1-16
}

# vm_build_kernel DIR: unpack, configure, verify, build; leaves DIR/bzImage and DIR/config.
vm_build_kernel() {
  local dir=$1 work
  work="$dir/build"
  rm -rf "$work"; mkdir -p "$work"
  vm_log "unpacking $VM_SRC_TARBALL"
  tar -xJf "$VM_SRC_TARBALL" -C "$work" --strip-components=1
  cd "$work"
  make -s tinyconfig
  ./scripts/kconfig/merge_config.sh -m .config "${VM_FRAGMENTS[@]}" >/dev/null
  make -s olddefconfig
  local line sym val bad=0
  local -A want=()
  while IFS= read -r line; do # later fragments override earlier ones
    case "$line" in CONFIG_*=*) want[${line%%=*}]=${line#*=} ;; esac
  done < <(cat "${VM_FRAGMENTS[@]}")
  for sym in "${!want[@]}"; do
    val=${want[$sym]}
    if [ "$val" = n ]; then
      if grep -q "^$sym=y" .config; then vm_log "$sym is y, wanted n"; bad=1; fi
    elif ! grep -qx "$sym=$val" .config; then
      vm_log "$sym: wanted $val, got: $(grep "^$sym=" .config || echo unset)"; bad=1
    fi
  done
  [ $bad -eq 0 ] || { vm_log "kernel config check failed"; return 1; }
  vm_log "building bzImage (8-20 min on 2 cores)"
  make -s -j"${QBLK_VM_JOBS:-3}" bzImage
  cp .config "$dir/config"
  cp arch/x86/boot/bzImage "$dir/bzImage.tmp" && mv "$dir/bzImage.tmp" "$dir/bzImage"
  cd /; rm -rf "$work"
  vm_log "kernel cached in $dir"
}

# Builds (once, cached by content) the busybox initramfs and prints its path.
vm_initramfs() {
  local bb key dir img tmp
  bb=$(command -v busybox || echo /bin/busybox)
  key=$( { cat "$VM_HERE/guest-init"; sha256sum <"$bb"; } | sha256sum | cut -c1-16)
  dir="$VM_CACHE/initramfs"; mkdir -p "$dir"
  img="$dir/initramfs-$key.cpio.gz"
  if [ ! -s "$img" ]; then
    tmp=$(mktemp -d)
    mkdir -p "$tmp/bin"
    cp "$bb" "$tmp/bin/busybox"
    cp "$VM_HERE/guest-init" "$tmp/init"; chmod 755 "$tmp/init"
    (cd "$tmp" && find . | cpio -o -H newc --quiet | gzip -1) >"$img.tmp" && mv "$img.tmp" "$img"
    rm -rf "$tmp"
  fi
  echo "$img"
}

# Serial console -> caller: drops firmware/boot noise and carriage returns, keeps what the command
# printed (and kernel warnings printed while it ran). QBLK_VM_VERBOSE=1 shows everything.
vm_console_filter() {
  # A bash loop, not tr/awk: both block-buffer on pipes (Debian's awk is mawk) and would hold the
  # output back until the guest ends.
  local line on=0 all=${QBLK_VM_VERBOSE:-0}
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%$'\r'}
    if [ "$all" = 1 ]; then printf '%s\n' "$line"; continue; fi
    case "$line" in
      *@@qblk-vm-start@@*) on=1 ;;
      *@@qblk-vm-end@@*) on=0 ;;
      *) if [ $on = 1 ]; then printf '%s\n' "$line"
         else case "$line" in *"Kernel panic"*|*BUG:*|*Oops*|*init:*) printf '%s\n' "$line" ;; esac; fi ;;
    esac
  done
}

# Host side, before a guest runs qblk: builds the application jar when it is missing or stale (the
# guest compiles nothing) and exports QBLK_JAVA_OPTS with a JDK AOT cache trained on the host (class
# loading/linking of the Quarkus bootstrap), which roughly halves every JVM start under TCG.
# Run from the repository root. Leaves a caller's own QBLK_JAVA_OPTS alone.
vm_prepare_qblk() {
  local jar=target/quarkus-app/quarkus-run.jar
  if [ ! -f "$jar" ] || [ -n "$(find pom.xml src/main -newer "$jar" -print -quit)" ]; then
    vm_log "building the application jar"
    ./mvnw -B -q package -DskipTests -Dquarkus.package.jar.type=fast-jar
    touch "$jar"
  fi
  [ -z "${QBLK_JAVA_OPTS:-}" ] || return 0
  vm_aot_opts "$PWD" target/qblk-e2e.aot
}

# vm_aot_opts ROOT AOT: exports QBLK_JAVA_OPTS with a JDK AOT cache AOT (relative to ROOT), trained
# on the host with ROOT/qblk when missing or older than the jars under ROOT/target/quarkus-app.
vm_aot_opts() {
  local root=$1 aot=$2 opts="-XX:+UseSerialGC -XX:TieredStopAtLevel=1"
  if [ ! -f "$root/$aot" ] || [ "$root/target/quarkus-app/quarkus-run.jar" -nt "$root/$aot" ] \
     || [ -n "$(find "$root/target/quarkus-app" -newer "$root/$aot" -name '*.jar' -print -quit)" ]; then
    rm -f "$root/$aot"
    (cd "$root" && QBLK_NO_BUILD=1 QBLK_JAVA_OPTS="$opts -XX:AOTCacheOutput=$aot" ./qblk export --ublk -t null --size 1G >/dev/null 2>&1) || true
  fi
  if [ -f "$root/$aot" ]; then opts="$opts -XX:AOTCache=$root/$aot -Xlog:aot=off -Xlog:cds=off"; fi
  export QBLK_JAVA_OPTS="$opts"
}

# vm_snapshot_qblk DIR: a copy of the launcher and the built application in DIR (DIR/qblk) with its
# own AOT cache, so a long run keeps using the code it started with while the checkout changes.
vm_snapshot_qblk() {
  local dir=$1 opts=${QBLK_JAVA_OPTS:-}
  rm -rf "$dir"; mkdir -p "$dir/target"
  cp -a qblk "$dir/"
  cp -a target/quarkus-app "$dir/target/"
  if [ -z "$opts" ]; then vm_aot_opts "$dir" qblk.aot; fi
}
