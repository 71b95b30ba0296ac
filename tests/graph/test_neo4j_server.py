"""The local Neo4j server's lifecycle: start/stop/status, state and password files, clear errors."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mmkg.errors import MmkgError, StoreUnavailableError
from mmkg.graph import neo4j_server as server_mod
from mmkg.graph.neo4j_server import Neo4jServerError
from mmkg.graph.neo4j_store import Neo4jGraphStore
from mmkg.graph.schema import Label, Node
from mmkg.settings import Settings


def local(neo4j_server: Any) -> tuple[Settings, int]:
    if neo4j_server.settings is None:
        pytest.skip("needs the server this session started (MMKG_TEST_NEO4J_URI points elsewhere)")
    return neo4j_server.settings, neo4j_server.port


# ------------------------------------------------------------------ no server needed


def test_errors_are_mmkg_errors() -> None:
    assert issubclass(Neo4jServerError, MmkgError)


def test_stop_and_status_when_nothing_runs(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "ws")
    assert server_mod.stop(settings)["running"] is False
    assert server_mod.status(settings)["running"] is False


def test_stale_state_file_reads_as_not_running(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "ws")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    settings.home.mkdir(parents=True)
    server_mod.state_file(settings).write_text(
        json.dumps({"pid": dead.pid, "port": 17999, "uri": "bolt://127.0.0.1:17999", "data_dir": "x", "log_file": "y"})
    )
    status = server_mod.status(settings)
    assert status["running"] is False and status["pid"] is None and "stale" in status["note"]
    assert server_mod.stop(settings)["stopped"] is False
    assert not server_mod.state_file(settings).exists()


def test_connection_settings_prefer_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEO4J_URI", "bolt://db.example:7777")
    monkeypatch.setenv("NEO4J_USER", "alice")
    monkeypatch.setenv("NEO4J_PASSWORD", "s3cret")
    conn = server_mod.connection_settings(Settings.load(home=tmp_path / "ws"))
    assert conn == ("bolt://db.example:7777", "alice", "s3cret")


def test_connection_settings_use_the_local_server_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NEO4J_URI", "NEO4J_USER", "NEO4J_PASSWORD", "MMKG_NEO4J_URI", "MMKG_NEO4J_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.load(home=tmp_path / "ws")
    with pytest.raises(StoreUnavailableError, match="no password for Neo4j user neo4j: set NEO4J_PASSWORD"):
        server_mod.connection_settings(settings)
    settings.home.mkdir(parents=True)
    server_mod.password_file(settings).write_text("from-file\n")
    server_mod.state_file(settings).write_text(json.dumps({"pid": 1, "port": 7700, "uri": "bolt://127.0.0.1:7700"}))
    assert server_mod.connection_settings(settings) == ("bolt://127.0.0.1:7700", "neo4j", "from-file")


# ------------------------------------------------------------------ against the session's server


@pytest.mark.neo4j
def test_status_files_and_idempotent_start(neo4j_server: Any) -> None:
    settings, port = local(neo4j_server)
    status = server_mod.status(settings)
    assert status["running"] and status["answering"]
    assert status["port"] == port and status["uri"] == f"bolt://127.0.0.1:{port}"
    assert Path(status["data_dir"]) == (Path(settings.home) / "neo4j").resolve()
    pw_file = server_mod.password_file(settings)
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
    assert server_mod.connection_settings(settings).password == pw_file.read_text().strip()
    again = server_mod.start(settings, port=port)
    assert again.already_running and again.pid == status["pid"]
    assert (Path(settings.home) / "logs" / "neo4j.out").is_file()


@pytest.mark.neo4j
def test_start_refuses_another_port_while_running(neo4j_server: Any) -> None:
    settings, port = local(neo4j_server)
    with pytest.raises(Neo4jServerError, match="already running .* run `mmkg neo4j stop` first"):
        server_mod.start(settings, port=server_mod.free_port())


@pytest.mark.neo4j
def test_start_refuses_a_port_in_use(neo4j_server: Any, tmp_path: Path) -> None:
    _, port = local(neo4j_server)
    with pytest.raises(Neo4jServerError, match=f"port {port} on 127.0.0.1 is already in use"):
        server_mod.start(Settings(home=tmp_path / "other"), port=port)


@pytest.mark.neo4j
def test_a_jvm_that_dies_at_start_is_reported_with_its_log(neo4j_server: Any, tmp_path: Path) -> None:
    local(neo4j_server)  # the jar is built
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    settings = Settings(home=tmp_path / "ws")
    with pytest.raises(Neo4jServerError) as info:
        server_mod.start(settings, port=server_mod.free_port(), data_dir=not_a_dir, timeout=120)
    message = str(info.value)
    assert message.startswith("the Neo4j server exited with code 1 while starting: mmkg-neo4j: failed to start:")
    assert "\n" not in message and "(log: " in message
    assert not server_mod.state_file(settings).exists()


@pytest.mark.neo4j
def test_clean_stop_and_restart_keeps_the_data(neo4j_server: Any, neo4j_store: Neo4jGraphStore) -> None:
    settings, port = local(neo4j_server)
    neo4j_store.upsert_nodes([Node("img:kept", Label.IMAGE, {"w": 1})])
    neo4j_store.close()
    out = server_mod.stop(settings)
    assert out["stopped"] and not out["killed"]  # SIGTERM was enough: a clean shutdown
    assert server_mod.status(settings)["running"] is False
    with pytest.raises(StoreUnavailableError, match="connection refused"):
        Neo4jGraphStore(neo4j_server.uri, neo4j_server.user, neo4j_server.password)
    server_mod.start(settings, port=port)
    with Neo4jGraphStore(neo4j_server.uri, neo4j_server.user, neo4j_server.password) as store:
        assert store.get_nodes(["img:kept"])["img:kept"].props == {"w": 1}
