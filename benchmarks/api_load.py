"""Load test of `mmkg serve`: throughput and p50/p95 latency of POST /search at 1, 8 and 32 concurrent
clients, and the ratio of API latency to the same search in process (`Searcher.search`).

Loopback only and bounded: the server is started here on 127.0.0.1 (a free port, a random token), each
level stops after --requests requests or --max-seconds, whichever comes first, and the server is
stopped at the end. The workspace must hold an ingested collection and trained encoder heads:

    MMKG_HOME=<workspace> .venv/bin/python benchmarks/api_load.py [--store neo4j] [--requests 300]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

QUERIES = [
    "white sports shoes for men",
    "blue denim jeans",
    "a red dress for women",
    "black leather handbag",
    "casual cotton t-shirt",
    "analog watch with a steel strap",
    "summer skirt",
    "formal shirt for office",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mmkg serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("mmkg serve did not answer in time")


def level(base: str, token: str, clients: int, requests: int, max_seconds: float, k: int) -> dict[str, float]:
    """`clients` threads share a budget of `requests` POST /search calls (or `max_seconds`)."""
    latencies: list[float] = []
    errors = 0
    issued = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + max_seconds

    def client(i: int) -> None:
        nonlocal issued, errors
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:
            n = i
            while True:
                with lock:
                    if issued >= requests or time.monotonic() > stop_at:
                        return
                    issued += 1
                t0 = time.perf_counter()
                r = c.post("/search", json={"text": QUERIES[n % len(QUERIES)], "k": k})
                dt = time.perf_counter() - t0
                with lock:
                    if r.status_code == 200:
                        latencies.append(dt)
                    else:
                        errors += 1
                n += clients

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": round(len(latencies) / wall, 2),
        "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else float("nan"),
        "p95_ms": round(1000 * percentile(latencies, 0.95), 1) if latencies else float("nan"),
    }


def in_process(store: str, n: int, k: int) -> dict[str, float]:
    """The same searches through the same function the API calls, without HTTP."""
    from mmkg.collection import open_collection
    from mmkg.retrieval.search import Query
    from mmkg.service.search import Searcher
    from mmkg.settings import Settings

    settings = Settings.load(store=store)
    with open_collection(settings, read_only=True) as col:
        searcher = Searcher(col)
        for q in QUERIES:  # warm-up
            searcher.search(Query(text=q), k=k)
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            searcher.search(Query(text=QUERIES[i % len(QUERIES)]), k=k)
            times.append(time.perf_counter() - t0)
    return {
        "requests": n,
        "p50_ms": round(1000 * statistics.median(times), 1),
        "p95_ms": round(1000 * percentile(times, 0.95), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=os.environ.get("MMKG_STORE", "memory"), choices=["memory", "neo4j"])
    parser.add_argument("--levels", default="1,8,32", help="concurrent clients per level")
    parser.add_argument("--requests", type=int, default=200, help="requests per level (at most)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time per level (at most)")
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    if "MMKG_HOME" not in os.environ:
        raise SystemExit("set MMKG_HOME to an ingested workspace")

    token = secrets.token_urlsafe(16)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MMKG_API_TOKEN": token, "MMKG_STORE": args.store}
    server = subprocess.Popen(
        [sys.executable, "-m", "mmkg.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    results: dict[str, object] = {"store": args.store, "home": str(Path(os.environ["MMKG_HOME"]).resolve())}
    try:
        wait_ready(base, server)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:
            stats = c.get("/stats").json()
            results["collection"] = {"records": stats["nodes"]["Record"], "images": stats["vectors"]["images"],
                                     "texts": stats["vectors"]["texts"]}
            for q in QUERIES:  # warm-up: first-use costs (FAISS, caches) are not what a user sees later
                c.post("/search", json={"text": q, "k": args.k})
        levels = []
        for clients in (int(x) for x in args.levels.split(",")):
            row = level(base, token, clients, args.requests, args.max_seconds, args.k)
            levels.append(row)
            print(f"{clients:3d} clients: {row['requests']} requests, {row['throughput_rps']} req/s, "
                  f"p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, errors {row['errors']}", flush=True)
        results["api"] = levels
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    local = in_process(args.store, min(args.requests, 100), args.k)
    results["in_process"] = local
    one = next((r for r in levels if r["clients"] == 1), levels[0])
    results["api_over_in_process_p50"] = round(one["p50_ms"] / local["p50_ms"], 2)
    print(f"in process: p50 {local['p50_ms']} ms, p95 {local['p95_ms']} ms; "
          f"API/in-process p50 at 1 client: {results['api_over_in_process_p50']}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
