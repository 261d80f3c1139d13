"""``aws`` for local instances: the few AWS CLI calls the instance scripts make.

Like ``cfn-signal``, the instance's AWS CLI talks to the local cloud's supervisor. Only the
calls the shipped scripts use are answered, with the AWS CLI's own output shapes, so the
same script runs on EC2 and here:

    aws elbv2 describe-target-health --target-group-arn ARN --targets Id=ID [--query Q]
        [--output text|json]

About regions it is AWS CLI v1, the ``awscli`` Ubuntu 22.04 installs: the region comes from
``--region`` or ``AWS_DEFAULT_REGION`` only (``AWS_REGION`` is v2's and the SDKs'), else it
fails with v1's words and exit code 255. EC2 sets neither variable: a script that relies on
``AWS_REGION`` alone fails here as it would on an instance.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse

from deployer.localcloud.tools import instance_api


def _call(path: str) -> dict:
    try:
        return instance_api.call(path)
    except instance_api.Unset as exc:
        print(f"aws: {exc}", file=sys.stderr)
        sys.exit(255)
    except instance_api.Refused as exc:
        print(f"\nAn error occurred (TargetGroupNotFound): {exc}", file=sys.stderr)
        sys.exit(254)
    except instance_api.Unreachable as exc:
        print(f"\nCould not connect to the endpoint URL: {exc}", file=sys.stderr)
        sys.exit(255)


def _output(document: dict, query: str | None, output: str) -> None:
    if query:
        import jmespath

        document = jmespath.search(query, document)
    if output == "text" and not isinstance(document, (dict, list)):
        print("None" if document is None else document)
    else:
        print(json.dumps(document, indent=4))


NO_REGION = ('You must specify a region. You can also configure your region by running '
             '"aws configure".')


def region_of(args: list[str]) -> str | None:
    """The region AWS CLI v1 would use: --region anywhere on the line, else
    AWS_DEFAULT_REGION (the config file is never written on these instances)."""
    for i, arg in enumerate(args):
        if arg == "--region" and i + 1 < len(args):
            return args[i + 1] or None
        if arg.startswith("--region="):
            return arg.split("=", 1)[1] or None
    return os.environ.get("AWS_DEFAULT_REGION") or None


def without_region(args: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--region":
            skip = True
        elif not arg.startswith("--region="):
            kept.append(arg)
    return kept


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if region_of(args) is None:
        print(NO_REGION, file=sys.stderr)
        sys.exit(255)
    args = without_region(args)  # a global option: it may come before the service
    if args[:2] != ["elbv2", "describe-target-health"]:
        print(f"aws: the local cloud answers only 'elbv2 describe-target-health', "
              f"not {' '.join(args[:2])!r}", file=sys.stderr)
        sys.exit(252)
    parser = argparse.ArgumentParser(prog="aws elbv2 describe-target-health")
    parser.add_argument("--target-group-arn", required=True)
    parser.add_argument("--targets", nargs="*", default=[])
    parser.add_argument("--query")
    parser.add_argument("--output", default="json")
    ns = parser.parse_args(args[2:])
    ids = [t.split("=", 1)[1].split(",", 1)[0] for t in ns.targets if t.startswith("Id=")]
    query = urllib.parse.urlencode({"arn": ns.target_group_arn, "ids": ",".join(ids)})
    _output(_call(f"/target-health?{query}"), ns.query, ns.output)


if __name__ == "__main__":
    main()
