#!/usr/bin/env bash
# BeforeInstall: the release tree from the last revision is replaced whole.
set -euo pipefail
. "$(dirname "$0")/env.sh"
rm -rf "$ETHERPAD_RELEASE_TREE"
