"""`./run demo`: the main job on the embedded local cloud, on a machine without GitHub.

Builds (once) a rehearsal mirror of Etherpad from the npm release, then runs

    deployer release 1.8.14-r2 --strategy packer --from 1.8.14 --source <mirror>

which creates the environment at 1.8.14 (database, load balancer, Auto Scaling group), bakes
the new image, rolls it out with the poller watching, and prints the report. The
environment is removed afterwards unless ``--keep`` is given.

    python -m deployer.cli.demo [--strategy packer|cloudformation|codedeploy] [--keep] [--json F]
"""

from __future__ import annotations

import argparse
import sys

from deployer.base.home import deployer_home
from deployer.cli.app import main as cli
from deployer.etherpad.mirror import REHEARSAL_TAGS, build_rehearsal_mirror


def main() -> None:
    parser = argparse.ArgumentParser(prog="deployer-demo")
    parser.add_argument("--strategy", default="packer",
                        choices=["packer", "cloudformation", "codedeploy"])
    parser.add_argument("--keep", action="store_true", help="leave the environment running")
    parser.add_argument("--json", help="write the release report here")
    args = parser.parse_args()
    home = deployer_home()
    print(f"==> rehearsal mirror of Etherpad (from npm) in {home / 'mirror'}", file=sys.stderr)
    mirror = build_rehearsal_mirror(home / "mirror" / "etherpad-lite.git", home / "mirror")
    start, target = REHEARSAL_TAGS
    argv = ["release", target, "--strategy", args.strategy, "--from", start,
            "--source", str(mirror)] + (["--json", args.json] if args.json else [])
    print(f"==> deployer {' '.join(argv)}", file=sys.stderr)
    try:
        cli(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    if not args.keep:
        print("==> removing the environment (keep it with --keep; see it with "
              "'deployer status')", file=sys.stderr)
        try:
            cli(["down", "--all"])
        except SystemExit:
            pass
    sys.exit(code)


if __name__ == "__main__":
    main()
