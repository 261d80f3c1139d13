# Sourced by every hook: where things are, with the AWS values as defaults.
# On EC2 the instance's user data writes /etc/etherpad.env (database endpoint, release source);
# on the local cloud the instance's environment carries the same variables.
[ -f /etc/etherpad.env ] && . /etc/etherpad.env
export ETHERPAD_HOME=${ETHERPAD_HOME:-/opt/etherpad}
export ETHERPAD_RELEASE_TREE=${INSTANCE_ROOT:-}/opt/etherpad-release
REVISION=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
export REVISION
