from pathlib import Path

import pytest

from mmkg.errors import UserInputError
from mmkg.settings import Settings


def test_defaults() -> None:
    s = Settings()
    assert s.home == Path(".mmkg") and s.store == "memory" and s.encoder == "lit"


def test_environment_then_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MMKG_HOME", str(tmp_path))
    monkeypatch.setenv("MMKG_BATCH_SIZE", "7")
    monkeypatch.setenv("NEO4J_URI", "bolt://127.0.0.1:9999")
    s = Settings.load()
    assert s.home == tmp_path and s.batch_size == 7 and s.neo4j_uri == "bolt://127.0.0.1:9999"
    assert Settings.load(batch_size=3, home=None).batch_size == 3  # None means "not given on the command line"


def test_bad_values_are_user_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserInputError, match="unknown store"):
        Settings.load(store="sqlite")
    monkeypatch.setenv("MMKG_BATCH_SIZE", "many")
    with pytest.raises(UserInputError, match="not a number"):
        Settings.load()


def test_settings_read_the_environment_of_the_libraries_they_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_ENDPOINT", "HF_HUB_OFFLINE", "ALL_PROXY", "http_proxy", "HTTP_PROXY", "https_proxy",
                 "HTTPS_PROXY", "JAVA_HOME", "MMKG_NEO4J_HEAP", "MMKG_NEO4J_PAGECACHE", "NEO4J_URI", "MMKG_NEO4J_URI"):
        monkeypatch.delenv(name, raising=False)
    s = Settings.load()
    assert s.hf_offline is False and s.proxy is None and s.java_home is None and s.neo4j_uri is None
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example:8080")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("JAVA_HOME", "/opt/java17")
    monkeypatch.setenv("MMKG_NEO4J_HEAP", "2g")
    monkeypatch.setenv("MMKG_NEO4J_PAGECACHE", "1g")
    s = Settings.load()
    assert (s.hf_endpoint, s.hf_offline, s.proxy) == ("http://mirror.example:8080", True, "http://proxy.example:3128")
    assert (s.java_home, s.neo4j_heap, s.neo4j_pagecache) == ("/opt/java17", "2g", "1g")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert Settings.load().hf_offline is False
