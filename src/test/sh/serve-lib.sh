# Helpers for the shell tests of `qblk serve` (sourced; needs curl, ss).
# The caller sets ROOT (repository), WORK (temp dir, holds serve.log) and NAME (prefix of messages).

fail() { echo "$NAME: FAIL: $*" >&2; echo "--- service log ---" >&2; cat "$WORK/serve.log" >&2 || true; exit 1; }

free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 40000 ))
    if ! ss -ltnH "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return; fi
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
