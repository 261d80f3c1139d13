"""Instance launch from an image: the local cloud's hardlink clone vs a full copy (cp -a).

The image is a synthetic tree shaped like Etherpad's (20,000 files, 150 MB, nested like
node_modules), or a real tree given with --image DIR. Each launch clones the image into a
new instance root, as the Auto Scaling group does; the baseline copies it with ``cp -a``.

    python benchmarks/launch_bench.py [--files 20000] [--mb 150] [--runs 5] [--image DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployer.base.fsutil import tree_size
from deployer.localcloud.compute.instances import clone_tree


def synthetic_image(root: Path, files: int, total_mb: int) -> None:
    size = total_mb * 1024 * 1024 // files
    payload = os.urandom(size)
    for i in range(files):
        folder = root / "opt/etherpad/node_modules" / f"pkg{i // 50:03d}" / f"lib{i % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file{i}.js").write_bytes(payload)
    (root / "opt/etherpad/var").mkdir(parents=True, exist_ok=True)
    (root / "opt/etherpad/var/dirty.db").write_text("{}\n")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--mb", type=int, default=150)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        work = Path(tmp)
        image = args.image or work / "image"
        if args.image is None:
            synthetic_image(image, args.files, args.mb)
        size, files = tree_size(image)
        subprocess.run(["sync"])
        ours, baseline = [], []
        for run in range(args.runs):
            ours.append(timed(lambda run=run: clone_tree(image, work / f"i-{run}")))
            baseline.append(timed(lambda run=run: subprocess.run(
                ["cp", "-a", str(image), str(work / f"copy-{run}")], check=True)))
            shutil.rmtree(work / f"i-{run}")
            shutil.rmtree(work / f"copy-{run}")
    med_ours, med_base = statistics.median(ours), statistics.median(baseline)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()}")
    print(f"image: {files} files, {size / 1e6:.0f} MB")
    print("| launch | median s | min s | max s |\n|---|---|---|---|")
    print(f"| hardlink clone (deployer) | {med_ours:.3f} | {min(ours):.3f} | {max(ours):.3f} |")
    print(f"| cp -a (baseline) | {med_base:.3f} | {min(baseline):.3f} | {max(baseline):.3f} |")
    print(f"ratio deployer / cp -a: {med_ours / med_base:.2f}; goal: under 1 s: "
          f"{'met' if med_ours < 1.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
