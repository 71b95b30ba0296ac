"""Start the explorer: `streamlit run` on `ui/app.py`, with the workspace's settings passed in the environment.

`mmkg ui [--port] [--store]` calls `run(settings, port)`. The app reads its settings with `Settings.load()`,
so every field of the caller's settings is handed over as its `MMKG_*` variable (and the Neo4j connection
as `NEO4J_*`, which `Settings.load` reads last).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mmkg.settings import Settings
from mmkg.ui.logic import upload_limit_mb

APP = Path(__file__).with_name("app.py")
DEFAULT_PORT = 8501
STOP_TIMEOUT_S = 10.0
PR_SET_PDEATHSIG = 1


def environment(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the app process needs to load exactly these settings."""
    env = dict(os.environ if base is None else base)
    for f in dataclasses.fields(settings):
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


def _die_with_parent() -> None:
    """In the child, before exec: Linux sends it SIGTERM if the `mmkg ui` process dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the child's whole process group (whatever Streamlit started too), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def run(settings: Settings, port: int = DEFAULT_PORT, address: str = "127.0.0.1") -> int:
    """Run the explorer in the foreground until Ctrl-C or SIGTERM; returns the exit status.

    Streamlit runs in a process group of its own, which is stopped as a whole however `mmkg ui` ends
    (Ctrl-C, SIGTERM from a process manager, an error), so no server is left answering on the port.
    """
    print(
        f"mmkg explorer on http://{address}:{port}  (workspace {Path(settings.home).resolve()}, "
        f"store {settings.store}; Ctrl-C stops it)",
        file=sys.stderr,
    )
    proc = subprocess.Popen(
        command(settings, port, address),
        env=environment(settings),
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    # SIGTERM stops us as Ctrl-C does, and so does SIGINT even when it was inherited as ignored (a process
    # started in the background by a shell, or under nohup, ignores it unless it says otherwise).
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_group(proc)
