#!/usr/bin/env bash
# Wait until the load balancer serves this instance's release to users.
#
# usage: wait-served.sh LOAD_BALANCER_URL
#
# A signal to CloudFormation before users reach the new release lets the rolling update
# retire the old instance too early: downtime. So an instance signals only once a request
# through the load balancer is answered by $ETHERPAD_RELEASE (the X-Etherpad-Release header
# of deployer's release plugin). When the release is already served (a re-install of the
# same release), that is immediate: the target group's health check still guards the cut.
#
# Environment: ETHERPAD_RELEASE (required), WAIT_SERVED_TIMEOUT seconds (600).
set -euo pipefail
url=${1:?usage: wait-served.sh LOAD_BALANCER_URL}
release=${ETHERPAD_RELEASE:?ETHERPAD_RELEASE is not set}
deadline=$(( $(date +%s) + ${WAIT_SERVED_TIMEOUT:-600} ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  got=$(curl -s -m 5 -o /dev/null -D - "$url" | tr -d '\r' \
        | awk -F': ' 'tolower($1)=="x-etherpad-release"{print $2}')
  if [ "$got" = "$release" ]; then
    echo "wait-served.sh: $url serves $release"
    exit 0
  fi
  sleep 0.5
done
echo "wait-served.sh: error: $url did not serve $release within ${WAIT_SERVED_TIMEOUT:-600}s" >&2
exit 1
