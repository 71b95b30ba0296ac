"""The local Neo4j server: build the Java launcher (graph/server/, Maven), start, stop and inspect it.

The launcher runs Neo4j Community embedded with Bolt on 127.0.0.1 only. One server per workspace:
its pid and port live in `<workspace>/neo4j.json`, its generated password in `<workspace>/neo4j.password`
(mode 0600) unless NEO4J_PASSWORD is set, its logs in the workspace's `logs/` folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from mmkg.errors import MmkgError, StoreUnavailableError
from mmkg.settings import Settings
from mmkg.workspace import Workspace, atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

SERVER_DIR = Path(__file__).resolve().parent / "server"
JAR_NAME = "mmkg-neo4j-launcher.jar"
DEFAULT_URI = "bolt://127.0.0.1:7687"
PASSWORD_ENV = "MMKG_NEO4J_LAUNCHER_PASSWORD"  # how the launcher receives the password (never on argv)
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
READY_LINE = b"mmkg-neo4j: ready"

# Popen handles of servers started by this process, so a dead child is reaped rather than left a zombie.
_children: dict[int, subprocess.Popen[bytes]] = {}


class Neo4jServerError(MmkgError):
    """The local Neo4j server could not be built, started or stopped."""


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    port: int
    uri: str
    user: str
    data_dir: Path
    log_file: Path
    password_file: Path | None
    """None when the password comes from NEO4J_PASSWORD."""
    already_running: bool = False


class ConnectionSettings(NamedTuple):
    uri: str
    user: str
    password: str


# --- paths -----------------------------------------------------------------------------------


def state_file(settings: Settings) -> Path:
    return Workspace(Path(settings.home)).root / "neo4j.json"


def password_file(settings: Settings) -> Path:
    return Workspace(Path(settings.home)).root / "neo4j.password"


def default_data_dir(settings: Settings) -> Path:
    return Workspace(Path(settings.home)).root / "neo4j"


def launcher_jar() -> Path:
    return SERVER_DIR / "target" / JAR_NAME


# --- build -----------------------------------------------------------------------------------


def _newest_source_mtime() -> float:
    files = [SERVER_DIR / "pom.xml", *(p for p in (SERVER_DIR / "src").rglob("*") if p.is_file())]
    return max(p.stat().st_mtime for p in files)


def jar_is_current() -> bool:
    jar = launcher_jar()
    lib = jar.parent / "lib"
    return jar.is_file() and lib.is_dir() and jar.stat().st_mtime >= _newest_source_mtime()


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """Two starts at once (say, two test sessions) must not run Maven into the same target/ together."""
    target = SERVER_DIR / "target"
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_launcher(build_log: Path) -> Path:
    """Build the launcher jar with Maven unless it is newer than its sources; returns the jar."""
    if jar_is_current():
        return launcher_jar()
    with _build_lock():
        if jar_is_current():
            return launcher_jar()
        mvn = shutil.which("mvn")
        if mvn is None:
            raise Neo4jServerError("Maven (mvn) is needed to build the local Neo4j server (graph/server/)")
        log.info("building the Neo4j launcher with Maven (the first build downloads ~125 MB); log: %s", build_log)
        build_log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with open(build_log, "wb") as out:
            rc = subprocess.call(
                [mvn, "-B", "-q", "-f", str(SERVER_DIR / "pom.xml"), "package"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if rc != 0 or not launcher_jar().is_file():
            tail = _log_tail(build_log, lines=1) or f"exit code {rc}"
            raise Neo4jServerError(f"Maven build of the Neo4j launcher failed: {tail} (log: {build_log})")
        launcher_jar().touch()  # Maven leaves an unchanged jar's mtime alone; mark it current
        log.info("built the Neo4j launcher in %.0f s", time.monotonic() - t0)
    return launcher_jar()


# --- process helpers -------------------------------------------------------------------------


def _is_launcher(pid: int) -> bool:
    """Alive, not a zombie, and really our launcher (a recycled pid must not be signalled)."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}:
            return False
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except PermissionError:
        return True
    return JAR_NAME.encode() in cmdline


def _find_java(java_home: str | None) -> str | None:
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _log_tail(path: Path, lines: int = 5) -> str:
    """The last meaningful lines of a log, joined into one line for an error message."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("\tat ")]
    return " | ".join(kept[-lines:])


def _read_state(settings: Settings) -> dict[str, Any] | None:
    path = state_file(settings)
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        log.warning("ignoring an unreadable Neo4j state file %s", path)
        return None
    return state


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    child = _children.get(pid)
    while time.monotonic() < deadline:
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=0.2)
        if not _is_launcher(pid):
            _children.pop(pid, None)
            return True
        time.sleep(0.2)
    return False


def _bolt_answers(uri: str, user: str, password: str, timeout: float = 3.0) -> bool:
    from neo4j import GraphDatabase  # the driver: loaded only to probe a server
    from neo4j.exceptions import AuthError, Neo4jError, ServiceUnavailable

    try:
        with GraphDatabase.driver(uri, auth=(user, password), connection_timeout=timeout) as driver:
            driver.verify_connectivity()
        return True
    except AuthError as exc:
        raise Neo4jServerError(f"the Neo4j server at {uri} rejected the password for user {user}") from exc
    except (ServiceUnavailable, Neo4jError, OSError):
        return False


# --- password --------------------------------------------------------------------------------


def _password(settings: Settings, create: bool) -> tuple[str | None, Path | None]:
    """NEO4J_PASSWORD if set, else the workspace's password file (generated on first start)."""
    if settings.neo4j_password:
        return settings.neo4j_password, None
    path = password_file(settings)
    if path.is_file():
        return path.read_text(encoding="utf-8").strip(), path
    if not create:
        return None, None
    path.parent.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)
    try:
        atomic_write_bytes(path, (secrets.token_urlsafe(24) + "\n").encode())
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return path.read_text(encoding="utf-8").strip(), path


# --- public API ------------------------------------------------------------------------------


def start(
    settings: Settings, port: int = 7687, data_dir: Path | None = None, timeout: float = START_TIMEOUT_S
) -> ServerInfo:
    """Start the workspace's Neo4j server (building it first if needed); returns once Bolt answers.

    Starting a server that is already running on the same port returns its info.
    """
    ws = Workspace(Path(settings.home))
    ws.root.mkdir(parents=True, exist_ok=True)
    ws.logs_dir.mkdir(parents=True, exist_ok=True)
    data = (data_dir or default_data_dir(settings)).expanduser().resolve()
    uri = f"bolt://127.0.0.1:{port}"
    password, pw_file = _password(settings, create=True)
    assert password is not None

    running = _already_running(settings, port, data, uri, password)
    if running is not None:
        return _info(running, pw_file, already_running=True)
    if _port_in_use(port):
        raise Neo4jServerError(f"port {port} on 127.0.0.1 is already in use; choose another with --port")
    java = _find_java(settings.java_home)
    if java is None:
        raise Neo4jServerError("Java 17 (java) is needed to run the local Neo4j server")
    jar = build_launcher(ws.logs_dir / "neo4j-build.log")

    out_log = ws.logs_dir / "neo4j.out"
    cmd = _launch_command(settings, java, jar, data, ws.logs_dir / "neo4j", port)
    log.info("starting Neo4j on %s (data %s, log %s)", uri, data, out_log)
    proc, offset = _launch(cmd, password, out_log, port)
    state = {
        "pid": proc.pid,
        "port": port,
        "uri": uri,
        "user": settings.neo4j_user,
        "data_dir": str(data),
        "log_file": str(out_log),
        "started_at": time.time(),
    }
    atomic_write_json(state_file(settings), state)

    try:
        _wait_until_ready(proc, settings, uri, settings.neo4j_user, password, out_log, offset, timeout)
    except KeyboardInterrupt:  # an interrupted start leaves no half-started server behind
        _terminate(proc.pid, STOP_TIMEOUT_S)
        state_file(settings).unlink(missing_ok=True)
        raise
    return _info(state, pw_file)


def _already_running(settings: Settings, port: int, data: Path, uri: str, password: str) -> dict[str, Any] | None:
    """The state of this workspace's server when it already runs as asked (same port and data) and answers;
    an error when it runs otherwise; None when none runs (a stale state file is removed)."""
    state = _read_state(settings)
    if state is None:
        return None
    if not _is_launcher(int(state["pid"])):
        state_file(settings).unlink(missing_ok=True)
        return None
    if int(state["port"]) != port or Path(state["data_dir"]) != data:
        raise Neo4jServerError(
            f"this workspace's Neo4j server is already running (pid {state['pid']}, port {state['port']},"
            f" data {state['data_dir']}); run `mmkg neo4j stop` first"
        )
    if _bolt_answers(uri, settings.neo4j_user, password):
        return state
    raise Neo4jServerError(
        f"this workspace's Neo4j server (pid {state['pid']}) is running but not answering on {uri};"
        " run `mmkg neo4j stop` and start it again"
    )


def _launch_command(settings: Settings, java: str, jar: Path, data: Path, logs: Path, port: int) -> list[str]:
    """The launcher's command line: JVM sizing from the settings, the password travels in the environment."""
    heap = settings.neo4j_heap
    return [
        java,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:+ExitOnOutOfMemoryError",
        "-XX:-OmitStackTraceInFastThrow",
        "-Dfile.encoding=UTF-8",
        "-jar",
        str(jar),
        "--home",
        str(data),
        "--logs",
        str(logs),
        "--port",
        str(port),
        "--pagecache",
        settings.neo4j_pagecache,
    ]


def _launch(cmd: list[str], password: str, out_log: Path, port: int) -> tuple[subprocess.Popen[bytes], int]:
    """Start the launcher in its own session, its output appended to `out_log`; returns it and the log offset
    where this start's output begins."""
    env = {**os.environ, PASSWORD_ENV: password}  # the child inherits this process's environment
    with open(out_log, "ab") as out:
        out.write(f"\n=== mmkg neo4j start {time.strftime('%Y-%m-%d %H:%M:%S')} port {port}\n".encode())
        out.flush()
        offset = out.tell()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    _children[proc.pid] = proc
    return proc, offset


def _wait_until_ready(
    proc: subprocess.Popen[bytes],
    settings: Settings,
    uri: str,
    user: str,
    password: str,
    out_log: Path,
    offset: int,
    timeout: float,
) -> None:
    t0 = time.monotonic()
    next_note = t0 + 10
    while True:
        rc = proc.poll()
        if rc is not None:
            _children.pop(proc.pid, None)
            state_file(settings).unlink(missing_ok=True)
            raise Neo4jServerError(
                f"the Neo4j server exited with code {rc} while starting: {_tail_from(out_log, offset, lines=1)}"
                f" (log: {out_log})"
            )
        # The launcher says "ready" once the password is in place (on a restart Bolt opens a moment
        # before that, when an old password would still be accepted), then Bolt must answer to ours.
        if _launcher_ready(out_log, offset) and _bolt_answers(uri, user, password, timeout=2.0):
            log.info("Neo4j is answering on %s after %.0f s", uri, time.monotonic() - t0)
            return
        now = time.monotonic()
        if now - t0 > timeout:
            _terminate(proc.pid, STOP_TIMEOUT_S)
            state_file(settings).unlink(missing_ok=True)
            raise Neo4jServerError(
                f"Neo4j did not answer on {uri} within {timeout:.0f} s: {_tail_from(out_log, offset)} (log: {out_log})"
            )
        if now >= next_note:
            log.info("waiting for Neo4j on %s (%.0f s so far)", uri, now - t0)
            next_note = now + 10
        time.sleep(0.5)


def _launcher_ready(path: Path, offset: int) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return READY_LINE in fh.read()
    except OSError:
        return False


def _tail_from(path: Path, offset: int, lines: int = 3) -> str:
    """The tail of this start's part of the launcher log (earlier starts append to the same file)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("\tat ")]
    return " | ".join(kept[-lines:]) or "no output"


def _info(state: dict[str, Any], pw_file: Path | None, already_running: bool = False) -> ServerInfo:
    return ServerInfo(
        pid=int(state["pid"]),
        port=int(state["port"]),
        uri=str(state["uri"]),
        user=str(state.get("user", "neo4j")),
        data_dir=Path(state["data_dir"]),
        log_file=Path(state["log_file"]),
        password_file=pw_file,
        already_running=already_running,
    )


def _terminate(pid: int, timeout: float) -> bool:
    """SIGTERM (the launcher shuts Neo4j down cleanly), then SIGKILL; True when it had to be killed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_exit(pid, timeout):
        return False
    log.warning("Neo4j (pid %d) did not stop within %.0f s; killing it", pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_exit(pid, 10.0):
        raise Neo4jServerError(f"could not stop the Neo4j server (pid {pid})")
    return True


def stop(settings: Settings, timeout: float = STOP_TIMEOUT_S) -> dict[str, Any]:
    """Stop the workspace's server: SIGTERM, wait up to `timeout`, then SIGKILL."""
    state = _read_state(settings)
    if state is None or not _is_launcher(int(state["pid"])):
        state_file(settings).unlink(missing_ok=True)
        return {"running": False, "stopped": False, "message": "the local Neo4j server is not running"}
    pid = int(state["pid"])
    log.info("stopping Neo4j (pid %d)", pid)
    killed = _terminate(pid, timeout)
    state_file(settings).unlink(missing_ok=True)
    return {"running": False, "stopped": True, "pid": pid, "killed": killed, "uri": state["uri"]}


def status(settings: Settings) -> dict[str, Any]:
    """Whether the workspace's server runs, and where (pid, uri, port, data dir, log)."""
    state = _read_state(settings)
    if state is None:
        return {"running": False, "state_file": str(state_file(settings))}
    running = _is_launcher(int(state["pid"]))
    out: dict[str, Any] = {
        "running": running,
        "answering": running and _port_in_use(int(state["port"])),
        "pid": state["pid"] if running else None,
        "uri": state["uri"],
        "port": state["port"],
        "user": state.get("user", "neo4j"),
        "data_dir": state["data_dir"],
        "log_file": state["log_file"],
    }
    if not running:
        out["note"] = "stale state: the server is not running (start it with `mmkg neo4j start`)"
    return out


def server_uri(settings: Settings) -> str:
    """The URI to connect to: `settings.neo4j_uri` when set (NEO4J_URI), else the workspace's running local
    server's (its port may not be 7687), else the default local address."""
    if settings.neo4j_uri:
        return settings.neo4j_uri
    state = _read_state(settings)
    return str(state["uri"]) if state is not None else DEFAULT_URI


def connection_settings(settings: Settings) -> ConnectionSettings:
    """Where and how to connect (`server_uri`); the password falls back to the local server's password file."""
    uri = server_uri(settings)
    password, _ = _password(settings, create=False)
    if password is None:
        raise StoreUnavailableError(
            f"no password for Neo4j user {settings.neo4j_user}: set NEO4J_PASSWORD, or start the local server"
            " with `mmkg neo4j start`"
        )
    return ConnectionSettings(uri, settings.neo4j_user, password)


def free_port() -> int:
    """A local TCP port that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def scratch(settings: Settings) -> Iterator[ConnectionSettings]:
    """A local server of this workspace on a free port, for a benchmark or a test session; stopped on exit."""
    start(settings, port=free_port())
    try:
        yield connection_settings(settings)
    finally:
        stop(settings)


def scratch_label(settings: Settings) -> str:
    """How a benchmark names the local server it measured."""
    return (
        f"local server (Neo4j Community 5.26 embedded, heap {settings.neo4j_heap},"
        f" page cache {settings.neo4j_pagecache})"
    )


def info_dict(info: ServerInfo) -> dict[str, Any]:
    """A JSON-friendly view of ServerInfo (for the CLI)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(info).items()}
