"""Etherpad install and start: what a release costs a machine.

Measures, with the real installer (etherpad/bin/install-etherpad.sh):
  - installing 1.8.14 from npm with an empty npm cache (cold) and with the machine's (warm)
  - installing it again from the release tree cache (a copy), the ratio to the warm install
  - installing a git release from a CodeDeploy bundle (--from-tree, release lockfile)
  - tree size and files
  - start to first HTTP 200 (start-etherpad.sh launched -> GET / answers 200), stop time,
    and RSS idle and after serving pads, on PostgreSQL

    python benchmarks/etherpad_install_bench.py [--runs 3] [--skip-cold]

Prints a Markdown table for benchmarks/RESULTS.md. Uses the npm registry (cold install);
everything else stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deployer.etherpad import (
    bundle_release,
    install_release,
    read_install,
    resolve_source,
)
from tests.support.etherpad import (
    EtherpadRun,
    etherpad_from_install,
    make_release_repo,
)
from tests.support.postgres import PostgresServer


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def first_200(port: int, deadline_s: float = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    raise RuntimeError("Etherpad did not answer 200 in time")


def timed_install(label: str, results: list, **kwargs) -> float:
    installed = install_release(**kwargs)
    results.append((label, f"{installed.seconds:.1f} s",
                     f"{installed.size_bytes / 1e6:.0f} MB, {installed.files:,} files"))
    print(f"{label}: {installed.seconds:.1f} s ({installed.files} files)", file=sys.stderr)
    return installed.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-cold", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="etherpad-bench-"))
    results: list[tuple[str, str, str]] = []
    npm = resolve_source("npm")
    try:
        if not args.skip_cold:
            empty_cache = work / "empty-npm-cache"
            timed_install("install 1.8.14 from npm, empty npm cache (cold)", results,
                          release="1.8.14", source=npm, root=work / "cold",
                          env={"npm_config_cache": str(empty_cache)})
            shutil.rmtree(work / "cold")
            shutil.rmtree(empty_cache)
        warm = timed_install("install 1.8.14 from npm, warm npm cache", results,
                             release="1.8.14", source=npm, root=work / "warm",
                             cache_dir=work / "trees")
        copies = []
        for i in range(args.runs):
            installed = install_release("1.8.14", npm, work / f"copy{i}",
                                        cache_dir=work / "trees")
            copies.append(installed.seconds)
            if i:
                shutil.rmtree(work / f"copy{i}")
        copy = statistics.median(copies)
        results.append(("install 1.8.14 again: copy from the tree cache (median)",
                        f"{copy:.1f} s", f"{warm / copy:.0f}x faster than the warm install"))

        repo = work / "mirror"
        commits = make_release_repo(repo, {"1.8.18": etherpad_from_install(work / "warm")})
        source = resolve_source(str(repo), known_commits={"1.8.18": commits["1.8.18"][:7]})
        started = time.monotonic()
        bundle = bundle_release("1.8.18", source, work / "revision")
        results.append(("bundle a git release (CodeDeploy revision content)",
                        f"{time.monotonic() - started:.1f} s",
                        f"{bundle.size_bytes / 1e6:.0f} MB, {bundle.files:,} files"))
        subprocess.run([str(bundle.path / "etherpad/bin/install-etherpad.sh"), "--from-tree",
                        str(bundle.path / "etherpad-lite")], check=True, capture_output=True,
                       env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home()),
                            "ETHERPAD_HOME": str(work / "git")})
        git = read_install(work / "git")
        results.append(("install a git release from the bundle (npm install against its "
                        "lockfile, warm)", f"{git.seconds:.1f} s",
                        f"{git.size_bytes / 1e6:.0f} MB, {git.files:,} files"))

        with PostgresServer() as pg:
            run = EtherpadRun(work / "copy0", env=pg.etherpad_env())
            starts, stops = [], []
            for i in range(args.runs):
                t0 = time.monotonic()
                assert run.script("start-etherpad.sh").returncode == 0
                starts.append(first_200(run.port))
                pid = int((run.home / "var/etherpad.pid").read_text())
                idle = rss_mb(pid)
                for n in range(20):
                    run.api("createPad", padID=f"bench-{i}-{n}", text="x" * 2000)
                    run.get(f"/p/bench-{i}-{n}")
                served = rss_mb(pid)
                t0 = time.monotonic()
                run.stop()
                stops.append(time.monotonic() - t0)
            results.append(("start to first HTTP 200 on PostgreSQL (median)",
                            f"{statistics.median(starts):.1f} s",
                            f"runs: {', '.join(f'{s:.1f}' for s in starts)} s"))
            results.append(("stop (SIGTERM to exit, median)", f"{statistics.median(stops):.1f} s",
                            ""))
            results.append(("RSS idle / after 20 pads created and opened",
                            f"{idle:.0f} MB / {served:.0f} MB", "last run"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("| measurement | result | notes |")
    print("|---|---|---|")
    for row in results:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
