"""`mmkg serve` as a user runs it: a real uvicorn on a loopback port, the token, many readers while an
ingest writes, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mmkg.cli import main
from mmkg.graph.neo4j_server import free_port

TOKEN = "t0ken-for-tests"
CLIENTS = 8


def test_refuses_a_public_address_without_a_token(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["serve", "--host", "0.0.0.0", "--home", str(tmp_path / "ws")])
    err = capsys.readouterr().err
    assert code == 2 and "MMKG_API_TOKEN" in err and err.count("\n") == 1


def test_served_api_answers_many_readers_during_an_ingest_and_stops_cleanly(
    api_home: Path, fashion_subset: Any, tmp_path: Path, proc_tree: Any
) -> None:
    port = free_port()
    env = {**os.environ, "MMKG_HOME": str(api_home), "MMKG_API_TOKEN": TOKEN}
    server = subprocess.Popen(
        [sys.executable, "-m", "mmkg.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        proc_tree.wait_port(port, 180, server)
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        assert httpx.post(f"{base}/search", json={"text": "shoes"}).status_code == 401
        before = httpx.get(f"{base}/stats", headers=auth).json()["nodes"]["Record"]

        # An ingest of more products into the same workspace, by the CLI in another process.
        more = fashion_subset(tmp_path / "more", 40)
        ingest = subprocess.Popen(
            [sys.executable, "-m", "mmkg.cli", "ingest", str(more), "--quiet"],
            env={**env, "MMKG_INGEST_BATCH": "8"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        answers: list[list[int]] = [[] for _ in range(CLIENTS)]

        def client(i: int) -> None:
            with httpx.Client(base_url=base, headers=auth, timeout=60) as c:
                while ingest.poll() is None or not answers[i]:
                    r = c.post("/search", json={"text": f"casual {['shirt', 'shoes'][i % 2]} for men", "k": 5})
                    answers[i].append(r.status_code)
                    assert r.status_code != 200 or len(r.json()["results"]) == 5

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        # The CLI searches too while the ingest holds the writer's lock (it opens the store read-only).
        cli = subprocess.run([sys.executable, "-m", "mmkg.cli", "search", "shoes", "--json"], env=env,
                             capture_output=True, text=True, timeout=300)
        for t in threads:
            t.join(timeout=600)
        _, ingest_err = ingest.communicate(timeout=600)
        assert ingest.returncode == 0, ingest_err
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["results"]
        assert all(codes and set(codes) == {200} for codes in answers), answers

        deadline = time.monotonic() + 120  # the server picks up the new revision by itself
        while httpx.get(f"{base}/stats", headers=auth).json()["nodes"]["Record"] != before + 40:
            assert time.monotonic() < deadline, "the server never reloaded after the ingest"
            time.sleep(0.5)
    finally:
        children = proc_tree.descendants(server.pid)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
    # uvicorn shuts down gracefully, then re-raises the signal it caught, as the default handler would.
    assert server.returncode in (0, -signal.SIGTERM), server.stderr.read().decode() if server.stderr else ""
    assert not [pid for pid in children if proc_tree.alive(pid)]
    assert proc_tree.port_free(port)
