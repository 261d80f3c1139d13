"""PID 1 of a local instance: runs the user data like cloud-init, then keeps the instance up.

It leads the instance's process group and becomes a child subreaper, so whatever the user
data starts in the background stays its descendant. SIGTERM (terminate-instances) is passed
to the whole group; the launcher SIGKILLs what is left after its grace period.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--user-data")
    args = parser.parse_args()
    root = Path(args.root)
    _become_subreaper()
    stopping = False

    def on_term(signum, frame):
        nonlocal stopping
        if stopping:
            return
        stopping = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            os.killpg(os.getpgid(0), signal.SIGTERM)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    # pause() returns only for a handled signal: handle SIGCHLD so adopted orphans get reaped.
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    status_file = root / "var/lib/cloud/instance/boot-finished"
    if args.user_data:
        output = root / "var/log/cloud-init-output.log"
        with open(output, "ab", buffering=0) as out:
            out.write(f"Cloud-init: running user data at {time.ctime()}\n".encode())
            try:
                code = subprocess.call(["/bin/bash", args.user_data], cwd=root, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            except OSError as exc:
                out.write(f"user data could not start: {exc}\n".encode())
                code = 127
            out.write(f"Cloud-init: user data exited with {code} at {time.ctime()}\n".encode())
        status_file.write_text(f"{code} {time.time()}\n")
    else:
        status_file.write_text(f"0 {time.time()}\n")
    # Stay up, reaping orphans, until terminated and every descendant is gone.
    while True:
        try:
            _pid, _ = os.waitpid(-1, 0)
        except ChildProcessError:
            if stopping:
                sys.exit(0)
            signal.pause()
        except InterruptedError:
            continue


if __name__ == "__main__":
    main()
