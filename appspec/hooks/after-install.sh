#!/usr/bin/env bash
# AfterInstall: install the release's dependencies (npm) into $ETHERPAD_HOME.
set -euo pipefail
. "$(dirname "$0")/env.sh"
exec "$REVISION/etherpad/bin/install-etherpad.sh" --from-tree "$ETHERPAD_RELEASE_TREE"
