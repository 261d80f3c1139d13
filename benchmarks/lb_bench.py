"""Load balancer benchmark: the local ALB side by side with nginx and haproxy.

Every path proxies to the same backend, an nginx (one worker) serving a 1 KiB static page:
C, keep-alive, never the bottleneck here. Paths:

    direct      client -> backend
    deployer    client -> deployer.localcloud LoadBalancer (own process) -> backend
    deployer-nr the same with target connection reuse off (a new connection per request)
    baseline    (with --baseline DIR) the same as deployer, but the load balancer of the
                deployer source tree in DIR: two versions of the proxy side by side
    nginx       client -> nginx proxy_pass, 1 worker, upstream keepalive -> backend
    haproxy     client -> haproxy, 1 thread, default http-reuse -> backend

Two cases per path, each bounded (10 s by default):

    fixed rate  500 requests/s over 16 kept-alive connections, open loop: a small asyncio
                client in its own process sends on absolute ticks (t0 + i/rate) whatever the
                answers do. Latency is measured from the send; "late" counts sends that went
                out more than 2 ms after their tick (all 16 connections busy, or the client
                itself behind; asyncio's timers alone are up to about 1 ms late).
    max         wrk -t2 -c16 for the same duration: requests/s and wrk's p50/p99.

Proxy CPU is read from /proc (process and children) around the fixed-rate case.

    python benchmarks/lb_bench.py [--seconds 10] [--rate 500] [--concurrency 16]
                                  [--repeat 3] [--baseline DIR] [--json out]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NGINX = "/usr/sbin/nginx"
HAPROXY = "/usr/sbin/haproxy"
WRK = "/usr/bin/wrk"
LATE_S = 0.002  # beyond asyncio's timer granularity (about 1 ms): a real queueing delay
PAGE = (b"<html><body>" + b"etherpad " * 111 + b"</body></html>\n")[:1024]


# -- helpers --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (nginx's workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pids.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# -- the servers ----------------------------------------------------------------------------

def start_nginx(root: Path, name: str, port: int, backend_port: int,
                location: str) -> subprocess.Popen:
    prefix = root / name
    prefix.mkdir()
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / sub).mkdir()
    (prefix / "nginx.conf").write_text(f"""
daemon off;
worker_processes 1;
user root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream backend {{ server 127.0.0.1:{backend_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        {location}
    }}
}}
""")
    return subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_haproxy(root: Path, port: int, backend_port: int) -> subprocess.Popen:
    cfg = root / "haproxy.cfg"
    cfg.write_text(f"""
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 10s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server s1 127.0.0.1:{backend_port}
""")
    return subprocess.Popen([HAPROXY, "-f", str(cfg), "-db"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_deployer_lb(backend_port: int, keepalive: float,
                      tree: Path | None = None) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve-lb", str(backend_port),
                             "--keepalive", str(keepalive),
                             *(["--tree", str(tree)] if tree else [])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line.strip().isdigit():
        raise RuntimeError(f"load balancer did not start: {line!r}")
    return proc, int(line)


def serve_lb(backend_port: int, keepalive: float, tree: Path | None) -> None:
    """Child process: our load balancer with AWS-valid settings until stdin closes."""
    if tree is not None:
        sys.path.insert(0, str(tree.resolve()))
    from deployer.base import logs
    from deployer.localcloud.elb.loadbalancer import LoadBalancer, TargetGroupSettings

    logs.configure("json", stream=sys.stderr)
    settings = TargetGroupSettings(health_check_interval_s=5, health_check_timeout_s=2)
    lb = LoadBalancer("bench", settings, target_keepalive_s=keepalive).start()
    lb.register("backend", backend_port)
    if not lb.wait_healthy("backend", 10):
        sys.exit("backend never became healthy")
    print(lb.port, flush=True)
    sys.stdin.read()
    lb.stop()


# -- the fixed-rate client ------------------------------------------------------------------

async def fixed_rate(port: int, rate: float, seconds: float, concurrency: int) -> dict:
    loop = asyncio.get_running_loop()
    request = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: lb-bench\r\n\r\n"
    total = int(rate * seconds)
    latencies: list[float] = []
    late = errors = 0
    counter = iter(range(total))
    t0 = loop.time() + 0.2

    async def worker() -> None:
        nonlocal late, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in counter:
            due = t0 + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            if loop.time() - due > LATE_S:
                late += 1
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
            except (OSError, asyncio.IncompleteReadError, AttributeError):
                errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            latencies.append((time.perf_counter() - sent) * 1000)
        writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = loop.time() - t0
    return {"requests": len(latencies), "errors": errors, "late": late,
            "achieved_rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(percentile(latencies, 50), 3),
            "p99_ms": round(percentile(latencies, 99), 3),
            "max_ms": round(max(latencies, default=float("nan")), 3)}


def run_fixed_rate(port: int, rate: float, seconds: float, concurrency: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--client", str(port), "--rate", str(rate),
                          "--seconds", str(seconds), "--concurrency", str(concurrency)],
                         capture_output=True, text=True, check=True, timeout=seconds + 30)
    return json.loads(out.stdout)


def run_wrk(port: int, seconds: float, concurrency: int) -> dict:
    out = subprocess.run([WRK, "-t2", f"-c{concurrency}", f"-d{int(seconds)}s", "--latency",
                          f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, check=True, timeout=seconds + 30).stdout

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
            "p99_ms": ms(re.search(r"\s99%\s+(\S+)", out).group(1)),
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}


# -- main -----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds over all paths; the report shows each figure's median")
    parser.add_argument("--paths", default="direct,deployer,deployer-nr,nginx,haproxy")
    parser.add_argument("--baseline", type=Path,
                        help="a deployer source tree whose load balancer runs as path 'baseline'")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve-lb", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--keepalive", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_lb:
        return serve_lb(args.serve_lb, args.keepalive, args.tree)
    if args.client:
        result = asyncio.run(fixed_rate(args.client, args.rate, args.seconds, args.concurrency))
        print(json.dumps(result))
        return

    root = Path(tempfile.mkdtemp(prefix="lb-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        backend_port = free_port()
        (root / "www").mkdir()
        (root / "www" / "index.html").write_bytes(PAGE)
        procs.append(start_nginx(root, "backend", backend_port, backend_port,
                                 f"location / {{ root {root}/www; }}"))
        wait_port(backend_port)
        ports = {"direct": (backend_port, procs[0])}
        wanted = args.paths.split(",")
        if args.baseline and "baseline" not in wanted:
            wanted.insert(wanted.index("deployer") + 1 if "deployer" in wanted else 1,
                          "baseline")
        if "deployer" in wanted:
            proc, port = start_deployer_lb(backend_port, 60.0)
            procs.append(proc)
            ports["deployer"] = (port, proc)
        if "baseline" in wanted:
            if args.baseline is None:
                parser.error("the path 'baseline' needs --baseline DIR")
            proc, port = start_deployer_lb(backend_port, 60.0, args.baseline)
            procs.append(proc)
            ports["baseline"] = (port, proc)
        if "deployer-nr" in wanted:
            proc, port = start_deployer_lb(backend_port, 0.0)
            procs.append(proc)
            ports["deployer-nr"] = (port, proc)
        if "nginx" in wanted:
            port = free_port()
            proc = start_nginx(root, "proxy", port, backend_port, """location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }""")
            procs.append(proc)
            ports["nginx"] = (port, proc)
        if "haproxy" in wanted:
            port = free_port()
            proc = start_haproxy(root, port, backend_port)
            procs.append(proc)
            ports["haproxy"] = (port, proc)
        for port, _ in ports.values():
            wait_port(port)

        runs: dict[str, list[dict]] = {name: [] for name in wanted}
        for _ in range(args.repeat):  # rounds interleave the paths, so noise hits them alike
            for name in wanted:
                port, proc = ports[name]
                run_fixed_rate(port, args.rate, 1.0, args.concurrency)  # warm up
                cpu_before = cpu_seconds(proc.pid)
                fixed = run_fixed_rate(port, args.rate, args.seconds, args.concurrency)
                cpu = cpu_seconds(proc.pid) - cpu_before
                fixed["proxy_cpu_pct"] = round(100 * cpu / args.seconds, 1)
                maximum = run_wrk(port, args.seconds, args.concurrency)
                runs[name].append({"fixed_rate": fixed, "max": maximum})
                print(f"{name:12s} fixed {fixed}\n{'':12s} max   {maximum}", file=sys.stderr)
        results = {name: {case: median_of([run[case] for run in path_runs])
                          for case in ("fixed_rate", "max")}
                   for name, path_runs in runs.items()}

        report = {"machine": machine(), "seconds": args.seconds, "rate": args.rate,
                  "concurrency": args.concurrency, "repeat": args.repeat,
                  "backend": "nginx 1 worker, 1 KiB static", "results": results, "runs": runs}
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        print(markdown(report))
    finally:
        for proc in procs:
            if proc.stdin:
                proc.stdin.close()
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)


def median_of(samples: list[dict]) -> dict:
    """Each numeric figure's median over the rounds; counts (errors, late) are summed."""
    merged: dict = {}
    for key, first in samples[0].items():
        values = [sample[key] for sample in samples]
        if key in ("errors", "late", "requests", "non_2xx"):
            merged[key] = sum(values)
        elif isinstance(first, (int, float)):
            merged[key] = statistics.median(values)
        else:
            merged[key] = "; ".join(v for v in values if v)
    return merged


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (f"{os.cpu_count()} cores ({model}), Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def markdown(report: dict) -> str:
    results = report["results"]
    direct = results.get("direct")
    nginx = results.get("nginx")
    lines = [
        f"Machine: {report['machine']}. Backend: {report['backend']}. "
        f"{report['concurrency']} connections, {report['seconds']:g} s per case, "
        f"median of {report['repeat']} interleaved rounds (late sends and errors: summed).",
        "",
        f"| path | {report['rate']:g}/s p50 ms | p99 ms | added p99 vs direct ms "
        "| sends >2 ms late | errors | proxy CPU % | max req/s | max p50 ms | max p99 ms "
        "| max req/s vs nginx |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        fixed, maximum = result["fixed_rate"], result["max"]
        added = (f"{fixed['p99_ms'] - direct['fixed_rate']['p99_ms']:+.2f}"
                 if direct and name != "direct" else "")
        ratio = (f"{maximum['rps'] / nginx['max']['rps']:.2f}"
                 if nginx and name != "direct" else "")
        cpu = f"{fixed['proxy_cpu_pct']:.1f}"
        cpu = cpu if name != "direct" else f"({cpu}, the backend)"
        errors = f"{fixed['errors'] + maximum['non_2xx']}"
        if maximum["socket_errors"]:
            errors += f" (wrk socket errors: {maximum['socket_errors']})"
        lines.append(
            f"| {name} | {fixed['p50_ms']:.2f} | {fixed['p99_ms']:.2f} | {added} | "
            f"{fixed['late']} | {errors} | {cpu} | "
            f"{maximum['rps']:.0f} | {maximum['p50_ms']:.2f} | {maximum['p99_ms']:.2f} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
