# PASS/FAIL bookkeeping shared by the guest-side end-to-end scripts (sourced, not executed).
# The caller sets WORK (a writable directory) before calling check.
fails=0; passes=0
t0=$(date +%s)
say() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
pass() { passes=$((passes + 1)); say "PASS $*"; }
fail() { fails=$((fails + 1)); say "FAIL $*"; }
# check WHAT CMD...: PASS when CMD succeeds, else FAIL with the last 20 lines of its output.
check() { local what=$1; shift; if "$@" >"$WORK/last.log" 2>&1; then pass "$what"; else fail "$what"; tail -20 "$WORK/last.log"; fi; }
