#!/usr/bin/env bash
# Wait until the local Etherpad answers its health check, as the target group asks it:
# GET / answered 200 or 302. Exit 0 when healthy, 1 at the deadline or when Etherpad died.
#
# usage: wait-healthy.sh [--timeout SECONDS] [--release RELEASE] [--url URL]
#   --release  also require the X-Etherpad-Release header to name RELEASE (so an old
#              release still answering on the port does not count)
#
# Environment:
#   ETHERPAD_HOME            for the pid file and the log           /opt/etherpad
#   ETHERPAD_PORT            9001
#   ETHERPAD_HEALTH_URL      http://127.0.0.1:$ETHERPAD_PORT/
#   ETHERPAD_HEALTH_TIMEOUT  seconds                                  120

set -euo pipefail

PROG=wait-healthy.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }
say() { echo "$PROG: $*" >&2; }

HOME_DIR=${ETHERPAD_HOME:-/opt/etherpad}
PORT=${ETHERPAD_PORT:-9001}
URL=${ETHERPAD_HEALTH_URL:-http://127.0.0.1:$PORT/}
TIMEOUT=${ETHERPAD_HEALTH_TIMEOUT:-120}
RELEASE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) TIMEOUT=$2; shift 2 ;;
    --release) RELEASE=$2; shift 2 ;;
    --url) URL=$2; shift 2 ;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ "$TIMEOUT" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--timeout $TIMEOUT is not a number of seconds"

PIDFILE="$HOME_DIR/var/etherpad.pid"
LOG=${ETHERPAD_LOG:-$HOME_DIR/var/etherpad.log}

# "<status> <release header>" of one GET, or "000 -" when nothing answered in 2 s.
probe() {
  local headers
  if command -v curl >/dev/null; then
    headers=$(curl -s -o /dev/null -D - --max-time 2 "$URL" 2>/dev/null || true)
  else
    # No curl (a minimal image): plain HTTP/1.0 over bash's /dev/tcp.
    [[ "$URL" =~ ^http://([^/:]+)(:([0-9]+))?(/.*)?$ ]] || die "$URL: only http:// URLs without curl"
    local host=${BASH_REMATCH[1]} port=${BASH_REMATCH[3]:-80} path=${BASH_REMATCH[4]:-/}
    # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
    headers=$(timeout 2 bash -c '
      exec 3<>"/dev/tcp/$1/$2" || exit 1
      printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$3" "$1" >&3
      sed "/^\r*$/q" <&3' _ "$host" "$port" "$path" 2>/dev/null || true)
  fi
  local status release
  status=$(printf '%s\n' "$headers" | awk 'toupper($1) ~ /^HTTP\// {code=$2} END {print code ? code : "000"}')
  release=$(printf '%s\n' "$headers" | tr -d '\r' | awk -F': *' 'tolower($1) == "x-etherpad-release" {r=$2} END {print r ? r : "-"}')
  echo "$status $release"
}

died() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  [ -n "$pid" ] && ! { [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'server.js'; }
}

start_ms=$(date +%s%3N)
deadline=$(( start_ms + ${TIMEOUT%.*} * 1000 ))
last="nothing"
while :; do
  read -r status release < <(probe)
  case "$status" in
    200|302)
      if [ -z "$RELEASE" ] || [ "$release" = "$RELEASE" ]; then
        ms=$(( $(date +%s%3N) - start_ms ))
        say "healthy after $((ms / 1000)).$((ms % 1000 / 100)) s: HTTP $status from $URL (release $release)"
        exit 0
      fi
      last="HTTP $status from release $release, not $RELEASE" ;;
    000) last="no answer" ;;
    *) last="HTTP $status" ;;
  esac
  if died; then
    tail -n 20 "$LOG" 2>/dev/null | sed 's/^/  | /' >&2 || true
    die "Etherpad exited while starting (pid $(cat "$PIDFILE")); its log is $LOG"
  fi
  [ "$(date +%s%3N)" -lt "$deadline" ] || die "$URL not healthy after $TIMEOUT s (last: $last)"
  sleep 0.25
done
