"""CodeDeploy agent benchmark: what a local in-place deployment costs beyond the work itself.

Two measurements, each as a ratio to a baseline doing the bare work:

* files: DownloadBundle + Install of a node_modules-sized tree (default 20,000 files) versus
  ``cp -a`` of the same tree. The agent copies twice (bundle -> deployment-archive ->
  destinations, as the real agent does), so about 2x is the floor; a second deployment also
  removes the first one's files (the cleanup list) before installing.
* hooks: a deployment whose nine scriptable events each run one no-op script, versus
  running the same nine scripts one after another with subprocess.run.

    python benchmarks/codedeploy_bench.py [--files 20000] [--kb 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployer.appspec.reader import SCRIPTABLE_EVENTS
from deployer.localcloud.codedeploy.service import CodeDeployService, Revision


@dataclass
class Instance:
    instance_id: str
    root: Path
    env: dict[str, str] = field(default_factory=lambda: {"PATH": os.environ["PATH"]})


class Fleet:
    def __init__(self, instances: list[Instance]) -> None:
        self.members = instances

    def instances(self, group) -> list[Instance]:
        return self.members

    def traffic_control(self, group) -> None:
        return None


def make_tree(root: Path, files: int, mean_kb: int, seed: int = 7) -> int:
    """A node_modules-like tree: many small files in nested package directories."""
    rng = random.Random(seed)
    total = 0
    for n in range(files):
        package = root / f"pkg{n // 40:04d}" / ("lib" if n % 3 else "dist")
        package.mkdir(parents=True, exist_ok=True)
        size = max(64, int(rng.expovariate(1 / (mean_kb * 1024))))
        (package / f"f{n}.js").write_bytes(os.urandom(size))
        total += size
    return total


def bundle(base: Path, name: str, *, files: int, mean_kb: int, hooks: bool) -> Revision:
    rev = base / name
    (rev / "hooks").mkdir(parents=True)
    hook_yaml = ""
    if hooks:
        for event in SCRIPTABLE_EVENTS:
            script = rev / "hooks" / f"{event.value}.sh"
            script.write_text("#!/bin/sh\nexit 0\n")
            script.chmod(0o755)
            hook_yaml += f"  {event.value}:\n    - location: hooks/{event.value}.sh\n"
    if files:
        make_tree(rev / "app", files, mean_kb)
    else:
        (rev / "app").mkdir()
    (rev / "appspec.yml").write_text(
        "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: /opt/app\n"
        + (f"hooks:\n{hook_yaml}" if hook_yaml else ""))
    return Revision(bundle=rev)


def event_seconds(service: CodeDeployService, deployment_id: str, *names: str) -> float:
    records = service.get_deployment(deployment_id).instances["i-1"].lifecycle_events
    return sum(r.ended_at - r.started_at for r in records
               if r.event.value in names and r.started_at is not None)


def bench_files(work: Path, files: int, mean_kb: int, repeat: int) -> dict:
    rev1 = bundle(work, "rev1", files=files, mean_kb=mean_kb, hooks=False)
    rev2 = bundle(work, "rev2", files=files, mean_kb=mean_kb, hooks=False)
    size = sum(p.stat().st_size for p in (rev1.bundle / "app").rglob("*") if p.is_file())
    cp_runs, first_runs, second_runs = [], [], []
    for n in range(repeat):
        dest = work / f"cp-{n}"
        started = time.perf_counter()
        subprocess.run(["cp", "-a", str(rev1.bundle), str(dest)], check=True)
        cp_runs.append(time.perf_counter() - started)
        shutil.rmtree(dest)

        root = work / f"instance-{n}"
        root.mkdir()
        service = CodeDeployService(work / f"state-{n}", Fleet([Instance("i-1", root)]))
        service.create_application("app")
        service.create_deployment_group("app", "dg")
        first = service.deploy("app", "dg", rev1)
        second = service.deploy("app", "dg", rev2)
        assert first.status == second.status == "Succeeded", (first, second)
        first_runs.append(event_seconds(service, first.deployment_id, "DownloadBundle",
                                        "Install"))
        second_runs.append(event_seconds(service, second.deployment_id, "DownloadBundle",
                                         "Install"))
        shutil.rmtree(root)
    cp = statistics.median(cp_runs)
    return {"files": files, "megabytes": round(size / 1e6, 1),
            "cp_a_s": round(cp, 2),
            "first_deploy_s": round(statistics.median(first_runs), 2),
            "second_deploy_s": round(statistics.median(second_runs), 2),
            "first_vs_cp_a": round(statistics.median(first_runs) / cp, 2),
            "second_vs_cp_a": round(statistics.median(second_runs) / cp, 2)}


def bench_hooks(work: Path, repeat: int) -> dict:
    rev = bundle(work, "hooks-rev", files=0, mean_kb=0, hooks=True)
    scripts = [rev.bundle / "hooks" / f"{e.value}.sh" for e in SCRIPTABLE_EVENTS]
    base_runs, deploy_runs = [], []
    for n in range(repeat):
        started = time.perf_counter()
        for script in scripts:
            subprocess.run([str(script)], check=True, capture_output=True)
        base_runs.append(time.perf_counter() - started)

        root = work / f"hooks-instance-{n}"
        root.mkdir()
        service = CodeDeployService(work / f"hooks-state-{n}", Fleet([Instance("i-1", root)]))
        service.create_application("app")
        service.create_deployment_group("app", "dg")
        service.deploy("app", "dg", rev)  # first: ApplicationStop has nothing to run
        started = time.perf_counter()
        result = service.deploy("app", "dg", rev)
        deploy_runs.append(time.perf_counter() - started)
        assert result.status == "Succeeded", result
    base = statistics.median(base_runs)
    deploy = statistics.median(deploy_runs)
    # Without a load balancer 5 of the 9 hooked events run (ApplicationStop..ValidateService).
    return {"scripts_run_directly_s": round(base * 5 / 9, 3), "deployment_s": round(deploy, 3),
            "deployment_vs_direct": round(deploy / (base * 5 / 9), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--kb", type=int, default=5, help="mean file size in KB")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="codedeploy-bench-"))
    try:
        result = {"machine": f"{platform.machine()} {os.cpu_count()} cpus, "
                             f"Python {platform.python_version()}",
                  "files": bench_files(work, args.files, args.kb, args.repeat),
                  "hooks": bench_hooks(work, args.repeat)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
