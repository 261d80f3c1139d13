#!/bin/sh
# A stand-in for the packer binary: answers `version`, records `init` and `plugins`, and
# for `build` prints machine-readable lines and writes the manifest post-processor's file
# into its working directory, as Packer does. Behaviour comes from FAKE_PACKER_* variables.
echo "$*" >> "$FAKE_PACKER_LOG"
case "$1" in
  version) echo "Packer v${FAKE_PACKER_VERSION:-1.6.6}"; exit 0 ;;
  init) echo "init ok"; exit 0 ;;
  plugins)
    [ "$2" = installed ] && exit 0
    echo "Installed plugin github.com/hashicorp/amazon v1.3.0"; exit 0 ;;
  build)
    ami=${FAKE_PACKER_AMI:-ami-0new}
    echo "1700000000,,ui,say,==> amazon-ebs.etherpad: Prevalidating AMI Name: etherpad-1.8.18"
    echo "1700000001,amazon-ebs.etherpad,ui,message,    amazon-ebs.etherpad: npm ci%!(PACKER_COMMA) 480 packages"
    if [ -n "$FAKE_PACKER_FAIL" ]; then
      echo "1700000002,,ui,error,Build 'amazon-ebs.etherpad' errored after 3 minutes: $FAKE_PACKER_FAIL"
      exit 1
    fi
    echo "1700000003,amazon-ebs.etherpad,artifact,0,id,us-east-1:$ami"
    if [ -z "$FAKE_PACKER_NO_MANIFEST" ]; then
      cat > packer-manifest.json <<JSON
{
  "builds": [
    {"name": "etherpad", "builder_type": "amazon-ebs", "build_time": 1690000000,
     "artifact_id": "us-east-1:ami-0older", "packer_run_uuid": "run-1"},
    {"name": "etherpad", "builder_type": "amazon-ebs", "build_time": 1700000003,
     "artifact_id": "eu-west-1:ami-0elsewhere,us-east-1:$ami", "packer_run_uuid": "run-2"}
  ],
  "last_run_uuid": "run-2"
}
JSON
    fi
    pwd > "$FAKE_PACKER_LOG.cwd"
    exit 0 ;;
esac
exit 2
