"""``cfn-signal`` for local instances: same flags as aws-cfn-bootstrap's, sent to the supervisor.

    cfn-signal -e <exit code> --stack <stack> --resource <logical id> --region <region>
"""

from __future__ import annotations

import argparse
import os
import sys

from deployer.localcloud.tools import instance_api


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cfn-signal")
    parser.add_argument("-e", "--exit-code", type=int, default=0)
    parser.add_argument("-s", "--success", choices=["true", "false"])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--resource", required=True)
    parser.add_argument("--region")
    parser.add_argument("-r", "--reason", default="")
    parser.add_argument("-i", "--id")
    parser.add_argument("--role")
    parser.add_argument("--url")
    args = parser.parse_args(argv)
    code = args.exit_code if args.success is None else (0 if args.success == "true" else 1)
    instance_id = args.id or os.environ.get("DEPLOYER_INSTANCE_ID")
    try:
        if not instance_id:
            raise instance_api.Unset("not on a local cloud instance (DEPLOYER_INSTANCE_ID unset)")
        instance_api.call("/signal", {"stack": args.stack, "resource": args.resource,
                                      "exit_code": code, "instance_id": instance_id,
                                      "reason": args.reason})
    except (instance_api.Unset, instance_api.Refused) as exc:
        print(f"cfn-signal: {exc}", file=sys.stderr)
        sys.exit(1)
    except instance_api.Unreachable as exc:
        print(f"cfn-signal: cannot reach the stack: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
