#!/usr/bin/env bash
# Stop the Etherpad started by start-etherpad.sh: SIGTERM, then SIGKILL after a deadline.
#
# Environment:
#   ETHERPAD_HOME          the install                   /opt/etherpad
#   ETHERPAD_STOP_TIMEOUT  seconds to wait after SIGTERM 20
#
# Exit 0 when Etherpad is stopped, or was not running (so it is safe as an ApplicationStop
# hook on an instance's first deployment).

set -euo pipefail

PROG=stop-etherpad.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }
say() { echo "$PROG: $*" >&2; }

HOME_DIR=${ETHERPAD_HOME:-/opt/etherpad}
PIDFILE="$HOME_DIR/var/etherpad.pid"
TIMEOUT=${ETHERPAD_STOP_TIMEOUT:-20}

# Only a pid that is still this Etherpad: pids get reused.
alive() {
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q 'server.js'
}

pid=$(cat "$PIDFILE" 2>/dev/null || true)
if [ -z "$pid" ] || ! alive "$pid"; then
  rm -f "$PIDFILE"
  say "Etherpad is not running from $HOME_DIR"
  exit 0
fi

kill -TERM "$pid" 2>/dev/null || true
deadline=$(( $(date +%s%3N) + TIMEOUT * 1000 ))
while alive "$pid"; do
  if [ "$(date +%s%3N)" -ge "$deadline" ]; then
    say "Etherpad (pid $pid) did not exit within $TIMEOUT s of SIGTERM: sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
    alive "$pid" && die "Etherpad (pid $pid) survived SIGKILL (check the host)"
    break
  fi
  sleep 0.1
done
rm -f "$PIDFILE"
say "stopped Etherpad (pid $pid)"
