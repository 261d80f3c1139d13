"""``cfn-signal`` for local instances: same flags as aws-cfn-bootstrap's, sent to the supervisor.

    cfn-signal -e <exit code> --stack <stack> --resource <logical id> --region <region>
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request


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
    endpoint = os.environ.get("DEPLOYER_CONTROL_URL")
    instance_id = args.id or os.environ.get("DEPLOYER_INSTANCE_ID")
    if not endpoint or not instance_id:
        print("cfn-signal: not on a local cloud instance (DEPLOYER_CONTROL_URL unset)",
              file=sys.stderr)
        sys.exit(1)
    body = json.dumps({"stack": args.stack, "resource": args.resource, "exit_code": code,
                       "instance_id": instance_id, "reason": args.reason}).encode()
    request = urllib.request.Request(f"{endpoint}/signal", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("error", {}).get("message", exc.reason)
        print(f"cfn-signal: {detail}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:
        print(f"cfn-signal: cannot reach the stack: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
