#!/usr/bin/env bash
# Wait until users reach this instance's release: its target is healthy in the target group,
# and the load balancer answers with the release.
#
# usage: wait-served.sh LOAD_BALANCER_URL [TARGET_GROUP_ARN]
#
# Signalling CloudFormation before that lets the rolling update retire the old instance too
# early: downtime. Answers through the load balancer alone are not proof: when every target
# is unhealthy the load balancer fails open and routes to this instance anyway. So with a
# target group ARN the instance first waits for its own target to be "healthy"
# (aws elbv2 describe-target-health), then for the load balancer to serve $ETHERPAD_RELEASE
# (the X-Etherpad-Release header of deployer's release plugin).
#
# Environment: ETHERPAD_RELEASE (required), INSTANCE_ID (else read from the instance
# metadata service, IMDSv2), AWS_DEFAULT_REGION or AWS_REGION (passed as --region: AWS CLI v1
# reads only AWS_DEFAULT_REGION), WAIT_SERVED_TIMEOUT seconds (600).
set -euo pipefail
url=${1:?usage: wait-served.sh LOAD_BALANCER_URL [TARGET_GROUP_ARN]}
target_group=${2:-}
release=${ETHERPAD_RELEASE:?ETHERPAD_RELEASE is not set}
timeout=${WAIT_SERVED_TIMEOUT:-600}
deadline=$(( $(date +%s) + timeout ))
region=${AWS_DEFAULT_REGION:-${AWS_REGION:-}}

instance_id() {
  if [ -n "${INSTANCE_ID:-}" ]; then echo "$INSTANCE_ID"; return; fi
  local token
  token=$(curl -s -m 2 -X PUT http://169.254.169.254/latest/api/token \
          -H "X-aws-ec2-metadata-token-ttl-seconds: 60")
  curl -s -m 2 -H "X-aws-ec2-metadata-token: $token" \
       http://169.254.169.254/latest/meta-data/instance-id
}

if [ -n "$target_group" ]; then
  id=$(instance_id)
  state=""
  while [ "$(date +%s)" -lt "$deadline" ]; do
    state=$(aws elbv2 describe-target-health ${region:+--region "$region"} \
              --target-group-arn "$target_group" \
              --targets "Id=$id" --query 'TargetHealthDescriptions[0].TargetHealth.State' \
              --output text 2>/dev/null || true)
    [ "$state" = "healthy" ] && break
    sleep 1
  done
  if [ "$state" != "healthy" ]; then
    echo "wait-served.sh: error: target $id is $state in $target_group after ${timeout}s" >&2
    exit 1
  fi
  echo "wait-served.sh: target $id is healthy"
fi
while [ "$(date +%s)" -lt "$deadline" ]; do
  got=$(curl -s -m 5 -o /dev/null -D - "$url" | tr -d '\r' \
        | awk -F': ' 'tolower($1)=="x-etherpad-release"{print $2}')
  if [ "$got" = "$release" ]; then
    echo "wait-served.sh: $url serves $release"
    exit 0
  fi
  sleep 0.5
done
echo "wait-served.sh: error: $url did not serve $release within ${timeout}s" >&2
exit 1
