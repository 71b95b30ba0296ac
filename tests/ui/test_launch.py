"""`mmkg ui` stops the Streamlit server it started on SIGTERM or SIGINT: no orphan, no port left bound."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mmkg.graph.neo4j_server import free_port


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_mmkg_ui_stops_streamlit(sig: signal.Signals, tmp_path: Path, proc_tree: Any) -> None:
    port = free_port()
    env = {**os.environ, "MMKG_HOME": str(tmp_path / "ws")}
    proc = subprocess.Popen([sys.executable, "-m", "mmkg.cli", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc_tree.wait_port(port, 120, proc)
        children = proc_tree.descendants(proc.pid)
        assert children, "mmkg ui started no server process"
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    deadline = time.monotonic() + 10
    while [p for p in children if proc_tree.alive(p)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in children if proc_tree.alive(p)], "Streamlit outlived mmkg ui"
    assert proc_tree.port_free(port)
