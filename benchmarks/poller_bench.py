"""Poller benchmark: achieved probe rate and scheduling jitter at 20, 50 and 100 probes/s.

Side by side with a naive baseline poller (a loop that sleeps one interval after each
probe, as most ad-hoc health checks do) against the same local server, so the result reads
as a ratio: how far each drifts from the rate asked for.

    python benchmarks/poller_bench.py [--seconds 10] [--rates 20,50,100]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployer.measure.analysis import percentile
from deployer.measure.poller import HealthPoller
from tests.support.scripted_server import ScriptedServer


def run_deployer(url: str, hz: float, seconds: float) -> dict:
    poller = HealthPoller(url, hz=hz, timeout=2.0)
    probes = poller.run_for(seconds)
    jitter = [max(0.0, p.jitter_ms) for p in probes]
    return {"achieved_hz": round(len(probes) / seconds, 2), "skipped": poller.skipped,
            "failed": sum(not p.ok for p in probes),
            "jitter_p50_ms": round(percentile(jitter, 50), 2),
            "jitter_p99_ms": round(percentile(jitter, 99), 2)}


def run_naive(url: str, hz: float, seconds: float) -> dict:
    """Baseline: probe, then sleep one interval (drifts by the probe's latency)."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    interval = 1.0 / hz
    start = time.monotonic()
    sent: list[float] = []
    while time.monotonic() - start < seconds:
        sent.append(time.monotonic() - start)
        conn = http.client.HTTPConnection(host, int(port), timeout=2.0)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(interval)
    jitter = [max(0.0, (t - i * interval) * 1000.0) for i, t in enumerate(sent)]
    return {"achieved_hz": round(len(sent) / seconds, 2), "skipped": 0, "failed": 0,
            "jitter_p50_ms": round(percentile(jitter, 50), 2),
            "jitter_p99_ms": round(percentile(jitter, 99), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="20,50,100")
    args = parser.parse_args()
    server = ScriptedServer()
    rows = []
    try:
        for hz in [float(r) for r in args.rates.split(",")]:
            ours = run_deployer(server.url, hz, args.seconds)
            naive = run_naive(server.url, hz, args.seconds)
            rows.append({"hz": hz, "deployer": ours, "naive_sleep_loop": naive,
                         "rate_ratio_vs_naive": round(ours["achieved_hz"] /
                                                      max(naive["achieved_hz"], 1e-9), 3)})
    finally:
        server.close()
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                         f"Python {platform.python_version()}",
              "seconds_per_case": args.seconds, "rows": rows}
    print(json.dumps(result, indent=2))
    print("\n| asked/s | deployer achieved/s | p50 jitter ms | p99 jitter ms | skipped |"
          " naive achieved/s | naive p99 drift ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        d, n = r["deployer"], r["naive_sleep_loop"]
        print(f"| {r['hz']:g} | {d['achieved_hz']} | {d['jitter_p50_ms']} | {d['jitter_p99_ms']} |"
              f" {d['skipped']} | {n['achieved_hz']} | {n['jitter_p99_ms']} |")


if __name__ == "__main__":
    main()
