"""`mmkg neo4j start --foreground` holds the server and stops it on SIGTERM: no Java left, port free."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mmkg.graph import neo4j_server

pytestmark = pytest.mark.neo4j


def test_sigterm_stops_the_foreground_server(tmp_path: Path, proc_tree: Any) -> None:
    if shutil.which("java") is None:
        pytest.skip("Java 17 is needed")
    port = neo4j_server.free_port()
    env = {**os.environ, "MMKG_HOME": str(tmp_path / "ws"), "NEO4J_PASSWORD": "lifecycle-test-pw"}
    env.pop("NEO4J_URI", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmkg.cli", "neo4j", "start", "--foreground", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the info JSON starts once Bolt answers
        assert first.strip() == b"{", first
        children = proc_tree.descendants(proc.pid)
        assert children and not proc_tree.port_free(port)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert not [p for p in children if proc_tree.alive(p)], "the Neo4j server outlived its command"
    assert proc_tree.port_free(port)
