# Helpers for the shell tests of `qblk serve` (sourced; needs curl, ss).
# The caller sets ROOT (repository), WORK (temp dir, holds serve.log) and NAME (prefix of messages).

fail() { echo "$NAME: FAIL: $*" >&2; echo "--- service log ---" >&2; cat "$WORK/serve.log" >&2 || true; exit 1; }

free_port() {
  local p
  # Below the kernel's ephemeral range, so no outgoing connection of another process (a test suite's
  # thousands of client sockets, say) can hold the port between this check and the bind; and any TCP
  # socket on it counts, not only listeners.
  local lo
  lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$lo" -gt 21000 ] || lo=32768
  for _ in $(seq 1 50); do
    p=$(( 20000 + RANDOM % (lo - 20000) ))
    if [ -z "$(ss -tanH "sport = :$p" 2>/dev/null)" ]; then echo "$p"; return; fi
  done
  echo "$NAME: no free port" >&2; exit 1
}

# wait_ready URL PID: waits (at most 120 s) until /q/health/ready answers 200
wait_ready() {
  local url=$1 pid=$2 start; start=$(date +%s)
  until curl -fsS "$url/q/health/ready" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || fail "service exited before becoming ready"
    [ $(( $(date +%s) - start )) -lt 120 ] || fail "not ready after 120 s"
    sleep 0.5
  done
  echo "$NAME: ready after $(( $(date +%s) - start )) s"
}

# wait_exit PID SECONDS: waits for the child to end and sets RC to its exit status, or to "running"
# after SECONDS (not in $(...): a subshell cannot wait for the caller's children)
wait_exit() {
  local pid=$1 i
  RC=running
  for ((i = 0; i < $2 * 10; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then RC=0; wait "$pid" || RC=$?; return; fi
    sleep 0.1
  done
}

# nbd_stuck_client PORT EXPORT: opens fd 3 to the NBD server on 127.0.0.1:PORT, does the fixed
# newstyle handshake with NBD_OPT_EXPORT_NAME, then sends four 32 MiB READ requests and never reads
# the replies: the server's reply writers block once the socket buffers are full, so a graceful
# shutdown waits for this client. Close fd 3 (exec 3>&-) to let go. Returns 1 on a bad greeting.
nbd_stuck_client() {
  local port=$1 name=$2 i
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  head -c 18 <&3 >"$WORK/nbd-greeting"                  # NBDMAGIC IHAVEOPT handshake-flags
  [ "$(head -c 8 "$WORK/nbd-greeting")" = NBDMAGIC ] || return 1
  printf '\x00\x00\x00\x03' >&3                          # client flags: FIXED_NEWSTYLE | NO_ZEROES
  printf 'IHAVEOPT\x00\x00\x00\x01' >&3                  # NBD_OPT_EXPORT_NAME
  printf "\\x00\\x00\\x00\\x$(printf %02x ${#name})%s" "$name" >&3
  head -c 10 <&3 >/dev/null                              # export size, transmission flags
  for i in 0 1 2 3; do                                   # READ handle=i offset=i*32M length=32M
    printf '\x25\x60\x95\x13\x00\x00\x00\x00' >&3
    printf "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x0$i" >&3
    printf "\\x00\\x00\\x00\\x00\\x0$(( 2 * i ))\\x00\\x00\\x00" >&3
    printf '\x02\x00\x00\x00' >&3
  done
}
