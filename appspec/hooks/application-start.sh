#!/usr/bin/env bash
# ApplicationStart: write settings and start Etherpad in the background.
set -euo pipefail
. "$(dirname "$0")/env.sh"
exec "$ETHERPAD_HOME/deployer/bin/start-etherpad.sh"
