#!/bin/sh
# Provision an Etherpad image on Packer's build instance: Node.js, npm and git if the host
# lacks them, then the release, installed by etherpad/bin/install-etherpad.sh.
#
# Environment (defaults are the AWS ones; the local cloud's build host sets its own):
#   ETHERPAD_RELEASE   the release to install (required)
#   ETHERPAD_SOURCE    github | npm | git mirror URL or path              github
#   ETHERPAD_HOME      where Etherpad is installed                         /opt/etherpad
#   ETHERPAD_ASSETS    the uploaded etherpad/ folder      <this script's folder>/etherpad
set -eu

say() { echo "provision.sh: $*" >&2; }
die() { echo "provision.sh: error: $*" >&2; exit 1; }

[ -n "${ETHERPAD_RELEASE:-}" ] || die "ETHERPAD_RELEASE is not set (pass -var etherpad_version=...)"
ETHERPAD_SOURCE=${ETHERPAD_SOURCE:-github}
ETHERPAD_HOME=${ETHERPAD_HOME:-/opt/etherpad}
# The file provisioner puts the etherpad/ folder in the folder this script is uploaded to.
uploaded_assets=$(cd "$(dirname "$0")" && pwd)/etherpad
ETHERPAD_ASSETS=${ETHERPAD_ASSETS:-$uploaded_assets}
installer="$ETHERPAD_ASSETS/bin/install-etherpad.sh"
[ -f "$installer" ] || die "$installer not found (the file provisioner must upload etherpad/ first)"

missing=""
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
[ "$ETHERPAD_SOURCE" = npm ] || command -v git >/dev/null 2>&1 || missing="$missing git"
command -v bash >/dev/null 2>&1 || missing="$missing bash"
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null 2>&1 || die "missing:$missing, and no apt-get to install them (install them on the build host)"
  # On a fresh instance cloud-init may still be running apt; wait for it to finish.
  if command -v cloud-init >/dev/null 2>&1; then
    cloud-init status --wait >/dev/null 2>&1 || true
  fi
  say "installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # shellcheck disable=SC2086  # one word per package
  apt-get install -y -q --no-install-recommends $missing ca-certificates
else
  say "node, npm and git already present: nothing to install"
fi
say "node $(node --version), npm $(npm --version)"

export ETHERPAD_RELEASE ETHERPAD_SOURCE ETHERPAD_HOME
bash "$installer"

# The installer copied what the image needs into $ETHERPAD_HOME; the upload is not needed.
if [ "$ETHERPAD_ASSETS" = "$uploaded_assets" ]; then
  rm -rf "$uploaded_assets"
fi
say "Etherpad $ETHERPAD_RELEASE is installed in $ETHERPAD_HOME"
