# shellcheck shell=bash disable=SC2154,SC2034  # log, timings, t_start, status: the sourcing script's
# Sourced by the GPU benchmark scripts (tools/gpu_peers.sh, tools/gpu_server_workloads.sh): timed,
# logged steps. The sourcing script sets, before calling `step`:
#   log       the file every step's output is appended to
#   timings   the file of "<step> <seconds> <ok|failed>" lines its summary reads
#   t_start   $(date +%s%N) at the script's start
#   status    0; set to 1 by any failed step
# and optionally STEP_TAIL (lines of a failed step's output shown, default 25) and
# STEP_TIMEOUT_HINT (said after "TIMED OUT ..."). While a step runs, step_pid is its pid, for a
# signal handler to kill.

now_s() { echo $((($(date +%s%N) - t_start) / 1000000)) | awk '{printf "%.1f", $1 / 1000}'; }

# step NAME CMD...: runs CMD (output to the log), prints and records how long it took; returns
# CMD's exit status. CMD runs in the background and is waited for, so that a signal to the script
# is handled at once.
step() {
  local name=$1
  shift
  local t0 rc secs
  t0=$(date +%s%N)
  echo "== $name (at $(now_s) s)"
  echo "== $name: $*" >>"$log"
  "$@" >>"$log" 2>&1 &
  step_pid=$!
  wait "$step_pid"
  rc=$?
  step_pid=
  secs=$(awk -v ns=$(($(date +%s%N) - t0)) 'BEGIN {printf "%.1f", ns / 1e9}')
  if [ $rc = 0 ]; then
    echo "-- $name: ok in $secs s"
    echo "$name $secs ok" >>"$timings"
  else
    [ $rc = 124 ] && echo "-- $name: TIMED OUT after $secs s${STEP_TIMEOUT_HINT:+ ($STEP_TIMEOUT_HINT)}"
    echo "-- $name: FAILED (exit $rc) after $secs s; the end of its output ($log):"
    awk -v n="== $name:" 'index($0, n) == 1 {buf = ""} {buf = buf $0 "\n"} END {printf "%s", buf}' \
      "$log" | tail -"${STEP_TAIL:-25}" | sed 's/^/   | /'
    echo "$name $secs failed" >>"$timings"
    status=1
  fi
  return $rc
}
