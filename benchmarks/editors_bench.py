"""The simulated editors' own cost, and the editors' reconnect storm at a cut-over.

For each editor count: one real Etherpad 1.8.14 (npm, dirty DB) behind the local cloud's load
balancer; the editors type for ``--seconds``; the driver's CPU time over that stretch gives
editors per core. Then the Etherpad is restarted (SIGTERM, start again on the same data, as a
cut-over without a second instance) and the editors' reconnect durations give p50/p99; the
Etherpad's CPU time over the storm is read from /proc.

    python benchmarks/editors_bench.py --root /path/to/installed/etherpad --counts 10,50,200

Each count runs twice, side by side: the baseline is Etherpad behind a proxy it does not
trust (``trustProxy`` false, Etherpad's own default), where every editor counts against the
load balancer's one address in ``commitRateLimiting`` (10 messages a second); then as the
stacks run it (``trustProxy`` true), each simulated editor from an address of its own
(127.77/16), as users come from theirs. The typing interval is the same in both (the total
held at 8 edits a second), so only the addresses differ.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployer.etherpad import install_release, resolve_source
from deployer.localcloud.elb.loadbalancer import LoadBalancer, TargetGroupSettings
from deployer.measure.editors import EditorsSimulator, ensure_driver, summarize
from tests.support.etherpad import EtherpadRun

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def etherpad_pid(run: EtherpadRun) -> int:
    return int((run.home / "var" / "etherpad.pid").read_text().split()[0])


def bench(root: Path, count: int, seconds: float, modules: Path, *, trust_proxy: bool) -> dict:
    run = EtherpadRun(root, env={"DB_TYPE": "dirty", "ETHERPAD_APIKEY": "bench",
                                 "ETHERPAD_SESSIONKEY": "bench",
                                 "ETHERPAD_TRUST_PROXY": "true" if trust_proxy else "false"})
    settings = TargetGroupSettings(allow_fast_checks=True, health_check_interval_s=0.5,
                                   health_check_timeout_s=0.4, healthy_threshold=2,
                                   unhealthy_threshold=2, deregistration_delay_s=1)
    run.start()
    lb = LoadBalancer("bench", settings).start()
    try:
        lb.register("i-1", run.port)
        assert lb.wait_healthy("i-1", 20)
        interval = max(1.0, count / 8)  # under 10 messages a second from one address
        sim = EditorsSimulator(lb.url, editors=count, pads=max(1, count // 2),
                               type_interval_s=interval, modules=modules).start()
        ready = sim.wait_ready(60)
        pid = sim.pid
        assert pid is not None
        c0, t0 = cpu_s(pid), time.monotonic()
        time.sleep(seconds)
        driver_cpu = cpu_s(pid) - c0
        steady_s = time.monotonic() - t0
        # The cut-over: the instance goes away with every editor connected, and comes back.
        run.stop()
        run.start()
        ep0 = cpu_s(etherpad_pid(run))
        time.sleep(12)
        etherpad_storm_cpu = cpu_s(etherpad_pid(run)) - ep0
        records = sim.stop()
    finally:
        lb.stop()
        run.stop()
    summary = summarize(records)
    fraction = driver_cpu / steady_s
    return {"editors": count, "trust_proxy": trust_proxy, "ready": ready, "interval_s": interval,
            "driver_cpu_pct": round(100 * fraction, 1),
            "editors_per_core": round(count / fraction) if fraction else None,
            "reconnect_p50_ms": summary.reconnect_ms.p50,
            "reconnect_p99_ms": summary.reconnect_ms.p99,
            "reconnected": sum(bool(r.reconnect_ms) for r in records),
            "gave_up": summary.gave_up,
            "reasons": sorted({r.gave_up_reason or "" for r in records if r.gave_up}),
            "etherpad_cpu_s_12s_after_restart": round(etherpad_storm_cpu, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="an installed Etherpad 1.8.14 (else installed)")
    parser.add_argument("--counts", default="10,50,200")
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    root = args.root
    if root is None:
        root = Path("/tmp/deployer-editors-bench/etherpad")
        if not (root / "src").exists():
            install_release("1.8.14", resolve_source("npm"), root,
                            cache_dir=root.parent / "cache")
    modules = ensure_driver()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, {platform.platform()}")
    for count in (int(c) for c in args.counts.split(",")):
        for trust_proxy in (False, True):
            print(bench(root, count, args.seconds, modules, trust_proxy=trust_proxy), flush=True)


if __name__ == "__main__":
    main()
