"""Load test of `mmkg serve`: throughput and p50/p95 latency of POST /search at 1, 8 and 32 concurrent
clients, and the ratio of API latency to the same search in process (`Searcher.search`), measured
call by call alternately so that both see the same machine load.

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
from concurrent.futures import ThreadPoolExecutor
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


def level(
    base: str, token: str, clients: int, requests: int, max_seconds: float, k: int, mode: str | None
) -> dict[str, float]:
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
                r = c.post("/search", json={"text": QUERIES[n % len(QUERIES)], "k": k, "mode": mode})
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


def paired(base: str, token: str, store: str, n: int, k: int, mode: str | None) -> dict[str, float]:
    """API and in-process latency of the same searches, alternated call by call so both see the same load
    (the in-process side runs the function the API calls, `Searcher.search`, without HTTP)."""
    from mmkg.collection import open_collection
    from mmkg.retrieval.search import Query
    from mmkg.service.search import Searcher
    from mmkg.settings import Settings

    api_times: list[float] = []
    local_times: list[float] = []
    # In process on a worker thread, as the server runs it: on the main thread the same search measured
    # about 3x slower on the 2-core box (torch's and FAISS's OpenMP teams contend there).
    with open_collection(Settings.load(store=store), read_only=True) as col, httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120
    ) as c, ThreadPoolExecutor(1) as worker:
        searcher = Searcher(col)

        def timed(text: str) -> float:
            t0 = time.perf_counter()
            searcher.search(Query(text=text), k=k, mode=mode)
            return time.perf_counter() - t0

        for q in QUERIES:  # warm-up
            worker.submit(timed, q).result()
        for i in range(n):
            text = QUERIES[i % len(QUERIES)]
            t0 = time.perf_counter()
            assert c.post("/search", json={"text": text, "k": k, "mode": mode}).status_code == 200
            api_times.append(time.perf_counter() - t0)
            local_times.append(worker.submit(timed, text).result())
    return {
        "requests": n,
        "api_p50_ms": round(1000 * statistics.median(api_times), 1),
        "api_p95_ms": round(1000 * percentile(api_times, 0.95), 1),
        "in_process_p50_ms": round(1000 * statistics.median(local_times), 1),
        "in_process_p95_ms": round(1000 * percentile(local_times, 0.95), 1),
        "api_over_in_process_p50": round(statistics.median(api_times) / statistics.median(local_times), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=os.environ.get("MMKG_STORE", "memory"), choices=["memory", "neo4j"])
    parser.add_argument("--levels", default="1,8,32", help="concurrent clients per level")
    parser.add_argument("--requests", type=int, default=200, help="requests per level (at most)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time per level (at most)")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--mode", choices=["encoder", "gnn", "full"], help="default: the workspace's default")
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
    home = str(Path(os.environ["MMKG_HOME"]).resolve())
    results: dict[str, object] = {"store": args.store, "mode": args.mode, "home": home}
    try:
        wait_ready(base, server)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:
            stats = c.get("/stats").json()
            results["collection"] = {"records": stats["nodes"]["Record"], "images": stats["vectors"]["images"],
                                     "texts": stats["vectors"]["texts"]}
            for q in QUERIES:  # warm-up: first-use costs (FAISS, caches) are not what a user sees later
                c.post("/search", json={"text": q, "k": args.k, "mode": args.mode})
        levels = []
        for clients in (int(x) for x in args.levels.split(",")):
            row = level(base, token, clients, args.requests, args.max_seconds, args.k, args.mode)
            levels.append(row)
            print(f"{clients:3d} clients: {row['requests']} requests, {row['throughput_rps']} req/s, "
                  f"p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, errors {row['errors']}", flush=True)
        results["api"] = levels
        pair = paired(base, token, args.store, min(args.requests, 100), args.k, args.mode)
        results["paired"] = pair
        print(f"API vs in process, alternated: p50 {pair['api_p50_ms']} vs {pair['in_process_p50_ms']} ms, "
              f"p95 {pair['api_p95_ms']} vs {pair['in_process_p95_ms']} ms: "
              f"{pair['api_over_in_process_p50']}x", flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
