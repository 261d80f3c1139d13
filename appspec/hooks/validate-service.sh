#!/usr/bin/env bash
# ValidateService: Etherpad answers its health check on the instance (AllowTraffic follows).
set -euo pipefail
. "$(dirname "$0")/env.sh"
exec "$ETHERPAD_HOME/deployer/bin/wait-healthy.sh"
