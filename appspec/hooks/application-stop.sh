#!/usr/bin/env bash
# ApplicationStop (the previous revision's copy runs): stop Etherpad if it runs.
set -euo pipefail
. "$(dirname "$0")/env.sh"
stop="$ETHERPAD_HOME/deployer/bin/stop-etherpad.sh"
if [ -x "$stop" ]; then "$stop"; else echo "no Etherpad installed yet"; fi
