"""``aws`` for local instances: the few AWS CLI calls the instance scripts make.

Like ``cfn-signal``, the instance's AWS CLI talks to the local cloud's supervisor. Only the
calls the shipped scripts use are answered, with the AWS CLI's own output shapes, so the
same script runs on EC2 and here:

    aws elbv2 describe-target-health --target-group-arn ARN --targets Id=ID [--query Q]
        [--output text|json]
"""

from __future__ import annotations

import argparse
import json
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


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:2] != ["elbv2", "describe-target-health"]:
        print(f"aws: the local cloud answers only 'elbv2 describe-target-health', "
              f"not {' '.join(args[:2])!r}", file=sys.stderr)
        sys.exit(252)
    parser = argparse.ArgumentParser(prog="aws elbv2 describe-target-health")
    parser.add_argument("--target-group-arn", required=True)
    parser.add_argument("--targets", nargs="*", default=[])
    parser.add_argument("--query")
    parser.add_argument("--output", default="json")
    parser.add_argument("--region")
    ns = parser.parse_args(args[2:])
    ids = [t.split("=", 1)[1].split(",", 1)[0] for t in ns.targets if t.startswith("Id=")]
    query = urllib.parse.urlencode({"arn": ns.target_group_arn, "ids": ",".join(ids)})
    _output(_call(f"/target-health?{query}"), ns.query, ns.output)


if __name__ == "__main__":
    main()
