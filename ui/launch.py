"""Start the explorer: `streamlit run` on `ui/app.py`, with the workspace's settings passed in the environment.

`mmkg ui [--port] [--store]` calls `run(settings, port)`. The app reads its settings with `Settings.load()`,
so every field of the caller's settings is handed over as its `MMKG_*` variable (and the Neo4j connection
as `NEO4J_*`, which `Settings.load` reads last).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mmkg.settings import Settings
from mmkg.ui.logic import upload_limit_mb

APP = Path(__file__).with_name("app.py")
DEFAULT_PORT = 8501


def environment(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the app process needs to load exactly these settings."""
    env = dict(os.environ if base is None else base)
    for f in dataclasses.fields(settings):
        if f.name == "extra":
            continue
        value = getattr(settings, f.name)
        name = f"MMKG_{f.name.upper()}"
        if value is None:
            env.pop(name, None)
            continue
        env[name] = str(Path(value).resolve()) if f.name == "home" else str(value)
    for f_name, var in (("neo4j_uri", "NEO4J_URI"), ("neo4j_user", "NEO4J_USER"), ("neo4j_password", "NEO4J_PASSWORD")):
        value = getattr(settings, f_name)
        if value is None:
            env.pop(var, None)
        else:
            env[var] = str(value)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


def command(
    settings: Settings,
    port: int = DEFAULT_PORT,
    address: str = "127.0.0.1",
    python: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The `streamlit run` command line: headless, no usage statistics, no tracebacks in the page."""
    return [
        python or sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--server.maxUploadSize",
        str(upload_limit_mb(settings)),
        "--browser.gatherUsageStats",
        "false",
        "--client.showErrorDetails",
        "none",
        "--client.toolbarMode",
        "viewer",
        "--theme.base",
        "light",
        *extra,
    ]


def start(
    settings: Settings, port: int = DEFAULT_PORT, address: str = "127.0.0.1", **popen: object
) -> subprocess.Popen[bytes]:
    """Start the explorer in the background (tests and scripts); the caller stops it."""
    return subprocess.Popen(command(settings, port, address), env=environment(settings), **popen)  # type: ignore[call-overload, no-any-return]


def run(settings: Settings, port: int = DEFAULT_PORT, address: str = "127.0.0.1") -> int:
    """Run the explorer in the foreground until Ctrl-C; returns the exit status."""
    print(
        f"mmkg explorer on http://{address}:{port}  (workspace {Path(settings.home).resolve()}, "
        f"store {settings.store}; Ctrl-C stops it)",
        file=sys.stderr,
    )
    proc = subprocess.Popen(command(settings, port, address), env=environment(settings))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 130
