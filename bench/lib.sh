# bench/lib.sh: helpers shared by the bench scripts (sourced, not run).

# bench_free_port: prints a free TCP port on 127.0.0.1 (the kernel picks it).
bench_free_port() {
  python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# bench_stop PID [TENTHS]: SIGTERM, up to TENTHS tenths of a second (default 50) for the process
# to exit, then SIGKILL; reaps it when it is our child. Never fails.
bench_stop() {
  local pid=$1 tenths=${2:-50}
  [[ -n $pid ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq "$tenths"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# bench_traps FN: runs FN on exit, and turns Ctrl-C and SIGTERM into exits (130, 143) so that
# FN cleans up then too.
bench_traps() {
  # shellcheck disable=SC2064  # FN is meant to be expanded now
  trap "$1" EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# bench_log_tail RC FILE: after a failure (RC != 0), the last lines of the server log FILE on
# stderr.
bench_log_tail() {
  if [[ $1 -ne 0 && -s $2 ]]; then
    echo "--- tail of the server log ---" >&2
    tail -n 20 "$2" >&2
  fi
}
