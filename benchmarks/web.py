"""Throughput and latency of POST /generate on the tiny DCGAN, with 1, 4 and 16 concurrent clients.

    python -m benchmarks.web                         # starts inference/web_demo.py on a free port, 64 requests a level
    python -m benchmarks.web --url http://127.0.0.1:7860 --requests 200   # a server already running
    python -m benchmarks.web --toy --url URL         # seconds: 4 requests a level (what the tests run)

Each client sends its requests one after another (a closed loop) on its own connection; a level's
requests/s is its completed requests over its wall time, and p50/p95 are of the per-request
latency (request sent to the whole JSON answer read). The server runs in its own process with
--concurrency/--queue as given, so the clients and the model share the machine's cores: quote the
figures with the machine and its load. There is no reference server to run beside it, so the
figures are absolute, not a ratio.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from utils.cli import ArgumentParser
from utils.errors import cli_errors

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def demo_server(concurrency: int, queue: int, device: str | None) -> Iterator[str]:
    """`python inference/web_demo.py --models dcgan` on a free port, until the block ends."""
    import httpx

    port = _free_port()
    argv = [sys.executable, str(ROOT / "inference" / "web_demo.py"), "--models", "dcgan", "--port", str(port),
            "--concurrency", str(concurrency), "--queue", str(queue)] + (["--device", device] if device else [])
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the demo server exited: {proc.stderr.read()[-500:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the demo server did not answer /health within 180 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_level(url: str, clients: int, per_client: int, preset: str, headers: dict[str, str]) -> dict:
    """`clients` closed-loop clients, `per_client` requests each: requests/s, p50 and p95 latency (ms)."""
    import httpx

    def client(k: int) -> tuple[list[float], int]:
        times, errors = [], 0
        with httpx.Client(base_url=url, timeout=300, headers=headers) as http:
            for i in range(per_client):
                t0 = time.perf_counter()
                r = http.post("/generate", json={"model": "dcgan", "preset": preset, "seed": k * per_client + i,
                                                 "num_images": 1})
                r.read()
                times.append(time.perf_counter() - t0)
                errors += r.status_code != 200
        return times, errors

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, range(clients)))
    wall = time.perf_counter() - t0
    latencies = np.array([t for times, _ in results for t in times]) * 1000
    errors = sum(e for _, e in results)
    return {"clients": clients, "requests": int(latencies.size), "errors": errors,
            "requests_per_s": (latencies.size - errors) / wall, "p50_ms": float(np.percentile(latencies, 50)),
            "p95_ms": float(np.percentile(latencies, 95))}


@cli_errors("benchmarks.web")
def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="python -m benchmarks.web", description=__doc__.splitlines()[0])
    p.add_argument("--url", default=None, help="benchmark this running server (default: start web_demo.py)")
    p.add_argument("--token", default=None, help="the server's API token, if it has one")
    p.add_argument("--clients", default="1,4,16", help="comma-separated concurrency levels")
    p.add_argument("--requests", type=int, default=64, help="requests per level (split between its clients)")
    p.add_argument("--preset", default="tiny", help="DCGAN preset ('tiny': 16x16 random weights; 'digits')")
    p.add_argument("--concurrency", type=int, default=1, help="the started server's --concurrency")
    p.add_argument("--queue", type=int, default=32, help="the started server's --queue (>= the most clients)")
    p.add_argument("--device", default=None, help="the started server's --device")
    p.add_argument("--toy", action="store_true", help="a seconds-long run: 4 requests a level")
    args = p.parse_args(argv)
    from models.registry import get_spec

    get_spec("gan", "dcgan").check_preset(args.preset)  # before a server starts
    levels = [int(c) for c in args.clients.split(",") if c.strip()]
    if args.toy:
        args.requests = 4
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}

    def measure(url: str) -> dict:
        import httpx

        warm = httpx.post(url + "/generate", json={"model": "dcgan", "preset": args.preset}, headers=headers,
                          timeout=300)  # loads the pipeline before any timing
        warm.raise_for_status()
        rows = {}
        print("| clients | requests | requests/s | p50 ms | p95 ms | errors |\n|---|---|---|---|---|---|")
        for c in levels:
            row = run_level(url, c, max(1, -(-args.requests // c)), args.preset, headers)
            rows[c] = row
            print(f"| {c} | {row['requests']} | {row['requests_per_s']:.1f} | {row['p50_ms']:.1f} | "
                  f"{row['p95_ms']:.1f} | {row['errors']} |")
        return rows

    if args.url:
        rows = measure(args.url.rstrip("/"))
        where = args.url
    else:
        with demo_server(args.concurrency, args.queue, args.device) as url:
            rows = measure(url)
        where = f"web_demo.py --concurrency {args.concurrency} --queue {args.queue}"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"dcgan preset {args.preset}, one image a request; server: {where}; {os.cpu_count()} CPUs, "
          f"load average {load:.2f} at the end")
    return {"levels": rows, "load_average": load}


if __name__ == "__main__":
    main()
